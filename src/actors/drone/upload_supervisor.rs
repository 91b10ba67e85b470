//! **UploadSupervisor** (drone side) — owns every rsync child, each in its own process
//! group with a `total_timeout_s` timer message carrying the upload's generation: when it
//! fires the whole group (rsync and its ssh) is killed and the upload reported as an
//! infrastructure failure. With `[upload] reuse_connections` it also owns one ssh master
//! connection per target (docs/design.md, "Uploads").
//!
//! Hears `StartUpload` and `CancelUpload` from the agent; tells it `UploadFinished`.

use crate::drone::rsync::{
    bytes_sent, exit_reason, with_control_path, MuxSpec, MAX_SHARED_UPLOADS,
};
use crate::sys::process::{group_command, guard_group, signal_group, tail_utf8};
use crate::wire::orchestrator::LeaseId;
use actix::prelude::*;
use slog::{info, warn, Logger};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
    /// Share this ssh master connection when it is up (`[upload] reuse_connections`).
    pub mux: Option<MuxSpec>,
}

/// Ends every ssh master connection (the drone is stopping).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopMasters;

/// A master closes after this long without uploads.
pub const MASTER_IDLE: Duration = Duration::from_secs(300);
/// First wait before starting a master again after it died; doubles, at most 5 minutes.
const MASTER_BACKOFF: Duration = Duration::from_secs(5);

/// Process groups of the running masters, for [`kill_masters`].
static MASTER_GROUPS: parking_lot::Mutex<Vec<u32>> = parking_lot::const_mutex(Vec::new());

/// Kills every ssh master connection of this process now (before the drone re-executes
/// itself, which would otherwise leave them behind).
pub fn kill_masters() {
    for pgid in MASTER_GROUPS.lock().drain(..) {
        signal_group(pgid, libc::SIGKILL);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct MasterExited {
    path: PathBuf,
    generation: u64,
    ran: Duration,
    stderr: String,
}

struct Master {
    pgid: u32,
    generation: u64,
    in_use: usize,
    last_used: Instant,
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

#[derive(Message)]
#[rtype(result = "()")]
struct UploadDeadline {
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
    /// The master's control socket, when this upload goes through it.
    via: Option<PathBuf>,
}

pub struct UploadSupervisor {
    agent: Recipient<UploadFinished>,
    running: HashMap<LeaseId, Running>,
    next_generation: u64,
    masters: HashMap<PathBuf, Master>,
    /// Not before, and failures in a row, per control socket.
    master_backoff: HashMap<PathBuf, (Instant, u32)>,
    metrics: std::sync::Arc<crate::drone::metrics::DroneMetrics>,
    log: Logger,
}

impl UploadSupervisor {
    pub fn new(
        agent: Recipient<UploadFinished>,
        metrics: std::sync::Arc<crate::drone::metrics::DroneMetrics>,
        log: Logger,
    ) -> Self {
        UploadSupervisor {
            agent,
            running: HashMap::new(),
            next_generation: 1,
            masters: HashMap::new(),
            master_backoff: HashMap::new(),
            metrics,
            log: log.new(slog::o!("actor" => "upload_supervisor")),
        }
    }

    /// Starts the master for `spec` unless it runs or is backing off.
    fn ensure_master(&mut self, spec: &MuxSpec, ctx: &mut Context<Self>) {
        let path = &spec.control_path;
        if self.masters.contains_key(path) {
            return;
        }
        if self
            .master_backoff
            .get(path)
            .is_some_and(|(until, _)| Instant::now() < *until)
        {
            return;
        }
        if let Some(dir) = path.parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                warn!(self.log, "cannot create the ssh control directory"; "dir" => dir.display().to_string(), "error" => e.to_string());
                return;
            }
        }
        // A socket left by a master that was killed would refuse connections.
        let _ = std::fs::remove_file(path);
        let spawned = group_command(&spec.master_argv).and_then(|mut cmd| {
            cmd.stdout(Stdio::null()).stderr(Stdio::piped());
            // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death
            // signal, so the master dies with the drone even on kill -9.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                    Ok(())
                });
            }
            cmd.spawn()
                .map_err(|source| crate::sys::process::ProcessError::Spawn {
                    program: "ssh".into(),
                    source,
                })
        });
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                warn!(self.log, "cannot start the ssh master connection"; "error" => e.to_string());
                self.back_off(path);
                return;
            }
        };
        let pgid = child.id().unwrap_or(0);
        let generation = self.next_generation;
        self.next_generation += 1;
        MASTER_GROUPS.lock().push(pgid);
        info!(self.log, "ssh master connection starting"; "control_path" => path.display().to_string(), "pgid" => pgid);
        self.masters.insert(
            path.clone(),
            Master {
                pgid,
                generation,
                in_use: 0,
                last_used: Instant::now(),
            },
        );
        let started = Instant::now();
        let path = path.clone();
        let me = ctx.address();
        actix::spawn(async move {
            let out = child.wait_with_output().await;
            signal_group(pgid, libc::SIGKILL);
            me.do_send(MasterExited {
                path,
                generation,
                ran: started.elapsed(),
                stderr: out.map(|o| tail_utf8(&o.stderr, 512)).unwrap_or_default(),
            });
        });
    }

    fn back_off(&mut self, path: &Path) {
        let e = self
            .master_backoff
            .entry(path.to_path_buf())
            .or_insert((Instant::now(), 0));
        let wait = MASTER_BACKOFF
            .saturating_mul(1 << e.1.min(6))
            .min(Duration::from_secs(300));
        e.0 = Instant::now() + wait;
        e.1 += 1;
    }

    /// Ends the master at `path` (it is restarted when next needed).
    fn stop_master(&mut self, path: &Path, why: &str) {
        if let Some(m) = self.masters.get(path) {
            info!(self.log, "closing the ssh master connection"; "control_path" => path.display().to_string(), "why" => why);
            signal_group(m.pgid, libc::SIGKILL);
        }
    }
}

