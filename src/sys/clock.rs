//! Time for decisions that tests must control (breaker cool-offs, retry backoff). The
//! orchestrator uses the real clock; tests use [`ManualClock`] and move it forward, so no
//! test waits out real minutes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
    /// Unix seconds, for what operators are shown.
    fn unix(&self) -> u64;
}

pub type SharedClock = Arc<dyn Clock>;

pub struct RealClock;

impl Clock for RealClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn unix(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// Unix seconds now (for what operators are shown; decisions use a [`Clock`]).
pub fn unix_now() -> u64 {
    RealClock.unix()
}

/// `YYYY-MM-DDTHH:MM:SSZ` of unix seconds `t`.
pub fn rfc3339(t: u64) -> String {
    let (y, m, d, hh, mm, ss) = utc(t);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// (year, month, day, hour, minute, second) in UTC of unix seconds `t`.
pub fn utc(t: u64) -> (i64, u32, u32, u64, u64, u64) {
    let (y, m, d) = civil_from_days((t / 86_400) as i64);
    let secs = t % 86_400;
    (y, m, d, secs / 3600, secs / 60 % 60, secs % 60)
}

/// Howard Hinnant's days-to-civil: (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub fn real() -> SharedClock {
    Arc::new(RealClock)
}

/// Real time plus an offset that tests advance by hand.
#[derive(Default)]
pub struct ManualClock {
    offset_ms: AtomicU64,
}

impl ManualClock {
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock::default())
    }
    pub fn advance(&self, d: Duration) {
        self.offset_ms
            .fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
    fn offset(&self) -> Duration {
        Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::now() + self.offset()
    }
    fn unix(&self) -> u64 {
        RealClock.unix() + self.offset().as_secs()
    }
}
