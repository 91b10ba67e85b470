//! The gateway's HTTP API (docs/contract.md §5, "Gateway"). Handlers are thin: check the token, ask the
//! [`OrchestratorDirectory`], and for the merged listings ask the healthy orchestrators
//! directly, all at once, each with a timeout.
//!
//! - `GET /healthz`
//! - `GET /api/v1/orchestrator` — the orchestrator a drone should use now (503 when none
//!   is healthy)
//! - `GET /api/v1/orchestrators` — every known orchestrator with health and counts
//! - `GET /api/v1/status` — the statuses of the orchestrators that answer, summed
//! - `GET /api/v1/drones` — every drone of every healthy orchestrator, each naming its
//!   orchestrator
//! - `POST /api/v1/orchestrators/register` (admin token) `{"url","name"}`
//! - `GET /api/v1/openapi.json` — this API's OpenAPI document ([`openapi`])

pub mod openapi;

use super::error::{json_error, path_error, query_error, ApiError};
use super::JsonObject;
use crate::actors::gateway::orchestrator_directory::{
    DirectoryError, List, OrchestratorDirectory, Pick, RegisterOrchestrator,
};
use crate::client::ApiClient;
use crate::wire::gateway::*;
use crate::wire::orchestrator::{DroneCounts, Health, PackageCounts, Status};
use actix::Addr;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::future::join_all;
use serde_json::Value;
use std::time::Duration;

/// Largest registration body.
const REGISTER_LIMIT: usize = 16 * 1024;

/// What every gateway handler can reach.
pub struct GatewayState {
    pub name: String,
    pub directory: Addr<OrchestratorDirectory>,
    pub admin_token: Option<String>,
    pub read_token: Option<String>,
    pub accept_registrations: bool,
    pub poll_interval_s: u64,
    /// How long a merged listing waits for each orchestrator.
    pub fetch_timeout: Duration,
}

pub type GwState = web::Data<GatewayState>;

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::NoneHealthy(_) => ApiError::Unavailable(e.to_string()),
            DirectoryError::Invalid(m) => ApiError::BadRequest(m),
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(REGISTER_LIMIT)
            .error_handler(json_error),
    )
    .app_data(web::PathConfig::default().error_handler(path_error))
    .app_data(web::QueryConfig::default().error_handler(query_error))
    .route("/healthz", web::get().to(healthz))
    // The orchestrator's dashboard page, over the merged status and drone list.
    .route("/", web::get().to(super::dashboard::index))
    .route("/dashboard/app.js", web::get().to(super::dashboard::app_js))
    .route(
        "/dashboard/style.css",
        web::get().to(super::dashboard::style_css),
    )
    .service(
        web::scope("/api/v1")
            .route("/orchestrator", web::get().to(pick))
            .route("/orchestrators", web::get().to(list))
            .route("/orchestrators/register", web::post().to(register))
            .route("/status", web::get().to(status))
            .route("/drones", web::get().to(drones))
            .route("/openapi.json", web::get().to(openapi::openapi)),
    )
    .default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no such endpoint on the gateway: {} {}",
        req.method(),
        req.path()
    )))
}

// ---- tokens ----

use super::auth::{bearer, same};

