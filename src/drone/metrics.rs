//! The drone's own Prometheus metrics (OpenMetrics text at `[metrics] listen`, path
//! `/metrics`): builds and their durations by outcome, uploads, bytes sent, upload
//! durations and rsync exit codes. One [`DroneMetrics`] is shared (`Arc`) by the build
//! runner and the upload supervisor; its counters are atomics, nobody waits on anybody.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Build durations, seconds: a minute to a day.
const BUILD_BUCKETS: &[f64] = &[
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
    86400.0,
];
/// Upload durations, seconds.
const UPLOAD_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

#[derive(Debug)]
pub struct DroneMetrics {
    /// Builds by outcome: `built`, `failed`, `broken` (could not run), `cancelled`.
    builds: Family<Labels, Counter>,
    build_duration: Family<Labels, Histogram, fn() -> Histogram>,
    /// Uploads by outcome: `done`, `failed`, `timed_out`, `cancelled`.
    uploads: Family<Labels, Counter>,
    upload_duration: Histogram,
    upload_bytes: Counter,
    /// rsync's exit status (`0`, `23`, `255`, …; `signal` when it was killed).
    rsync_exits: Family<Labels, Counter>,
    /// Builds and uploads running now.
    pub building: Gauge,
    pub uploading: Gauge,
}

fn build_histogram() -> Histogram {
    Histogram::new(BUILD_BUCKETS.iter().copied())
}

impl Default for DroneMetrics {
    fn default() -> Self {
        DroneMetrics {
            builds: Family::default(),
            build_duration: Family::new_with_constructor(build_histogram),
            uploads: Family::default(),
            upload_duration: Histogram::new(UPLOAD_BUCKETS.iter().copied()),
            upload_bytes: Counter::default(),
            rsync_exits: Family::default(),
            building: Gauge::default(),
            uploading: Gauge::default(),
        }
    }
}

impl DroneMetrics {
    /// A build ended with `outcome` after `seconds`.
    pub fn build_ended(&self, outcome: &'static str, seconds: f64) {
        let l = vec![("outcome", outcome.to_string())];
        self.builds.get_or_create(&l).inc();
        self.build_duration.get_or_create(&l).observe(seconds);
    }

    /// An upload ended: `outcome`, rsync's exit code (`None`: killed by a signal; not
    /// counted when rsync never ran), and for a finished one its bytes and duration.
    pub fn upload_ended(
        &self,
        outcome: &'static str,
        exit: Option<Option<i32>>,
        done: Option<(u64, f64)>,
    ) {
        self.uploads
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
        if let Some(code) = exit {
            let code = code.map_or_else(|| "signal".to_string(), |c| c.to_string());
            self.rsync_exits.get_or_create(&vec![("code", code)]).inc();
        }
        if let Some((bytes, seconds)) = done {
            self.upload_bytes.inc_by(bytes);
            self.upload_duration.observe(seconds);
        }
    }

    /// The exposition, `drone` naming this drone.
    pub fn render(&self, drone: &str) -> String {
        let mut r = Registry::default();
        let info = Family::<Labels, Gauge>::default();
        info.get_or_create(&vec![
            ("name", drone.to_string()),
            ("version", env!("CARGO_PKG_VERSION").to_string()),
        ])
        .set(1);
        r.register(
            "build_swarm_drone_info",
            "This drone's name and version (always 1)",
            info,
        );
        r.register(
            "build_swarm_drone_builds",
            "Builds by outcome",
            self.builds.clone(),
        );
        r.register(
            "build_swarm_drone_build_duration_seconds",
            "Build durations by outcome",
            self.build_duration.clone(),
        );
        r.register(
            "build_swarm_drone_uploads",
            "Uploads by outcome",
            self.uploads.clone(),
        );
        r.register(
            "build_swarm_drone_upload_duration_seconds",
            "Durations of finished uploads (rsync start to exit)",
            self.upload_duration.clone(),
        );
        r.register(
            "build_swarm_drone_upload_bytes",
            "Bytes rsync reported sending in finished uploads",
            self.upload_bytes.clone(),
        );
        r.register(
            "build_swarm_drone_rsync_exits",
            "rsync exits by exit code (signal: killed)",
            self.rsync_exits.clone(),
        );
        r.register(
            "build_swarm_drone_building",
            "Builds running now",
            self.building.clone(),
        );
        r.register(
            "build_swarm_drone_uploading",
            "Uploads running now",
            self.uploading.clone(),
        );
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &r);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_exit_codes_and_bytes_are_counted() {
        let m = DroneMetrics::default();
        m.build_ended("built", 42.0);
        m.build_ended("failed", 5.0);
        m.upload_ended("done", Some(Some(0)), Some((1000, 1.5)));
        m.upload_ended("failed", Some(Some(23)), None);
        m.upload_ended("timed_out", Some(None), None);
        m.upload_ended("failed", None, None);
        let out = m.render("d1");
        for want in [
            "build_swarm_drone_builds_total{outcome=\"built\"} 1\n",
            "build_swarm_drone_build_duration_seconds_count{outcome=\"failed\"} 1\n",
            "build_swarm_drone_uploads_total{outcome=\"failed\"} 2\n",
            "build_swarm_drone_rsync_exits_total{code=\"23\"} 1\n",
            "build_swarm_drone_rsync_exits_total{code=\"signal\"} 1\n",
            "build_swarm_drone_upload_bytes_total 1000\n",
            "build_swarm_drone_info{name=\"d1\",version=\"",
        ] {
            assert!(out.contains(want), "{want}: {out}");
        }
    }
}
