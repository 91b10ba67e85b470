//! Starting the gateway: the orchestrator directory (which starts polling at once) and the
//! HTTP server. `Gateway::start` is what the binary and the in-process tests both call
//! (tests bind port 0 and read the port back).

use crate::actors::gateway::orchestrator_directory::{DirectorySettings, OrchestratorDirectory};
use crate::config::{ConfigError, GatewayConfig};
use crate::http::gateway::{self as routes, GatewayState};
use actix::prelude::*;
use actix_web::web;
use slog::{info, warn, Logger};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum GatewayStartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] crate::sys::tls::KeyTlsError),
    #[error("start-up was interrupted: {0}")]
    Interrupted(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

pub struct Gateway {
    pub server: actix_web::dev::Server,
    pub handle: actix_web::dev::ServerHandle,
    pub port: u16,
    pub directory: Addr<OrchestratorDirectory>,
}

impl Gateway {
    /// Starts everything on the current actix system. `handle_signals`: whether SIGTERM and
    /// SIGINT stop the server (the binary), or not (tests).
    pub async fn start(
        cfg: GatewayConfig,
        log: Logger,
        handle_signals: bool,
    ) -> Result<Gateway, GatewayStartError> {
        cfg.validate()?;
        let addr = cfg.listen_addr()?;
        let configured = cfg.orchestrator_urls();
        // Whom https calls trust: read now, off the event loop (orchestrators that register
        // later with an https URL are read on their first poll).
        let urls: Vec<String> = cfg.orchestrators.clone();
        actix_web::rt::task::spawn_blocking(move || {
            crate::sys::tls::preload(
                urls.iter()
                    .enumerate()
                    .map(|(i, u)| (format!("orchestrators[{i}]"), u.as_str())),
            )
        })
        .await
        .map_err(|e| GatewayStartError::Interrupted(e.to_string()))??;
        if configured.is_empty() {
            warn!(
                log,
                "no orchestrators configured: the gateway knows none until one registers \
                        (orchestrators register when their config has `gateway` set)"
            );
        }
        if cfg.accept_registrations && cfg.auth.admin_token.is_none() {
            warn!(
                log,
                "registrations are refused: no admin token is configured \
                        ([auth] admin_token or BUILD_SWARM_ADMIN_TOKEN)"
            );
        }
        let settings = DirectorySettings {
            poll_interval: cfg.poll_interval(),
            poll_timeout: cfg.poll_timeout(),
            unhealthy_after: cfg.unhealthy_after,
            forget_after: (cfg.forget_after_s > 0).then(|| Duration::from_secs(cfg.forget_after_s)),
            read_token: cfg.auth.read_token.clone(),
        };
        let directory =
            OrchestratorDirectory::new(settings, configured.clone(), log.new(slog::o!())).start();

        let state = web::Data::new(GatewayState {
            name: cfg.name.clone(),
            directory: directory.clone(),
            admin_token: cfg.auth.admin_token.clone(),
            read_token: cfg.auth.read_token.clone(),
            accept_registrations: cfg.accept_registrations,
            poll_interval_s: cfg.poll_interval_s,
            fetch_timeout: cfg.poll_timeout().max(Duration::from_secs(2)),
        });
        let (server, port) = crate::http::serve(addr, state, routes::routes, handle_signals)
            .map_err(|source| GatewayStartError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        info!(log, "gateway listening"; "name" => &cfg.name,
              "addr" => format!("{}:{port}", addr.ip()),
              "orchestrators" => configured.join(" "),
              "poll_interval_s" => cfg.poll_interval_s,
              "registrations" => cfg.registrations_possible());
        Ok(Gateway {
            handle: server.handle(),
            server,
            port,
            directory,
        })
    }
}
