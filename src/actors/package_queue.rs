//! **PackageQueue** — owns every package's state, the dependency graph, the ready set and
//! the lease table. It is the only actor that changes a package.
//!
//! Hands out the ready package with the longest remaining dependency chain (sum of
//! `estimate_s` along it, 1 s when unknown), then set order. Dependents of a built package
//! become ready at once; dependents of a failed one become `blocked`.
//!
//! Durability is a group commit: every handler changes memory, marks what changed dirty and
//! answers only after the batch holding its change is committed by the `Store`; whatever
//! changes while one batch is being written goes into the next. So nothing is ever
//! acknowledged that a `kill -9` could lose.
//!
//! Receives: `Submit`, `Retry`, reads (`GetCounts`, `ListPackages`, `GetLog`,
//! `CurrentByDrone`, `DroneQueueView`) from HTTP handlers; `ClaimPackage` and `CheckLeases`
//! from drone sessions; `MarkUploading`, `Complete`, `Fail` from HTTP handlers;
//! `LeaseTimedOut` from the upload supervisor; `ReclaimDrone` from sessions and the
//! registry. Sends: `Arm`/`Disarm` to the supervisor, `RecordOutcome` to the circuit
//! breaker, `ForDrone` (cancel commands) to the registry, `Published` to the publish hook —
//! all fire-and-forget, so nothing it awaits can wait on it.

use crate::actors::circuit_breaker::{CircuitBreaker, FaultChanged, Outcome, RecordOutcome};
use crate::actors::drone_registry::{DroneRegistry, ForDrone};
use crate::actors::publish_hook::{PublishHook, Published as HookPublished};
use crate::actors::store::{Commit, LeasePhase, LeaseRow, PackageRow, Snapshot, Store, Write};
use crate::actors::upload_supervisor::{Arm, Deadline, Disarm, LeaseTimedOut, UploadSupervisor};
use crate::api::{
    Ack, CompleteRequest, CompleteResponse, DroneAction, DroneCommand, DroneQueue, FailRequest,
    LeaseId, LeaseView, PackageCounts, PackageInfo, PackageList, PackageLog, RetryRequest,
    RetryResult, SubmitResult, WorkAssignment,
};
use crate::clock::SharedClock;
use crate::config::orchestrator::ScheduleOrder;
use crate::domain::{Atom, FailureKind, PackageSet, PackageState};
use crate::metrics::{Metrics, QueueMetrics, ReclaimReason};
use crate::process::tail_str;
use crate::publish::{self, join_inside, PublishError, PublishJob, Published};
use crate::staging::{self, UploadDirPool};
use actix::prelude::*;
use slog::{crit, debug, info, warn, Logger};
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Longest log tail kept per package.
pub const LOG_TAIL_BYTES: usize = 16 * 1024;
/// Longest failure reason kept.
pub const REASON_BYTES: usize = 2048;
/// Ended leases are remembered this long (a late completion can still be accepted).
const ENDED_LEASE_MEMORY: Duration = Duration::from_secs(24 * 3600);
/// How often staging and old leases are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How many ready entries a claim looks at to find one the drone has not failed on.
const CLAIM_SCAN: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Busy(String),
    #[error("the state database could not be written: {0}")]
    Store(String),
}

/// What the queue needs to know of the configuration.
#[derive(Clone)]
pub struct QueueSettings {
    pub staging_dir: PathBuf,
    pub binhost_dir: PathBuf,
    pub build_timeout: Duration,
    pub upload_timeout: Duration,
    pub heartbeat_ttl: Duration,
    pub build_failure_drones: u32,
    pub max_infra_retries: u32,
    /// First wait after an infrastructure failure; doubles per further failure.
    pub infra_backoff: Duration,
    /// Critical path first, or set order only.
    pub order: ScheduleOrder,
    pub clock: SharedClock,
}

/// Longest wait after infrastructure failures.
const MAX_INFRA_BACKOFF: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------- messages

#[derive(Message)]
#[rtype(result = "Result<SubmitResult, QueueError>")]
pub struct Submit(pub PackageSet);

#[derive(Message)]
#[rtype(result = "Result<Option<WorkAssignment>, QueueError>")]
pub struct ClaimPackage {
    pub drone: String,
    pub slots: u32,
}

#[derive(Message)]
#[rtype(result = "Result<Ack, QueueError>")]
pub struct MarkUploading {
    pub lease: LeaseId,
    pub epoch: u64,
}

#[derive(Message)]
#[rtype(result = "Result<CompleteResponse, QueueError>")]
pub struct Complete {
    pub lease: LeaseId,
    pub req: CompleteRequest,
}

#[derive(Message)]
#[rtype(result = "Result<Ack, QueueError>")]
pub struct Fail {
    pub lease: LeaseId,
    pub req: FailRequest,
}

/// The drone is gone (offline, or registered again): its active leases are reclaimed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReclaimDrone {
    pub drone: String,
    pub reason: String,
}

/// A heartbeat listed these leases. Active leases of the drone it did not list (and that
/// are older than the heartbeat TTL) are reclaimed; the answer lists the leases the drone
/// should stop working on.
#[derive(Message)]
#[rtype(result = "Vec<LeaseId>")]
pub struct CheckLeases {
    pub drone: String,
    pub listed: Vec<LeaseId>,
}

#[derive(Message)]
#[rtype(result = "Result<RetryResult, QueueError>")]
pub struct Retry(pub RetryRequest);

#[derive(Message)]
#[rtype(result = "PackageCounts")]
pub struct GetCounts;

#[derive(Message)]
#[rtype(result = "PackageList")]
pub struct ListPackages {
    pub state: Option<PackageState>,
    pub search: Option<String>,
    pub offset: usize,
    pub limit: Option<usize>,
}

#[derive(Message)]
#[rtype(result = "Result<PackageLog, QueueError>")]
pub struct GetLog {
    pub atom: String,
}

#[derive(Message)]
#[rtype(result = "HashMap<String, Vec<String>>")]
pub struct CurrentByDrone;

#[derive(Message)]
#[rtype(result = "DroneQueue")]
pub struct DroneQueueView {
    pub drone: String,
}

/// Drones that hold active leases (restored sessions need them).
#[derive(Message)]
#[rtype(result = "HashSet<String>")]
pub struct DronesWithLeases;

/// A drone registered or showed signs of life (it counts as another eligible drone for
/// packages that failed elsewhere).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DroneSeen {
    pub drone: String,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Sweep;

// ---------------------------------------------------------------- state

#[derive(Debug)]
struct Package {
    atom: Atom,
    atom_str: String,
    seq: u64,
    state: PackageState,
    attempts: u32,
    infra_failures: u32,
    reason: Option<String>,
    log_tail: Option<String>,
    estimate_s: Option<f64>,
    priority: u64,
    epoch: u64,
    drone: Option<String>,
    failed_on: Vec<String>,
    path: Option<String>,
    size: Option<u64>,
    sha256: Option<String>,
    deps: Vec<u32>,
    dependents: Vec<u32>,
    /// Dependencies not built yet.
    unbuilt: u32,
    /// The active lease, if any (at most one at a time).
    lease: Option<LeaseId>,
    /// A completion is being verified; another one must wait.
    publishing: bool,
    /// Not handed out before this (backoff after infrastructure failures).
    not_before: Option<Instant>,
}

#[derive(Debug)]
struct Lease {
    pkg: u32,
    epoch: u64,
    drone: String,
    phase: LeasePhase,
    created: Instant,
    created_unix: u64,
    ended_unix: Option<u64>,
    /// Its upload directory under staging (SPEC `upload_dir`): `lease-N`, or a kept one
    /// of an earlier lease (see [`crate::staging`]).
    upload_dir: String,
    /// Ended because the package no longer needs it (built elsewhere, cancelled by the
    /// operator): the drone should stop.
    stop: bool,
}

#[derive(Debug, PartialEq, Eq)]
struct Ready {
    priority: u64,
    seq: Reverse<u64>,
    id: u32,
}

