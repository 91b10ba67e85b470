//! **DroneAgent** — the drone's centre. Owns the link to its orchestrator (a
//! [`Connection`] state machine: registration, heartbeats, claims), every job's state from
//! claim to report, the results not yet acknowledged (synced to disk by a [`PendingStore`]
//! before they are sent, retried with backoff), and the paused/restarting flags. File work
//! runs on blocking threads, never on the actor's.
//!
//! Hears `BuildFinished` from the build runner and `UploadFinished` from the upload
//! supervisor; its own `Tick` drives connecting, heartbeats, claims, report retries and
//! restarts. `Shutdown` (SIGTERM) cancels everything. Its build environment
//! ([`environment`]) is collected before it registers and reported when it changes.

mod environment;
mod reports;

use super::build_runner::{BuildFinished, BuildOutcome, BuildRunner, CancelBuild, StartBuild};
use super::upload_supervisor::{
    kill_masters, CancelUpload, StartUpload, StopMasters, UploadFinished, UploadOutcome,
    UploadSupervisor,
};
use crate::client::gateway::pick_orchestrator;
use crate::client::ApiClient;
use crate::config::DroneConfig;
use crate::domain::FailureKind;
use crate::drone::artifact::Artifact;
use crate::drone::build::{fill_placeholders, BuildSpec};
use crate::drone::connection::{Connection, Link};
use crate::drone::leftovers;
use crate::drone::pending::{PendingResult, PendingStore, Report};
use crate::drone::rsync::{mux_spec, upload_argv};
use crate::sys::logging::LogTap;
use crate::wire::orchestrator::{
    CompleteRequest, DroneAction, FailRequest, HeartbeatRequest, LeaseId, RegisterRequest,
    WorkAssignment,
};
use actix::prelude::*;
use slog::{crit, debug, info, warn, Logger};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// A restart waits at most this long for results to be reported.
const RESTART_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Building,
    Uploading,
    Reporting,
}

struct Job {
    work: WorkAssignment,
    orch: ApiClient,
    upload_target: String,
    phase: Phase,
    artifact: Option<Artifact>,
    cancelled: bool,
}

/// A result waiting to be acknowledged.
struct Outgoing {
    result: PendingResult,
    /// On disk (synced): it may be sent. A result is never sent before it is kept.
    saved: bool,
    attempts: u32,
    in_flight: bool,
    next_at: Instant,
}

/// Results kept from before a restart, and what could not be read back.
#[derive(Message)]
#[rtype(result = "()")]
struct Restored {
    results: Vec<PendingResult>,
    set_aside: Vec<crate::drone::pending::SetAside>,
    reaped: Vec<String>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Tick;

/// Stop: claim nothing more and cancel every job (each kills its process group).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// A snapshot for tests and logs.
#[derive(Message)]
#[rtype(result = "AgentStatus")]
pub struct GetStatus;

#[derive(Debug, Clone, PartialEq)]
pub struct AgentStatus {
    pub orchestrator: Option<String>,
    pub registered: bool,
    pub paused: bool,
    pub jobs: usize,
    /// Jobs still building or uploading.
    pub busy: usize,
    pub pending_reports: usize,
}

pub struct DroneAgent {
    cfg: DroneConfig,
    token: String,
    tap: LogTap,
    log: Logger,
    runner: Addr<BuildRunner>,
    uploader: Addr<UploadSupervisor>,
    conn: Connection<ApiClient>,
    store: PendingStore,
    /// Results from before the restart are being read: claim nothing until they are.
    restoring: bool,
    next_heartbeat: Instant,
    heartbeat_in_flight: bool,
    claiming: bool,
    next_claim: Instant,
    no_work_since: Option<Instant>,
    paused: bool,
    restart_since: Option<Instant>,
    shutting_down: bool,
    jobs: HashMap<LeaseId, Job>,
    reports: HashMap<LeaseId, Outgoing>,
    env: environment::EnvState,
}

impl DroneAgent {
    pub fn start(
        cfg: DroneConfig,
        token: String,
        tap: LogTap,
        metrics: std::sync::Arc<crate::drone::metrics::DroneMetrics>,
        log: Logger,
    ) -> Addr<DroneAgent> {
        let log = log.new(slog::o!("drone" => cfg.name.clone()));
        DroneAgent::create(move |ctx| {
            let runner =
                BuildRunner::new(ctx.address().recipient(), metrics.clone(), log.clone()).start();
            let uploader =
                UploadSupervisor::new(ctx.address().recipient(), metrics, log.clone()).start();
            let now = Instant::now();
            DroneAgent {
                conn: Connection::new(cfg.orchestrator.clone(), cfg.gateway.is_some(), now),
                store: PendingStore::new(&cfg.state_dir),
                restoring: true,
                cfg,
                token,
                tap,
                log: log.new(slog::o!("actor" => "agent")),
                runner,
                uploader,
                next_heartbeat: now,
                heartbeat_in_flight: false,
                claiming: false,
                next_claim: now,
                no_work_since: None,
                paused: false,
                restart_since: None,
                shutting_down: false,
                jobs: HashMap::new(),
                reports: HashMap::new(),
                env: environment::EnvState::default(),
            }
        })
    }

