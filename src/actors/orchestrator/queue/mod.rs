//! **PackageQueue** — the only actor that changes a package. A thin shell over plain
//! structs: the [`graph::PackageGraph`] (states, edges, ready heap), the
//! [`leases::LeaseTable`], the [`policy::FailurePolicy`], the [`commit::CommitBatch`]
//! (group commit) and the [`publisher::Publisher`] (verification lanes, upload
//! directories); [`views`] answers the reads, [`claim`] picks a claim's package,
//! [`durations`] learns build times, [`fleet`] keeps what the registry says of the drones,
//! [`progress`] notices a finished set and samples progress for the [`timeline`].
//! docs/design.md walks through the paths.
//!
//! Hears: `Submit`, `Retry`, `GetEta` and the reads from HTTP handlers; `MarkUploading`,
//! `Complete`, `Fail` from HTTP handlers; `ClaimPackage` and `CheckLeases` from drone
//! sessions; `ReclaimDrone` from sessions and the registry; `DroneSeen`, `RecordDrone` (a
//! drone's record, written with the next batch), `Fleet`, `WithdrawDrone` and
//! `SpeedFactors` from the registry; `SaveLearned` from the binary when it stops;
//! `FaultChanged` from the breaker; `LeaseTimedOut` from the lease deadlines; `Indexed`
//! from the binhost index. Sends only with `do_send` (`Arm`/`Disarm`; `RecordOutcome`,
//! `ForDrone`, `PackagesPublished`, `AddToIndex`, `Notify` and `LeaseLog` once the batch
//! they follow from is committed), so nothing it waits on can wait on it; only
//! the store answers it (`Commit`, `Reload`). Answers that change state wait for their
//! commit; a refused commit is undone by reading the committed state back ([`reload`]).

mod claim;
pub mod commit;
mod completion;
pub mod durations;
pub mod error;
pub mod fleet;
pub mod graph;
mod indexing;
pub mod leases;
pub mod messages;
pub mod policy;
mod progress;
pub mod publisher;
mod reclaim;
mod reload;
pub mod timeline;
pub mod views;

pub use error::QueueError;
pub use fleet::{Fleet, FleetMember, GetEta, SaveLearned, SpeedFactors, WithdrawDrone};
pub use graph::{LOG_TAIL_BYTES, REASON_BYTES};
pub use messages::*;
pub use progress::PROGRESS_EVERY;

use crate::actors::orchestrator::build_logs::LeaseLog;
use crate::actors::orchestrator::circuit_breaker::{FaultChanged, Outcome, RecordOutcome};
use crate::actors::orchestrator::lease_deadlines::{Arm, DeadlineKind, Disarm};
use crate::actors::orchestrator::messages::{AddToIndex, ForDrone, Relist};
use crate::actors::orchestrator::notifier::Notify;
use crate::actors::orchestrator::publish_hook::PackagesPublished;
use crate::actors::orchestrator::store::{Commit, Snapshot, Store, Write};
use crate::config::orchestrator::ScheduleOrder;
use crate::domain::{FailureKind, PackageState};
use crate::orchestrator::binhost::index::Entry;
use crate::orchestrator::credentials::Caller;
use crate::orchestrator::metrics::{Metrics, QueueMetrics};
use crate::orchestrator::notify::{Event, EventKind};
use crate::orchestrator::staging;
use crate::sys::clock::SharedClock;
use crate::wire::orchestrator::{
    Ack, BumpResult, CompleteRequest, DroneAction, DroneCommand, LeaseId, PackageLog, RetryResult,
    SubmitResult, WorkAssignment,
};
use actix::prelude::*;
use commit::{CommitBatch, CommitError, Durable};
use completion::VerifyMeta;
use graph::PackageGraph;
use leases::{Lease, LeaseEnd, LeasePhase, LeaseTable};
use policy::{FailurePolicy, Verdict};
use publisher::Publisher;
use slog::{crit, info, warn, Logger};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Ended leases are remembered this long (a late completion can still be accepted).
const ENDED_LEASE_MEMORY: Duration = Duration::from_secs(24 * 3600);
/// How often staging and old leases are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How often learned build times are written ([`PackageQueue::save_learned`]).
pub const SAVE_LEARNED_EVERY: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- the actor