impl Ord for Ready {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.priority, self.seq).cmp(&(other.priority, other.seq))
    }
}
impl PartialOrd for Ready {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

type Durable = oneshot::Receiver<Result<(), String>>;

pub struct PackageQueue {
    settings: QueueSettings,
    packages: Vec<Package>,
    by_atom: HashMap<String, u32>,
    ready: BinaryHeap<Ready>,
    counts: [usize; 7],
    leases: HashMap<LeaseId, Lease>,
    by_drone: HashMap<String, HashSet<LeaseId>>,
    next_lease: LeaseId,
    next_seq: u64,
    active_drones: HashMap<String, Instant>,
    store: Addr<Store>,
    dirty_pkgs: HashSet<u32>,
    dirty_leases: HashSet<LeaseId>,
    extra_writes: Vec<Write>,
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
    flushing: bool,
    supervisor: Addr<UploadSupervisor>,
    breaker: Addr<CircuitBreaker>,
    registry: Addr<DroneRegistry>,
    hook: Addr<PublishHook>,
    /// The breaker reports a central fault: infrastructure failures now are not the
    /// packages' fault and do not use up their retries.
    central_fault: bool,
    /// Upload directories of finished leases, removed in the background (a directory
    /// removal can take milliseconds, e.g. on a filesystem mounted with `discard`; no
    /// completion waits for it).
    cleanup: Vec<PathBuf>,
    cleaning: bool,
    /// Completions waiting for a verification lane, and the lanes at work.
    to_verify: Vec<ToVerify>,
    verify_lanes: usize,
    verifying: HashMap<u64, VerifyMeta>,
    next_verify_job: u64,
    /// Emptied upload directories of published packages, handed to new leases (see
    /// [`crate::staging`]).
    upload_dirs: UploadDirPool,
    /// Kept upload directories handed to leases of the next batch whose category directory
    /// must be renamed: done beside its commit (on a blocking thread, not the store's)
    /// before the claims are answered.
    category_swaps: Vec<staging::CategorySwap>,
    /// False once the staging filesystem refused `RENAME_NOREPLACE`: directories are
    /// then made by the drones and removed after each package, as without reuse.
    reuse_upload_dirs: bool,
    log: Logger,
    metrics: QueueMetrics,
}

fn priority_ms(estimate_s: Option<f64>) -> u64 {
    let s = estimate_s
        .filter(|e| e.is_finite() && *e >= 0.0)
        .unwrap_or(1.0);
    (s * 1000.0).round().min(1e15) as u64
}

pub struct Peers {
    pub store: Addr<Store>,
    pub supervisor: Addr<UploadSupervisor>,
    pub breaker: Addr<CircuitBreaker>,
    pub registry: Addr<DroneRegistry>,
    pub hook: Addr<PublishHook>,
}

impl PackageQueue {
    /// Rebuilds the queue from the stored snapshot. Active leases get fresh deadlines
    /// (armed in `started`), so live drones can still finish after a restart.
    pub fn restore(settings: QueueSettings, snap: Snapshot, peers: Peers, log: Logger) -> Self {
        let log = log.new(slog::o!("actor" => "package_queue"));
        let mut q = PackageQueue {
            settings,
            packages: Vec::with_capacity(snap.packages.len()),
            by_atom: HashMap::with_capacity(snap.packages.len()),
            ready: BinaryHeap::new(),
            counts: [0; 7],
            leases: HashMap::new(),
            by_drone: HashMap::new(),
            next_lease: snap.next_lease.max(1),
            next_seq: 0,
            active_drones: HashMap::new(),
            store: peers.store,
            dirty_pkgs: HashSet::new(),
            dirty_leases: HashSet::new(),
            extra_writes: Vec::new(),
            waiters: Vec::new(),
            flushing: false,
            supervisor: peers.supervisor,
            breaker: peers.breaker,
            registry: peers.registry,
            hook: peers.hook,
            central_fault: false,
            cleanup: Vec::new(),
            cleaning: false,
            to_verify: Vec::new(),
            verify_lanes: 0,
            verifying: HashMap::new(),
            next_verify_job: 0,
            upload_dirs: UploadDirPool::default(),
            category_swaps: Vec::new(),
            reuse_upload_dirs: true,
            log,
            metrics: QueueMetrics::default(),
        };
        for row in snap.packages {
            let atom = match Atom::parse(&row.atom) {
                Ok(a) => a,
                Err(e) => {
                    // Cannot happen for rows we wrote; keep the slot so ids stay aligned.
                    crit!(q.log, "stored package has an invalid atom"; "error" => e.to_string());
                    Atom {
                        category: "invalid".into(),
                        name: "invalid".into(),
                        version: "0".into(),
                    }
                }
            };
            if row.id as usize != q.packages.len() {
                crit!(q.log, "package ids in the state database are not dense"; "id" => row.id);
            }
            q.next_seq = q.next_seq.max(row.seq + 1);
            q.by_atom.insert(row.atom.clone(), q.packages.len() as u32);
            q.counts[row.state.index()] += 1;
            q.packages.push(Package {
                atom,
                atom_str: row.atom,
                seq: row.seq,
                state: row.state,
                attempts: row.attempts,
                infra_failures: row.infra_failures,
                reason: row.reason,
                log_tail: row.log_tail,
                estimate_s: row.estimate_s,
                priority: row.priority,
                epoch: row.epoch,
                drone: row.drone,
                failed_on: row.failed_on,
                path: row.path,
                size: row.size,
                sha256: row.sha256,
                deps: Vec::new(),
                dependents: Vec::new(),
                unbuilt: 0,
                lease: None,
                publishing: false,
                not_before: None,
            });
        }
        let n = q.packages.len() as u32;
        for (pkg, dep) in snap.deps {
            if pkg < n && dep < n {
                q.packages[pkg as usize].deps.push(dep);
                q.packages[dep as usize].dependents.push(pkg);
            }
        }
        for i in 0..q.packages.len() {
            let unbuilt = q.packages[i]
                .deps
                .iter()
                .filter(|d| q.packages[**d as usize].state != PackageState::Built)
                .count() as u32;
            q.packages[i].unbuilt = unbuilt;
        }
        for row in snap.leases {
            if row.pkg >= n {
                continue;
            }
            let active = row.phase != LeasePhase::Ended;
            if active {
                q.packages[row.pkg as usize].lease = Some(row.id);
                q.by_drone
                    .entry(row.drone.clone())
                    .or_default()
                    .insert(row.id);
            }
            q.leases.insert(
                row.id,
                Lease {
                    pkg: row.pkg,
                    epoch: row.epoch,
                    drone: row.drone,
                    phase: row.phase,
                    created: Instant::now(),
                    created_unix: row.created_unix,
                    ended_unix: row.ended_unix,
                    upload_dir: row.upload_dir,
                    stop: false,
                },
            );
        }
        // A leased state without an active lease cannot come from a committed batch, but
        // if it ever does, the package goes back to the queue rather than hang forever.
        for i in 0..q.packages.len() {
            let p = &q.packages[i];
            if p.state.is_leased() && p.lease.is_none() {
                warn!(q.log, "leased package without a lease, requeued"; "atom" => &p.atom_str);
                q.set_state(i as u32, PackageState::Queued);
            }
            if q.packages[i].state == PackageState::Queued {
                q.push_ready(i as u32);
            }
        }
        info!(q.log, "queue restored"; "packages" => q.packages.len(),
              "active_leases" => q.by_drone.values().map(|s| s.len()).sum::<usize>());
        q
    }

    // ------------------------------------------------------------ helpers

    fn set_state(&mut self, id: u32, state: PackageState) {
        let p = &mut self.packages[id as usize];
        if p.state != state {
            self.counts[p.state.index()] -= 1;
            self.counts[state.index()] += 1;
            p.state = state;
        }
        self.dirty_pkgs.insert(id);
    }

    fn push_ready(&mut self, id: u32) {
        let p = &self.packages[id as usize];
        let priority = match self.settings.order {
            ScheduleOrder::CriticalPath => p.priority,
            ScheduleOrder::Fifo => 0,
        };
        self.ready.push(Ready {
            priority,
            seq: Reverse(p.seq),
            id,
        });
    }

    /// Queued if every dependency is built, waiting otherwise, blocked if one failed.
    fn requeue(&mut self, id: u32) {
        let p = &self.packages[id as usize];
        let blocked = p.deps.iter().any(|d| {
            matches!(
                self.packages[*d as usize].state,
                PackageState::Failed | PackageState::Blocked
            )
        });
        if blocked {
            self.set_state(id, PackageState::Blocked);
        } else if p.unbuilt == 0 {
            self.set_state(id, PackageState::Queued);
            self.push_ready(id);
        } else {
            self.set_state(id, PackageState::Waiting);
        }
    }

    fn counts(&self) -> PackageCounts {
        let c = &self.counts;
        PackageCounts {
            total: self.packages.len(),
            waiting: c[PackageState::Waiting.index()],
            queued: c[PackageState::Queued.index()],
            building: c[PackageState::Building.index()],
            uploading: c[PackageState::Uploading.index()],
            built: c[PackageState::Built.index()],
            failed: c[PackageState::Failed.index()],
            blocked: c[PackageState::Blocked.index()],
        }
    }

    /// May `drone` build `id`? Not if its build already failed there while another drone
    /// that has not failed it is around.
    fn eligible(&self, id: u32, drone: &str) -> bool {
        let p = &self.packages[id as usize];
        if !p.failed_on.iter().any(|d| d == drone) {
            return true;
        }
        let horizon = self.settings.heartbeat_ttl * 2;
        !self
            .active_drones
            .iter()
            .any(|(d, t)| t.elapsed() < horizon && !p.failed_on.contains(d))
    }

