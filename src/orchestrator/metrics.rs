//! Prometheus metrics of the orchestrator (`GET /metrics`, OpenMetrics text), kept with
//! the Prometheus project's client (`prometheus-client`).
//!
//! Event counts live in one [`Metrics`] value (the client's counters and histograms are
//! atomics behind `Arc`s), shared as `Arc<Metrics>` by the actors that see the events
//! (the package queue, the circuit breaker, the notifier) and the HTTP handlers; no actor
//! ever waits on another through them. Gauges by state are not counted here: they are
//! asked from the queue and the registry at scrape time ([`Snapshot`]), so they can never
//! drift. Each scrape registers those and clones of the counters in a fresh registry and
//! encodes it.
//!
//! Upload durations need the moment a lease started uploading; that map belongs to the
//! package queue alone, so it lives in [`QueueMetrics`], owned by the queue actor.

use crate::domain::{DroneState, FailureKind, PackageState};
use crate::wire::orchestrator::{DroneInfo, LeaseId, PackageCounts};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

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

type Labels = Vec<(&'static str, String)>;

/// A float gauge.
type FloatGauge = Gauge<f64, AtomicU64>;

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
    /// Attempts that ended without an artifact, by kind.
    failures: Family<Labels, Counter>,
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
    /// Leases reclaimed, by reason.
    reclaims: Family<Labels, Counter>,
    /// Upload directories handed to a new lease instead of made by the drone.
    pub upload_dirs_reused: Counter,
    /// Emptied upload directories kept in staging for reuse now (set by the queue).
    pub upload_dirs_kept: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            claims: Counter::default(),
            claim_latency: Histogram::new(CLAIM_BUCKETS.iter().copied()),
            completions: Counter::default(),
            failures: Family::default(),
            breaker_trips: Counter::default(),
            notifications_delivered: Counter::default(),
            notifications_failed: Counter::default(),
            notifications_dropped: Counter::default(),
            upload_bytes: Counter::default(),
            upload_duration: Histogram::new(UPLOAD_BUCKETS.iter().copied()),
            reclaims: Family::default(),
            upload_dirs_reused: Counter::default(),
            upload_dirs_kept: Gauge::default(),
        };
        // Every label value is shown from the start, at 0.
        for kind in FAILURE_KINDS {
            drop(m.failures.get_or_create(&kind_label(kind)));
        }
        for r in ReclaimReason::ALL {
            drop(m.reclaims.get_or_create(&reason_label(r)));
        }
        m
    }
}

fn kind_label(kind: FailureKind) -> Labels {
    vec![("kind", kind.to_string())]
}

fn reason_label(reason: ReclaimReason) -> Labels {
    vec![("reason", reason.as_str().to_string())]
}

/// Observes the time until it is dropped (early returns included).
pub struct Timer<'a> {
    hist: &'a Histogram,
    start: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.hist.observe(self.start.elapsed().as_secs_f64());
    }
}

/// Times into `hist` until the returned guard is dropped.
pub fn start_timer(hist: &Histogram) -> Timer<'_> {
    Timer {
        hist,
        start: Instant::now(),
    }
}

/// What a scrape asks the queue and the registry.
pub struct Snapshot<'a> {
    pub name: &'a str,
    pub packages: &'a PackageCounts,
    pub drones: &'a [DroneInfo],
    pub eta_s: Option<u64>,
    /// The breaker reports a central fault now.
    pub central_fault: bool,
}

impl Metrics {
    pub fn failure(&self, kind: FailureKind) {
        self.failures.get_or_create(&kind_label(kind)).inc();
    }

    pub fn reclaimed(&self, reason: ReclaimReason, leases: usize) {
        self.reclaims
            .get_or_create(&reason_label(reason))
            .inc_by(leases as u64);
    }

