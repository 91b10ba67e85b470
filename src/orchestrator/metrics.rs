//! Prometheus metrics of the orchestrator (`GET /metrics`, text exposition format 0.0.4).
//!
//! Event counts live in one [`Metrics`] value of atomics and fixed-bucket histograms,
//! shared as `Arc<Metrics>` by the actors that see the events (the package queue, the
//! circuit breaker) and the HTTP handlers. Atomics are not locks: no actor ever waits on
//! another through them. Gauges (packages and drones by state) are not counted here: they
//! are asked from the queue and the registry at scrape time, so they can never drift.
//!
//! Upload durations need the moment a lease started uploading; that map belongs to the
//! package queue alone, so it lives in [`QueueMetrics`], owned by the queue actor.

use crate::domain::{DroneState, FailureKind, PackageState};
use crate::wire::orchestrator::{DroneInfo, LeaseId, PackageCounts};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bucket bounds (seconds) of the claim latency: a claim is an in-memory pick plus one
/// group commit, so milliseconds.
pub const CLAIM_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Bucket bounds (seconds) of the upload duration, `uploading` to verified: seconds to
/// the default `upload_timeout_s` and beyond.
pub const UPLOAD_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram with fixed bucket bounds. Each bucket counts its own observations; the
/// cumulative `le` counts are summed when rendered, and `_count` is their total, so a
/// scrape is always self-consistent.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, then the `+Inf` bucket.
    buckets: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observes the time until the returned guard is dropped (early returns included).
    pub fn start_timer(&self) -> Timer<'_> {
        Timer {
            hist: self,
            start: Instant::now(),
        }
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, help, "histogram");
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                float(*bound)
            );
        }
        cumulative += self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", float(self.sum_seconds()));
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

pub struct Timer<'a> {
    hist: &'a Histogram,
    start: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.hist.observe(self.start.elapsed());
    }
}

/// Why leases were taken back from their drone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReclaimReason {
    /// The drone was lost: no heartbeat within the TTL, or it registered again after a
    /// restart.
    DroneLost,
    /// No upload started within `build_timeout_s`.
    BuildTimeout,
    /// Upload not verified within `upload_timeout_s`.
    UploadTimeout,
    /// The drone's heartbeat no longer lists the lease.
    Dropped,
}

impl ReclaimReason {
    pub const ALL: [ReclaimReason; 4] = [
        ReclaimReason::DroneLost,
        ReclaimReason::BuildTimeout,
        ReclaimReason::UploadTimeout,
        ReclaimReason::Dropped,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ReclaimReason::DroneLost => "drone_lost",
            ReclaimReason::BuildTimeout => "build_timeout",
            ReclaimReason::UploadTimeout => "upload_timeout",
            ReclaimReason::Dropped => "dropped",
        }
    }
}

const FAILURE_KINDS: [FailureKind; 3] = [
    FailureKind::Build,
    FailureKind::Infra,
    FailureKind::Cancelled,
];

const DRONE_STATES: [DroneState; 6] = [
    DroneState::Idle,
    DroneState::Building,
    DroneState::Grounded,
    DroneState::Paused,
    DroneState::Offline,
    DroneState::Mismatched,
];

/// Every event count of one orchestrator.
#[derive(Debug)]
pub struct Metrics {
    /// Leases handed out.
    pub claims: Counter,
    /// Time a claim request took in the orchestrator (all answers, work or not).
    pub claim_latency: Histogram,
    /// Artifacts verified and published.
    pub completions: Counter,
    /// Attempts that ended without an artifact, by kind (indexed like `FAILURE_KINDS`).
    failures: [Counter; 3],
    /// Drones grounded by the circuit breaker.
    pub breaker_trips: Counter,
    /// Notifications delivered, attempts that failed, events given up or dropped.
    pub notifications_delivered: Counter,
    pub notifications_failed: Counter,
    pub notifications_dropped: Counter,
    /// Sum of the sizes of the published artifacts.
    pub upload_bytes: Counter,
    /// `uploading` to verified complete.
    pub upload_duration: Histogram,
    /// Leases reclaimed, by reason (indexed like `ReclaimReason::ALL`).
    reclaims: [Counter; 4],
    /// Upload directories handed to a new lease instead of made by the drone.
    pub upload_dirs_reused: Counter,
    /// Emptied upload directories kept in staging for reuse now (set by the queue).
    pub upload_dirs_kept: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            claims: Counter::default(),
            claim_latency: Histogram::new(CLAIM_BUCKETS),
            completions: Counter::default(),
            failures: Default::default(),
            breaker_trips: Counter::default(),
            notifications_delivered: Counter::default(),
            notifications_failed: Counter::default(),
            notifications_dropped: Counter::default(),
            upload_bytes: Counter::default(),
            upload_duration: Histogram::new(UPLOAD_BUCKETS),
            reclaims: Default::default(),
            upload_dirs_reused: Counter::default(),
            upload_dirs_kept: AtomicU64::new(0),
        }
    }
}