    fn claim(&mut self, drone: &str, slots: u32) -> Option<WorkAssignment> {
        self.active_drones.insert(drone.to_string(), Instant::now());
        let held = self.by_drone.get(drone).map(|s| s.len()).unwrap_or(0);
        if held >= slots.max(1) as usize {
            return None;
        }
        let mut passed = Vec::new();
        let mut found = None;
        while let Some(r) = self.ready.pop() {
            if self.packages[r.id as usize].state != PackageState::Queued {
                continue; // stale heap entry
            }
            let now = self.settings.clock.now();
            let backing_off = self.packages[r.id as usize]
                .not_before
                .is_some_and(|t| t > now);
            if !backing_off && self.eligible(r.id, drone) {
                found = Some(r.id);
                break;
            }
            passed.push(r);
            if passed.len() >= CLAIM_SCAN {
                break;
            }
        }
        self.ready.extend(passed);
        let id = found?;
        let lease_id = self.next_lease;
        self.next_lease += 1;
        let p = &mut self.packages[id as usize];
        p.epoch += 1;
        p.lease = Some(lease_id);
        p.drone = Some(drone.to_string());
        let epoch = p.epoch;
        let mut assignment = WorkAssignment {
            lease: lease_id,
            epoch,
            atom: p.atom_str.clone(),
            category: p.atom.category.clone(),
            name: p.atom.name.clone(),
            version: p.atom.version.clone(),
            upload_dir: staging::lease_dir_name(lease_id),
        };
        // The drone finds its upload directory already there: an emptied one, its category
        // directory renamed (beside this claim's commit, before the drone hears of the
        // lease) if it was kept for another category.
        if let Some(kept) = self.take_upload_dir(&assignment.category) {
            if kept.category != assignment.category {
                self.category_swaps.push(staging::CategorySwap {
                    dir: self.settings.staging_dir.join(&kept.name),
                    held: kept.category,
                    wanted: assignment.category.clone(),
                });
            }
            assignment.upload_dir = kept.name;
        }
        self.set_state(id, PackageState::Building);
        self.leases.insert(
            lease_id,
            Lease {
                pkg: id,
                epoch,
                drone: drone.to_string(),
                phase: LeasePhase::Building,
                created: Instant::now(),
                created_unix: crate::clock::unix_now(),
                ended_unix: None,
                upload_dir: assignment.upload_dir.clone(),
                stop: false,
            },
        );
        self.dirty_leases.insert(lease_id);
        self.by_drone
            .entry(drone.to_string())
            .or_default()
            .insert(lease_id);
        self.supervisor.do_send(Arm {
            lease: lease_id,
            epoch,
            deadline: Deadline::Build,
            after: self.settings.build_timeout,
        });
        debug!(self.log, "claimed"; "atom" => &assignment.atom, "drone" => drone, "lease" => lease_id, "epoch" => epoch);
        Some(assignment)
    }

    /// Ends an active lease. `stop`: tell its drone to stop working on it. Returns the
    /// drone that held it, when it was active.
    fn end_lease(&mut self, lease_id: LeaseId, stop: bool) -> Option<String> {
        let l = self.leases.get_mut(&lease_id)?;
        if l.phase == LeasePhase::Ended {
            return None;
        }
        l.phase = LeasePhase::Ended;
        l.ended_unix = Some(crate::clock::unix_now());
        l.stop = stop;
        self.metrics.lease_ended(lease_id);
        let (pkg, drone) = (l.pkg, l.drone.clone());
        if let Some(set) = self.by_drone.get_mut(&drone) {
            set.remove(&lease_id);
            if set.is_empty() {
                self.by_drone.remove(&drone);
            }
        }
        let p = &mut self.packages[pkg as usize];
        if p.lease == Some(lease_id) {
            p.lease = None;
        }
        self.dirty_leases.insert(lease_id);
        self.supervisor.do_send(Disarm { lease: lease_id });
        if stop {
            self.registry.do_send(ForDrone {
                drone: drone.clone(),
                command: DroneCommand {
                    action: DroneAction::Cancel,
                    lease: Some(lease_id),
                },
            });
        }
        Some(drone)
    }

    /// Tells the breaker how a drone's attempt ended. Every end of an active lease sends
    /// exactly one outcome, so a half-open breaker always learns how its probe ended.
    fn verdict(&self, drone: String, outcome: Outcome) {
        self.breaker.do_send(RecordOutcome { drone, outcome });
    }

    /// The package's current attempt ended without an artifact. `backoff`: wait before
    /// handing it out again (a failed upload); not for work reclaimed from a lost drone.
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
        let policy_drones = self.settings.build_failure_drones;
        let max_infra = self.settings.max_infra_retries;
        let central_fault = self.central_fault;
        let infra_backoff = self.settings.infra_backoff;
        let now = self.settings.clock.now();
        let p = &mut self.packages[id as usize];
        if !log_tail.is_empty() {
            p.log_tail = Some(tail_str(log_tail, LOG_TAIL_BYTES).to_string());
        }
        let reason = tail_str(reason, REASON_BYTES).to_string();
        let give_up = match kind {
            FailureKind::Cancelled => None,
            FailureKind::Build => {
                p.attempts += 1;
                if !p.failed_on.iter().any(|d| d == drone) {
                    p.failed_on.push(drone.to_string());
                }
                let build_failures = p.attempts - p.infra_failures;
                let distinct = p.failed_on.len() as u32;
                if distinct >= policy_drones || build_failures >= policy_drones.saturating_mul(2) {
                    Some(format!(
                        "build failed on {} ({}): {reason}",
                        p.failed_on.join(", "),
                        if distinct >= policy_drones {
                            "poison package"
                        } else {
                            "too many build failures"
                        }
                    ))
                } else {
                    None
                }
            }
            FailureKind::Infra => {
                p.attempts += 1;
                if !central_fault {
                    p.infra_failures += 1;
                }
                let doublings = p.infra_failures.saturating_sub(1).min(16);
                let wait = infra_backoff
                    .saturating_mul(1 << doublings)
                    .min(MAX_INFRA_BACKOFF);
                p.not_before = backoff.then_some(now + wait);
                if p.infra_failures > max_infra {
                    Some(format!(
                        "gave up after {} infrastructure failures; last: {reason}",
                        p.infra_failures
                    ))
                } else {
                    None
                }
            }
        };
        p.reason = Some(format!("{kind}: {reason}"));
        p.drone = None;
        match give_up {
            Some(why) => self.mark_failed(id, why),
            None => self.requeue(id),
        }
    }

    fn mark_failed(&mut self, id: u32, reason: String) {
        warn!(self.log, "package failed"; "atom" => &self.packages[id as usize].atom_str, "reason" => &reason);
        self.packages[id as usize].reason = Some(reason);
        self.set_state(id, PackageState::Failed);
        // Block everything that depends on it, transitively.
        let mut todo: VecDeque<u32> = self.packages[id as usize]
            .dependents
            .iter()
            .copied()
            .collect();
        while let Some(d) = todo.pop_front() {
            if matches!(
                self.packages[d as usize].state,
                PackageState::Waiting | PackageState::Queued
            ) {
                self.set_state(d, PackageState::Blocked);
                todo.extend(self.packages[d as usize].dependents.iter().copied());
            }
        }
    }

    fn mark_built(&mut self, id: u32, builder: &str, path: String, size: u64, sha256: String) {
        // Build failures elsewhere turn out to be those drones' fault: only now do they
        // count against them (a poison package's failures never do).
        let atom = self.packages[id as usize].atom_str.clone();
        for d in self.packages[id as usize]
            .failed_on
            .iter()
            .filter(|d| *d != builder)
        {
            self.breaker.do_send(RecordOutcome {
                drone: d.clone(),
                outcome: Outcome::Failure {
                    kind: FailureKind::Build,
                    reason: format!("{atom} failed to build here but built on {builder}"),
                },
            });
        }
        let p = &mut self.packages[id as usize];
        p.not_before = None;
        p.path = Some(path);
        p.size = Some(size);
        p.sha256 = Some(sha256.to_ascii_lowercase());
        p.reason = None;
        self.set_state(id, PackageState::Built);
        let dependents = self.packages[id as usize].dependents.clone();
        for &d in &dependents {
            let dp = &mut self.packages[d as usize];
            dp.unbuilt = dp.unbuilt.saturating_sub(1);
            if dp.unbuilt == 0 && dp.state == PackageState::Waiting {
                self.set_state(d, PackageState::Queued);
                self.push_ready(d);
            }
        }
        // A package that had failed can still be built by a late, valid completion: what
        // it blocked is free again.
        self.unblock(dependents);
    }