impl Actor for UploadSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(Duration::from_secs(30), |act, _| {
            let idle: Vec<PathBuf> = act
                .masters
                .iter()
                .filter(|(_, m)| m.in_use == 0 && m.last_used.elapsed() >= MASTER_IDLE)
                .map(|(p, _)| p.clone())
                .collect();
            for p in idle {
                act.stop_master(&p, "idle");
            }
        });
    }
}

impl Handler<MasterExited> for UploadSupervisor {
    type Result = ();
    fn handle(&mut self, msg: MasterExited, _: &mut Self::Context) {
        let Some(m) = self.masters.get(&msg.path) else {
            return;
        };
        if m.generation != msg.generation {
            return;
        }
        let pgid = m.pgid;
        self.masters.remove(&msg.path);
        MASTER_GROUPS.lock().retain(|g| *g != pgid);
        let _ = std::fs::remove_file(&msg.path);
        if msg.ran < Duration::from_secs(60) {
            self.back_off(&msg.path);
        } else {
            self.master_backoff.remove(&msg.path);
        }
        info!(self.log, "ssh master connection ended"; "control_path" => msg.path.display().to_string(),
              "ran_s" => msg.ran.as_secs(), "stderr" => msg.stderr.trim());
    }
}

impl Handler<StopMasters> for UploadSupervisor {
    type Result = ();
    fn handle(&mut self, _: StopMasters, _: &mut Self::Context) {
        let paths: Vec<PathBuf> = self.masters.keys().cloned().collect();
        for p in paths {
            self.stop_master(&p, "the drone is stopping");
        }
        // Nothing is restarted from now on.
        for p in self.masters.keys() {
            self.master_backoff
                .insert(p.clone(), (Instant::now() + Duration::from_secs(86_400), 0));
        }
    }
}

impl Handler<StartUpload> for UploadSupervisor {
    type Result = ();
    fn handle(&mut self, msg: StartUpload, ctx: &mut Self::Context) {
        let lease = msg.lease;
        let mut via = None;
        let mut argv = msg.argv;
        if let Some(spec) = &msg.mux {
            self.ensure_master(spec, ctx);
            if let Some(m) = self.masters.get_mut(&spec.control_path) {
                // The socket appears once the master is connected and authenticated.
                if m.in_use < MAX_SHARED_UPLOADS && spec.control_path.exists() {
                    m.in_use += 1;
                    m.last_used = Instant::now();
                    argv = with_control_path(&argv, &spec.control_path);
                    via = Some(spec.control_path.clone());
                }
            }
        }
        let spawned = group_command(&argv).and_then(|mut cmd| {
            cmd.current_dir(&msg.cwd)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd.spawn()
                .map_err(|source| crate::sys::process::ProcessError::Spawn {
                    program: "rsync".into(),
                    source,
                })
        });
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                self.release(via.as_deref(), false);
                self.metrics.upload_ended("failed", None, None);
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
        // rsync and its ssh die with the drone, however it dies.
        let guard = guard_group(pgid).ok();
        if let Some(path) = &msg.record {
            let _ = crate::drone::leftovers::record(path, pgid, "rsync");
        }
        let record = msg.record.clone();
        let generation = self.next_generation;
        self.next_generation += 1;
        let timer = ctx.notify_later(UploadDeadline { lease, generation }, msg.total_timeout);
        info!(self.log, "upload started"; "atom" => &msg.atom, "lease" => lease, "command" => argv.join(" "));
        self.running.insert(
            lease,
            Running {
                pgid,
                total: msg.total_timeout,
                generation,
                killed: None,
                timer,
                via,
            },
        );
        let started = Instant::now();
        let atom = msg.atom;
        self.metrics.uploading.inc();
        ctx.spawn(child.wait_with_output().into_actor(self).map(move |res, act, ctx| {
            act.metrics.uploading.dec();
            let exit = res.as_ref().ok().map(|out| out.status.code());
            // rsync is done: nothing of its group (ssh) may stay behind.
            signal_group(pgid, libc::SIGKILL);
            drop(guard);
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
            act.release(run.via.as_deref(), matches!(outcome, UploadOutcome::Failed { .. }));
            let (kind, done) = match (&outcome, run.killed) {
                (UploadOutcome::Done { bytes_sent, seconds }, _) => {
                    ("done", Some((bytes_sent.unwrap_or(0), *seconds)))
                }
                (_, Some(Killed::Timeout(_))) => ("timed_out", None),
                (UploadOutcome::Cancelled, _) => ("cancelled", None),
                _ => ("failed", None),
            };
            act.metrics.upload_ended(kind, exit, done);
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

impl UploadSupervisor {
    /// An upload through the master at `via` ended; a failed one restarts the master.
    fn release(&mut self, via: Option<&Path>, failed: bool) {
        let Some(path) = via else { return };
        if let Some(m) = self.masters.get_mut(path) {
            m.in_use = m.in_use.saturating_sub(1);
            m.last_used = Instant::now();
        }
        if failed {
            self.stop_master(path, "an upload through it failed");
        }
    }
}

impl Handler<UploadDeadline> for UploadSupervisor {
    type Result = ();
    fn handle(&mut self, msg: UploadDeadline, _: &mut Self::Context) {
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