fn kind_index(kind: FailureKind) -> usize {
    match kind {
        FailureKind::Build => 0,
        FailureKind::Infra => 1,
        FailureKind::Cancelled => 2,
    }
}

fn reclaim_index(reason: ReclaimReason) -> usize {
    match reason {
        ReclaimReason::DroneLost => 0,
        ReclaimReason::BuildTimeout => 1,
        ReclaimReason::UploadTimeout => 2,
        ReclaimReason::Dropped => 3,
    }
}

/// A float as Prometheus reads it (`+Inf`, `NaN`, or Rust's shortest round-trip form).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

impl Metrics {
    pub fn failure(&self, kind: FailureKind) {
        self.failures[kind_index(kind)].inc();
    }

    pub fn failures(&self, kind: FailureKind) -> u64 {
        self.failures[kind_index(kind)].get()
    }

    pub fn reclaimed(&self, reason: ReclaimReason, leases: usize) {
        self.reclaims[reclaim_index(reason)].add(leases as u64);
    }

    pub fn reclaims(&self, reason: ReclaimReason) -> u64 {
        self.reclaims[reclaim_index(reason)].get()
    }

    /// The whole exposition: the counters here plus the gauges read at scrape time.
    pub fn render(
        &self,
        name: &str,
        packages: &PackageCounts,
        drones: &[DroneInfo],
        eta_s: Option<u64>,
    ) -> String {
        let mut out = String::with_capacity(8 * 1024);
        header(
            &mut out,
            "build_swarm_orchestrator_info",
            "The orchestrator's name (always 1).",
            "gauge",
        );
        let _ = writeln!(
            out,
            "build_swarm_orchestrator_info{{name=\"{}\"}} 1",
            label(name)
        );

        header(
            &mut out,
            "build_swarm_packages",
            "Packages by state.",
            "gauge",
        );
        for st in PackageState::ALL {
            let _ = writeln!(
                out,
                "build_swarm_packages{{state=\"{st}\"}} {}",
                packages.get(st)
            );
        }
        header(
            &mut out,
            "build_swarm_progress_ratio",
            "Share of the set in an end state (built, failed or blocked), 0 to 1.",
            "gauge",
        );
        let done = packages.built + packages.failed + packages.blocked;
        let ratio = if packages.total == 0 {
            1.0
        } else {
            done as f64 / packages.total as f64
        };
        let _ = writeln!(out, "build_swarm_progress_ratio {}", float(ratio));

        header(&mut out, "build_swarm_drones", "Drones by state.", "gauge");
        for st in DRONE_STATES {
            let n = drones.iter().filter(|d| d.state == st).count();
            let _ = writeln!(out, "build_swarm_drones{{state=\"{st}\"}} {n}");
        }
        header(
            &mut out,
            "build_swarm_grounded_drones",
            "Drones grounded by the circuit breaker now.",
            "gauge",
        );
        let grounded = drones.iter().filter(|d| d.grounded_until.is_some()).count();
        let _ = writeln!(out, "build_swarm_grounded_drones {grounded}");
        header(
            &mut out,
            "build_swarm_drone_mismatched",
            "1 for each drone whose build environment does not fit, with what differs.",
            "gauge",
        );
        for d in drones.iter().filter(|d| d.state == DroneState::Mismatched) {
            let _ = writeln!(
                out,
                "build_swarm_drone_mismatched{{drone=\"{}\",mismatch=\"{}\"}} 1",
                label(&d.name),
                label(d.mismatch.as_deref().unwrap_or(""))
            );
        }
        header(
            &mut out,
            "build_swarm_eta_seconds",
            "Seconds until the set is done, from declared and learned build times (absent: unknown).",
            "gauge",
        );
        if let Some(eta) = eta_s {
            let _ = writeln!(out, "build_swarm_eta_seconds {eta}");
        }

        header(
            &mut out,
            "build_swarm_claims_total",
            "Leases handed out to drones.",
            "counter",
        );
        let _ = writeln!(out, "build_swarm_claims_total {}", self.claims.get());
        self.claim_latency.render(
            &mut out,
            "build_swarm_claim_duration_seconds",
            "Time a claim request took in the orchestrator, whether it got work or not.",
        );
        header(
            &mut out,
            "build_swarm_completions_total",
            "Artifacts verified and published.",
            "counter",
        );
        let _ = writeln!(
            out,
            "build_swarm_completions_total {}",
            self.completions.get()
        );
        header(
            &mut out,
            "build_swarm_failures_total",
            "Attempts that ended without an artifact, by kind.",
            "counter",
        );
        for kind in FAILURE_KINDS {
            let _ = writeln!(
                out,
                "build_swarm_failures_total{{kind=\"{kind}\"}} {}",
                self.failures(kind)
            );
        }
        header(
            &mut out,
            "build_swarm_breaker_trips_total",
            "Drones grounded by the circuit breaker.",
            "counter",
        );
        let _ = writeln!(
            out,
            "build_swarm_breaker_trips_total {}",
            self.breaker_trips.get()
        );
        for (name, help, c) in [
            (
                "build_swarm_notifications_delivered_total",
                "Notifications delivered to a [[notify]] entry.",
                &self.notifications_delivered,
            ),
            (
                "build_swarm_notification_failures_total",
                "Notification delivery attempts that failed (each is retried).",
                &self.notifications_failed,
            ),
            (
                "build_swarm_notifications_dropped_total",
                "Notifications given up after max_attempts or dropped past max_pending.",
                &self.notifications_dropped,
            ),
        ] {
            header(&mut out, name, help, "counter");
            let _ = writeln!(out, "{name} {}", c.get());
        }
        header(
            &mut out,
            "build_swarm_upload_bytes_total",
            "Sum of the sizes of the published artifacts.",
            "counter",
        );
        let _ = writeln!(
            out,
            "build_swarm_upload_bytes_total {}",
            self.upload_bytes.get()
        );
        self.upload_duration.render(
            &mut out,
            "build_swarm_upload_duration_seconds",
            "From the drone's `uploading` report to the verified, published artifact.",
        );
        header(
            &mut out,
            "build_swarm_lease_reclaims_total",
            "Leases taken back from their drone, by reason.",
            "counter",
        );
        for reason in ReclaimReason::ALL {
            let _ = writeln!(
                out,
                "build_swarm_lease_reclaims_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                self.reclaims(reason)
            );
        }
        header(
            &mut out,
            "build_swarm_upload_dirs_reused_total",
            "Upload directories of published packages handed to a new lease instead of made by the drone's rsync.",
            "counter",
        );
        let _ = writeln!(
            out,
            "build_swarm_upload_dirs_reused_total {}",
            self.upload_dirs_reused.get()
        );
        header(
            &mut out,
            "build_swarm_upload_dirs_kept",
            "Emptied upload directories kept in the staging directory for reuse.",
            "gauge",
        );
        let _ = writeln!(
            out,
            "build_swarm_upload_dirs_kept {}",
            self.upload_dirs_kept.load(Ordering::Relaxed)
        );
        out
    }
}

