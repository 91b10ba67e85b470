//! Learned build times (docs/design.md, "Learned durations"): per package name
//! (`category/name`, any version) the mean build time on a drone of the swarm's average
//! speed, and per drone a speed factor — its build times ÷ the swarm's for the same
//! packages (below 1: faster). Plain data; the queue records each accepted build and asks
//! for estimates when a set gives none.

use crate::actors::orchestrator::store::learned::{DurationRow, SpeedRow};
use std::collections::{HashMap, HashSet};

/// A name's mean follows its last builds: each new one weighs at least 1/`WINDOW`.
const WINDOW: u64 = 10;
/// How much one build moves a drone's speed factor.
const SPEED_WEIGHT: f64 = 0.2;
/// Speed factors stay within these (a nonsense sample cannot make a drone unusable).
const SPEED_RANGE: (f64, f64) = (0.05, 20.0);
/// Shortest build time recorded (a clock step or a cached result must not teach 0 s).
const MIN_SECONDS: f64 = 0.001;

#[derive(Debug, Clone, Copy, PartialEq)]
struct NameStat {
    builds: u64,
    mean_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Speed {
    samples: u64,
    factor: f64,
}

#[derive(Debug, Default)]
pub struct Durations {
    names: HashMap<String, NameStat>,
    speeds: HashMap<String, Speed>,
    dirty_names: HashSet<String>,
    dirty_speeds: HashSet<String>,
}

impl Durations {
    pub fn restore(durations: Vec<DurationRow>, speeds: Vec<SpeedRow>) -> Self {
        let mut d = Durations::default();
        for r in durations {
            if r.mean_s.is_finite() && r.mean_s >= 0.0 {
                d.names.insert(
                    r.name,
                    NameStat {
                        builds: r.builds,
                        mean_s: r.mean_s,
                    },
                );
            }
        }
        for r in speeds {
            if r.factor.is_finite() && r.factor > 0.0 {
                d.speeds.insert(
                    r.drone,
                    Speed {
                        samples: r.samples,
                        factor: r.factor.clamp(SPEED_RANGE.0, SPEED_RANGE.1),
                    },
                );
            }
        }
        d
    }

    /// Whether any drone's speed is known yet (claims skip the faster-drone check until
    /// then).
    pub fn any_speed_known(&self) -> bool {
        !self.speeds.is_empty()
    }

    /// The drone's speed factor (1.0 until it is known).
    pub fn speed(&self, drone: &str) -> f64 {
        self.speeds.get(drone).map_or(1.0, |s| s.factor)
    }

    /// The learned build time of `name` on a drone of average speed.
    pub fn estimate(&self, name: &str) -> Option<f64> {
        self.names.get(name).map(|s| s.mean_s)
    }

    /// `drone` built a package named `name` in `seconds`. A build of a name built before
    /// moves the drone's speed factor towards its time ÷ the name's mean; then the name's
    /// mean moves towards the time divided by the drone's factor.
    pub fn record(&mut self, name: &str, drone: &str, seconds: f64) {
        if !seconds.is_finite() || seconds < 0.0 {
            return;
        }
        let seconds = seconds.max(MIN_SECONDS);
        if let Some(stat) = self.names.get(name).filter(|s| s.mean_s > 0.0) {
            let ratio = (seconds / stat.mean_s).clamp(SPEED_RANGE.0, SPEED_RANGE.1);
            let s = self.speeds.entry(drone.to_string()).or_insert(Speed {
                samples: 0,
                factor: 1.0,
            });
            s.factor = (s.factor * (1.0 - SPEED_WEIGHT) + ratio * SPEED_WEIGHT)
                .clamp(SPEED_RANGE.0, SPEED_RANGE.1);
            s.samples += 1;
            self.dirty_speeds.insert(drone.to_string());
        }
        let normal = seconds / self.speed(drone);
        let stat = self.names.entry(name.to_string()).or_insert(NameStat {
            builds: 0,
            mean_s: normal,
        });
        stat.builds += 1;
        stat.mean_s += (normal - stat.mean_s) / stat.builds.min(WINDOW) as f64;
        self.dirty_names.insert(name.to_string());
    }

    /// Rows changed since the last call, for the next commit batch.
    pub fn take_dirty(&mut self) -> (Vec<DurationRow>, Vec<SpeedRow>) {
        let names = std::mem::take(&mut self.dirty_names)
            .into_iter()
            .filter_map(|n| {
                self.names.get(&n).map(|s| DurationRow {
                    name: n,
                    builds: s.builds,
                    mean_s: s.mean_s,
                })
            })
            .collect();
        let speeds = std::mem::take(&mut self.dirty_speeds)
            .into_iter()
            .filter_map(|d| {
                self.speeds.get(&d).map(|s| SpeedRow {
                    drone: d,
                    samples: s.samples,
                    factor: s.factor,
                })
            })
            .collect();
        (names, speeds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_learn_their_mean_and_drones_their_speed() {
        let mut d = Durations::default();
        assert_eq!(d.estimate("sys-devel/gcc"), None);
        d.record("sys-devel/gcc", "a", 100.0);
        assert_eq!(d.estimate("sys-devel/gcc"), Some(100.0));
        // b takes twice as long for the same package, over and over: it is slower.
        for _ in 0..30 {
            d.record("sys-devel/gcc", "b", 200.0);
            d.record("sys-devel/gcc", "a", 100.0);
        }
        assert!(
            d.speed("b") > 1.3 * d.speed("a"),
            "{} {}",
            d.speed("b"),
            d.speed("a")
        );
        // The name's mean is in between, in units of an average drone.
        let e = d.estimate("sys-devel/gcc").expect("learned");
        assert!((100.0..200.0).contains(&e), "{e}");
        // A new name built on the slow drone is learned at the average drone's speed.
        d.record("dev-lang/rust", "b", 2.0 * e);
        let r = d.estimate("dev-lang/rust").expect("learned");
        assert!(r < 2.0 * e, "{r}");
        assert_eq!(d.speed("nobody"), 1.0);
    }

    #[test]
    fn nonsense_samples_change_nothing_or_stay_bounded() {
        let mut d = Durations::default();
        d.record("a/b", "x", f64::NAN);
        d.record("a/b", "x", -1.0);
        assert_eq!(d.estimate("a/b"), None);
        d.record("a/b", "x", 10.0);
        for _ in 0..100 {
            d.record("a/b", "x", 1e12);
        }
        assert!(d.speed("x") <= SPEED_RANGE.1);
        assert!(d.estimate("a/b").is_some_and(f64::is_finite));
    }

    #[test]
    fn what_changed_is_written_and_read_back() {
        let mut d = Durations::default();
        d.record("a/b", "x", 10.0);
        d.record("a/b", "y", 20.0);
        let (names, speeds) = d.take_dirty();
        assert_eq!(names.len(), 1);
        assert_eq!(speeds.len(), 1);
        assert_eq!(d.take_dirty(), (vec![], vec![]));
        let back = Durations::restore(names, speeds);
        assert_eq!(back.estimate("a/b"), d.estimate("a/b"));
        assert_eq!(back.speed("y"), d.speed("y"));
    }
}