    /// Re-examines blocked packages among `start` and, transitively, their dependents:
    /// those no longer behind a failed dependency go back to waiting or queued. Returns how
    /// many were unblocked.
    fn unblock(&mut self, start: Vec<u32>) -> usize {
        let mut todo: VecDeque<u32> = start.into();
        let mut unblocked = 0;
        while let Some(d) = todo.pop_front() {
            if self.packages[d as usize].state != PackageState::Blocked {
                continue;
            }
            self.requeue(d);
            if self.packages[d as usize].state != PackageState::Blocked {
                unblocked += 1;
                todo.extend(self.packages[d as usize].dependents.iter().copied());
            }
        }
        unblocked
    }

    /// Checks that `path` names this package's artifact inside its category, in one of
    /// the PKGDIR layouts.
    fn check_artifact_path(atom: &Atom, path: &str) -> Result<(), String> {
        let parts: Vec<&str> = path.split('/').collect();
        let pf = atom.pf();
        let bad = |why: &str| {
            Err(format!("path `{path}` refused: {why} (expected `{}/{pf}.gpkg.tar` or `{}/{}/{pf}-N.gpkg.tar`)", atom.category, atom.category, atom.name))
        };
        if join_inside(std::path::Path::new("/"), path).is_none() {
            return bad("it must be a plain relative path without `..`");
        }
        if parts.first() != Some(&atom.category.as_str()) {
            return bad("it is outside the package's category");
        }
        let ok = match parts.as_slice() {
            [_, file] => [".gpkg.tar", ".tbz2", ".xpak"]
                .iter()
                .any(|ext| *file == format!("{pf}{ext}")),
            [_, dir, file] if *dir == atom.name => [".gpkg.tar", ".xpak"].iter().any(|ext| {
                file.strip_suffix(ext)
                    .and_then(|stem| stem.strip_prefix(&format!("{pf}-")))
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            }),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            bad("it names another package or an unknown layout")
        }
    }

    /// Removes `dir` in the background, batched with the others waiting.
    fn remove_later(&mut self, dir: PathBuf, ctx: &mut Context<Self>) {
        self.cleanup.push(dir);
        self.clean(ctx);
    }

    /// Keeps the emptied upload directory `name` (of a lease that published from it) for a
    /// later lease, or removes it when enough are kept.
    fn keep_upload_dir(&mut self, name: String, category: &str, ctx: &mut Context<Self>) {
        if !self.reuse_upload_dirs {
            self.remove_later(self.settings.staging_dir.join(name), ctx);
            return;
        }
        if let Some(evicted) = self.upload_dirs.put(category, name) {
            self.remove_later(self.settings.staging_dir.join(evicted), ctx);
        }
        self.metrics.upload_dirs_kept(self.upload_dirs.len());
    }

    /// Whether a lease after `lease` was given the upload directory `name`. Scans the
    /// leases: only for the rare path of a completion retried after its package was built.
    fn upload_dir_given_since(&self, name: &str, lease: LeaseId) -> bool {
        self.leases
            .iter()
            .any(|(id, l)| *id > lease && l.upload_dir == name)
    }

    fn take_upload_dir(&mut self, category: &str) -> Option<staging::Kept> {
        let kept = self.upload_dirs.take(category)?;
        self.metrics.upload_dir_reused(self.upload_dirs.len());
        Some(kept)
    }

    fn clean(&mut self, ctx: &mut Context<Self>) {
        if self.cleaning || self.cleanup.is_empty() {
            return;
        }
        self.cleaning = true;
        let dirs = std::mem::take(&mut self.cleanup);
        let work = actix_web::rt::task::spawn_blocking(move || {
            for d in &dirs {
                staging::remove_quietly(d);
            }
        });
        ctx.spawn(work.into_actor(self).map(|_, act, ctx| {
            act.cleaning = false;
            act.clean(ctx);
        }));
    }

    fn lookup_lease(&self, lease: LeaseId) -> Result<&Lease, QueueError> {
        self.leases
            .get(&lease)
            .ok_or_else(|| QueueError::NotFound(format!("unknown lease {lease}")))
    }

    // ------------------------------------------------------------ durability

    /// A receiver that resolves when everything changed so far is committed.
    fn durable(&mut self, ctx: &mut Context<Self>) -> Durable {
        let (tx, rx) = oneshot::channel();
        if self.dirty_pkgs.is_empty()
            && self.dirty_leases.is_empty()
            && self.extra_writes.is_empty()
            && !self.flushing
        {
            let _ = tx.send(Ok(()));
            return rx;
        }
        self.waiters.push(tx);
        self.flush(ctx);
        rx
    }