/// What the queue needs to know of the configuration.
#[derive(Clone)]
pub struct QueueSettings {
    pub staging_dir: PathBuf,
    pub binhost_dir: PathBuf,
    pub build_timeout: Duration,
    pub upload_timeout: Duration,
    pub heartbeat_ttl: Duration,
    pub policy: FailurePolicy,
    /// Critical path first, or set order only.
    pub order: ScheduleOrder,
    pub clock: SharedClock,
    /// The key lease ids are derived under (new per process; see [`leases`]).
    pub lease_id_key: [u8; 32],
    /// The orchestrator writes the binhost's `Packages` index: a publish carries its
    /// entry, and dependents wait until an index that lists the package is live.
    pub index: bool,
    /// Sign each published gpkg (with `[signing] key`).
    pub signing: Option<crate::orchestrator::publish::Signing>,
}

/// Who the queue tells things (only ever with `do_send`).
pub struct Peers {
    pub store: Addr<Store>,
    pub deadlines: Recipient<Arm>,
    pub disarm: Recipient<Disarm>,
    pub breaker: Recipient<RecordOutcome>,
    pub drones: Recipient<ForDrone>,
    pub hook: Recipient<PackagesPublished>,
    /// The binhost index (with `QueueSettings::index`).
    pub index: Option<Recipient<AddToIndex>>,
    /// The same, asked which built packages it lists after a reload.
    pub relist: Option<Recipient<Relist>>,
    /// Told of packages failed for good and of finished sets (with `[[notify]]`).
    pub notify: Option<Recipient<Notify>>,
    /// Told when leases start, start uploading and end (their live output).
    pub logs: Option<Recipient<LeaseLog>>,
}

/// What others hear of a change once it is committed.
enum Tell {
    Outcome(RecordOutcome),
    Cancel(ForDrone),
    /// A published package's index entry.
    Index(u32, Entry),
    Notify(Event),
    Log(LeaseLog),
}

pub struct PackageQueue {
    settings: QueueSettings,
    graph: PackageGraph,
    leases: LeaseTable,
    commit: CommitBatch<Tell>,
    /// A commit failed: the committed state is being read back; changes are refused.
    reloading: bool,
    /// Drones lost while reloading, reclaimed once the state is back.
    deferred_reclaims: Vec<ReclaimDrone>,
    publisher: Publisher<VerifyMeta>,
    /// Drones seen lately (claims, registrations): a package that failed on one drone may
    /// still go back to it when no other drone is around.
    active_drones: HashMap<String, Instant>,
    /// The breaker reports a central fault: infrastructure failures now are not the
    /// packages' fault and do not use up their retries.
    central_fault: bool,
    /// Every registered drone, as the registry last said ([`fleet`]).
    fleet: HashMap<String, FleetMember>,
    /// Build times learned per package name, speed factors per drone.
    durations: durations::Durations,
    /// `set_finished` was told for the packages as they are (again once more arrive).
    finished_told: bool,
    /// Progress every [`PROGRESS_EVERY`] for the timeline (a day of them).
    progress: std::collections::VecDeque<crate::wire::orchestrator::ProgressSample>,
    peers: Peers,
    log: Logger,
    metrics: QueueMetrics,
}

impl PackageQueue {
    /// Rebuilds the queue from the stored snapshot. Active leases get fresh deadlines
    /// (armed in `started`), so live drones can still finish after a restart.
    pub fn restore(settings: QueueSettings, mut snap: Snapshot, peers: Peers, log: Logger) -> Self {
        let log = log.new(slog::o!("actor" => "package_queue"));
        let durations = durations::Durations::restore(
            std::mem::take(&mut snap.durations),
            std::mem::take(&mut snap.speeds),
        );
        let (graph, leases) = Self::state_from(&settings, snap, &log);
        let finished_told = progress::set_finished(&graph);
        PackageQueue {
            publisher: Publisher::new(settings.staging_dir.clone(), settings.binhost_dir.clone())
                .with_signing(settings.signing.clone()),
            settings,
            graph,
            leases,
            commit: CommitBatch::default(),
            reloading: false,
            deferred_reclaims: Vec::new(),
            active_drones: HashMap::new(),
            central_fault: false,
            fleet: HashMap::new(),
            durations,
            finished_told,
            progress: std::collections::VecDeque::new(),
            peers,
            log,
            metrics: QueueMetrics::default(),
        }
    }

