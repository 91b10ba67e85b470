//! Wire types of the HTTP API (docs/contract.md §5), shared by the orchestrator, the drone, the CLI
//! and the tests. Field names here are the contract; add fields, never rename them.

use crate::domain::environment::{DroneEnvironment, Resources};
use crate::domain::{DroneState, FailureKind, PackageState};
use serde::{Deserialize, Serialize};

/// A lease id, unique per claim for the lifetime of the orchestrator's state.
pub type LeaseId = u64;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Health {
    pub ok: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DroneCounts {
    pub total: usize,
    pub active: usize,
    pub grounded: usize,
    pub offline: usize,
    #[serde(default)]
    pub paused: usize,
    /// Online, but its build environment does not fit (added).
    #[serde(default)]
    pub mismatched: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PackageCounts {
    pub total: usize,
    pub waiting: usize,
    pub queued: usize,
    pub building: usize,
    pub uploading: usize,
    pub built: usize,
    pub failed: usize,
    pub blocked: usize,
    /// Built packages the binhost index does not list yet (their dependents wait).
    #[serde(default)]
    pub unindexed: usize,
}

impl PackageCounts {
    pub fn get(&self, state: PackageState) -> usize {
        match state {
            PackageState::Waiting => self.waiting,
            PackageState::Queued => self.queued,
            PackageState::Building => self.building,
            PackageState::Uploading => self.uploading,
            PackageState::Built => self.built,
            PackageState::Failed => self.failed,
            PackageState::Blocked => self.blocked,
        }
    }

    /// Share of the set that has reached an end state (built, failed or blocked).
    pub fn progress_pct(&self) -> f64 {
        if self.total == 0 {
            return 100.0;
        }
        let done = self.built + self.failed + self.blocked;
        ((done as f64) * 1000.0 / (self.total as f64)).round() / 10.0
    }

    /// Nothing left to do: every package is built, failed or blocked.
    pub fn is_done(&self) -> bool {
        self.built + self.failed + self.blocked == self.total
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub name: String,
    #[serde(flatten)]
    pub counts: PackageCounts,
    pub progress_pct: f64,
    pub drones: DroneCounts,
    /// Set while failures are treated as a fault of the swarm, not of its drones.
    #[serde(default)]
    pub central_fault: Option<CentralFault>,
    /// Seconds until the set is done, estimated from declared and learned build times
    /// and the slots of the drones that may build (added; `null`: nothing left or no
    /// drone to build it).
    #[serde(default)]
    pub eta_s: Option<u64>,
}

/// Failures across the fleet that are not any one drone's fault (upload target down,
/// orchestrator disk full, …).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CentralFault {
    /// Unix seconds.
    pub since: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PackageInfo {
    pub atom: String,
    pub state: PackageState,
    pub drone: Option<String>,
    pub attempts: u32,
    pub reason: Option<String>,
    /// Operator priority (added): the highest of its sets' (`submit --priority`), raised
    /// by `bump`; 0 by default.
    #[serde(default)]
    pub priority: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PackageList {
    pub packages: Vec<PackageInfo>,
    /// How many packages matched before `limit`/`offset` were applied.
    #[serde(default)]
    pub total: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PackageLog {
    pub atom: String,
    pub state: PackageState,
    pub reason: Option<String>,
    pub log_tail: String,
}

/// `POST /api/v1/work/{lease}/output` (drone, added): the next lines of a running
/// build's output, numbered from 0 for the lease; lines already accepted are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OutputChunk {
    pub epoch: u64,
    /// The number of `lines[0]`.
    pub first: u64,
    pub lines: Vec<String>,
}

/// The answer: every line before `next` is taken.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct OutputAck {
    pub next: u64,
}

/// `GET /api/v1/packages/{category}/{pf}/log/live?after=N&wait=S` (added): a package's
/// build output as it builds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LiveLog {
    pub atom: String,
    /// The package's state now, and its reason (as in `PackageInfo`).
    pub state: PackageState,
    #[serde(default)]
    pub reason: Option<String>,
    /// The attempt shown (null: none has started).
    #[serde(default)]
    pub lease: Option<LeaseId>,
    #[serde(default)]
    pub drone: Option<String>,
    /// `none` (no attempt yet), `building`, `uploading`, `ended` (the attempt is over).
    pub phase: String,
    /// The number of `lines[0]`.
    pub first: u64,
    pub lines: Vec<String>,
    /// Ask for `after=next` to get what follows.
    pub next: u64,
    /// Lines between `after` and `first` are no longer kept (the reader fell behind the
    /// ring), or some output was skipped on the drone.
    #[serde(default)]
    pub gap: bool,
}

/// `GET /api/v1/timeline` (added): where the time went in a window.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Timeline {
    /// The window (unix seconds) and the orchestrator's now.
    pub from: u64,
    pub to: u64,
    pub now: u64,
    /// One row per drone slot that had work in the window.
    pub rows: Vec<TimelineRow>,
    /// More attempts overlapped the window than `limit`: only the latest are shown.
    pub truncated: bool,
    /// Attempts that ended in each of `buckets` equal parts of the window.
    pub throughput: Vec<ThroughputBucket>,
    /// Progress samples (every 30 s) in the window, and one for now.
    pub progress: Vec<ProgressSample>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TimelineRow {
    pub drone: String,
    /// 0-based: attempts that overlap in time go to different slots.
    pub slot: u32,
    pub bars: Vec<TimelineBar>,
}

/// One attempt (a lease).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TimelineBar {
    pub atom: String,
    pub start: u64,
    /// When it started uploading, if it did (known for attempts since the start).
    #[serde(default)]
    pub uploading: Option<u64>,
    /// When it ended (null: running).
    #[serde(default)]
    pub end: Option<u64>,
    /// `building`, `uploading`, `built`, `failed`, `infra`, `cancelled`, or `ended`
    /// (ended before the orchestrator last started: how is not kept).
    pub outcome: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct ThroughputBucket {
    pub start: u64,
    pub built: u32,
    pub failed: u32,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct ProgressSample {
    pub t: u64,
    /// Packages in an end state (built, failed, blocked), of `total`.
    pub done: usize,
    pub total: usize,
    #[serde(default)]
    pub eta_s: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SubmitResult {
    pub format: crate::domain::package_set::SetFormat,
    /// New packages stored.
    pub added: usize,
    /// Atoms already known to this orchestrator; left as they are.
    pub existing: usize,
    /// Portage lines that need no build (`[binary]`, `[blocks]`, …).
    pub skipped: usize,
    /// Dependency edges the set brought in (plain `emerge --pretend` output has none).
    #[serde(default)]
    pub dependencies: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RetryRequest {
    #[serde(default)]
    pub atoms: Vec<String>,
    #[serde(default)]
    pub state: Option<PackageState>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RetryResult {
    /// Packages put back in the queue (or waiting for their dependencies).
    pub retried: usize,
    /// Dependents that were blocked and no longer are.
    pub unblocked: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DroneInfo {
    pub name: String,
    pub aliases: Vec<String>,
    pub host: String,
    pub state: DroneState,
    pub slots: u32,
    pub current: Vec<String>,
    pub failures: u32,
    /// Unix seconds until which the drone is grounded, if it is.
    pub grounded_until: Option<u64>,
    /// Unix seconds of the last heartbeat (or registration).
    pub last_seen: Option<u64>,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub grounded_reason: Option<String>,
    /// The breaker is half-open: the drone is on (or waiting for) its probe lease.
    #[serde(default)]
    pub probing: bool,
    /// The drone's `restart_command` (empty: it did not say; the CLI uses its default).
    #[serde(default)]
    pub restart_command: Vec<String>,
    /// The drone has its own credential (`build-swarm drone enroll`).
    #[serde(default)]
    pub enrolled: bool,
    /// The host the operator enrolled it for; the CLI's ssh prefers it over `host`.
    #[serde(default)]
    pub enrolled_host: Option<String>,
    /// The host it announced before its last register from another one.
    #[serde(default)]
    pub previous_host: Option<String>,
    /// The credential its session registered with: `own`, `shared` or `admin` (`null`:
    /// not registered since the orchestrator started).
    #[serde(default)]
    pub credential: Option<String>,
    /// Its `version` is older than the orchestrator's (added).
    #[serde(default)]
    pub outdated: bool,
    /// State `mismatched`: how its build environment differs (added).
    #[serde(default)]
    pub mismatch: Option<String>,
    /// Operator-declared capabilities it reported (added).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// What it reported having (added; `null`: it reported nothing).
    #[serde(default)]
    pub resources: Option<Resources>,
    /// Its build times ÷ the swarm's for the same packages, learned (added; 1.0 until
    /// known; below 1 is faster).
    #[serde(default = "one_f64")]
    pub speed_factor: f64,
    /// The self-healing ladder's state for this offline drone (added; `null`: healing
    /// is off or the drone is not being healed).
    #[serde(default)]
    pub healing: Option<HealingView>,
}

/// Where an offline drone is on the self-healing ladder (`[heal]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HealingView {
    /// `waiting` (for `heal_after_s` or the next restart), `restarting` (over ssh now),
    /// `needs_human` (every restart tried; a notification went out).
    pub step: String,
    /// Restarts tried so far, and how many may be tried.
    pub restarts: u32,
    pub max_restarts: u32,
    /// When the next restart is due (unix seconds; `null` while restarting or given up).
    #[serde(default)]
    pub next_unix: Option<u64>,
    /// How the last restart went.
    #[serde(default)]
    pub last_result: Option<String>,
}

fn one_f64() -> f64 {
    1.0
}

/// `POST /api/v1/drones/{name}/enroll` (admin).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EnrollRequest {
    /// The drone's host as the operator knows it (the CLI's ssh goes there).
    #[serde(default)]
    pub host: Option<String>,
    /// The token to store (hashed): the same one on every orchestrator of a swarm. None:
    /// the orchestrator makes one.
    #[serde(default)]
    pub token: Option<String>,
}

/// A drone's new credential: the token is shown this once and stored only as a hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Enrollment {
    pub name: String,
    pub token: String,
    pub host: Option<String>,
    /// It replaced the token the drone had (which stopped working).
    pub replaced: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnrolledDrone {
    pub name: String,
    pub host: Option<String>,
    /// Unix seconds.
    pub enrolled_unix: u64,
    /// Its token was revoked: no token works for it until it is enrolled again.
    #[serde(default)]
    pub revoked: bool,
}

/// `POST /api/v1/drones/{name}/revoke` (admin).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RevokeRequest {
    /// Forget the drone altogether (the shared token may then act for it again) instead of
    /// keeping it enrolled without a token.
    #[serde(default)]
    pub forget: bool,
}

/// `GET /api/v1/enrollments` (admin).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnrollmentList {
    pub drones: Vec<EnrolledDrone>,
}

/// `POST /api/v1/drones/{name}/revoke` (admin).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Revoked {
    pub name: String,
    pub revoked: bool,
    #[serde(default)]
    pub forgotten: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DroneList {
    pub drones: Vec<DroneInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseView {
    pub lease: LeaseId,
    pub epoch: u64,
    pub atom: String,
    pub state: PackageState,
    /// Seconds since the lease was made.
    pub age_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DroneQueue {
    pub drone: String,
    pub current: Vec<LeaseView>,
    /// What the queue would hand out next, best first.
    pub next: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DroneLogs {
    pub drone: String,
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ControlAction {
    Restart,
    Pause,
    Resume,
    Unground,
    /// Run the drone's `sync_command`, then re-check its environment (added).
    Sync,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ControlRequest {
    pub action: ControlAction,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ControlResult {
    pub ok: bool,
    pub drone: String,
    pub action: ControlAction,
}

// ---- drone protocol ----

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RegisterRequest {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub host: String,
    #[serde(default = "one")]
    pub slots: u32,
    #[serde(default)]
    pub version: String,
    /// argv the CLI runs over ssh to restart this drone when it does not answer over HTTP
    /// (the drone's `restart_command`).
    #[serde(default)]
    pub restart_command: Vec<String>,
    /// Its build environment (added; an older drone sends none and counts as matching).
    #[serde(default)]
    pub environment: Option<DroneEnvironment>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RegisterResponse {
    pub name: String,
    pub heartbeat_s: u64,
    pub upload_target: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HeartbeatRequest {
    #[serde(default)]
    pub leases: Vec<LeaseId>,
    #[serde(default)]
    pub log: Vec<String>,
    /// Its build environment, when it changed since it last sent one (added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<DroneEnvironment>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DroneAction {
    Restart,
    Pause,
    Resume,
    Cancel,
    /// Run the drone's `sync_command` (its repositories lag), then report its environment
    /// again (added; sent only to drones that report an environment).
    Sync,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DroneCommand {
    pub action: DroneAction,
    pub lease: Option<LeaseId>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HeartbeatResponse {
    pub commands: Vec<DroneCommand>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClaimRequest {
    pub drone: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkAssignment {
    pub lease: LeaseId,
    pub epoch: u64,
    pub atom: String,
    pub category: String,
    pub name: String,
    pub version: String,
    pub upload_dir: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochBody {
    pub epoch: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompleteRequest {
    pub epoch: u64,
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompleteResponse {
    pub accepted: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
}

impl CompleteResponse {
    /// Not accepted: the package was built already; nothing changed.
    pub fn stale() -> Self {
        CompleteResponse {
            accepted: false,
            stale: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailRequest {
    pub epoch: u64,
    pub kind: FailureKind,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub log_tail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ack {
    pub ok: bool,
    /// The lease had already ended; nothing changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
}

impl Ack {
    /// Done as asked.
    pub fn done() -> Self {
        Ack {
            ok: true,
            stale: false,
        }
    }

    /// The lease had already ended; nothing changed.
    pub fn stale() -> Self {
        Ack {
            ok: true,
            stale: true,
        }
    }
}

/// `POST /api/v1/binhost/verify` (admin).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BinhostVerifyRequest {
    /// Bring the index in line with the files (and remove temporary files).
    #[serde(default)]
    pub fix: bool,
}

/// One thing in the binhost that is not as its index says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BinhostProblem {
    /// Relative to the binhost.
    pub path: String,
    /// `missing`, `size`, `md5`, `sha1`, `signature` (with `[signing]`: unsigned, or not a
    /// good signature by the binhost's key), `unindexed`, `unreadable` or `temporary`.
    pub kind: String,
    pub detail: String,
}

/// `POST /api/v1/packages/bump` (added).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BumpRequest {
    pub atom: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BumpResult {
    pub atom: String,
    /// Packages that moved ahead (the atom and what it still needs).
    pub moved: usize,
    /// Its operator priority now.
    pub priority: i32,
}

/// `POST /api/v1/binhost/snapshots` (added): take a snapshot (`name` optional: the time).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SnapshotRequest {
    #[serde(default)]
    pub name: Option<String>,
}

/// A snapshot of the binhost.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotInfo {
    pub name: String,
    /// Unix seconds.
    pub created: u64,
    pub packages: usize,
    /// `TIMESTAMP` of its index.
    pub timestamp: u64,
    /// Channels serving it now.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Why retention keeps it (empty: the next `gc` removes it).
    #[serde(default)]
    pub kept_because: Vec<String>,
}

/// A channel served at `/binhost/<name>/`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChannelInfo {
    pub name: String,
    /// The snapshot it serves.
    pub snapshot: String,
    /// `TIMESTAMP` of the index it serves.
    pub timestamp: u64,
    /// When it was pointed at `snapshot` (unix seconds).
    pub tagged_at: u64,
    /// What `rollback` would point it at.
    pub previous: Option<String>,
    /// Where clients find it, e.g. `/binhost/stable/`.
    pub path: String,
}

/// `GET /api/v1/binhost/releases` (added).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReleaseList {
    /// Oldest first.
    pub snapshots: Vec<SnapshotInfo>,
    pub channels: Vec<ChannelInfo>,
}

/// `POST /api/v1/binhost/channels/{channel}/tag` (added).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TagRequest {
    pub snapshot: String,
}

/// A package of a diff.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiffPackage {
    pub cpv: String,
    pub build_id: Option<String>,
    pub path: String,
}

/// `GET /api/v1/binhost/diff?from=A&to=B` (added).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiffReport {
    pub from: String,
    pub to: String,
    pub added: Vec<DiffPackage>,
    pub removed: Vec<DiffPackage>,
    /// Same CPV and BUILD_ID, another file.
    pub changed: Vec<DiffPackage>,
}

/// `POST /api/v1/binhost/gc` (added).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GcRequest {
    #[serde(default)]
    pub dry_run: bool,
}

/// One thing retention removed (or, dry, would remove) or waits to remove.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GcItem {
    /// `snapshot`, `generation` (a channel's earlier index) or `file` (of the live
    /// binhost, no longer indexed).
    pub kind: String,
    pub name: String,
    pub detail: String,
    /// Unix seconds from when it may go (waiting items).
    pub at: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GcReport {
    pub dry_run: bool,
    /// Removed (with `dry_run`: would be removed now).
    pub removed: Vec<GcItem>,
    /// Not referenced any more, kept until the grace period is over.
    pub waiting: Vec<GcItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BinhostReport {
    /// Nothing was wrong.
    pub ok: bool,
    /// What was wrong (before a fix).
    pub problems: Vec<BinhostProblem>,
    /// The index was brought in line with the files.
    pub fixed: bool,
    /// Entries of the index.
    pub entries: usize,
}
