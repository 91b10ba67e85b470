//! **UploadSupervisor** (drone side) — owns every rsync child. Each runs in its own
//! process group; its `total_timeout_s` timer is a message carrying the upload's
//! generation, and when it fires the whole group (rsync and its ssh) is killed and the
//! upload reported as an infrastructure failure, so the orchestrator reclaims the work. A
//! late timer for an upload that already ended does nothing. When rsync ends by itself, the
//! group is killed too, so no rsync or ssh process outlives its upload.
//!
//! Receives `StartUpload` and `CancelUpload` from the agent; sends `UploadFinished` back.

use crate::api::LeaseId;
use crate::drone::rsync::{bytes_sent, exit_reason};
use crate::process::{group_command, signal_group, tail_utf8};
use actix::prelude::*;
use slog::{info, warn, Logger};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Message)]
#[rtype(result = "()")]
pub struct StartUpload {
    pub lease: LeaseId,
    pub atom: String,
    pub argv: Vec<String>,
    /// rsync runs here (PKGDIR), so `./cat/file` is relative to it.
    pub cwd: PathBuf,
    pub total_timeout: Duration,
    /// Where to record the upload's process group while it runs (see `leftovers`).
    pub record: Option<PathBuf>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelUpload {
    pub lease: LeaseId,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UploadOutcome {
    Done {
        bytes_sent: Option<u64>,
        seconds: f64,
    },
    Failed {
        reason: String,
    },
    Cancelled,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct UploadFinished {
    pub lease: LeaseId,
    pub outcome: UploadOutcome,
}

/// How many uploads are running (tests, status).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct RunningUploads;

#[derive(Message)]
#[rtype(result = "()")]
struct Deadline {
    lease: LeaseId,
    generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Killed {
    Timeout(Duration),
    Cancel,
}

struct Running {
    pgid: u32,
    total: Duration,
    generation: u64,
    killed: Option<Killed>,
    timer: SpawnHandle,
}

pub struct UploadSupervisor {
    agent: Recipient<UploadFinished>,
    running: HashMap<LeaseId, Running>,
    next_generation: u64,
    log: Logger,
}

impl UploadSupervisor {
    pub fn new(agent: Recipient<UploadFinished>, log: Logger) -> Self {
        UploadSupervisor {
            agent,
            running: HashMap::new(),
            next_generation: 1,
            log: log.new(slog::o!("actor" => "upload_supervisor")),
        }
    }
}

impl Actor for UploadSupervisor {
    type Context = Context<Self>;
}

impl Handler<StartUpload> for UploadSupervisor {
    type Result = ();
    fn handle(&mut self, msg: StartUpload, ctx: &mut Self::Context) {
        let lease = msg.lease;
        let spawned = group_command(&msg.argv).and_then(|mut cmd| {
            cmd.current_dir(&msg.cwd)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd.spawn()
                .map_err(|source| crate::process::ProcessError::Spawn {
                    program: "rsync".into(),
                    source,
                })
        });
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                self.agent.do_send(UploadFinished {
                    lease,
                    outcome: UploadOutcome::Failed {
                        reason: e.to_string(),
                    },
                });
                return;
            }
        };
        let pgid = child.id().unwrap_or(0);
        if let Some(path) = &msg.record {
            let _ = crate::drone::leftovers::record(path, pgid, "rsync");
        }
        let record = msg.record.clone();
        let generation = self.next_generation;
        self.next_generation += 1;
        let timer = ctx.notify_later(Deadline { lease, generation }, msg.total_timeout);
        info!(self.log, "upload started"; "atom" => &msg.atom, "lease" => lease, "command" => msg.argv.join(" "));
        self.running.insert(
            lease,
            Running {
                pgid,
                total: msg.total_timeout,
                generation,
                killed: None,
                timer,
            },
        );
        let started = Instant::now();
        let atom = msg.atom;
        ctx.spawn(child.wait_with_output().into_actor(self).map(move |res, act, ctx| {
            // rsync is done: nothing of its group (ssh) may stay behind.
            signal_group(pgid, libc::SIGKILL);
            if let Some(path) = &record {
                crate::drone::leftovers::forget(path);
            }
            let Some(run) = act.running.remove(&lease).filter(|r| r.generation == generation) else {
                return;
            };
            ctx.cancel_future(run.timer);
            let seconds = started.elapsed().as_secs_f64();
            let outcome = match (run.killed, res) {
                (Some(Killed::Cancel), _) => UploadOutcome::Cancelled,
                (Some(Killed::Timeout(d)), _) => UploadOutcome::Failed {
                    reason: format!(
                        "upload killed by the supervisor after total_timeout_s ({} s)",
                        d.as_secs()
                    ),
                },
                (None, Ok(out)) if out.status.success() => UploadOutcome::Done {
                    bytes_sent: bytes_sent(&String::from_utf8_lossy(&out.stdout)),
                    seconds,
                },
                (None, Ok(out)) => {
                    let stderr = tail_utf8(&out.stderr, 1024);
                    UploadOutcome::Failed {
                        reason: format!("{}: {}", exit_reason(out.status.code()), stderr.trim()),
                    }
                }
                (None, Err(e)) => UploadOutcome::Failed {
                    reason: format!("waiting for rsync: {e}"),
                },
            };
            match &outcome {
                UploadOutcome::Done { bytes_sent, seconds } => info!(act.log, "upload finished"; "atom" => &atom,
                    "lease" => lease, "bytes_sent" => bytes_sent.unwrap_or(0), "seconds" => format!("{seconds:.2}")),
                UploadOutcome::Failed { reason } => warn!(act.log, "upload failed"; "atom" => &atom, "lease" => lease, "reason" => reason),
                UploadOutcome::Cancelled => info!(act.log, "upload cancelled"; "atom" => &atom, "lease" => lease),
            }
            act.agent.do_send(UploadFinished { lease, outcome });
        }));
    }
}

impl Handler<Deadline> for UploadSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Deadline, _: &mut Self::Context) {
        let Some(run) = self.running.get_mut(&msg.lease) else {
            return;
        };
        if run.generation != msg.generation || run.killed.is_some() {
            return;
        }
        warn!(self.log, "upload over its total timeout, killing its process group"; "lease" => msg.lease, "pgid" => run.pgid);
        run.killed = Some(Killed::Timeout(run.total));
        signal_group(run.pgid, libc::SIGKILL);
    }
}

impl Handler<CancelUpload> for UploadSupervisor {
    type Result = ();
    fn handle(&mut self, msg: CancelUpload, _: &mut Self::Context) {
        if let Some(run) = self.running.get_mut(&msg.lease) {
            run.killed = Some(Killed::Cancel);
            signal_group(run.pgid, libc::SIGKILL);
        }
    }
}

impl Handler<RunningUploads> for UploadSupervisor {
    type Result = usize;
    fn handle(&mut self, _: RunningUploads, _: &mut Self::Context) -> usize {
        self.running.len()
    }
}