    /// Counts this queue's events into `metrics` (see [`crate::orchestrator::metrics`]).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = QueueMetrics::new(metrics);
        self
    }

    // ------------------------------------------------------------ leases

    /// Ends an active lease. `stop`: tell its drone to stop working on it. Returns the
    /// drone that held it, when it was active.
    fn end_lease(&mut self, lease_id: LeaseId, stop: bool, end: LeaseEnd) -> Option<String> {
        let l = self
            .leases
            .end(lease_id, stop, end, crate::sys::clock::unix_now())?;
        let (pkg, drone) = (l.pkg, l.drone.clone());
        self.metrics.lease_ended(lease_id);
        let p = &mut self.graph.packages[pkg as usize];
        if p.lease == Some(lease_id) {
            p.lease = None;
        }
        self.peers.disarm.do_send(Disarm { lease: lease_id });
        self.tell_log(LeaseLog::Ended { lease: lease_id });
        if stop {
            self.commit.after(Tell::Cancel(ForDrone {
                drone: drone.clone(),
                command: DroneCommand {
                    action: DroneAction::Cancel,
                    lease: Some(lease_id),
                },
            }));
        }
        Some(drone)
    }

    /// Tells the breaker how a drone's attempt ended. Every end of an active lease sends
    /// exactly one outcome, so a half-open breaker always learns how its probe ended.
    fn verdict(&mut self, drone: String, outcome: Outcome) {
        self.commit
            .after(Tell::Outcome(RecordOutcome { drone, outcome }));
    }

    fn infra_failure(&mut self, drone: String, reason: String) {
        self.verdict(
            drone,
            Outcome::Failure {
                kind: FailureKind::Infra,
                reason,
            },
        );
    }

    /// The package's current attempt ended without an artifact (see [`policy`]).
    fn attempt_failed(
        &mut self,
        id: u32,
        kind: FailureKind,
        drone: &str,
        reason: &str,
        log_tail: &str,
        backoff: bool,
    ) {
        self.metrics.failure(kind);
        let now = self.settings.clock.now();
        let verdict = self.graph.attempt_failed(
            &self.settings.policy,
            id,
            kind,
            drone,
            reason,
            log_tail,
            backoff,
            self.central_fault,
            now,
        );
        if let Verdict::GiveUp(why) = verdict {
            let atom = &self.graph.get(id).atom_str;
            warn!(self.log, "package failed"; "atom" => atom, "reason" => &why);
            self.tell(Event::package_failed(atom, &why));
        }
    }

    /// The package is built: drones whose builds of it failed turn out to be at fault
    /// (a poison package's failures never count), and its dependents move on — once its
    /// index `entry` is live when there is an index.
    fn mark_built(&mut self, id: u32, builder: &str, req: &CompleteRequest, entry: Option<Entry>) {
        let atom = self.graph.get(id).atom_str.clone();
        let failed_on = self.graph.get(id).tries.failed_on.clone();
        for d in failed_on.into_iter().filter(|d| d != builder) {
            self.verdict(
                d,
                Outcome::Failure {
                    kind: FailureKind::Build,
                    reason: format!("{atom} failed to build here but built on {builder}"),
                },
            );
        }
        let wait_for_index = self.peers.index.is_some() && entry.is_some();
        self.graph
            .mark_built(id, req.path.clone(), req.size, &req.sha256, !wait_for_index);
        let p = self.graph.get_mut(id);
        p.drone = Some(builder.to_string());
        if std::mem::take(&mut p.retried) {
            self.tell(Event::recovered(EventKind::PackageFailed, Some(&atom)));
        }
        if let (true, Some(e)) = (wait_for_index, entry) {
            self.commit.after(Tell::Index(id, e));
        }
    }

    /// The lease `caller` reports on: it must be one of the caller's drone's (403, logged
    /// with both names, before anything else is said about it) and of this epoch.
    fn lookup_lease(
        &self,
        lease: LeaseId,
        epoch: u64,
        caller: &Caller,
    ) -> Result<&Lease, QueueError> {
        let l = self
            .leases
            .get(lease)
            .ok_or(QueueError::UnknownLease(lease))?;
        if let Err(e) = caller.may_act_for(&l.drone) {
            warn!(self.log, "refused a report on another drone's lease"; "lease" => lease,
                  "owner" => &l.drone, "caller" => &e.caller);
            return Err(QueueError::Forbidden { lease, source: e });
        }
        if l.epoch != epoch {
            return Err(QueueError::WrongEpoch {
                lease,
                current: l.epoch,
                given: epoch,
            });
        }
        Ok(l)
    }

    fn clean(&mut self, ctx: &mut Context<Self>) {
        let Some(dirs) = self.publisher.start_cleaning() else {
            return;
        };
        let work = actix_web::rt::task::spawn_blocking(move || {
            for d in &dirs {
                staging::remove_quietly(d);
            }
        });
        ctx.spawn(work.into_actor(self).map(|_, act, ctx| {
            act.publisher.cleaned();
            act.clean(ctx);
        }));
    }

    /// Tells the build logs of a lease's life once the batch it follows from is
    /// committed.
    fn tell_log(&mut self, l: LeaseLog) {
        if self.peers.logs.is_some() {
            self.commit.after(Tell::Log(l));
        }
    }

    /// Tells the notifier `e` once the batch it follows from is committed.
    fn tell(&mut self, e: Event) {
        if self.peers.notify.is_some() {
            self.commit.after(Tell::Notify(e));
        }
    }

    // ------------------------------------------------------------ durability

    /// A receiver that resolves when everything changed so far is committed.
    fn durable(&mut self, ctx: &mut Context<Self>) -> Durable {
        let clean = self.graph.dirty.is_empty()
            && self.graph.new_deps.is_empty()
            && self.leases.dirty.is_empty();
        let (rx, flush) = self.commit.wait(clean);
        if flush {
            self.flush(ctx);
        }
        rx
    }

    /// Starts the next batch unless one is in flight.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.commit.in_flight() {
            return;
        }
        self.note_progress();
        if !self.graph.new_deps.is_empty() {
            self.commit
                .push(Write::Deps(std::mem::take(&mut self.graph.new_deps)));
        }
        let mut pkgs: Vec<u32> = self.graph.dirty.drain().collect();
        pkgs.sort_unstable();
        let lease_ids: Vec<LeaseId> = self.leases.dirty.drain().collect();
        let Some(batch) = self
            .commit
            .begin(pkgs, lease_ids, self.publisher.has_swaps())
        else {
            return;
        };
        // Packages first: dependency rows refer to them.
        let mut writes: Vec<Write> = batch
            .pkgs
            .iter()
            .map(|id| Write::Package(self.graph.get(*id).row(*id)))
            .collect();
        writes.extend(batch.extra.iter().cloned());
        writes.extend(
            batch
                .leases
                .iter()
                .filter_map(|id| self.leases.get(*id).map(|l| Write::Lease(l.row(*id)))),
        );
        let commit = self.peers.store.send(Commit(writes));
        let swaps = self.publisher.take_swaps();
        let fut = async move {
            if swaps.is_empty() {
                return (commit.await, false);
            }
            let renamed = actix_web::rt::task::spawn_blocking(move || {
                let mut unsupported = false;
                for swap in swaps {
                    // Best effort: if it fails the drone's rsync makes the category
                    // directory it needs.
                    if let Err(e) = swap.apply() {
                        unsupported |= staging::unsupported(&e);
                        swap.undo();
                    }
                }
                unsupported
            });
            let (res, unsupported) = futures_util::future::join(commit, renamed).await;
            (res, unsupported.unwrap_or(false))
        };
        ctx.spawn(fut.into_actor(self).map(move |(res, unsupported), act, ctx| {
            if unsupported && act.publisher.stop_reuse() {
                warn!(act.log, "the staging filesystem cannot rename without replacing (RENAME_NOREPLACE); upload directories are no longer reused";
                      "staging_dir" => act.settings.staging_dir.display().to_string());
                act.metrics.upload_dirs_kept(0);
                act.clean(ctx);
            }
            let res = match res {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(CommitError::Store(Arc::new(e))),
                Err(e) => Err(CommitError::StoreGone(e)),
            };
            match res {
                Ok(()) => {
                    let done = act.commit.succeeded(batch);
                    if done.publishes {
                        act.peers.hook.do_send(PackagesPublished);
                    }
                    let mut entries = Vec::new();
                    for tell in done.after {
                        match tell {
                            Tell::Outcome(o) => act.peers.breaker.do_send(o),
                            Tell::Cancel(c) => act.peers.drones.do_send(c),
                            Tell::Index(pkg, e) => entries.push((pkg, e)),
                            Tell::Log(l) => {
                                if let Some(r) = &act.peers.logs {
                                    r.do_send(l);
                                }
                            }
                            Tell::Notify(e) => {
                                if let Some(n) = &act.peers.notify {
                                    n.do_send(Notify(e));
                                }
                            }
                        }
                    }
                    if let (Some(index), false) = (&act.peers.index, entries.is_empty()) {
                        index.do_send(AddToIndex(entries));
                    }
                    act.flush(ctx);
                }
                Err(e) => {
                    crit!(act.log, "state commit failed: nothing of it is kept, the committed state is read back"; "error" => %e);
                    act.commit.failed(batch, e);
                    act.graph.dirty.clear();
                    act.graph.new_deps.clear();
                    act.leases.dirty.clear();
                    act.reload(ctx);
                }
            }
        }));
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let now = crate::sys::clock::unix_now();
        let horizon = ENDED_LEASE_MEMORY.as_secs();
        if self.leases.prune(now, horizon) {
            self.commit.push(Write::PruneLeases {
                ended_before: now.saturating_sub(horizon),
            });
            self.flush(ctx);
        }
        let ttl = self.settings.heartbeat_ttl * 2;
        self.active_drones.retain(|_, t| t.elapsed() < ttl);
        // Leftover upload directories of leases that ended long ago. A reused directory
        // keeps the times of its first package, so its age says little: the directories
        // of active leases, of leases ended within `min_age` (a late upload may still be
        // running into it) and of the pool are kept by name.
        let min_age = self.settings.upload_timeout + Duration::from_secs(3600);
        let keep: HashSet<String> = self
            .leases
            .iter()
            .filter(|(_, l)| {
                l.is_active()
                    || l.ended_unix
                        .is_none_or(|e| now.saturating_sub(e) < min_age.as_secs())
            })
            .map(|(_, l)| l.upload_dir.clone())
            .chain(self.publisher.kept_names().cloned())
            .collect();
        let staging_dir = self.settings.staging_dir.clone();
        actix_web::rt::task::spawn_blocking(move || staging::sweep(&staging_dir, &keep, min_age));
    }
}

