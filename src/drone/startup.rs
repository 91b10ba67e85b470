//! Starting and stopping the drone: what `swarm-drone` runs between reading its
//! configuration and exiting. `Drone::start` is what the binary calls; tests start the
//! binary itself.

use crate::actors::drone::agent::{DroneAgent, GetStatus, Shutdown};
use crate::config::{ConfigError, DroneConfig};
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
}

/// A running drone agent.
pub struct Drone {
    agent: Addr<DroneAgent>,
    log: Logger,
}

impl Drone {
    /// Starts the agent on the current actix system. `tap` holds the log lines the
    /// heartbeats carry to the orchestrator.
    pub fn start(cfg: DroneConfig, tap: LogTap, log: Logger) -> Result<Drone, DroneStartError> {
        let token = cfg.token()?;
        std::fs::create_dir_all(&cfg.state_dir).map_err(|source| DroneStartError::StateDir {
            path: cfg.state_dir.clone(),
            source,
        })?;
        info!(log, "drone starting"; "name" => &cfg.name, "slots" => cfg.slots,
              "pkgdir" => cfg.pkgdir.display().to_string());
        let agent = DroneAgent::start(cfg, token, tap, log.clone());
        Ok(Drone { agent, log })
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
        info!(self.log, "drone stopped");
    }
}