    fn busy_slots(&self) -> usize {
        self.jobs
            .values()
            .filter(|j| j.phase != Phase::Reporting)
            .count()
    }

    // ------------------------------------------------------------ connection

    /// Where to go: the orchestrator we have (or the configured one), else the gateway's pick.
    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down || self.env.current.is_none() {
            // The first registration carries the environment: it waits for it.
            return;
        }
        let Some(attempt) = self.conn.begin(Instant::now()) else {
            return;
        };
        let gateway = self.cfg.gateway.clone().filter(|_| attempt.ask_gateway);
        let current = attempt.current;
        let token = self.token.clone();
        let req = RegisterRequest {
            name: self.cfg.name.clone(),
            aliases: self.cfg.aliases.clone(),
            restart_command: self.cfg.restart_command.clone(),
            host: self.cfg.host.clone(),
            slots: self.cfg.slots,
            version: env!("CARGO_PKG_VERSION").to_string(),
            environment: self.env.current.clone(),
        };
        let sent_env = req.environment.clone();
        let fut = async move {
            let url = match gateway {
                Some(gw) => match pick_orchestrator(&gw).await {
                    Ok(choice) => choice.url,
                    Err(e) => match current {
                        Some(c) => c,
                        None => return Err(format!("asking the gateway: {e}")),
                    },
                },
                None => {
                    current.ok_or_else(|| "no orchestrator or gateway configured".to_string())?
                }
            };
            let client = ApiClient::new(&url, Some(token));
            let resp = client.register(&req).await.map_err(|e| e.to_string())?;
            Ok((url, client, resp))
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok((url, client, resp)) => {
                let target = act.cfg.upload.target.clone().unwrap_or(resp.upload_target);
                if let Err(e) = act.cfg.check_target(&target) {
                    crit!(act.log, "refusing to upload"; "error" => e.to_string());
                    eprintln!("swarm-drone: {e}");
                    std::process::exit(crate::config::EXIT_BAD_CONFIG);
                }
                info!(act.log, "registered"; "orchestrator" => &url, "upload_target" => &target,
                      "heartbeat_s" => resp.heartbeat_s);
                if act.cfg.upload.reuse_connections
                    && crate::config::target_kind(&target) == crate::config::TargetKind::Ssh
                    && mux_spec(&act.cfg.upload, &act.cfg.state_dir, &target).is_none()
                {
                    warn!(act.log, "upload.reuse_connections is on, but state_dir is too long (or has spaces or quotes) for an ssh control socket: every upload opens its own connection";
                          "state_dir" => act.cfg.state_dir.display().to_string());
                }
                act.conn.registered(Link {
                    url,
                    client,
                    upload_target: target,
                    heartbeat_every: Duration::from_secs(resp.heartbeat_s.max(1)),
                });
                act.no_work_since = None;
                act.next_claim = Instant::now();
                if act.env.current == sent_env {
                    act.env.unsent = false;
                }
                act.tick(ctx);
            }
            Err(e) => {
                let attempt = act.conn.register_failed(Instant::now());
                warn!(act.log, "cannot register, will retry"; "error" => e, "attempt" => attempt);
            }
        }));
    }

    /// A call to the orchestrator failed to get through.
    fn unreachable(&mut self) {
        if self.conn.unreachable(Instant::now()) {
            warn!(self.log, "orchestrator not answering, asking the gateway");
        }
    }

    /// No work here for a while: the gateway may know an orchestrator that has some.
    fn maybe_look_elsewhere(&mut self, ctx: &mut Context<Self>) {
        let (Some(gw), Some(since)) = (self.cfg.gateway.clone(), self.no_work_since) else {
            return;
        };
        if since.elapsed() < Duration::from_secs(self.cfg.no_work_recheck_s)
            || self.busy_slots() > 0
        {
            return;
        }
        self.no_work_since = Some(Instant::now());
        let current = self.conn.url().map(str::to_string);
        ctx.spawn(
            async move { pick_orchestrator(&gw).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    if let Ok(choice) = res {
                        if Some(&choice.url) != current.as_ref() && choice.queued > 0 {
                            info!(act.log, "moving to the orchestrator with work"; "orchestrator" => &choice.url, "queued" => choice.queued);
                            act.conn.move_to(choice.url, Instant::now());
                        }
                    }
                }),
        );
    }

    // ------------------------------------------------------------ heartbeat

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        if self.heartbeat_in_flight || Instant::now() < self.next_heartbeat {
            return;
        }
        let Some(link) = self.conn.link() else {
            return;
        };
        let (client, url) = (link.client.clone(), link.url.clone());
        self.heartbeat_in_flight = true;
        self.next_heartbeat = Instant::now() + link.heartbeat_every;
        let mut leases: Vec<LeaseId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.orch.base() == client.base())
            .map(|(l, _)| *l)
            .collect();
        leases.extend(
            self.reports
                .values()
                .filter(|r| r.result.orchestrator == url)
                .map(|r| r.result.lease),
        );
        leases.sort_unstable();
        leases.dedup();
        let log = self.tap.drain();
        let name = self.cfg.name.clone();
        let environment = self.environment_to_send();
        let req = HeartbeatRequest {
            leases,
            log,
            environment,
        };
        let fut = async move {
            let res = client.heartbeat(&name, &req).await;
            (res, req.log, req.environment)
        };
        ctx.spawn(fut.into_actor(self).map(|(res, lines, sent_env), act, ctx| {
            act.heartbeat_in_flight = false;
            match res {
                Ok(resp) => {
                    act.conn.answered();
                    if sent_env.is_some() && act.env.current == sent_env {
                        act.env.unsent = false;
                    }
                    for cmd in resp.commands {
                        match cmd.action {
                            DroneAction::Pause => {
                                info!(act.log, "paused by the operator: finishing current work, claiming nothing new");
                                act.paused = true;
                            }
                            DroneAction::Resume => {
                                info!(act.log, "resumed by the operator");
                                act.paused = false;
                            }
                            DroneAction::Restart => act.begin_restart(),
                            DroneAction::Sync => act.start_sync(ctx),
                            DroneAction::Cancel => {
                                if let Some(lease) = cmd.lease {
                                    act.cancel_job(lease, "the orchestrator no longer wants it");
                                }
                            }
                        }
                    }
                    act.tick(ctx);
                }
                Err(e) => {
                    act.tap.restore(lines);
                    if e.status() == Some(404) {
                        warn!(act.log, "the orchestrator does not know this drone, registering again");
                        act.conn.forgotten(Instant::now());
                    } else {
                        debug!(act.log, "heartbeat failed"; "error" => e.to_string());
                        act.unreachable();
                    }
                }
            }
        }));
    }

    // ------------------------------------------------------------ claims and jobs

    fn claim(&mut self, ctx: &mut Context<Self>) {
        if self.claiming
            || self.restoring
            || self.paused
            || self.restart_since.is_some()
            || self.shutting_down
            || Instant::now() < self.next_claim
            || self.busy_slots() >= self.cfg.slots as usize
        {
            return;
        }
        let Some(link) = self.conn.link() else {
            return;
        };
        let (client, target) = (link.client.clone(), link.upload_target.clone());
        self.claiming = true;
        let name = self.cfg.name.clone();
        let c = client.clone();
        ctx.spawn(async move { c.claim(&name).await }.into_actor(self).map(
            move |res, act, ctx| {
                act.claiming = false;
                match res {
                    Ok(Some(work)) => {
                        act.conn.answered();
                        act.no_work_since = None;
                        act.start_job(work, client, target);
                        act.claim(ctx);
                    }
                    Ok(None) => {
                        act.conn.answered();
                        act.no_work_since.get_or_insert_with(Instant::now);
                        act.next_claim = Instant::now() + act.cfg.idle_poll();
                        act.maybe_look_elsewhere(ctx);
                    }
                    Err(e) => {
                        if e.status() == Some(404) {
                            act.conn.forgotten(Instant::now());
                        } else {
                            act.unreachable();
                        }
                        debug!(act.log, "claim failed"; "error" => e.to_string());
                        act.next_claim = Instant::now() + act.cfg.idle_poll();
                    }
                }
            },
        ));
    }

    fn start_job(&mut self, work: WorkAssignment, orch: ApiClient, upload_target: String) {
        info!(self.log, "claimed"; "atom" => &work.atom, "lease" => work.lease, "epoch" => work.epoch);
        let pkgdir = self.cfg.pkgdir.clone();
        let spec = BuildSpec {
            argv: fill_placeholders(&self.cfg.build_command, &work, &pkgdir),
            log_path: self
                .cfg
                .state_dir
                .join("logs")
                .join(&work.category)
                .join(format!("{}-{}.log", work.name, work.version)),
            total: Duration::from_secs(self.cfg.build_timeout_s),
            idle: Duration::from_secs(self.cfg.build_idle_timeout_s),
            record: Some(leftovers::record_path(
                &self.cfg.state_dir,
                &format!("build-{}", work.lease),
            )),
            output: None,
        };
        self.runner.do_send(StartBuild {
            work: work.clone(),
            spec,
            pkgdir,
            live: Some((orch.base().to_string(), self.token.clone())),
        });
        self.jobs.insert(
            work.lease,
            Job {
                work,
                orch,
                upload_target,
                phase: Phase::Building,
                artifact: None,
                cancelled: false,
            },
        );
    }

    fn cancel_job(&mut self, lease: LeaseId, why: &str) {
        let Some(job) = self.jobs.get_mut(&lease) else {
            return;
        };
        if job.cancelled {
            return;
        }
        info!(self.log, "cancelling"; "atom" => &job.work.atom, "lease" => lease, "why" => why);
        job.cancelled = true;
        match job.phase {
            Phase::Building => self.runner.do_send(CancelBuild { lease }),
            Phase::Uploading => self.uploader.do_send(CancelUpload { lease }),
            Phase::Reporting => {}
        }
    }

    fn begin_restart(&mut self) {
        if self.restart_since.is_some() {
            return;
        }
        info!(
            self.log,
            "restart requested: claiming nothing, cancelling running work, then restarting"
        );
        self.restart_since = Some(Instant::now());
        let leases: Vec<LeaseId> = self.jobs.keys().copied().collect();
        for lease in leases {
            self.cancel_job(lease, "drone restart");
        }
    }

    fn finish_restart(&mut self) {
        let Some(since) = self.restart_since else {
            return;
        };
        let busy = self.busy_slots() > 0;
        // A result not on disk yet would be lost by the exec: always wait for its save.
        let reporting = self.reports.values().any(|r| r.in_flight || !r.saved)
            || (!self.reports.is_empty() && since.elapsed() < RESTART_GRACE);
        if busy || reporting {
            return;
        }
        info!(self.log, "restarting now");
        exec_self(&self.log);
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down {
            // Claim nothing more, but report what ends (the cancellations, finished work).
            self.send_reports(ctx);
            return;
        }
        self.check_environment(ctx);
        if !self.conn.is_registered() {
            self.connect(ctx);
        }
        self.heartbeat(ctx);
        self.claim(ctx);
        self.send_reports(ctx);
        self.finish_restart();
    }
}

