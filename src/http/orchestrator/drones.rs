//! Drone endpoints: listings and control for operators, register and heartbeat for drones.

use super::State;
use crate::actors::orchestrator::circuit_breaker::Unground;
use crate::actors::orchestrator::drone_registry::{GetDrone, ListDrones, Lookup, Register};
use crate::actors::orchestrator::drone_session::{Control, GetLogs, Heartbeat};
use crate::actors::orchestrator::queue::DroneQueueView;
use crate::http::auth::Role;
use crate::http::error::ApiError;
use crate::http::JsonObject;
use crate::wire::orchestrator::{
    ControlAction, ControlRequest, ControlResult, DroneInfo, DroneList, DroneLogs, DroneQueue,
    HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse,
};
use actix_web::{web, HttpRequest};
use serde::Deserialize;

pub async fn list(req: HttpRequest, state: State) -> Result<web::Json<DroneList>, ApiError> {
    state.auth.authorize(&req, Role::Read)?;
    Ok(web::Json(state.registry.send(ListDrones).await?))
}

pub async fn get(
    req: HttpRequest,
    state: State,
    name: web::Path<String>,
) -> Result<web::Json<DroneInfo>, ApiError> {
    state.auth.authorize(&req, Role::Read)?;
    Ok(web::Json(
        state
            .registry
            .send(GetDrone {
                name: name.into_inner(),
            })
            .await??,
    ))
}

pub async fn queue(
    req: HttpRequest,
    state: State,
    name: web::Path<String>,
) -> Result<web::Json<DroneQueue>, ApiError> {
    state.auth.authorize(&req, Role::Read)?;
    let name = name.into_inner();
    state.registry.send(Lookup { name: name.clone() }).await??;
    Ok(web::Json(
        state.queue.send(DroneQueueView { drone: name }).await?,
    ))
}

#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    pub n: Option<usize>,
}

pub async fn logs(
    req: HttpRequest,
    state: State,
    name: web::Path<String>,
    query: web::Query<LogsQuery>,
) -> Result<web::Json<DroneLogs>, ApiError> {
    state.auth.authorize(&req, Role::Read)?;
    let name = name.into_inner();
    let session = state.registry.send(Lookup { name: name.clone() }).await??;
    let n = query
        .n
        .unwrap_or(20)
        .min(crate::actors::orchestrator::drone_session::LOG_RING);
    let lines = session.send(GetLogs { n }).await?;
    Ok(web::Json(DroneLogs { drone: name, lines }))
}

pub async fn control(
    req: HttpRequest,
    state: State,
    name: web::Path<String>,
    body: web::Json<JsonObject<ControlRequest>>,
) -> Result<web::Json<ControlResult>, ApiError> {
    state.auth.authorize(&req, Role::Admin)?;
    let name = name.into_inner();
    let session = state.registry.send(Lookup { name: name.clone() }).await??;
    let action = body.into_inner().0.action;
    match action {
        ControlAction::Unground => {
            state
                .breaker
                .send(Unground {
                    drone: name.clone(),
                })
                .await?;
        }
        other => {
            if !session.send(Control(other)).await? {
                return Err(ApiError::Conflict(format!(
                    "drone {name} reports no build environment (an older drone, or \
                     environment_command = []): it has no sync to run"
                )));
            }
        }
    }
    Ok(web::Json(ControlResult {
        ok: true,
        drone: name,
        action,
    }))
}

pub async fn register(
    req: HttpRequest,
    state: State,
    body: web::Json<JsonObject<RegisterRequest>>,
) -> Result<web::Json<RegisterResponse>, ApiError> {
    let body = body.into_inner().0;
    let caller = state.drone_caller_for(&req, &body.name)?;
    let register = Register {
        req: body,
        credential: caller.kind(),
    };
    Ok(web::Json(state.registry.send(register).await??))
}

pub async fn heartbeat(
    req: HttpRequest,
    state: State,
    name: web::Path<String>,
    body: web::Json<JsonObject<HeartbeatRequest>>,
) -> Result<web::Json<HeartbeatResponse>, ApiError> {
    let name = name.into_inner();
    state.drone_caller_for(&req, &name)?;
    let session = state.registry.send(Lookup { name }).await??;
    let b = body.into_inner().0;
    if let Some(env) = &b.environment {
        env.check()
            .map_err(|e| ApiError::BadRequest(format!("environment: {e}")))?;
    }
    Ok(web::Json(
        session
            .send(Heartbeat {
                leases: b.leases,
                log: b.log,
                environment: b.environment,
            })
            .await?,
    ))
}