/// Waits for durability, then answers `value`.
async fn after_commit<T>(rx: Durable, value: Result<T, QueueError>) -> Result<T, QueueError> {
    let value = value?;
    match rx.await {
        Ok(Ok(())) => Ok(value),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(CommitError::QueueStopped.into()),
    }
}

fn answer_after<T: 'static>(
    rx: Durable,
    value: Result<T, QueueError>,
) -> ResponseFuture<Result<T, QueueError>> {
    Box::pin(after_commit(rx, value))
}

impl Actor for PackageQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Restored leases get fresh deadlines.
        self.arm_active_leases();
        ctx.run_interval(SWEEP_EVERY, |act, ctx| act.sweep(ctx));
        ctx.run_interval(SAVE_LEARNED_EVERY, |act, ctx| act.save_learned(ctx));
        ctx.run_interval(PROGRESS_EVERY, |act, _| act.sample_progress());
        self.sweep(ctx);
    }
}

impl Handler<FaultChanged> for PackageQueue {
    type Result = ();
    fn handle(&mut self, msg: FaultChanged, _: &mut Self::Context) {
        self.central_fault = msg.central;
        if !msg.central {
            self.graph.end_backoffs();
        }
    }
}

impl Handler<DroneSeen> for PackageQueue {
    type Result = ();
    fn handle(&mut self, msg: DroneSeen, _: &mut Self::Context) {
        self.active_drones.insert(msg.drone, Instant::now());
    }
}

