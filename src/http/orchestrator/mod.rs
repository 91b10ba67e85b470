//! The orchestrator's HTTP API (docs/contract.md §5): the drone protocol ([`work`],
//! [`drones`]), drones' own credentials ([`enrollment`]), package sets ([`packages`]),
//! the binhost and its index ([`binhost`]), status, metrics and the OpenAPI document.

pub mod binhost;
pub mod drones;
pub mod enrollment;
pub mod errors;
pub mod metrics;
pub mod openapi;
pub mod packages;
pub mod releases;
pub mod status;
pub mod work;

use crate::actors::orchestrator::binhost_index::BinhostIndex;
use crate::actors::orchestrator::circuit_breaker::CircuitBreaker;
use crate::actors::orchestrator::drone_registry::DroneRegistry;
use crate::actors::orchestrator::queue::PackageQueue;
use crate::actors::orchestrator::releases::ReleaseManager;
use crate::http::auth::Auth;
use crate::http::{dashboard, error};
use crate::orchestrator::credentials::Caller;
use actix::Addr;
use actix_web::web;
use std::sync::Arc;

/// Largest JSON body of the drone protocol and control endpoints.
pub const JSON_LIMIT: usize = 1024 * 1024;

/// What every handler can reach.
pub struct AppState {
    pub name: String,
    pub queue: Addr<PackageQueue>,
    pub registry: Addr<DroneRegistry>,
    pub breaker: Addr<CircuitBreaker>,
    pub auth: Auth,
    pub max_submit_bytes: usize,
    pub metrics: Arc<crate::orchestrator::metrics::Metrics>,
    pub log: slog::Logger,
    /// The binhost's index (with `[binhost] index`).
    pub binhost_index: Option<Addr<BinhostIndex>>,
    /// Served at `/binhost/` (with `[binhost] serve`).
    pub binhost_dir: Option<std::path::PathBuf>,
    /// The binhost's signing key (with `[signing] key`): its public half is served at
    /// `/binhost/key.asc`.
    pub signer: Option<Arc<crate::orchestrator::binhost::signing::Signer>>,
    /// Snapshots, channels, retention.
    pub releases: Addr<ReleaseManager>,
    /// Running builds' output.
    pub build_logs: Addr<crate::actors::orchestrator::build_logs::BuildLogs>,
    /// The channels' files, served at `/binhost/<channel>/` (with `[binhost] serve`).
    pub release_files: Option<Arc<crate::orchestrator::binhost::releases::Releases>>,
}

impl AppState {
    /// Who a drone-protocol request acts as, refused (403, logged with both names) when
    /// that is not `drone`.
    pub fn drone_caller_for(
        &self,
        req: &actix_web::HttpRequest,
        drone: &str,
    ) -> Result<Caller, error::ApiError> {
        let caller = self.auth.drone_caller(req)?;
        caller.may_act_for(drone).map_err(|e| {
            slog::warn!(self.log, "refused a request for another drone"; "path" => req.path(),
                        "drone" => &e.drone, "caller" => &e.caller);
            error::ApiError::Forbidden(e.to_string())
        })?;
        Ok(caller)
    }
}

pub type State = web::Data<AppState>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(JSON_LIMIT)
            .error_handler(error::json_error),
    )
    .app_data(web::PathConfig::default().error_handler(error::path_error))
    .app_data(web::QueryConfig::default().error_handler(error::query_error))
    .route("/healthz", web::get().to(status::healthz))
    .route("/", web::get().to(dashboard::index))
    .route("/dashboard/app.js", web::get().to(dashboard::app_js))
    .route("/dashboard/style.css", web::get().to(dashboard::style_css))
    .route("/metrics", web::get().to(metrics::metrics))
    .route("/binhost/{tail:.*}", web::get().to(binhost::file))
    .route("/binhost/{tail:.*}", web::head().to(binhost::file))
    .service(
        // Routes are tried in order and every pattern with a `{…}` is a regular
        // expression run per request: the drone protocol's hot paths come first (a
        // claim runs none, a completion one, a heartbeat two).
        web::scope("/api/v1")
            .route("/work/claim", web::post().to(work::claim))
            .route("/work/{lease}/complete", web::post().to(work::complete))
            .route(
                "/drones/{name}/heartbeat",
                web::post().to(drones::heartbeat),
            )
            .route("/work/{lease}/uploading", web::post().to(work::uploading))
            .route("/work/{lease}/fail", web::post().to(work::fail))
            .route("/status", web::get().to(status::status))
            .route("/timeline", web::get().to(status::timeline))
            .route("/openapi.json", web::get().to(openapi::openapi))
            .route("/packages", web::get().to(packages::list))
            .route("/packages", web::post().to(packages::submit))
            .route("/packages/retry", web::post().to(packages::retry))
            .route("/packages/bump", web::post().to(packages::bump))
            .route(
                "/packages/{category}/{pf}/log",
                web::get().to(packages::log),
            )
            .route(
                "/packages/{category}/{pf}/log/live",
                web::get().to(packages::live_log),
            )
            .route("/work/{lease}/output", web::post().to(work::output))
            .route("/drones", web::get().to(drones::list))
            // Before `/drones/{name}`, which would take its path.
            .route("/drones/register", web::post().to(drones::register))
            .route("/drones/{name}", web::get().to(drones::get))
            .route("/drones/{name}/queue", web::get().to(drones::queue))
            .route("/drones/{name}/logs", web::get().to(drones::logs))
            .route("/drones/{name}/control", web::post().to(drones::control))
            .route("/drones/{name}/enroll", web::post().to(enrollment::enroll))
            .route("/drones/{name}/revoke", web::post().to(enrollment::revoke))
            .route("/enrollments", web::get().to(enrollment::list))
            .route("/binhost/verify", web::post().to(binhost::verify))
            .route("/binhost/releases", web::get().to(releases::list))
            .route("/binhost/snapshots", web::post().to(releases::snapshot))
            .route("/binhost/diff", web::get().to(releases::diff))
            .route("/binhost/gc", web::post().to(releases::gc))
            .route(
                "/binhost/channels/{channel}/tag",
                web::post().to(releases::tag),
            )
            .route(
                "/binhost/channels/{channel}/rollback",
                web::post().to(releases::rollback),
            ),
    )
    .default_service(web::to(not_found));
}

async fn not_found(
    req: actix_web::HttpRequest,
) -> Result<actix_web::HttpResponse, error::ApiError> {
    Err(error::ApiError::NotFound(format!(
        "no such endpoint: {} {}",
        req.method(),
        req.path()
    )))
}