    fn row(&self, id: u32) -> PackageRow {
        let p = &self.packages[id as usize];
        PackageRow {
            id,
            atom: p.atom_str.clone(),
            seq: p.seq,
            state: p.state,
            attempts: p.attempts,
            infra_failures: p.infra_failures,
            reason: p.reason.clone(),
            log_tail: p.log_tail.clone(),
            estimate_s: p.estimate_s,
            priority: p.priority,
            epoch: p.epoch,
            drone: p.drone.clone(),
            failed_on: p.failed_on.clone(),
            path: p.path.clone(),
            size: p.size,
            sha256: p.sha256.clone(),
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing {
            return;
        }
        if self.dirty_pkgs.is_empty()
            && self.dirty_leases.is_empty()
            && self.extra_writes.is_empty()
            && self.category_swaps.is_empty()
        {
            for w in self.waiters.drain(..) {
                let _ = w.send(Ok(()));
            }
            return;
        }
        let mut pkgs: Vec<u32> = self.dirty_pkgs.drain().collect();
        pkgs.sort_unstable();
        let lease_ids: Vec<LeaseId> = self.dirty_leases.drain().collect();
        // Packages first: dependency rows refer to them.
        let deps_and_prunes: Vec<Write> = std::mem::take(&mut self.extra_writes);
        let mut writes: Vec<Write> = pkgs
            .iter()
            .map(|id| Write::Package(self.row(*id)))
            .collect();
        writes.extend(deps_and_prunes.iter().cloned());
        for id in &lease_ids {
            if let Some(l) = self.leases.get(id) {
                writes.push(Write::Lease(LeaseRow {
                    id: *id,
                    pkg: l.pkg,
                    epoch: l.epoch,
                    drone: l.drone.clone(),
                    phase: l.phase,
                    created_unix: l.created_unix,
                    ended_unix: l.ended_unix,
                    upload_dir: l.upload_dir.clone(),
                }));
            }
        }
        let waiters = std::mem::take(&mut self.waiters);
        self.flushing = true;
        let commit = self.store.send(Commit(writes));
        let swaps = std::mem::take(&mut self.category_swaps);
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
            act.flushing = false;
            if unsupported && act.reuse_upload_dirs {
                warn!(act.log, "the staging filesystem cannot rename without replacing (RENAME_NOREPLACE); upload directories are no longer reused";
                      "staging_dir" => act.settings.staging_dir.display().to_string());
                act.reuse_upload_dirs = false;
                let kept: Vec<String> = act.upload_dirs.names().cloned().collect();
                for name in kept {
                    act.upload_dirs.forget(&name);
                    act.remove_later(act.settings.staging_dir.join(name), ctx);
                }
                act.metrics.upload_dirs_kept(0);
            }
            let res = match res {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("store actor: {e}")),
            };
            if let Err(e) = &res {
                crit!(act.log, "state commit failed, will retry"; "error" => e);
                // Keep the changes dirty so the next batch writes them again.
                act.dirty_pkgs.extend(pkgs);
                act.dirty_leases.extend(lease_ids);
                act.extra_writes.extend(deps_and_prunes);
                for w in waiters {
                    let _ = w.send(res.clone());
                }
                ctx.run_later(Duration::from_secs(1), |act, ctx| act.flush(ctx));
                return;
            }
            for w in waiters {
                let _ = w.send(Ok(()));
            }
            act.flush(ctx);
        }));
    }

    // ------------------------------------------------------------ submission

    fn submit(&mut self, set: PackageSet) -> SubmitResult {
        let mut existing = 0;
        let mut new_ids: Vec<u32> = Vec::new();
        let mut set_ids: HashMap<String, u32> = HashMap::with_capacity(set.packages.len());
        // First pass: create the new packages.
        for spec in &set.packages {
            let atom_str = spec.atom.to_string();
            if let Some(id) = self.by_atom.get(&atom_str) {
                existing += 1;
                set_ids.insert(atom_str, *id);
                continue;
            }
            let id = self.packages.len() as u32;
            let seq = self.next_seq;
            self.next_seq += 1;
            self.packages.push(Package {
                atom: spec.atom.clone(),
                atom_str: atom_str.clone(),
                seq,
                state: PackageState::Waiting,
                attempts: 0,
                infra_failures: 0,
                reason: None,
                log_tail: None,
                estimate_s: spec.estimate_s,
                priority: 0,
                epoch: 0,
                drone: None,
                failed_on: Vec::new(),
                path: None,
                size: None,
                sha256: None,
                deps: Vec::new(),
                dependents: Vec::new(),
                unbuilt: 0,
                lease: None,
                publishing: false,
                not_before: None,
            });
            self.counts[PackageState::Waiting.index()] += 1;
            self.by_atom.insert(atom_str.clone(), id);
            set_ids.insert(atom_str, id);
            new_ids.push(id);
        }
        // Second pass: dependency edges of the new packages.
        let mut dep_rows = Vec::new();
        let new_set: HashSet<u32> = new_ids.iter().copied().collect();
        for spec in &set.packages {
            let Some(&id) = set_ids.get(&spec.atom.to_string()) else {
                continue;
            };
            if !new_set.contains(&id) {
                continue;
            }
            for dep in &spec.deps {
                let Some(&d) = set_ids.get(&dep.to_string()) else {
                    continue;
                };
                if d == id || self.packages[id as usize].deps.contains(&d) {
                    continue;
                }
                self.packages[id as usize].deps.push(d);
                self.packages[d as usize].dependents.push(id);
                dep_rows.push((id, d));
            }
        }
        // Topological order of the new packages (the set was checked to be acyclic).
        let mut indegree: HashMap<u32, usize> = new_ids
            .iter()
            .map(|id| {
                let n = self.packages[*id as usize]
                    .deps
                    .iter()
                    .filter(|d| new_set.contains(d))
                    .count();
                (*id, n)
            })
            .collect();
        let mut order: Vec<u32> = Vec::with_capacity(new_ids.len());
        let mut frontier: VecDeque<u32> = new_ids
            .iter()
            .copied()
            .filter(|id| indegree[id] == 0)
            .collect();
        while let Some(id) = frontier.pop_front() {
            order.push(id);
            for dep in self.packages[id as usize].dependents.clone() {
                if let Some(n) = indegree.get_mut(&dep) {
                    *n -= 1;
                    if *n == 0 {
                        frontier.push_back(dep);
                    }
                }
            }
        }
        // Priorities: longest chain of estimates from the package to the end of the graph.
        for &id in order.iter().rev() {
            self.packages[id as usize].priority = self.chain_priority(id);
        }
        // Packages of earlier sets that the new ones depend on now head longer chains.
        let raised: Vec<u32> = dep_rows
            .iter()
            .filter(|(_, d)| !new_set.contains(d))
            .map(|(_, d)| *d)
            .collect();
        self.raise_priorities(raised);
        // States, dependencies first.
        for &id in &order {
            let unbuilt = self.packages[id as usize]
                .deps
                .iter()
                .filter(|d| self.packages[**d as usize].state != PackageState::Built)
                .count() as u32;
            self.packages[id as usize].unbuilt = unbuilt;
            self.requeue(id);
        }
        if !dep_rows.is_empty() {
            self.extra_writes.push(Write::Deps(dep_rows));
        }
        info!(self.log, "package set added"; "added" => new_ids.len(), "existing" => existing, "format" => format!("{:?}", set.format));
        SubmitResult {
            format: set.format,
            added: new_ids.len(),
            existing,
            skipped: set.skipped,
        }
    }

    /// The package's own estimate plus the longest chain of estimates among its
    /// dependents' priorities: its critical path to the end of the graph.
    fn chain_priority(&self, id: u32) -> u64 {
        let p = &self.packages[id as usize];
        let below = p
            .dependents
            .iter()
            .map(|d| self.packages[*d as usize].priority)
            .max()
            .unwrap_or(0);
        priority_ms(p.estimate_s).saturating_add(below)
    }

    /// Recomputes the priority of `ids` (earlier packages that gained dependents) and of
    /// everything they depend on, as far as it rises. Queued ones are pushed again at
    /// their new priority (the old heap entry is skipped as stale once claimed).
    fn raise_priorities(&mut self, mut ids: Vec<u32>) {
        while let Some(id) = ids.pop() {
            let prio = self.chain_priority(id);
            if prio <= self.packages[id as usize].priority {
                continue;
            }
            self.packages[id as usize].priority = prio;
            self.dirty_pkgs.insert(id);
            if self.packages[id as usize].state == PackageState::Queued {
                self.push_ready(id);
            }
            ids.extend(self.packages[id as usize].deps.iter().copied());
        }
    }

    fn retry(&mut self, req: RetryRequest) -> Result<RetryResult, QueueError> {
        let mut targets = Vec::new();
        for atom in &req.atoms {
            let a = atom.trim().trim_start_matches('=');
            let id = self.by_atom.get(a).copied().ok_or_else(|| {
                QueueError::NotFound(format!("`{a}` is not in this orchestrator's package set"))
            })?;
            targets.push(id);
        }
        if let Some(state) = req.state {
            targets.extend(
                self.packages
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.state == state)
                    .map(|(i, _)| i as u32),
            );
        }
        if req.atoms.is_empty() && req.state.is_none() {
            return Err(QueueError::Invalid(
                "give `atoms` or `state` to retry".into(),
            ));
        }
        let mut retried = 0;
        let mut dependents: Vec<u32> = Vec::new();
        for id in targets {
            if self.packages[id as usize].state != PackageState::Failed {
                continue;
            }
            let p = &mut self.packages[id as usize];
            p.failed_on.clear();
            p.not_before = None;
            p.infra_failures = 0;
            p.attempts = 0;
            p.reason = None;
            self.requeue(id);
            retried += 1;
            dependents.extend(self.packages[id as usize].dependents.iter().copied());
        }
        let unblocked = self.unblock(dependents);
        info!(self.log, "retry"; "retried" => retried, "unblocked" => unblocked);
        Ok(RetryResult { retried, unblocked })
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let now = crate::clock::unix_now();
        let horizon = ENDED_LEASE_MEMORY.as_secs();
        let before = self.leases.len();
        self.leases.retain(|_, l| {
            l.phase != LeasePhase::Ended
                || l.ended_unix.is_none_or(|e| now.saturating_sub(e) < horizon)
        });
        if self.leases.len() != before {
            self.extra_writes.push(Write::PruneLeases {
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
            .values()
            .filter(|l| {
                l.phase != LeasePhase::Ended
                    || l.ended_unix
                        .is_none_or(|e| now.saturating_sub(e) < min_age.as_secs())
            })
            .map(|l| l.upload_dir.clone())
            .chain(self.upload_dirs.names().cloned())
            .collect();
        let staging_dir = self.settings.staging_dir.clone();
        actix_web::rt::task::spawn_blocking(move || staging::sweep(&staging_dir, &keep, min_age));
    }
}

impl Actor for PackageQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Restored leases get fresh deadlines.
        let now = Instant::now();
        for (id, l) in &self.leases {
            let (deadline, after) = match l.phase {
                LeasePhase::Building => (Deadline::Build, self.settings.build_timeout),
                LeasePhase::Uploading => (Deadline::Upload, self.settings.upload_timeout),
                LeasePhase::Ended => continue,
            };
            let _ = now;
            self.supervisor.do_send(Arm {
                lease: *id,
                epoch: l.epoch,
                deadline,
                after,
            });
        }
        ctx.run_interval(SWEEP_EVERY, |act, ctx| act.sweep(ctx));
        ctx.notify(Sweep);
    }
}

impl Handler<FaultChanged> for PackageQueue {
    type Result = ();
    fn handle(&mut self, msg: FaultChanged, _: &mut Self::Context) {
        self.central_fault = msg.central;
        if !msg.central {
            // The fault is over: what waited out a backoff because of it may go now.
            for p in &mut self.packages {
                p.not_before = None;
            }
        }
    }
}

impl Handler<DroneSeen> for PackageQueue {
    type Result = ();
    fn handle(&mut self, msg: DroneSeen, _: &mut Self::Context) {
        self.active_drones.insert(msg.drone, Instant::now());
    }
}

impl Handler<Sweep> for PackageQueue {
    type Result = ();
    fn handle(&mut self, _: Sweep, ctx: &mut Self::Context) {
        self.sweep(ctx);
    }
}

/// Waits for durability, then answers `value`.
fn after_commit<T: 'static>(
    rx: Durable,
    value: Result<T, QueueError>,
) -> ResponseFuture<Result<T, QueueError>> {
    Box::pin(async move {
        let value = value?;
        match rx.await {
            Ok(Ok(())) => Ok(value),
            Ok(Err(e)) => Err(QueueError::Store(e)),
            Err(_) => Err(QueueError::Store("the queue stopped".into())),
        }
    })
}

