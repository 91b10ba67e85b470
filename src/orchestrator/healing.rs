//! The self-healing ladder of one offline drone (`[heal]`, docs/design.md "Self-healing"),
//! without actix: when its restarts are due, and when it is a human's turn. The
//! [`crate::actors::orchestrator::drone_healer::DroneHealer`] runs the restarts.

use crate::config::notify::HealConfig;
use crate::wire::orchestrator::HealingView;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Until the next restart (or the first, `heal_after_s` after it went offline).
    Waiting {
        next_unix: u64,
    },
    Restarting,
    /// Every restart was tried; a human was told.
    NeedsHuman,
}

#[derive(Debug, Clone)]
pub struct Ladder {
    pub step: Step,
    pub restarts: u32,
    pub last_result: Option<String>,
    /// Bumped on every change of step: a timer of an older one is ignored.
    pub generation: u64,
}

impl Ladder {
    /// A drone went offline at `now_unix`: its first restart is due `heal_after_s` later.
    /// `nth`: how many ladders were started before (its generations never meet theirs,
    /// so a timer or restart of an earlier outage does nothing to this one).
    pub fn start(cfg: &HealConfig, now_unix: u64, nth: u64) -> Ladder {
        Ladder {
            step: Step::Waiting {
                next_unix: now_unix + cfg.heal_after_s,
            },
            restarts: 0,
            last_result: None,
            generation: nth << 32,
        }
    }

    /// How long after a restart to wait for the drone before the next step:
    /// `backoff_s`, doubled per restart so far.
    pub fn wait_after(cfg: &HealConfig, restarts: u32) -> Duration {
        let factor = 1u64 << restarts.saturating_sub(1).min(16);
        Duration::from_secs(cfg.backoff_s.saturating_mul(factor))
    }

    /// A restart starts now.
    pub fn restarting(&mut self) {
        self.step = Step::Restarting;
        self.restarts += 1;
        self.generation += 1;
    }

    /// The restart ended (`result`); returns how long to wait for the drone to come back
    /// before the next step.
    pub fn restarted(&mut self, cfg: &HealConfig, result: String, now_unix: u64) -> Duration {
        let wait = Self::wait_after(cfg, self.restarts);
        self.last_result = Some(result);
        self.step = Step::Waiting {
            next_unix: now_unix + wait.as_secs(),
        };
        self.generation += 1;
        wait
    }

    /// The wait is over and the drone is still offline: restart again, or (false) it is
    /// a human's turn now.
    pub fn may_restart(&self, cfg: &HealConfig) -> bool {
        self.restarts < cfg.max_restarts
    }

    pub fn give_up(&mut self) {
        self.step = Step::NeedsHuman;
        self.generation += 1;
    }

    pub fn view(&self, cfg: &HealConfig) -> HealingView {
        let (step, next_unix) = match self.step {
            Step::Waiting { next_unix } => ("waiting", Some(next_unix)),
            Step::Restarting => ("restarting", None),
            Step::NeedsHuman => ("needs_human", None),
        };
        HealingView {
            step: step.into(),
            restarts: self.restarts,
            max_restarts: cfg.max_restarts,
            next_unix,
            last_result: self.last_result.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_doubling_then_a_human_is_called() {
        let cfg = HealConfig {
            heal_after_s: 30,
            max_restarts: 3,
            backoff_s: 10,
            ..HealConfig::default()
        };
        let mut l = Ladder::start(&cfg, 1000, 0);
        assert_ne!(Ladder::start(&cfg, 1000, 1).generation, l.generation);
        assert_eq!(l.step, Step::Waiting { next_unix: 1030 });
        let mut waits = Vec::new();
        while l.may_restart(&cfg) {
            l.restarting();
            assert_eq!(l.view(&cfg).step, "restarting");
            waits.push(l.restarted(&cfg, "exit 255".into(), 2000).as_secs());
        }
        assert_eq!(waits, [10, 20, 40]);
        assert_eq!(l.restarts, 3);
        l.give_up();
        let v = l.view(&cfg);
        assert_eq!((v.step.as_str(), v.next_unix), ("needs_human", None));
        assert_eq!(v.last_result.as_deref(), Some("exit 255"));
    }
}
