//! The failure policy: after an attempt ended without an artifact, does the package go
//! back to the queue (and when), or has it failed for good? docs/design.md ("Failure
//! policy") has the reasoning; this is the rule, unit-tested without the queue.

use crate::domain::FailureKind;
use std::time::Duration;
use tokio::time::Instant;

/// Longest wait after infrastructure failures.
pub const MAX_INFRA_BACKOFF: Duration = Duration::from_secs(600);

/// `[policy]` of the orchestrator's configuration.
#[derive(Debug, Clone)]
pub struct FailurePolicy {
    /// A package whose build failed on this many different drones is poison; twice this
    /// many build failures in all also fail it.
    pub build_failure_drones: u32,
    /// Infrastructure failures a package may have before it fails for good.
    pub max_infra_retries: u32,
    /// First wait after an infrastructure failure; doubles per further failure.
    pub infra_backoff: Duration,
}

/// What the policy counts of a package's attempts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attempts {
    /// Attempts that ended without an artifact (cancelled ones not counted).
    pub attempts: u32,
    /// Of those, infrastructure failures outside a central fault.
    pub infra_failures: u32,
    /// Drones its build failed on.
    pub failed_on: Vec<String>,
    /// Not handed out before this (backoff after infrastructure failures).
    pub not_before: Option<Instant>,
}

impl Attempts {
    /// A fresh start (the operator retried it).
    pub fn clear(&mut self) {
        *self = Attempts::default();
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Back to the queue (maybe after a backoff, set in `not_before`).
    Retry,
    /// Failed for good, for this reason.
    GiveUp(String),
}

impl FailurePolicy {
    /// Counts the attempt against `p` and decides. A cancelled attempt costs nothing; an
    /// infrastructure failure during a central fault does not use up a retry.
    /// `backoff`: wait before the next hand-out (a failed upload), not for reclaimed work.
    #[allow(clippy::too_many_arguments)]
    pub fn judge(
        &self,
        p: &mut Attempts,
        kind: FailureKind,
        drone: &str,
        reason: &str,
        backoff: bool,
        central_fault: bool,
        now: Instant,
    ) -> Verdict {
        match kind {
            FailureKind::Cancelled => Verdict::Retry,
            FailureKind::Build => {
                p.attempts += 1;
                if !p.failed_on.iter().any(|d| d == drone) {
                    p.failed_on.push(drone.to_string());
                }
                let build_failures = p.attempts - p.infra_failures;
                let distinct = p.failed_on.len() as u32;
                let limit = self.build_failure_drones;
                if distinct >= limit || build_failures >= limit.saturating_mul(2) {
                    Verdict::GiveUp(format!(
                        "build failed on {} ({}): {reason}",
                        p.failed_on.join(", "),
                        if distinct >= limit {
                            "poison package"
                        } else {
                            "too many build failures"
                        }
                    ))
                } else {
                    Verdict::Retry
                }
            }
            FailureKind::Infra => {
                p.attempts += 1;
                if !central_fault {
                    p.infra_failures += 1;
                }
                let doublings = p.infra_failures.saturating_sub(1).min(16);
                let wait = self
                    .infra_backoff
                    .saturating_mul(1 << doublings)
                    .min(MAX_INFRA_BACKOFF);
                p.not_before = backoff.then_some(now + wait);
                if p.infra_failures > self.max_infra_retries {
                    Verdict::GiveUp(format!(
                        "gave up after {} infrastructure failures; last: {reason}",
                        p.infra_failures
                    ))
                } else {
                    Verdict::Retry
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> FailurePolicy {
        FailurePolicy {
            build_failure_drones: 2,
            max_infra_retries: 2,
            infra_backoff: Duration::from_secs(10),
        }
    }

    #[test]
    fn build_failures_on_enough_drones_make_a_poison_package() {
        let p = &mut Attempts::default();
        let now = Instant::now();
        let pol = policy();
        assert_eq!(
            pol.judge(p, FailureKind::Build, "d1", "x", true, false, now),
            Verdict::Retry
        );
        // The same drone again: not a second drone, but more build failures; twice the
        // drone limit (4) in all fails it.
        for _ in 0..2 {
            assert_eq!(
                pol.judge(p, FailureKind::Build, "d1", "x", true, false, now),
                Verdict::Retry
            );
        }
        let v = pol.judge(p, FailureKind::Build, "d1", "x", true, false, now);
        assert!(
            matches!(v, Verdict::GiveUp(ref w) if w.contains("too many build failures")),
            "{v:?}"
        );
        let p = &mut Attempts::default();
        pol.judge(p, FailureKind::Build, "d1", "x", true, false, now);
        let v = pol.judge(p, FailureKind::Build, "d2", "x", true, false, now);
        assert!(
            matches!(v, Verdict::GiveUp(ref w) if w.contains("poison") && w.contains("d1, d2")),
            "{v:?}"
        );
    }

    #[test]
    fn infra_failures_back_off_doubling_and_give_up_past_the_limit() {
        let p = &mut Attempts::default();
        let now = Instant::now();
        let pol = policy();
        assert_eq!(
            pol.judge(p, FailureKind::Infra, "d1", "x", true, false, now),
            Verdict::Retry
        );
        assert_eq!(p.not_before, Some(now + Duration::from_secs(10)));
        assert_eq!(
            pol.judge(p, FailureKind::Infra, "d1", "x", true, false, now),
            Verdict::Retry
        );
        assert_eq!(p.not_before, Some(now + Duration::from_secs(20)));
        // Reclaimed work (no backoff) goes out again at once.
        let v = pol.judge(p, FailureKind::Infra, "d1", "x", false, false, now);
        assert!(
            matches!(v, Verdict::GiveUp(ref w) if w.contains("3 infrastructure failures")),
            "{v:?}"
        );
        assert_eq!(p.not_before, None);
    }

    #[test]
    fn the_backoff_is_capped() {
        let p = &mut Attempts::default();
        p.infra_failures = 30;
        let pol = FailurePolicy {
            max_infra_retries: 100,
            ..policy()
        };
        let now = Instant::now();
        pol.judge(p, FailureKind::Infra, "d1", "x", true, false, now);
        assert_eq!(p.not_before, Some(now + MAX_INFRA_BACKOFF));
    }

    #[test]
    fn a_central_fault_and_a_cancel_use_up_no_retry() {
        let p = &mut Attempts::default();
        let now = Instant::now();
        let pol = policy();
        for _ in 0..10 {
            assert_eq!(
                pol.judge(p, FailureKind::Infra, "d1", "x", true, true, now),
                Verdict::Retry
            );
        }
        assert_eq!(p.infra_failures, 0);
        assert_eq!(
            pol.judge(p, FailureKind::Cancelled, "d1", "x", true, false, now),
            Verdict::Retry
        );
        assert_eq!(p.attempts, 10);
    }
}
