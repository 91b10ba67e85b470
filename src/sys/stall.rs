//! Noticing that this process itself stood still (SIGSTOP, a frozen VM, swap storm): a
//! thread of its own notes the time every [`BEAT`]; a gap far longer than that is a stall.
//! Deadlines that measure other hosts (heartbeat TTLs, lease deadlines) ask
//! [`StallWatch::stalled_within`] before they blame anyone: time this process did not
//! run is nobody else's fault. The watch is atomics only, so actors read it without
//! waiting on anything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the watch thread notes the time.
pub const BEAT: Duration = Duration::from_millis(200);
/// A gap between beats longer than this is a stall.
pub const STALL: Duration = Duration::from_secs(2);

/// One stall: when it began (an id: the same for every deadline it excuses) and how long
/// this process stood still.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    pub start_ms: u64,
    pub len: Duration,
}

#[derive(Debug)]
pub struct StallWatch {
    base: Instant,
    /// Milliseconds since `base` of the watch thread's last beat.
    last_beat_ms: AtomicU64,
    /// Milliseconds since `base` when the last stall ended (0: none yet).
    stall_end_ms: AtomicU64,
    /// How long the last stall lasted, in milliseconds.
    stall_len_ms: AtomicU64,
}

impl StallWatch {
    /// A watch with its thread running (for the life of the process).
    pub fn start() -> Arc<StallWatch> {
        let watch = Arc::new(Self::unstarted());
        let w = watch.clone();
        let spawned = std::thread::Builder::new()
            .name("stall-watch".into())
            .spawn(move || loop {
                std::thread::sleep(BEAT);
                w.beat(Instant::now());
            });
        if spawned.is_err() {
            // Without the thread no stall is ever reported: deadlines behave as before.
            watch.last_beat_ms.store(u64::MAX, Ordering::SeqCst);
        }
        watch
    }

    /// A watch nobody beats (tests drive it with [`StallWatch::beat`]).
    pub fn unstarted() -> StallWatch {
        StallWatch {
            base: Instant::now(),
            last_beat_ms: AtomicU64::new(0),
            stall_end_ms: AtomicU64::new(0),
            stall_len_ms: AtomicU64::new(0),
        }
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_millis() as u64
    }

    /// The watch thread's beat at `now`: a long gap since the last one was a stall.
    pub fn beat(&self, now: Instant) {
        let now_ms = self.ms(now).max(1);
        let last = self.last_beat_ms.load(Ordering::SeqCst);
        if last != u64::MAX && now_ms.saturating_sub(last) > STALL.as_millis() as u64 {
            // The stall's end first: a reader that sees the new beat sees the stall too.
            self.stall_len_ms.store(now_ms - last, Ordering::SeqCst);
            self.stall_end_ms.store(now_ms, Ordering::SeqCst);
        }
        if last != u64::MAX {
            self.last_beat_ms.store(now_ms, Ordering::SeqCst);
        }
    }

    /// Was this process stalled within `window` before `now` (or is it only now waking
    /// from a stall the watch thread has not noted yet)? Returns that stall.
    pub fn stalled_within(&self, window: Duration, now: Instant) -> Option<Stall> {
        let now_ms = self.ms(now);
        let last = self.last_beat_ms.load(Ordering::SeqCst);
        if last != u64::MAX && last != 0 && now_ms.saturating_sub(last) > STALL.as_millis() as u64 {
            return Some(Stall {
                start_ms: last,
                len: Duration::from_millis(now_ms - last),
            });
        }
        let end = self.stall_end_ms.load(Ordering::SeqCst);
        let len = self.stall_len_ms.load(Ordering::SeqCst);
        (end != 0 && now_ms.saturating_sub(end) <= window.as_millis() as u64).then(|| Stall {
            start_ms: end - len,
            len: Duration::from_millis(len),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_gap_between_beats_is_a_stall_for_a_while() {
        let w = StallWatch::unstarted();
        let t0 = Instant::now();
        let window = Duration::from_secs(20);
        for i in 1..=10 {
            w.beat(t0 + BEAT * i);
        }
        assert_eq!(w.stalled_within(window, t0 + BEAT * 10), None);
        // The process stops for 40 s: before the watch thread runs again, a deadline
        // that fires already sees the silence.
        let resumed = t0 + BEAT * 10 + Duration::from_secs(40);
        let before_noted = w.stalled_within(window, resumed).unwrap();
        w.beat(resumed);
        let noted = w.stalled_within(window, resumed).unwrap();
        assert!(noted.len >= Duration::from_secs(40), "{noted:?}");
        // The same stall, whether the watch thread noted it yet or not.
        assert_eq!(before_noted.start_ms, noted.start_ms);
        // Remembered for `window`, then forgotten.
        let mut t = resumed;
        while t < resumed + Duration::from_secs(21) {
            t += BEAT;
            w.beat(t);
        }
        assert!(w
            .stalled_within(window, resumed + Duration::from_secs(19))
            .is_some());
        assert_eq!(w.stalled_within(window, t), None);
    }

    #[test]
    fn the_running_watch_reports_nothing_while_the_process_runs() {
        let w = StallWatch::start();
        std::thread::sleep(BEAT * 3);
        assert_eq!(
            w.stalled_within(Duration::from_secs(60), Instant::now()),
            None
        );
    }
}