/// Replaces this process with a fresh copy of itself (same arguments).
fn exec_self(log: &Logger) {
    use std::os::unix::process::CommandExt;
    // The ssh master connections would outlive the exec; the new drone starts its own.
    kill_masters();
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            crit!(log, "cannot find my own executable to restart"; "error" => e.to_string());
            std::process::exit(1);
        }
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .exec();
    crit!(log, "restart failed"; "error" => err.to_string());
    std::process::exit(1);
}

impl Actor for DroneAgent {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Leftovers of an earlier run are killed and its results read back before the
        // first claim, on a blocking thread.
        let (state_dir, store, me) = (
            self.cfg.state_dir.clone(),
            self.store.clone(),
            ctx.address(),
        );
        let work = actix_web::rt::task::spawn_blocking(move || {
            let reaped = leftovers::reap(&state_dir);
            let (results, set_aside) = store.load();
            Restored {
                results,
                set_aside,
                reaped,
            }
        });
        actix_web::rt::spawn(async move {
            // Even if reading them back failed, the drone goes on working.
            let restored = work.await.unwrap_or_else(|_| Restored {
                results: Vec::new(),
                set_aside: Vec::new(),
                reaped: vec!["(reading the previous run's state failed)".into()],
            });
            me.do_send(restored);
        });
        // Ticks at least as often as the drone polls for work when idle.
        let every = self.cfg.idle_poll().min(Duration::from_millis(500));
        ctx.run_interval(every, |act, ctx| act.tick(ctx));
        ctx.notify(Tick);
    }
}