impl Handler<RecordDrone> for PackageQueue {
    type Result = ();
    fn handle(&mut self, msg: RecordDrone, ctx: &mut Self::Context) {
        self.commit.push(Write::Drone(msg.0));
        self.flush(ctx);
    }
}

impl Handler<Submit> for PackageQueue {
    type Result = ResponseFuture<Result<SubmitResult, QueueError>>;
    fn handle(&mut self, msg: Submit, ctx: &mut Self::Context) -> Self::Result {
        if let Some(refused) = self.refuse_while_reloading() {
            return refused;
        }
        let durations = &self.durations;
        let res = self
            .graph
            .submit_with_priority(&msg.set, msg.priority, &|atom| {
                durations.estimate(&format!("{}/{}", atom.category, atom.name))
            });
        info!(self.log, "package set added"; "added" => res.added, "existing" => res.existing,
              "format" => format!("{:?}", res.format), "priority" => msg.priority);
        let rx = self.durable(ctx);
        answer_after(rx, Ok(res))
    }
}

impl Handler<ClaimPackage> for PackageQueue {
    type Result = ResponseFuture<Result<Option<WorkAssignment>, QueueError>>;
    fn handle(&mut self, msg: ClaimPackage, ctx: &mut Self::Context) -> Self::Result {
        if let Some(refused) = self.refuse_while_reloading() {
            return refused;
        }
        let res = self.claim(&msg.drone, msg.slots);
        let rx = self.durable(ctx);
        answer_after(rx, Ok(res))
    }
}

