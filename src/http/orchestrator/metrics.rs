//! `GET /metrics`: OpenMetrics text. The counters come from the shared
//! [`crate::orchestrator::metrics::Metrics`]; the gauges by state are asked from the queue and the
//! registry now.

use super::State;
use crate::actors::orchestrator::circuit_breaker::FaultReport;
use crate::actors::orchestrator::drone_registry::ListDrones;
use crate::actors::orchestrator::queue::{GetCounts, GetEta};
use crate::http::auth::Role;
use crate::http::error::ApiError;
use actix_web::{HttpRequest, HttpResponse};

pub async fn metrics(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    state.auth.authorize(&req, Role::Read)?;
    let counts = state.queue.send(GetCounts).await?;
    let drones = state.registry.send(ListDrones).await?;
    let eta_s = state.queue.send(GetEta).await?;
    let central_fault = state.breaker.send(FaultReport).await?.is_some();
    Ok(HttpResponse::Ok()
        .content_type(crate::http::METRICS_CONTENT_TYPE)
        .body(
            state
                .metrics
                .render(&crate::orchestrator::metrics::Snapshot {
                    name: &state.name,
                    packages: &counts,
                    drones: &drones.drones,
                    eta_s,
                    central_fault,
                }),
        ))
}