impl Handler<Submit> for PackageQueue {
    type Result = ResponseFuture<Result<SubmitResult, QueueError>>;
    fn handle(&mut self, msg: Submit, ctx: &mut Self::Context) -> Self::Result {
        let res = self.submit(msg.0);
        let rx = self.durable(ctx);
        after_commit(rx, Ok(res))
    }
}

impl Handler<ClaimPackage> for PackageQueue {
    type Result = ResponseFuture<Result<Option<WorkAssignment>, QueueError>>;
    fn handle(&mut self, msg: ClaimPackage, ctx: &mut Self::Context) -> Self::Result {
        let res = self.claim(&msg.drone, msg.slots);
        let rx = self.durable(ctx);
        after_commit(rx, Ok(res))
    }
}

impl Handler<MarkUploading> for PackageQueue {
    type Result = ResponseFuture<Result<Ack, QueueError>>;
    fn handle(&mut self, msg: MarkUploading, ctx: &mut Self::Context) -> Self::Result {
        let res = (|| {
            let l = self.lookup_lease(msg.lease)?;
            if l.epoch != msg.epoch {
                return Err(QueueError::Invalid(format!(
                    "lease {} has epoch {}, not {}",
                    msg.lease, l.epoch, msg.epoch
                )));
            }
            if l.phase == LeasePhase::Ended {
                return Ok(Ack {
                    ok: true,
                    stale: true,
                });
            }
            let pkg = l.pkg;
            if let Some(l) = self.leases.get_mut(&msg.lease) {
                l.phase = LeasePhase::Uploading;
            }
            self.dirty_leases.insert(msg.lease);
            self.set_state(pkg, PackageState::Uploading);
            self.metrics.upload_started(msg.lease);
            self.supervisor.do_send(Arm {
                lease: msg.lease,
                epoch: msg.epoch,
                deadline: Deadline::Upload,
                after: self.settings.upload_timeout,
            });
            Ok(Ack {
                ok: true,
                stale: false,
            })
        })();
        let rx = self.durable(ctx);
        after_commit(rx, res)
    }
}

impl Handler<Fail> for PackageQueue {
    type Result = ResponseFuture<Result<Ack, QueueError>>;
    fn handle(&mut self, msg: Fail, ctx: &mut Self::Context) -> Self::Result {
        let res = (|| {
            let l = self.lookup_lease(msg.lease)?;
            if l.epoch != msg.req.epoch {
                return Err(QueueError::Invalid(format!(
                    "lease {} has epoch {}, not {}",
                    msg.lease, l.epoch, msg.req.epoch
                )));
            }
            let (pkg, drone, ended) = (l.pkg, l.drone.clone(), l.phase == LeasePhase::Ended);
            if ended {
                return Ok(Ack {
                    ok: true,
                    stale: true,
                });
            }
            self.end_lease(msg.lease, false);
            info!(self.log, "attempt failed"; "atom" => &self.packages[pkg as usize].atom_str,
                  "drone" => &drone, "kind" => msg.req.kind.as_str(), "reason" => &msg.req.reason);
            self.attempt_failed(
                pkg,
                msg.req.kind,
                &drone,
                &msg.req.reason,
                &msg.req.log_tail,
                true,
            );
            // A build failure is held back until it is known whose fault it was: for now
            // the breaker only learns that the attempt is over.
            let outcome = match msg.req.kind {
                FailureKind::Build => Outcome::Neutral,
                kind => Outcome::Failure {
                    kind,
                    reason: msg.req.reason.clone(),
                },
            };
            self.verdict(drone, outcome);
            Ok(Ack {
                ok: true,
                stale: false,
            })
        })();
        let rx = self.durable(ctx);
        after_commit(rx, res)
    }
}

impl Handler<Complete> for PackageQueue {
    type Result = ResponseFuture<Result<CompleteResponse, QueueError>>;
    fn handle(&mut self, msg: Complete, ctx: &mut Self::Context) -> Self::Result {
        let lease_id = msg.lease;
        let pre = (|| {
            let l = self.lookup_lease(lease_id)?;
            if l.epoch != msg.req.epoch {
                return Err(QueueError::Invalid(format!(
                    "lease {lease_id} has epoch {}, not {}",
                    l.epoch, msg.req.epoch
                )));
            }
            let (pkg, upload_dir) = (l.pkg, l.upload_dir.clone());
            let p = &self.packages[pkg as usize];
            if p.state == PackageState::Built {
                return Ok(Err(upload_dir));
            }
            Self::check_artifact_path(&p.atom, &msg.req.path).map_err(QueueError::Invalid)?;
            if msg.req.sha256.len() != 64 || !msg.req.sha256.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(QueueError::Invalid(
                    "sha256 must be 64 hexadecimal digits".into(),
                ));
            }
            if p.publishing {
                return Err(QueueError::Busy(format!(
                    "another upload of `{}` is being verified; try again shortly",
                    p.atom_str
                )));
            }
            Ok(Ok((pkg, upload_dir)))
        })();
        let (pkg, upload_dir) = match pre {
            Err(e) => return Box::pin(async move { Err(e) }),
            Ok(Err(name)) => {
                // Already built: nothing changes; this lease (if still active) is over.
                if let Some(drone) = self.end_lease(lease_id, false) {
                    self.verdict(drone, Outcome::Neutral);
                }
                // A retry after a lost answer may have uploaded again into a directory
                // that was kept for reuse: it is no longer clean. If a later lease was
                // given it by now (active or not), that lease owns it: its own check
                // after a publish finds the stray, or the sweep removes it.
                if self.upload_dirs.forget(&name) {
                    self.metrics.upload_dirs_kept(self.upload_dirs.len());
                }
                if !self.upload_dir_given_since(&name, lease_id) {
                    self.remove_later(self.settings.staging_dir.join(name), ctx);
                }
                let rx = self.durable(ctx);
                return after_commit(
                    rx,
                    Ok(CompleteResponse {
                        accepted: false,
                        stale: true,
                    }),
                );
            }
            Ok(Ok(found)) => found,
        };
        self.packages[pkg as usize].publishing = true;
        let lease_dir = self.settings.staging_dir.join(&upload_dir);
        let job = match (
            join_inside(&lease_dir, &msg.req.path),
            join_inside(&self.settings.binhost_dir, &msg.req.path),
        ) {
            (Some(staged), Some(dest)) => PublishJob {
                staged,
                dest,
                size: msg.req.size,
                sha256: msg.req.sha256.clone(),
                lease_dir,
            },
            _ => {
                self.packages[pkg as usize].publishing = false;
                let e = QueueError::Invalid(format!("path `{}` refused", msg.req.path));
                return Box::pin(async move { Err(e) });
            }
        };
        let (reply, answer) = oneshot::channel();
        self.to_verify.push(ToVerify {
            category: self.packages[pkg as usize].atom.category.clone(),
            job,
            meta: VerifyMeta {
                pkg,
                lease_id,
                upload_dir,
                req: msg.req,
                reply,
            },
        });
        self.start_verifying(ctx);
        Box::pin(async move {
            answer
                .await
                .unwrap_or_else(|_| Err(QueueError::Store("the queue stopped".into())))
        })
    }
}

/// At most this many blocking threads verify uploads at once. Each takes everything
/// queued when it starts and reports each upload as soon as it is done, so under load
/// one thread hop serves a whole batch (spawning a blocking task per completion showed in
/// profiles), and one big package being hashed holds up only what its lane took with it.
const VERIFY_LANES: usize = 4;

/// A completion waiting for a verification lane.
struct ToVerify {
    job: PublishJob,
    /// The package's category: its upload directory is reused if only that is left.
    category: String,
    meta: VerifyMeta,
}

/// What the queue needs back with a verification's outcome; kept by the queue (in
/// `verifying`) while a lane works, so nothing is lost if the lane's thread fails.
struct VerifyMeta {
    pkg: u32,
    lease_id: LeaseId,
    upload_dir: String,
    req: CompleteRequest,
    reply: oneshot::Sender<Result<CompleteResponse, QueueError>>,
}

/// One upload verified (sent by its lane's thread).
#[derive(Message)]
#[rtype(result = "()")]
struct Verified {
    job: u64,
    outcome: Verification,
}

/// A lane is done; any of its jobs not reported failed with it.
#[derive(Message)]
#[rtype(result = "()")]
struct LaneDone {
    jobs: Vec<u64>,
    failure: Option<String>,
}

struct Verification {
    published: Result<Published, PublishError>,
    /// The upload directory now holds only its empty category directory.
    reusable: bool,
}