    /// The whole exposition: the counters here plus the gauges read at scrape time.
    pub fn render(&self, s: &Snapshot) -> String {
        let mut r = Registry::default();
        let info = Family::<Labels, Gauge>::default();
        info.get_or_create(&vec![("name", s.name.to_string())])
            .set(1);
        r.register(
            "build_swarm_orchestrator_info",
            "The orchestrator's name (always 1)",
            info,
        );
        let packages = Family::<Labels, Gauge>::default();
        for st in PackageState::ALL {
            packages
                .get_or_create(&vec![("state", st.to_string())])
                .set(s.packages.get(st) as i64);
        }
        r.register("build_swarm_packages", "Packages by state", packages);
        let p = s.packages;
        let ratio = FloatGauge::default();
        ratio.set(if p.total == 0 {
            1.0
        } else {
            (p.built + p.failed + p.blocked) as f64 / p.total as f64
        });
        r.register(
            "build_swarm_progress_ratio",
            "Share of the set in an end state (built, failed or blocked), 0 to 1",
            ratio,
        );
        let drones = Family::<Labels, Gauge>::default();
        for st in DRONE_STATES {
            let n = s.drones.iter().filter(|d| d.state == st).count();
            drones
                .get_or_create(&vec![("state", st.to_string())])
                .set(n as i64);
        }
        r.register("build_swarm_drones", "Drones by state", drones);
        let online = Family::<Labels, Gauge>::default();
        for d in s.drones {
            online
                .get_or_create(&vec![("drone", d.name.clone())])
                .set(i64::from(d.state != DroneState::Offline));
        }
        r.register(
            "build_swarm_drone_online",
            "1 for each registered drone that is online, 0 for one that is offline",
            online,
        );
        let central = Gauge::<i64>::default();
        central.set(i64::from(s.central_fault));
        r.register(
            "build_swarm_central_fault",
            "1 while the circuit breaker reports a central fault",
            central,
        );
        let grounded = Gauge::<i64>::default();
        grounded.set(
            s.drones
                .iter()
                .filter(|d| d.grounded_until.is_some())
                .count() as i64,
        );
        r.register(
            "build_swarm_grounded_drones",
            "Drones grounded by the circuit breaker now",
            grounded,
        );
        let mismatched = Family::<Labels, Gauge>::default();
        for d in s
            .drones
            .iter()
            .filter(|d| d.state == DroneState::Mismatched)
        {
            mismatched
                .get_or_create(&vec![
                    ("drone", d.name.clone()),
                    ("mismatch", d.mismatch.clone().unwrap_or_default()),
                ])
                .set(1);
        }
        r.register(
            "build_swarm_drone_mismatched",
            "1 for each drone whose build environment does not fit, with what differs",
            mismatched,
        );
        if let Some(eta) = s.eta_s {
            let g = Gauge::<i64>::default();
            g.set(eta.min(i64::MAX as u64) as i64);
            r.register(
                "build_swarm_eta_seconds",
                "Seconds until the set is done, from declared and learned build times (absent: unknown)",
                g,
            );
        }
        for (name, help, c) in [
            ("build_swarm_claims", "Leases handed out to drones", &self.claims),
            ("build_swarm_completions", "Artifacts verified and published", &self.completions),
            ("build_swarm_breaker_trips", "Drones grounded by the circuit breaker", &self.breaker_trips),
            ("build_swarm_upload_bytes", "Sum of the sizes of the published artifacts", &self.upload_bytes),
            (
                "build_swarm_upload_dirs_reused",
                "Upload directories of published packages handed to a new lease instead of made by the drone's rsync",
                &self.upload_dirs_reused,
            ),
            ("build_swarm_notifications_delivered", "Notifications delivered to a [[notify]] entry", &self.notifications_delivered),
            (
                "build_swarm_notification_failures",
                "Notification delivery attempts that failed (each is retried)",
                &self.notifications_failed,
            ),
            (
                "build_swarm_notifications_dropped",
                "Notifications given up after max_attempts or dropped past max_pending",
                &self.notifications_dropped,
            ),
        ] {
            r.register(name, help, c.clone());
        }
        for (name, help, h) in [
            (
                "build_swarm_claim_duration_seconds",
                "Time a claim request took in the orchestrator, whether it got work or not",
                &self.claim_latency,
            ),
            (
                "build_swarm_upload_duration_seconds",
                "From the drone's uploading report to the verified, published artifact",
                &self.upload_duration,
            ),
        ] {
            r.register(name, help, h.clone());
        }
        for (name, help, f) in [
            (
                "build_swarm_failures",
                "Attempts that ended without an artifact, by kind",
                &self.failures,
            ),
            (
                "build_swarm_lease_reclaims",
                "Leases taken back from their drone, by reason",
                &self.reclaims,
            ),
        ] {
            r.register(name, help, f.clone());
        }
        r.register(
            "build_swarm_upload_dirs_kept",
            "Emptied upload directories kept in the staging directory for reuse",
            self.upload_dirs_kept.clone(),
        );
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &r);
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
        self.shared.upload_bytes.inc_by(size);
        if let Some(t) = self.uploading_since.remove(&lease) {
            self.shared
                .upload_duration
                .observe(t.elapsed().as_secs_f64());
        }
    }

    /// A kept upload directory was taken for a new lease; `kept` are left.
    pub fn upload_dir_reused(&mut self, kept: usize) {
        self.shared.upload_dirs_reused.inc();
        self.upload_dirs_kept(kept);
    }

    pub fn upload_dirs_kept(&mut self, kept: usize) {
        self.shared.upload_dirs_kept.set(kept as i64);
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
    use std::time::Duration;

    fn render(m: &Metrics) -> String {
        m.render(&Snapshot {
            name: "o\"1",
            packages: &PackageCounts::default(),
            drones: &[],
            eta_s: None,
            central_fault: false,
        })
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_count_matches() {
        let m = Metrics::default();
        for d in [
            Duration::from_micros(300),
            Duration::from_millis(2),
            Duration::from_millis(2),
            Duration::from_secs(4),
        ] {
            m.claim_latency.observe(d.as_secs_f64());
        }
        let out = render(&m);
        assert!(
            out.contains("build_swarm_claim_duration_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("build_swarm_claim_duration_seconds_bucket{le=\"0.0025\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("build_swarm_claim_duration_seconds_bucket{le=\"+Inf\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("build_swarm_claim_duration_seconds_count 4\n"),
            "{out}"
        );
        assert!(out.ends_with("# EOF\n"), "{out}");
    }

    #[test]
    fn counters_keep_their_total_names_and_labels_are_escaped() {
        let m = Metrics::default();
        m.claims.inc();
        m.failure(FailureKind::Infra);
        let out = render(&m);
        assert!(out.contains("build_swarm_claims_total 1\n"), "{out}");
        assert!(
            out.contains("build_swarm_failures_total{kind=\"infra\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("build_swarm_failures_total{kind=\"build\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("build_swarm_orchestrator_info{name=\"o\\\"1\"} 1\n"),
            "{out}"
        );
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
        assert!(render(&q.shared).contains("build_swarm_upload_duration_seconds_count 1\n"));
        assert!(q.uploading_since.is_empty());
    }
}
