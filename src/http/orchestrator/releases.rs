//! Binhost releases (admin to change, read token to look): list snapshots and channels,
//! take a snapshot, tag or roll back a channel, diff two snapshots, apply retention.

use super::State;
use crate::actors::orchestrator::releases::{
    CollectGarbage, DiffSnapshots, ListReleases, Rollback, Tag, TakeSnapshot,
};
use crate::http::auth::Role;
use crate::http::error::ApiError;
use crate::http::JsonObject;
use crate::orchestrator::binhost::releases::ReleaseError;
use crate::wire::orchestrator::{
    ChannelInfo, DiffReport, GcReport, GcRequest, ReleaseList, SnapshotInfo, SnapshotRequest,
    TagRequest,
};
use actix_web::{web, HttpRequest};
use serde::Deserialize;

impl From<ReleaseError> for ApiError {
    fn from(e: ReleaseError) -> Self {
        let m = e.to_string();
        match e {
            ReleaseError::InvalidName { .. } => ApiError::BadRequest(m),
            ReleaseError::UnknownSnapshot(_)
            | ReleaseError::UnknownChannel(_)
            | ReleaseError::NoIndex => ApiError::NotFound(m),
            ReleaseError::SnapshotExists(_)
            | ReleaseError::NoRollback { .. }
            | ReleaseError::Shadows(_) => ApiError::Conflict(m),
            ReleaseError::IndexLoading
            | ReleaseError::Interrupted(_)
            | ReleaseError::CrossDevice { .. }
            | ReleaseError::Io { .. } => ApiError::Unavailable(m),
        }
    }
}

pub async fn list(req: HttpRequest, state: State) -> Result<web::Json<ReleaseList>, ApiError> {
    state.auth.authorize(&req, Role::Read)?;
    Ok(web::Json(state.releases.send(ListReleases).await??))
}

pub async fn snapshot(
    req: HttpRequest,
    state: State,
    body: web::Json<JsonObject<SnapshotRequest>>,
) -> Result<web::Json<SnapshotInfo>, ApiError> {
    state.auth.authorize(&req, Role::Admin)?;
    let name = body.into_inner().0.name.filter(|n| !n.is_empty());
    Ok(web::Json(
        state.releases.send(TakeSnapshot { name }).await??,
    ))
}

pub async fn tag(
    req: HttpRequest,
    state: State,
    channel: web::Path<String>,
    body: web::Json<JsonObject<TagRequest>>,
) -> Result<web::Json<ChannelInfo>, ApiError> {
    state.auth.authorize(&req, Role::Admin)?;
    let msg = Tag {
        channel: channel.into_inner(),
        snapshot: body.into_inner().0.snapshot,
    };
    Ok(web::Json(state.releases.send(msg).await??))
}

pub async fn rollback(
    req: HttpRequest,
    state: State,
    channel: web::Path<String>,
) -> Result<web::Json<ChannelInfo>, ApiError> {
    state.auth.authorize(&req, Role::Admin)?;
    let msg = Rollback {
        channel: channel.into_inner(),
    };
    Ok(web::Json(state.releases.send(msg).await??))
}

#[derive(Debug, Deserialize)]
pub struct DiffQuery {
    pub from: String,
    pub to: String,
}

pub async fn diff(
    req: HttpRequest,
    state: State,
    query: web::Query<DiffQuery>,
) -> Result<web::Json<DiffReport>, ApiError> {
    state.auth.authorize(&req, Role::Read)?;
    let q = query.into_inner();
    let msg = DiffSnapshots {
        from: q.from,
        to: q.to,
    };
    Ok(web::Json(state.releases.send(msg).await??))
}

pub async fn gc(
    req: HttpRequest,
    state: State,
    body: web::Json<JsonObject<GcRequest>>,
) -> Result<web::Json<GcReport>, ApiError> {
    state.auth.authorize(&req, Role::Admin)?;
    let dry_run = body.into_inner().0.dry_run;
    Ok(web::Json(
        state.releases.send(CollectGarbage { dry_run }).await??,
    ))
}
