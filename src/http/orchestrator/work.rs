//! The drone protocol's work endpoints: claim, uploading, complete, fail.

use super::State;
use crate::actors::orchestrator::build_logs::AppendOutput;
use crate::actors::orchestrator::drone_registry::ClaimFor;
use crate::actors::orchestrator::queue::{Complete, Fail, MarkUploading};
use crate::http::error::ApiError;
use crate::http::JsonObject;
use crate::wire::orchestrator::{
    Ack, ClaimRequest, CompleteRequest, CompleteResponse, EpochBody, FailRequest, LeaseId,
};
use crate::wire::orchestrator::{OutputAck, OutputChunk};
use actix_web::{web, HttpRequest, HttpResponse};

pub async fn claim(
    req: HttpRequest,
    state: State,
    body: web::Json<JsonObject<ClaimRequest>>,
) -> Result<HttpResponse, ApiError> {
    let drone = body.into_inner().0.drone;
    state.drone_caller_for(&req, &drone)?;
    let _timer = crate::orchestrator::metrics::start_timer(&state.metrics.claim_latency);
    let claimed = state.registry.send(ClaimFor { drone }).await??;
    Ok(match claimed {
        Some(work) => {
            state.metrics.claims.inc();
            HttpResponse::Ok().json(work)
        }
        None => HttpResponse::NoContent().finish(),
    })
}

pub async fn uploading(
    req: HttpRequest,
    state: State,
    lease: web::Path<LeaseId>,
    body: web::Json<JsonObject<EpochBody>>,
) -> Result<web::Json<Ack>, ApiError> {
    let msg = MarkUploading {
        caller: state.auth.drone_caller(&req)?,
        lease: lease.into_inner(),
        epoch: body.into_inner().0.epoch,
    };
    Ok(web::Json(state.queue.send(msg).await??))
}

pub async fn complete(
    req: HttpRequest,
    state: State,
    lease: web::Path<LeaseId>,
    body: web::Json<JsonObject<CompleteRequest>>,
) -> Result<web::Json<CompleteResponse>, ApiError> {
    let msg = Complete {
        caller: state.auth.drone_caller(&req)?,
        lease: lease.into_inner(),
        req: body.into_inner().0,
    };
    Ok(web::Json(state.queue.send(msg).await??))
}

pub async fn fail(
    req: HttpRequest,
    state: State,
    lease: web::Path<LeaseId>,
    body: web::Json<JsonObject<FailRequest>>,
) -> Result<web::Json<Ack>, ApiError> {
    let msg = Fail {
        caller: state.auth.drone_caller(&req)?,
        lease: lease.into_inner(),
        req: body.into_inner().0,
    };
    Ok(web::Json(state.queue.send(msg).await??))
}

/// Most lines one output chunk may carry.
const MAX_CHUNK_LINES: usize = 5_000;

/// `POST /api/v1/work/{lease}/output`: a running build's next lines.
pub async fn output(
    req: HttpRequest,
    state: State,
    lease: web::Path<LeaseId>,
    body: web::Json<JsonObject<OutputChunk>>,
) -> Result<web::Json<OutputAck>, ApiError> {
    let chunk = body.into_inner().0;
    if chunk.lines.len() > MAX_CHUNK_LINES {
        return Err(ApiError::BadRequest(format!(
            "an output chunk carries at most {MAX_CHUNK_LINES} lines, not {}",
            chunk.lines.len()
        )));
    }
    let msg = AppendOutput {
        caller: state.auth.drone_caller(&req)?,
        lease: lease.into_inner(),
        chunk,
    };
    Ok(web::Json(state.build_logs.send(msg).await??))
}
