//! `GET /healthz`, `GET /api/v1/status`.

use super::State;
use crate::actors::orchestrator::circuit_breaker::FaultReport;
use crate::actors::orchestrator::drone_registry::CountDrones;
use crate::actors::orchestrator::queue::{GetCounts, GetEta};
use crate::http::auth::Role;
use crate::http::error::ApiError;
use crate::wire::orchestrator::{Health, Status};
use actix_web::{web, HttpRequest};

pub async fn healthz() -> web::Json<Health> {
    web::Json(Health { ok: true })
}

pub async fn status(req: HttpRequest, state: State) -> Result<web::Json<Status>, ApiError> {
    state.auth.authorize(&req, Role::Read)?;
    let counts = state.queue.send(GetCounts).await?;
    let drones = state.registry.send(CountDrones).await?;
    let central_fault = state.breaker.send(FaultReport).await?;
    let eta_s = state.queue.send(GetEta).await?;
    Ok(web::Json(Status {
        name: state.name.clone(),
        progress_pct: counts.progress_pct(),
        counts,
        drones,
        central_fault,
        eta_s,
    }))
}