impl PackageQueue {
    fn start_verifying(&mut self, ctx: &mut Context<Self>) {
        if self.verify_lanes >= VERIFY_LANES || self.to_verify.is_empty() {
            return;
        }
        self.verify_lanes += 1;
        let mut work = Vec::with_capacity(self.to_verify.len());
        for t in std::mem::take(&mut self.to_verify) {
            let id = self.next_verify_job;
            self.next_verify_job += 1;
            self.verifying.insert(id, t.meta);
            work.push((id, t.job, t.category));
        }
        let jobs: Vec<u64> = work.iter().map(|(id, _, _)| *id).collect();
        let me = ctx.address();
        let lane_me = me.clone();
        let lane = actix_web::rt::task::spawn_blocking(move || {
            for (id, job, category) in work {
                let run = std::panic::AssertUnwindSafe(|| {
                    // The check after the publish reads the directories it opened.
                    match publish::verify_and_publish(&job) {
                        Ok(p) => Verification {
                            reusable: p
                                .dirs
                                .is_some_and(|d| staging::emptied_after_publish(&d, &category)),
                            published: Ok(p.how),
                        },
                        Err(e) => Verification {
                            published: Err(e),
                            reusable: false,
                        },
                    }
                });
                let outcome = std::panic::catch_unwind(run).unwrap_or_else(|_| Verification {
                    published: Err(PublishError::Io {
                        path: job.staged.clone(),
                        source: std::io::Error::other("the verification panicked"),
                    }),
                    reusable: false,
                });
                lane_me.do_send(Verified { job: id, outcome });
            }
        });
        // The lane's end comes back as a message (an actor future per lane would sit in
        // this actor's context, which actix polls whole on every message).
        actix_web::rt::spawn(async move {
            let failure = lane.await.err().map(|e| e.to_string());
            me.do_send(LaneDone { jobs, failure });
        });
    }
}

impl Handler<Verified> for PackageQueue {
    type Result = ();
    fn handle(&mut self, msg: Verified, ctx: &mut Self::Context) {
        if let Some(meta) = self.verifying.remove(&msg.job) {
            self.verified(meta, msg.outcome, ctx);
        }
    }
}

impl Handler<LaneDone> for PackageQueue {
    type Result = ();
    fn handle(&mut self, msg: LaneDone, ctx: &mut Self::Context) {
        self.verify_lanes -= 1;
        for job in msg.jobs {
            // The lane queued each `Verified` before it ended, so they were handled
            // before this: anything still here was never reported.
            let Some(meta) = self.verifying.remove(&job) else {
                continue;
            };
            let why = msg.failure.clone().unwrap_or_else(|| "not reported".into());
            let outcome = Verification {
                published: Err(PublishError::Io {
                    path: PathBuf::from(&meta.req.path),
                    source: std::io::Error::other(format!("verification lane failed: {why}")),
                }),
                reusable: false,
            };
            self.verified(meta, outcome, ctx);
        }
        self.start_verifying(ctx);
    }
}

impl PackageQueue {
    /// A completion's verification is done: record what it means and answer the drone.
    fn verified(&mut self, meta: VerifyMeta, v: Verification, ctx: &mut Context<Self>) {
        let VerifyMeta {
            pkg,
            lease_id,
            upload_dir,
            req,
            reply,
        } = meta;
        let act = self;
        act.packages[pkg as usize].publishing = false;
        let lease_dir = act.settings.staging_dir.join(&upload_dir);
        let dest_dir = join_inside(&act.settings.binhost_dir, &req.path)
            .and_then(|d| d.parent().map(PathBuf::from));
        let res = v.published;
        // Published (now or before): the upload directory is reused if nothing else is
        // left in it, else removed. After a failed verification it is left for the sweep.
        if v.reusable {
            let category = act.packages[pkg as usize].atom.category.clone();
            act.keep_upload_dir(upload_dir, &category, ctx);
        } else if res.is_ok() {
            act.remove_later(lease_dir.clone(), ctx);
        }
        let drone = act
            .leases
            .get(&lease_id)
            .map(|l| l.drone.clone())
            .unwrap_or_default();
        let answer = match res {
            Ok(how) if act.packages[pkg as usize].state != PackageState::Built => {
                // The rename is made durable with this batch, before the
                // state that says the package is built.
                if let Some(dir) = dest_dir.clone() {
                    act.extra_writes.push(Write::SyncDir(dir));
                }
                act.metrics.completed(lease_id, req.size);
                // The completing lease is over; any other one on the package
                // is cancelled: this artifact is the one.
                act.end_lease(lease_id, false);
                if let Some(other) = act.packages[pkg as usize].lease {
                    if let Some(d) = act.end_lease(other, true) {
                        act.verdict(d, Outcome::Neutral);
                    }
                }
                act.mark_built(pkg, &drone, req.path.clone(), req.size, req.sha256.clone());
                act.packages[pkg as usize].drone = Some(drone.clone());
                info!(act.log, "published"; "atom" => &act.packages[pkg as usize].atom_str,
                                  "drone" => &drone, "path" => &req.path, "size" => req.size,
                                  "how" => if how == Published::Now { "now" } else { "already there" });
                act.breaker.do_send(RecordOutcome {
                    drone,
                    outcome: Outcome::Success,
                });
                act.hook.do_send(HookPublished);
                Ok(CompleteResponse {
                    accepted: true,
                    stale: false,
                })
            }
            Ok(_) => Ok(CompleteResponse {
                accepted: false,
                stale: true,
            }),
            Err(e) => {
                let reason = e.to_string();
                warn!(act.log, "upload did not verify"; "atom" => &act.packages[pkg as usize].atom_str,
                                  "drone" => &drone, "error" => &reason);
                let current = act.packages[pkg as usize].lease == Some(lease_id);
                let active = act
                    .leases
                    .get(&lease_id)
                    .is_some_and(|l| l.phase != LeasePhase::Ended);
                if active {
                    act.end_lease(lease_id, false);
                }
                if current {
                    act.attempt_failed(pkg, FailureKind::Infra, &drone, &reason, "", true);
                }
                act.breaker.do_send(RecordOutcome {
                    drone,
                    outcome: Outcome::Failure {
                        kind: FailureKind::Infra,
                        reason: reason.clone(),
                    },
                });
                Err(QueueError::Invalid(format!(
                    "{reason}; the package goes back to the queue"
                )))
            }
        };
        let rx = act.durable(ctx);
        actix_web::rt::spawn(async move {
            let _ = reply.send(after_commit(rx, answer).await);
        });
    }
}

impl Handler<LeaseTimedOut> for PackageQueue {
    type Result = ();
    fn handle(&mut self, msg: LeaseTimedOut, ctx: &mut Self::Context) {
        let Some(l) = self.leases.get(&msg.lease) else {
            return;
        };
        // A build deadline that fired just before the drone said `uploading` is late.
        let current = matches!(
            (msg.deadline, l.phase),
            (Deadline::Build, LeasePhase::Building) | (Deadline::Upload, LeasePhase::Uploading)
        );
        if !current || l.epoch != msg.epoch {
            return;
        }
        let (pkg, drone) = (l.pkg, l.drone.clone());
        let reason = match msg.deadline {
            Deadline::Build => format!(
                "no upload started within build_timeout_s ({} s)",
                msg.after.as_secs()
            ),
            Deadline::Upload => format!(
                "upload not completed within upload_timeout_s ({} s)",
                msg.after.as_secs()
            ),
        };
        warn!(self.log, "lease timed out, work reclaimed"; "atom" => &self.packages[pkg as usize].atom_str,
              "drone" => &drone, "lease" => msg.lease, "reason" => &reason);
        self.metrics.reclaimed(msg.deadline.into(), 1);
        self.end_lease(msg.lease, true);
        self.attempt_failed(pkg, FailureKind::Infra, &drone, &reason, "", false);
        self.breaker.do_send(RecordOutcome {
            drone,
            outcome: Outcome::Failure {
                kind: FailureKind::Infra,
                reason,
            },
        });
        self.flush(ctx);
    }
}

impl Handler<ReclaimDrone> for PackageQueue {
    type Result = ();
    fn handle(&mut self, msg: ReclaimDrone, ctx: &mut Self::Context) {
        let leases: Vec<LeaseId> = self
            .by_drone
            .get(&msg.drone)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        if leases.is_empty() {
            return;
        }
        self.active_drones.remove(&msg.drone);
        self.metrics
            .reclaimed(ReclaimReason::DroneLost, leases.len());
        warn!(self.log, "reclaiming a drone's work"; "drone" => &msg.drone, "leases" => leases.len(), "reason" => &msg.reason);
        for id in leases {
            let Some(pkg) = self.leases.get(&id).map(|l| l.pkg) else {
                continue;
            };
            self.end_lease(id, false);
            self.attempt_failed(pkg, FailureKind::Infra, &msg.drone, &msg.reason, "", false);
        }
        self.breaker.do_send(RecordOutcome {
            drone: msg.drone,
            outcome: Outcome::Failure {
                kind: FailureKind::Infra,
                reason: msg.reason,
            },
        });
        self.flush(ctx);
    }
}

