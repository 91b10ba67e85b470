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
