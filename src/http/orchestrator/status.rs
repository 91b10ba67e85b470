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

#[derive(serde::Deserialize)]
pub struct TimelineQuery {
    /// Unix seconds (default: two hours before `until`, or the start of the first
    /// attempt after that).
    since: Option<u64>,
    /// Unix seconds (default: now).
    until: Option<u64>,
    /// Attempts at most (default 2000, at most 5000).
    limit: Option<usize>,
}

/// Attempts shown at most by default, and at all.
const TIMELINE_LIMIT: usize = 2_000;
const TIMELINE_MAX: usize = 5_000;

/// `GET /api/v1/timeline`: the attempts of a window by drone slot, throughput and
/// progress (docs/contract.md §5).
pub async fn timeline(
    req: HttpRequest,
    state: State,
    q: web::Query<TimelineQuery>,
) -> Result<web::Json<crate::wire::orchestrator::Timeline>, ApiError> {
    state.auth.authorize(&req, Role::Read)?;
    let until = q.until.unwrap_or_else(crate::sys::clock::unix_now);
    let since = q.since.unwrap_or(until.saturating_sub(7200));
    if since >= until {
        return Err(ApiError::BadRequest(format!(
            "since ({since}) must be before until ({until})"
        )));
    }
    let limit = q.limit.unwrap_or(TIMELINE_LIMIT).clamp(1, TIMELINE_MAX);
    let msg = crate::actors::orchestrator::queue::GetTimeline {
        from: since,
        to: until,
        limit,
        fit: q.since.is_none(),
    };
    Ok(web::Json(state.queue.send(msg).await?))
}
