//! `GET /metrics`: Prometheus text exposition. The counters come from the shared
//! [`crate::metrics::Metrics`]; the gauges by state are asked from the queue and the
//! registry now.

use super::auth::{authorize, Role};
use super::error::ApiError;
use super::State;
use crate::actors::drone_registry::ListDrones;
use crate::actors::package_queue::GetCounts;
use actix_web::{HttpRequest, HttpResponse};

pub async fn metrics(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.tokens, Role::Read)?;
    let counts = state.queue.send(GetCounts).await?;
    let drones = state.registry.send(ListDrones).await?;
    Ok(HttpResponse::Ok()
        .content_type(crate::metrics::CONTENT_TYPE)
        .body(state.metrics.render(&state.name, &counts, &drones.drones)))
}