/// The package queue's side of the metrics: the shared counters plus when each lease
/// started uploading (the queue's own state; no one else touches it).
#[derive(Debug, Default)]
pub struct QueueMetrics {
    pub shared: Arc<Metrics>,
    uploading_since: HashMap<LeaseId, Instant>,
}

impl QueueMetrics {
    pub fn new(shared: Arc<Metrics>) -> Self {
        QueueMetrics {
            shared,
            uploading_since: HashMap::new(),
        }
    }

    pub fn upload_started(&mut self, lease: LeaseId) {
        self.uploading_since.insert(lease, Instant::now());
    }

    /// An artifact of `size` bytes from `lease` was verified and published.
    pub fn completed(&mut self, lease: LeaseId, size: u64) {
        self.shared.completions.inc();
        self.shared.upload_bytes.add(size);
        if let Some(t) = self.uploading_since.remove(&lease) {
            self.shared.upload_duration.observe(t.elapsed());
        }
    }

    /// A kept upload directory was taken for a new lease; `kept` are left.
    pub fn upload_dir_reused(&mut self, kept: usize) {
        self.shared.upload_dirs_reused.inc();
        self.upload_dirs_kept(kept);
    }

    pub fn upload_dirs_kept(&mut self, kept: usize) {
        self.shared
            .upload_dirs_kept
            .store(kept as u64, Ordering::Relaxed);
    }

    /// The lease is over (for whatever reason): forget its upload start.
    pub fn lease_ended(&mut self, lease: LeaseId) {
        self.uploading_since.remove(&lease);
    }

    pub fn failure(&self, kind: FailureKind) {
        self.shared.failure(kind);
    }

    pub fn reclaimed(&self, reason: ReclaimReason, leases: usize) {
        self.shared.reclaimed(reason, leases);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_matches() {
        let h = Histogram::new(&[0.001, 0.01, 0.1]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(2));
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "help");
        assert!(out.contains("x_seconds_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.01\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.1\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_seconds_count 4\n"), "{out}");
        assert!((h.sum_seconds() - 2.0105).abs() < 1e-9);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn upload_duration_needs_an_upload_start_and_forgets_ended_leases() {
        let mut q = QueueMetrics::default();
        q.upload_started(1);
        q.upload_started(2);
        q.lease_ended(2);
        q.completed(1, 100);
        q.completed(2, 50);
        assert_eq!(q.shared.completions.get(), 2);
        assert_eq!(q.shared.upload_bytes.get(), 150);
        assert_eq!(q.shared.upload_duration.count(), 1);
        assert!(q.uploading_since.is_empty());
    }
}
