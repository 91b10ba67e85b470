//! Starting and stopping the drone: what `swarm-drone` runs between reading its
//! configuration and exiting. `Drone::start` is what the binary calls; tests start the
//! binary itself.

use crate::actors::drone::agent::{DroneAgent, GetStatus, Shutdown};
use crate::config::{ConfigError, DroneConfig};
use crate::drone::metrics::DroneMetrics;
use crate::sys::logging::LogTap;
use actix::prelude::*;
use slog::{info, Logger};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a stop waits for builds and uploads to be killed and their cancellations sent.
const STOP_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DroneStartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create state_dir {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::sys::tls::KeyTlsError),
    #[error("cannot serve metrics on {addr} ([metrics] listen): {source}")]
    MetricsListen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// A running drone agent.
pub struct Drone {
    agent: Addr<DroneAgent>,
    /// The `[metrics] listen` server, when there is one.
    metrics_server: Option<actix_web::dev::ServerHandle>,
    log: Logger,
}

impl Drone {
    /// Starts the agent on the current actix system. `tap` holds the log lines the
    /// heartbeats carry to the orchestrator.
    pub fn start(cfg: DroneConfig, tap: LogTap, log: Logger) -> Result<Drone, DroneStartError> {
        let token = cfg.token()?;
        // Whom https calls trust: read before the agent starts calling (a drone that could
        // trust nothing stops here, naming the key).
        let urls = [
            ("orchestrator", &cfg.orchestrator),
            ("gateway", &cfg.gateway),
        ];
        crate::sys::tls::preload(
            urls.into_iter()
                .filter_map(|(k, u)| u.as_deref().map(|u| (k.to_string(), u))),
        )?;
        std::fs::create_dir_all(&cfg.state_dir).map_err(|source| DroneStartError::StateDir {
            path: cfg.state_dir.clone(),
            source,
        })?;
        info!(log, "drone starting"; "name" => &cfg.name, "slots" => cfg.slots,
              "pkgdir" => cfg.pkgdir.display().to_string());
        let metrics = std::sync::Arc::new(DroneMetrics::default());
        let metrics_server = match cfg.metrics.listen_addr()? {
            Some(addr) => {
                let server =
                    serve_metrics(addr, cfg.name.clone(), metrics.clone()).map_err(|source| {
                        DroneStartError::MetricsListen {
                            addr: addr.to_string(),
                            source,
                        }
                    })?;
                info!(log, "serving metrics"; "addr" => addr.to_string());
                let handle = server.handle();
                actix_web::rt::spawn(server);
                Some(handle)
            }
            None => None,
        };
        let agent = DroneAgent::start(cfg, token, tap, metrics, log.clone());
        Ok(Drone {
            agent,
            metrics_server,
            log,
        })
    }

    /// Cancels everything (killing every build's and upload's process group) and waits,
    /// a bounded time, for the cancellations to reach the orchestrator, so a stop costs no
    /// package and no drone a failure. What is still unsent stays in `state_dir/pending`
    /// for the next start.
    pub async fn stop(self) {
        let _ = self.agent.send(Shutdown).await;
        let deadline = Instant::now() + STOP_WAIT;
        while Instant::now() < deadline {
            match self.agent.send(GetStatus).await {
                Ok(s) if s.busy > 0 || s.pending_reports > 0 => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                _ => break,
            }
        }
        if let Some(s) = self.metrics_server {
            s.stop(true).await;
        }
        info!(self.log, "drone stopped");
    }
}

/// `GET /metrics` on `addr` (one worker: a scrape is a few microseconds).
fn serve_metrics(
    addr: std::net::SocketAddr,
    name: String,
    metrics: std::sync::Arc<DroneMetrics>,
) -> std::io::Result<actix_web::dev::Server> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let data = web::Data::new((name, metrics));
    Ok(HttpServer::new(move || {
        App::new().app_data(data.clone()).route(
            "/metrics",
            web::get().to(
                |d: web::Data<(String, std::sync::Arc<DroneMetrics>)>| async move {
                    HttpResponse::Ok()
                        .content_type(crate::http::METRICS_CONTENT_TYPE)
                        .body(d.1.render(&d.0))
                },
            ),
        )
    })
    .workers(1)
    .disable_signals()
    .bind(addr)?
    .run())
}