impl Handler<Restored> for DroneAgent {
    type Result = ();
    fn handle(&mut self, msg: Restored, ctx: &mut Self::Context) {
        for what in msg.reaped {
            warn!(self.log, "killed a process group left running by a previous run of this drone"; "what" => what);
        }
        for bad in msg.set_aside {
            warn!(self.log, "unreadable pending result, set aside"; "path" => bad.path.display().to_string(), "error" => bad.error);
        }
        for r in msg.results {
            info!(self.log, "result from before the restart will be reported"; "atom" => &r.atom, "lease" => r.lease);
            self.reports.insert(
                r.lease,
                Outgoing {
                    result: r,
                    saved: true,
                    attempts: 0,
                    in_flight: false,
                    next_at: Instant::now(),
                },
            );
        }
        self.restoring = false;
        self.tick(ctx);
    }
}

impl Handler<Tick> for DroneAgent {
    type Result = ();
    fn handle(&mut self, _: Tick, ctx: &mut Self::Context) {
        self.tick(ctx);
    }
}

impl Handler<BuildFinished> for DroneAgent {
    type Result = ();
    fn handle(&mut self, msg: BuildFinished, ctx: &mut Self::Context) {
        let lease = msg.lease;
        let Some(job) = self.jobs.get_mut(&lease) else {
            return;
        };
        let epoch = job.work.epoch;
        let fail = |kind, reason: String, log_tail: String| {
            Report::Fail(FailRequest {
                epoch,
                kind,
                reason,
                log_tail,
            })
        };
        let report = match msg.outcome {
            BuildOutcome::Built(_) if job.cancelled => {
                fail(FailureKind::Cancelled, "cancelled".into(), String::new())
            }
            BuildOutcome::Built(artifact) => {
                job.phase = Phase::Uploading;
                let argv = upload_argv(
                    &self.cfg.upload,
                    &job.upload_target,
                    &job.work.upload_dir,
                    &artifact.rel,
                );
                job.artifact = Some(artifact);
                let client = job.orch.clone();
                let atom = job.work.atom.clone();
                self.uploader.do_send(StartUpload {
                    lease,
                    atom,
                    argv,
                    cwd: self.cfg.pkgdir.clone(),
                    total_timeout: Duration::from_secs(self.cfg.upload.total_timeout_s),
                    record: Some(leftovers::record_path(
                        &self.cfg.state_dir,
                        &format!("upload-{lease}"),
                    )),
                    mux: mux_spec(&self.cfg.upload, &self.cfg.state_dir, &job.upload_target),
                });
                ctx.spawn(
                    async move { client.uploading(lease, epoch).await }
                        .into_actor(self)
                        .map(|_, _, _| ()),
                );
                return;
            }
            BuildOutcome::Failed { reason, log_tail } => fail(FailureKind::Build, reason, log_tail),
            BuildOutcome::Broken { reason } => fail(FailureKind::Infra, reason, String::new()),
            BuildOutcome::Cancelled => {
                fail(FailureKind::Cancelled, "cancelled".into(), String::new())
            }
        };
        self.report(lease, report, ctx);
        self.tick(ctx);
    }
}