impl Handler<CheckLeases> for PackageQueue {
    type Result = MessageResult<CheckLeases>;
    fn handle(&mut self, msg: CheckLeases, ctx: &mut Self::Context) -> Self::Result {
        let listed: HashSet<LeaseId> = msg.listed.iter().copied().collect();
        // Held here but no longer worked on by the drone.
        let grace = self.settings.heartbeat_ttl;
        let dropped: Vec<LeaseId> = self
            .by_drone
            .get(&msg.drone)
            .map(|s| {
                s.iter()
                    .copied()
                    .filter(|id| !listed.contains(id))
                    .filter(|id| {
                        self.leases
                            .get(id)
                            .is_some_and(|l| l.created.elapsed() > grace)
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.metrics
            .reclaimed(ReclaimReason::Dropped, dropped.len());
        for id in dropped {
            let Some(pkg) = self.leases.get(&id).map(|l| l.pkg) else {
                continue;
            };
            let reason = "the drone no longer reports working on it".to_string();
            warn!(self.log, "lease dropped by its drone, reclaimed"; "drone" => &msg.drone, "lease" => id);
            self.end_lease(id, false);
            self.attempt_failed(pkg, FailureKind::Infra, &msg.drone, &reason, "", false);
            self.verdict(
                msg.drone.clone(),
                Outcome::Failure {
                    kind: FailureKind::Infra,
                    reason,
                },
            );
        }
        // Worked on by the drone but no longer wanted.
        let mut stop = Vec::new();
        for id in msg.listed {
            match self.leases.get(&id) {
                None => stop.push(id),
                Some(l) if l.drone != msg.drone => stop.push(id),
                Some(l) if l.phase == LeasePhase::Ended => {
                    let st = self.packages[l.pkg as usize].state;
                    // A reclaimed lease whose package is still wanted may finish: valid
                    // work is never thrown away.
                    if l.stop
                        || matches!(
                            st,
                            PackageState::Built | PackageState::Failed | PackageState::Blocked
                        )
                    {
                        stop.push(id);
                    }
                }
                Some(_) => {}
            }
        }
        self.flush(ctx);
        MessageResult(stop)
    }
}

impl Handler<Retry> for PackageQueue {
    type Result = ResponseFuture<Result<RetryResult, QueueError>>;
    fn handle(&mut self, msg: Retry, ctx: &mut Self::Context) -> Self::Result {
        let res = self.retry(msg.0);
        let rx = self.durable(ctx);
        after_commit(rx, res)
    }
}

impl Handler<GetCounts> for PackageQueue {
    type Result = MessageResult<GetCounts>;
    fn handle(&mut self, _: GetCounts, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.counts())
    }
}

impl Handler<ListPackages> for PackageQueue {
    type Result = MessageResult<ListPackages>;
    fn handle(&mut self, msg: ListPackages, _: &mut Self::Context) -> Self::Result {
        let needle = msg.search.as_deref().map(str::to_ascii_lowercase);
        let matching = self.packages.iter().filter(|p| {
            msg.state.is_none_or(|s| p.state == s)
                && needle
                    .as_deref()
                    .is_none_or(|n| p.atom_str.to_ascii_lowercase().contains(n))
        });
        let mut total = 0;
        let mut packages = Vec::new();
        let limit = msg.limit.unwrap_or(usize::MAX);
        for p in matching {
            if total >= msg.offset && packages.len() < limit {
                packages.push(PackageInfo {
                    atom: p.atom_str.clone(),
                    state: p.state,
                    drone: p.drone.clone(),
                    attempts: p.attempts,
                    reason: p.reason.clone(),
                });
            }
            total += 1;
        }
        MessageResult(PackageList { packages, total })
    }
}

impl Handler<GetLog> for PackageQueue {
    type Result = Result<PackageLog, QueueError>;
    fn handle(&mut self, msg: GetLog, _: &mut Self::Context) -> Self::Result {
        let id = self
            .by_atom
            .get(msg.atom.trim_start_matches('='))
            .ok_or_else(|| {
                QueueError::NotFound(format!(
                    "`{}` is not in this orchestrator's package set",
                    msg.atom
                ))
            })?;
        let p = &self.packages[*id as usize];
        Ok(PackageLog {
            atom: p.atom_str.clone(),
            state: p.state,
            reason: p.reason.clone(),
            log_tail: p.log_tail.clone().unwrap_or_default(),
        })
    }
}

impl Handler<CurrentByDrone> for PackageQueue {
    type Result = MessageResult<CurrentByDrone>;
    fn handle(&mut self, _: CurrentByDrone, _: &mut Self::Context) -> Self::Result {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for (drone, leases) in &self.by_drone {
            let mut ids: Vec<&LeaseId> = leases.iter().collect();
            ids.sort();
            out.insert(
                drone.clone(),
                ids.into_iter()
                    .filter_map(|id| self.leases.get(id))
                    .map(|l| self.packages[l.pkg as usize].atom_str.clone())
                    .collect(),
            );
        }
        MessageResult(out)
    }
}

impl Handler<DroneQueueView> for PackageQueue {
    type Result = MessageResult<DroneQueueView>;
    fn handle(&mut self, msg: DroneQueueView, _: &mut Self::Context) -> Self::Result {
        let mut current: Vec<LeaseView> = self
            .by_drone
            .get(&msg.drone)
            .map(|s| {
                s.iter()
                    .filter_map(|id| self.leases.get(id).map(|l| (id, l)))
                    .map(|(id, l)| {
                        let p = &self.packages[l.pkg as usize];
                        LeaseView {
                            lease: *id,
                            epoch: l.epoch,
                            atom: p.atom_str.clone(),
                            state: p.state,
                            age_s: l.created.elapsed().as_secs(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        current.sort_by_key(|v| v.lease);
        // The best few ready packages, in the order they would be handed out.
        let mut heap: Vec<&Ready> = self
            .ready
            .iter()
            .filter(|r| self.packages[r.id as usize].state == PackageState::Queued)
            .collect();
        heap.sort_by(|a, b| b.cmp(a));
        heap.dedup_by_key(|r| r.id);
        let next = heap
            .into_iter()
            .filter(|r| self.eligible(r.id, &msg.drone))
            .take(10)
            .map(|r| self.packages[r.id as usize].atom_str.clone())
            .collect();
        MessageResult(DroneQueue {
            drone: msg.drone,
            current,
            next,
        })
    }
}

impl Handler<DronesWithLeases> for PackageQueue {
    type Result = MessageResult<DronesWithLeases>;
    fn handle(&mut self, _: DronesWithLeases, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.by_drone.keys().cloned().collect())
    }
}

impl PackageQueue {
    /// Counts this queue's events into `metrics` (see [`crate::metrics`]).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = QueueMetrics::new(metrics);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atom(s: &str) -> Atom {
        Atom::parse(s).unwrap()
    }

    #[test]
    fn artifact_paths_must_name_the_package() {
        let a = atom("app-misc/foo-1.0-r1");
        for ok in [
            "app-misc/foo-1.0-r1.gpkg.tar",
            "app-misc/foo-1.0-r1.tbz2",
            "app-misc/foo-1.0-r1.xpak",
            "app-misc/foo/foo-1.0-r1-3.gpkg.tar",
        ] {
            assert!(PackageQueue::check_artifact_path(&a, ok).is_ok(), "{ok}");
        }
        for bad in [
            "../app-misc/foo-1.0-r1.gpkg.tar",
            "app-misc/../../etc/passwd",
            "/app-misc/foo-1.0-r1.gpkg.tar",
            "sys-apps/foo-1.0-r1.gpkg.tar",
            "app-misc/bar-1.0.gpkg.tar",
            "app-misc/foo-1.0-r1.gpkg.tar.exe",
            "app-misc/foo/foo-1.0-r1-x.gpkg.tar",
            "app-misc/foo/foo-1.0-r1-.gpkg.tar",
            "app-misc",
        ] {
            assert!(PackageQueue::check_artifact_path(&a, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ready_order_is_priority_then_set_order() {
        let mut h = BinaryHeap::new();
        h.push(Ready {
            priority: 5,
            seq: Reverse(2),
            id: 2,
        });
        h.push(Ready {
            priority: 9,
            seq: Reverse(3),
            id: 3,
        });
        h.push(Ready {
            priority: 5,
            seq: Reverse(1),
            id: 1,
        });
        let order: Vec<u32> = std::iter::from_fn(|| h.pop().map(|r| r.id)).collect();
        assert_eq!(order, vec![3, 1, 2]);
    }
}