/// Listings need the read token (or the admin token) when one is configured.
fn authorize_read(req: &HttpRequest, state: &GatewayState) -> Result<(), ApiError> {
    let Some(read) = &state.read_token else {
        return Ok(());
    };
    let given = bearer(req).ok_or(ApiError::Unauthorized)?;
    let admin = state.admin_token.as_deref().is_some_and(|a| same(given, a));
    if same(given, read) | admin {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

fn authorize_admin(req: &HttpRequest, state: &GatewayState) -> Result<(), ApiError> {
    let Some(admin) = &state.admin_token else {
        return Err(ApiError::Forbidden(
            "this gateway has no admin token ([auth] admin_token or BUILD_SWARM_ADMIN_TOKEN), \
             so it accepts no registrations"
                .into(),
        ));
    };
    match bearer(req) {
        Some(given) if same(given, admin) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

// ---- handlers ----

pub async fn healthz() -> web::Json<Health> {
    web::Json(Health { ok: true })
}

pub async fn pick(state: GwState) -> Result<web::Json<OrchestratorChoice>, ApiError> {
    Ok(web::Json(state.directory.send(Pick).await??))
}

pub async fn list(
    req: HttpRequest,
    state: GwState,
) -> Result<web::Json<OrchestratorList>, ApiError> {
    authorize_read(&req, &state)?;
    Ok(web::Json(OrchestratorList {
        orchestrators: state.directory.send(List).await?,
    }))
}

pub async fn register(
    req: HttpRequest,
    state: GwState,
    body: web::Json<JsonObject<OrchestratorRegistration>>,
) -> Result<web::Json<RegistrationResult>, ApiError> {
    if !state.accept_registrations {
        return Err(ApiError::Forbidden(
            "this gateway does not accept registrations (accept_registrations = false)".into(),
        ));
    }
    authorize_admin(&req, &state)?;
    let body = body.into_inner().0;
    let name = body.name.trim().to_string();
    let done = state
        .directory
        .send(RegisterOrchestrator {
            url: body.url,
            name: name.clone(),
        })
        .await??;
    Ok(web::Json(RegistrationResult {
        url: done.url,
        name,
        new: done.new,
        poll_interval_s: state.poll_interval_s,
    }))
}

fn client(state: &GatewayState, url: &str) -> ApiClient {
    ApiClient::with_timeout(url, state.read_token.clone(), state.fetch_timeout)
}

/// `fut` with the fetch timeout, its error as text.
async fn fetch<T>(
    timeout: Duration,
    url: &str,
    fut: impl std::future::Future<Output = Result<T, crate::client::ClientError>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "{url}: no answer within {} ms",
            timeout.as_millis()
        )),
    }
}

/// Asks every healthy orchestrator of `entries` at once, each within the fetch timeout;
/// an unhealthy one answers an empty error.
async fn ask_healthy<T, F, Fut>(
    state: &GatewayState,
    entries: &[OrchestratorEntry],
    ask: F,
) -> Vec<Result<T, String>>
where
    F: Fn(ApiClient) -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::client::ClientError>>,
{
    join_all(entries.iter().map(|e| {
        let c = client(state, &e.url);
        let base = c.base().to_string();
        let answer = e.healthy.then(|| ask(c));
        async move {
            match answer {
                Some(fut) => fetch(state.fetch_timeout, &base, fut).await,
                None => Err(String::new()),
            }
        }
    }))
    .await
}

fn add_drones(sum: &mut DroneCounts, d: &DroneCounts) {
    sum.total += d.total;
    sum.active += d.active;
    sum.grounded += d.grounded;
    sum.offline += d.offline;
    sum.paused += d.paused;
    sum.mismatched += d.mismatched;
}

fn add_counts(sum: &mut PackageCounts, c: &PackageCounts) {
    sum.total += c.total;
    sum.waiting += c.waiting;
    sum.queued += c.queued;
    sum.building += c.building;
    sum.uploading += c.uploading;
    sum.built += c.built;
    sum.unindexed += c.unindexed;
    sum.failed += c.failed;
    sum.blocked += c.blocked;
}

pub async fn status(req: HttpRequest, state: GwState) -> Result<web::Json<MergedStatus>, ApiError> {
    authorize_read(&req, &state)?;
    let entries = state.directory.send(List).await?;
    let answers = ask_healthy(&state, &entries, |c| async move { c.status().await }).await;
    let mut counts = PackageCounts::default();
    let mut drones = DroneCounts::default();
    // The swarm is done when its slowest orchestrator is.
    let mut eta_s: Option<u64> = None;
    let mut orchestrators = Vec::with_capacity(entries.len());
    for (e, answer) in entries.into_iter().zip(answers) {
        match answer {
            Ok(status) => {
                add_counts(&mut counts, &status.counts);
                add_drones(&mut drones, &status.drones);
                eta_s = eta_s.max(status.eta_s);
                orchestrators.push(OrchestratorStatus {
                    url: e.url,
                    healthy: true,
                    error: None,
                    status,
                });
            }
            Err(error) => {
                let error = if error.is_empty() {
                    let last = e.error.as_deref().unwrap_or("not polled yet");
                    format!("unhealthy: {last}")
                } else {
                    error
                };
                let status = e.status.clone().unwrap_or_else(|| Status {
                    name: e.name.clone(),
                    counts: PackageCounts::default(),
                    progress_pct: 0.0,
                    drones: DroneCounts::default(),
                    central_fault: None,
                    eta_s: None,
                });
                orchestrators.push(OrchestratorStatus {
                    url: e.url,
                    healthy: false,
                    error: Some(error),
                    status,
                });
            }
        }
    }
    let central_fault = orchestrators
        .iter()
        .find_map(|o| o.status.central_fault.clone());
    Ok(web::Json(MergedStatus {
        name: state.name.clone(),
        progress_pct: counts.progress_pct(),
        counts,
        drones,
        central_fault,
        eta_s,
        orchestrators,
    }))
}

/// Each orchestrator's drone objects are passed on as they are (every field the
/// orchestrator sends), with `orchestrator` and `orchestrator_url` added.
pub async fn drones(req: HttpRequest, state: GwState) -> Result<HttpResponse, ApiError> {
    authorize_read(&req, &state)?;
    let entries = state.directory.send(List).await?;
    let answers = ask_healthy(&state, &entries, |c| async move {
        c.get::<Value>("/api/v1/drones").await
    })
    .await;
    let mut drones: Vec<Value> = Vec::new();
    let mut errors: Vec<OrchestratorFailure> = Vec::new();
    for (e, answer) in entries.into_iter().zip(answers) {
        let list = answer.and_then(|mut v| match v.get_mut("drones").map(Value::take) {
            Some(Value::Array(list)) => Ok(list),
            _ => Err(format!("{}: the answer has no `drones` list", e.url)),
        });
        match list {
            Ok(list) => {
                for mut d in list {
                    if let Value::Object(map) = &mut d {
                        map.insert("orchestrator".into(), Value::String(e.name.clone()));
                        map.insert("orchestrator_url".into(), Value::String(e.url.clone()));
                        drones.push(d);
                    }
                }
            }
            Err(error) => {
                let error = if error.is_empty() {
                    let last = e.error.as_deref().unwrap_or("not polled yet");
                    format!("unhealthy: {last}")
                } else {
                    error
                };
                errors.push(OrchestratorFailure {
                    orchestrator: e.name,
                    url: e.url,
                    error,
                });
            }
        }
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "drones": drones, "errors": errors })))
}
