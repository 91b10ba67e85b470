//! Package endpoints: list, submit a set, retry, a package's build-log tail.

use super::State;
use crate::actors::orchestrator::build_logs::FollowLog;
use crate::actors::orchestrator::queue::graph::boost::PRIORITY_RANGE;
use crate::actors::orchestrator::queue::{Bump, GetLog, ListPackages, Retry, Submit};
use crate::domain::{parse_package_set_bytes, PackageState};
use crate::http::auth::Role;
use crate::http::error::ApiError;
use crate::http::JsonObject;
use crate::wire::orchestrator::LiveLog;
use crate::wire::orchestrator::{
    BumpRequest, BumpResult, PackageList, PackageLog, RetryRequest, RetryResult, SubmitResult,
};
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub state: Option<String>,
    /// Substring of the atom.
    pub q: Option<String>,
    #[serde(default)]
    pub offset: usize,
    pub limit: Option<usize>,
}

pub async fn list(
    req: HttpRequest,
    state: State,
    query: web::Query<ListQuery>,
) -> Result<web::Json<PackageList>, ApiError> {
    state.auth.authorize(&req, Role::Read)?;
    let q = query.into_inner();
    let st = match q.state.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(PackageState::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown state `{s}`: use waiting, queued, building, uploading, built, failed or blocked"
            ))
        })?),
        None => None,
    };
    let list = state
        .queue
        .send(ListPackages {
            state: st,
            search: q.q.filter(|s| !s.is_empty()),
            offset: q.offset,
            limit: q.limit,
        })
        .await?;
    Ok(web::Json(list))
}

/// The body is read with an explicit limit so an oversized set gets a JSON 413.
#[derive(Debug, Deserialize)]
pub struct SubmitQuery {
    /// Operator priority of the set (higher first; -1000 to 1000; default: the JSON
    /// set's `"priority"`, else 0).
    #[serde(default)]
    pub priority: Option<i32>,
}

pub async fn submit(
    req: HttpRequest,
    state: State,
    query: web::Query<SubmitQuery>,
    mut body: web::Payload,
) -> Result<web::Json<SubmitResult>, ApiError> {
    state.auth.authorize(&req, Role::Admin)?;
    let asked = query.into_inner().priority;
    if let Some(priority) = asked.filter(|p| !PRIORITY_RANGE.contains(p)) {
        return Err(ApiError::BadRequest(format!(
            "priority {priority} is out of range: use {} to {}",
            PRIORITY_RANGE.start(),
            PRIORITY_RANGE.end()
        )));
    }
    let limit = state.max_submit_bytes;
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(format!(
                "package set is larger than max_submit_bytes ({limit} bytes)"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    // Parsing 100,000 packages takes a moment: keep it off the server's threads.
    let set = web::block(move || parse_package_set_bytes(&bytes))
        .await
        .map_err(|e| ApiError::Unavailable(format!("parser: {e}")))??;
    let priority = asked.or(set.priority).unwrap_or(0);
    Ok(web::Json(
        state.queue.send(Submit { set, priority }).await??,
    ))
}

pub async fn bump(
    req: HttpRequest,
    state: State,
    body: web::Json<JsonObject<BumpRequest>>,
) -> Result<web::Json<BumpResult>, ApiError> {
    state.auth.authorize(&req, Role::Admin)?;
    let atom = body.into_inner().0.atom;
    Ok(web::Json(state.queue.send(Bump { atom }).await??))
}

pub async fn retry(
    req: HttpRequest,
    state: State,
    body: web::Json<JsonObject<RetryRequest>>,
) -> Result<web::Json<RetryResult>, ApiError> {
    state.auth.authorize(&req, Role::Admin)?;
    Ok(web::Json(
        state.queue.send(Retry(body.into_inner().0)).await??,
    ))
}

pub async fn log(
    req: HttpRequest,
    state: State,
    path: web::Path<(String, String)>,
) -> Result<web::Json<PackageLog>, ApiError> {
    state.auth.authorize(&req, Role::Read)?;
    let (category, pf) = path.into_inner();
    let atom = format!("{category}/{pf}");
    Ok(web::Json(state.queue.send(GetLog { atom }).await??))
}

#[derive(Deserialize)]
pub struct LiveQuery {
    /// Lines from this number on (absent: all that is kept).
    after: Option<u64>,
    /// Seconds to wait for new lines (at most 30).
    #[serde(default)]
    wait: u64,
}

/// `GET /api/v1/packages/{category}/{pf}/log/live`: the latest attempt's output as it
/// builds (docs/contract.md §5).
pub async fn live_log(
    req: HttpRequest,
    state: State,
    path: web::Path<(String, String)>,
    q: web::Query<LiveQuery>,
) -> Result<web::Json<LiveLog>, ApiError> {
    state.auth.authorize(&req, Role::Read)?;
    let (category, pf) = path.into_inner();
    let atom = format!("{category}/{pf}");
    // Unknown atoms are refused before anyone waits for them.
    let pkg = state.queue.send(GetLog { atom: atom.clone() }).await??;
    let followed = state
        .build_logs
        .send(FollowLog {
            atom: pkg.atom.clone(),
            after: q.after,
            wait: std::time::Duration::from_secs(q.wait.min(30)),
        })
        .await?;
    // The state after the wait: a build that ended meanwhile shows its outcome.
    let pkg = state.queue.send(GetLog { atom: pkg.atom }).await??;
    let (lease, drone, phase, read) = match followed {
        Some(f) => (Some(f.lease), Some(f.drone), f.phase, Some(f.read)),
        None => (None, None, "none", None),
    };
    let after = q.after.unwrap_or(0);
    Ok(web::Json(LiveLog {
        atom: pkg.atom,
        state: pkg.state,
        reason: pkg.reason,
        lease,
        drone,
        phase: phase.to_string(),
        first: read.as_ref().map_or(after, |r| r.first),
        next: read.as_ref().map_or(after, |r| r.next),
        gap: read.as_ref().is_some_and(|r| r.gap),
        lines: read.map(|r| r.lines).unwrap_or_default(),
    }))
}