impl Handler<UploadFinished> for DroneAgent {
    type Result = ();
    fn handle(&mut self, msg: UploadFinished, ctx: &mut Self::Context) {
        let lease = msg.lease;
        let Some(job) = self.jobs.get(&lease) else {
            return;
        };
        let epoch = job.work.epoch;
        let report = match (msg.outcome, &job.artifact) {
            (UploadOutcome::Done { .. }, Some(a)) => Report::Complete(CompleteRequest {
                epoch,
                path: a.rel.clone(),
                size: a.size,
                sha256: a.sha256.clone(),
            }),
            (UploadOutcome::Cancelled, _) | (UploadOutcome::Done { .. }, None) => {
                Report::Fail(FailRequest {
                    epoch,
                    kind: FailureKind::Cancelled,
                    reason: "upload cancelled".into(),
                    log_tail: String::new(),
                })
            }
            (UploadOutcome::Failed { reason }, _) => Report::Fail(FailRequest {
                epoch,
                kind: FailureKind::Infra,
                reason,
                log_tail: String::new(),
            }),
        };
        self.report(lease, report, ctx);
        self.tick(ctx);
    }
}

impl Handler<Shutdown> for DroneAgent {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        info!(self.log, "stopping: cancelling running work");
        self.shutting_down = true;
        self.uploader.do_send(StopMasters);
        let leases: Vec<LeaseId> = self.jobs.keys().copied().collect();
        for lease in leases {
            self.cancel_job(lease, "drone stopping");
        }
        self.tick(ctx);
    }
}

impl Handler<GetStatus> for DroneAgent {
    type Result = MessageResult<GetStatus>;
    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        MessageResult(AgentStatus {
            orchestrator: self.conn.url().map(str::to_string),
            registered: self.conn.is_registered(),
            paused: self.paused,
            jobs: self.jobs.len(),
            busy: self.busy_slots(),
            pending_reports: self.reports.len(),
        })
    }
}