impl Handler<MarkUploading> for PackageQueue {
    type Result = ResponseFuture<Result<Ack, QueueError>>;
    fn handle(&mut self, msg: MarkUploading, ctx: &mut Self::Context) -> Self::Result {
        if let Some(refused) = self.refuse_while_reloading() {
            return refused;
        }
        let res = self
            .lookup_lease(msg.lease, msg.epoch, &msg.caller)
            .map(|l| (l.pkg, l.is_active()));
        let res = res.map(|(pkg, active)| {
            if !active {
                return Ack::stale();
            }
            if let Some(l) = self.leases.get_mut(msg.lease) {
                l.phase = LeasePhase::Uploading;
                l.uploading_unix = Some(crate::sys::clock::unix_now());
                if l.timed {
                    l.built_in = Some(l.created.elapsed());
                }
            }
            self.graph.set_state(pkg, PackageState::Uploading);
            self.metrics.upload_started(msg.lease);
            self.tell_log(LeaseLog::Uploading { lease: msg.lease });
            self.peers.deadlines.do_send(Arm {
                lease: msg.lease,
                epoch: msg.epoch,
                deadline: DeadlineKind::Upload,
                after: self.settings.upload_timeout,
            });
            Ack::done()
        });
        let rx = self.durable(ctx);
        answer_after(rx, res)
    }
}

