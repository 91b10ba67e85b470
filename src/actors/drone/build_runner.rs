//! **BuildRunner** — owns every running build: its cancel handle and the future that runs
//! it (see `crate::drone::build`). After a successful build it finds the one artifact the
//! build produced and hashes it (on a blocking thread).
//!
//! Receives `StartBuild` and `CancelBuild` from the agent; sends `BuildFinished` back.

use crate::drone::artifact::{find_artifact, Artifact};
use crate::drone::build::{run_build, BuildEnd, BuildSpec};
use crate::wire::orchestrator::{LeaseId, WorkAssignment};
use actix::prelude::*;
use slog::{info, warn, Logger};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;

#[derive(Message)]
#[rtype(result = "()")]
pub struct StartBuild {
    pub work: WorkAssignment,
    pub spec: BuildSpec,
    pub pkgdir: PathBuf,
    /// Send the output live to this orchestrator (its URL), with this token.
    pub live: Option<(String, String)>,
}

/// How long a build's outcome waits for the last of its live output to be sent.
const LAST_OUTPUT_WAIT: Duration = Duration::from_secs(5);

#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelBuild {
    pub lease: LeaseId,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BuildOutcome {
    /// Built, and this is the artifact.
    Built(Artifact),
    /// The package's fault (non-zero exit, hung, no artifact): reported as a build failure.
    Failed {
        reason: String,
        log_tail: String,
    },
    /// The drone's fault (command missing, PKGDIR unreadable): an infrastructure failure.
    Broken {
        reason: String,
    },
    Cancelled,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct BuildFinished {
    pub lease: LeaseId,
    pub outcome: BuildOutcome,
}

pub struct BuildRunner {
    agent: Recipient<BuildFinished>,
    running: HashMap<LeaseId, oneshot::Sender<()>>,
    metrics: std::sync::Arc<crate::drone::metrics::DroneMetrics>,
    log: Logger,
}

impl BuildRunner {
    pub fn new(
        agent: Recipient<BuildFinished>,
        metrics: std::sync::Arc<crate::drone::metrics::DroneMetrics>,
        log: Logger,
    ) -> Self {
        BuildRunner {
            agent,
            running: HashMap::new(),
            metrics,
            log: log.new(slog::o!("actor" => "build_runner")),
        }
    }
}

impl Actor for BuildRunner {
    type Context = Context<Self>;
}

async fn build(msg: StartBuild, cancel: oneshot::Receiver<()>) -> BuildOutcome {
    let started = SystemTime::now();
    let (end, log_tail) = run_build(&msg.spec, cancel).await;
    match end {
        BuildEnd::Exited { code: Some(0) } => {
            let pkgdir = msg.pkgdir.clone();
            let work = msg.work.clone();
            match actix_web::rt::task::spawn_blocking(move || {
                find_artifact(&pkgdir, &work, started)
            })
            .await
            {
                Ok(Ok(a)) => BuildOutcome::Built(a),
                Ok(Err(reason)) => BuildOutcome::Failed { reason, log_tail },
                Err(e) => BuildOutcome::Broken {
                    reason: format!("looking for the artifact: {e}"),
                },
            }
        }
        BuildEnd::Cancelled => BuildOutcome::Cancelled,
        BuildEnd::NotStarted(reason) => BuildOutcome::Broken { reason },
        other => {
            // The last thing the build said is usually the error an operator wants first.
            let last = log_tail
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty());
            let reason = match last {
                Some(line) => format!(
                    "{}; last output: {}",
                    other.describe(&msg.spec),
                    crate::sys::process::tail_str(line, 300)
                ),
                None => other.describe(&msg.spec),
            };
            BuildOutcome::Failed { reason, log_tail }
        }
    }
}

impl Handler<StartBuild> for BuildRunner {
    type Result = ();
    fn handle(&mut self, msg: StartBuild, ctx: &mut Self::Context) {
        let lease = msg.work.lease;
        if self.running.contains_key(&lease) {
            return;
        }
        info!(self.log, "build started"; "atom" => &msg.work.atom, "lease" => lease,
              "log" => msg.spec.log_path.display().to_string());
        let (tx, rx) = oneshot::channel();
        self.running.insert(lease, tx);
        let atom = msg.work.atom.clone();
        let mut msg = msg;
        let forwarder = msg.live.take().map(|(url, token)| {
            let client = crate::client::ApiClient::new(&url, Some(token));
            let (tx, rx) = tokio::sync::mpsc::channel(256);
            msg.spec.output = Some(tx);
            actix_web::rt::spawn(crate::drone::live_output::forward(
                rx,
                client,
                lease,
                msg.work.epoch,
            ))
        });
        let run = async move {
            let outcome = build(msg, rx).await;
            // The output's sender is gone with the build: the forwarder sends the rest.
            if let Some(f) = forwarder {
                let _ = tokio::time::timeout(LAST_OUTPUT_WAIT, f).await;
            }
            outcome
        };
        let started = std::time::Instant::now();
        self.metrics.building.inc();
        ctx.spawn(run.into_actor(self).map(move |outcome, act, _| {
            act.running.remove(&lease);
            act.metrics.building.dec();
            let kind = match &outcome {
                BuildOutcome::Built(_) => "built",
                BuildOutcome::Failed { .. } => "failed",
                BuildOutcome::Broken { .. } => "broken",
                BuildOutcome::Cancelled => "cancelled",
            };
            act.metrics
                .build_ended(kind, started.elapsed().as_secs_f64());
            match &outcome {
                BuildOutcome::Built(a) => {
                    info!(act.log, "build finished"; "atom" => &atom, "artifact" => &a.rel, "size" => a.size)
                }
                BuildOutcome::Failed { reason, .. } => warn!(act.log, "build failed"; "atom" => &atom, "reason" => reason),
                BuildOutcome::Broken { reason } => warn!(act.log, "build could not run"; "atom" => &atom, "reason" => reason),
                BuildOutcome::Cancelled => info!(act.log, "build cancelled"; "atom" => &atom),
            }
            act.agent.do_send(BuildFinished { lease, outcome });
        }));
    }
}

impl Handler<CancelBuild> for BuildRunner {
    type Result = ();
    fn handle(&mut self, msg: CancelBuild, _: &mut Self::Context) {
        if let Some(tx) = self.running.remove(&msg.lease) {
            let _ = tx.send(());
        }
    }
}
