//! `GET /healthz`, `GET /api/v1/status`.

use super::auth::{authorize, Role};
use super::error::ApiError;
use super::State;
use crate::actors::circuit_breaker::FaultReport;
use crate::actors::drone_registry::CountDrones;
use crate::actors::package_queue::GetCounts;
use crate::api::{Health, Status};
use actix_web::{web, HttpRequest};

pub async fn healthz() -> web::Json<Health> {
    web::Json(Health { ok: true })
}

pub async fn status(req: HttpRequest, state: State) -> Result<web::Json<Status>, ApiError> {
    authorize(&req, &state.tokens, Role::Read)?;
    let counts = state.queue.send(GetCounts).await?;
    let drones = state.registry.send(CountDrones).await?;
    let central_fault = state.breaker.send(FaultReport).await?;
    Ok(web::Json(Status {
        name: state.name.clone(),
        progress_pct: counts.progress_pct(),
        counts,
        drones,
        central_fault,
    }))
}