impl Handler<Fail> for PackageQueue {
    type Result = ResponseFuture<Result<Ack, QueueError>>;
    fn handle(&mut self, msg: Fail, ctx: &mut Self::Context) -> Self::Result {
        if let Some(refused) = self.refuse_while_reloading() {
            return refused;
        }
        let res = self
            .lookup_lease(msg.lease, msg.req.epoch, &msg.caller)
            .map(|l| (l.pkg, l.drone.clone(), l.is_active()));
        let res = res.map(|(pkg, drone, active)| {
            if !active {
                return Ack::stale();
            }
            let req = &msg.req;
            let end = match req.kind {
                FailureKind::Build => LeaseEnd::Failed,
                FailureKind::Infra => LeaseEnd::Infra,
                FailureKind::Cancelled => LeaseEnd::Cancelled,
            };
            self.end_lease(msg.lease, false, end);
            info!(self.log, "attempt failed"; "atom" => &self.graph.get(pkg).atom_str,
                  "drone" => &drone, "kind" => req.kind.as_str(), "reason" => &req.reason);
            self.attempt_failed(pkg, req.kind, &drone, &req.reason, &req.log_tail, true);
            // A build failure is held back until it is known whose fault it was: for now
            // the breaker only learns that the attempt is over.
            let outcome = match req.kind {
                FailureKind::Build => Outcome::Neutral,
                kind => Outcome::Failure {
                    kind,
                    reason: req.reason.clone(),
                },
            };
            self.verdict(drone, outcome);
            Ack::done()
        });
        let rx = self.durable(ctx);
        answer_after(rx, res)
    }
}

impl Handler<Bump> for PackageQueue {
    type Result = ResponseFuture<Result<BumpResult, QueueError>>;
    fn handle(&mut self, msg: Bump, ctx: &mut Self::Context) -> Self::Result {
        if let Some(refused) = self.refuse_while_reloading() {
            return refused;
        }
        let res = self
            .graph
            .bump(&msg.atom)
            .map(|moved| BumpResult {
                atom: msg.atom.clone(),
                moved,
                priority: self
                    .graph
                    .by_atom
                    .get(&msg.atom)
                    .map_or(0, |id| self.graph.get(*id).boost),
            })
            .map_err(QueueError::from);
        if let Ok(r) = &res {
            info!(self.log, "bumped"; "atom" => &r.atom, "moved" => r.moved, "priority" => r.priority);
        }
        let rx = self.durable(ctx);
        answer_after(rx, res)
    }
}

impl Handler<Retry> for PackageQueue {
    type Result = ResponseFuture<Result<RetryResult, QueueError>>;
    fn handle(&mut self, msg: Retry, ctx: &mut Self::Context) -> Self::Result {
        if let Some(refused) = self.refuse_while_reloading() {
            return refused;
        }
        let res = self.graph.retry(&msg.0).map_err(QueueError::from);
        if let Ok(r) = &res {
            info!(self.log, "retry"; "retried" => r.retried, "unblocked" => r.unblocked);
        }
        let rx = self.durable(ctx);
        answer_after(rx, res)
    }
}

impl Handler<GetCounts> for PackageQueue {
    type Result = MessageResult<GetCounts>;
    fn handle(&mut self, _: GetCounts, _: &mut Self::Context) -> Self::Result {
        MessageResult(views::counts(&self.graph))
    }
}

impl Handler<ListPackages> for PackageQueue {
    type Result = MessageResult<ListPackages>;
    fn handle(&mut self, msg: ListPackages, _: &mut Self::Context) -> Self::Result {
        MessageResult(views::list(
            &self.graph,
            msg.state,
            msg.search.as_deref(),
            msg.offset,
            msg.limit,
        ))
    }
}

impl Handler<GetLog> for PackageQueue {
    type Result = Result<PackageLog, QueueError>;
    fn handle(&mut self, msg: GetLog, _: &mut Self::Context) -> Self::Result {
        views::log(&self.graph, &msg.atom).ok_or(QueueError::UnknownPackage(msg.atom))
    }
}

impl Handler<CurrentByDrone> for PackageQueue {
    type Result = MessageResult<CurrentByDrone>;
    fn handle(&mut self, _: CurrentByDrone, _: &mut Self::Context) -> Self::Result {
        MessageResult(views::current_by_drone(&self.graph, &self.leases))
    }
}

impl Handler<DroneQueueView> for PackageQueue {
    type Result = MessageResult<DroneQueueView>;
    fn handle(&mut self, msg: DroneQueueView, _: &mut Self::Context) -> Self::Result {
        let drone = msg.drone.clone();
        MessageResult(views::drone_queue(
            &self.graph,
            &self.leases,
            msg.drone,
            |id| self.eligible(id, &drone),
        ))
    }
}
