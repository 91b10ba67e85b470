//! **CircuitBreaker** — owns every drone's failure count and grounding.
//!
//! The seed's rule: `max_failures` consecutive failures (build or infrastructure; a
//! cancellation costs nothing) ground a drone for `cooloff_s`; when the cool-off is over
//! the drone comes back with a clean count, and any success resets the count. No
//! exponential punishment: the goal is to get drones back to work quickly.
//!
//! Receives: `RecordOutcome` from the package queue (fire-and-forget), `MayClaim` from
//! drone sessions before each claim, `Unground` from the operator, `HealthReport` from the
//! drone registry. It never calls back into anyone, so awaiting it cannot deadlock.

use crate::config::orchestrator::BreakerConfig;
use crate::domain::FailureKind;
use crate::metrics::Metrics;
use actix::prelude::*;
use slog::{info, warn, Logger};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success,
    Failure { kind: FailureKind, reason: String },
}

/// A drone's attempt ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordOutcome {
    pub drone: String,
    pub outcome: Outcome,
}

/// May this drone take work now? `Err` carries when it may again.
#[derive(Message)]
#[rtype(result = "Result<(), Grounded>")]
pub struct MayClaim {
    pub drone: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Grounded {
    pub until_unix: u64,
    pub reason: String,
}

/// Operator: let a grounded drone work again now, with a clean count.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Unground {
    pub drone: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthView {
    pub failures: u32,
    pub grounded_until: Option<u64>,
    pub reason: Option<String>,
}

/// Every drone's health, for listings and status.
#[derive(Message)]
#[rtype(result = "HashMap<String, HealthView>")]
pub struct HealthReport;

#[derive(Debug, Default)]
struct Health {
    consecutive: u32,
    grounded_until: Option<Instant>,
    grounded_until_unix: Option<u64>,
    reason: Option<String>,
}

pub struct CircuitBreaker {
    cfg: BreakerConfig,
    drones: HashMap<String, Health>,
    log: Logger,
    metrics: Arc<Metrics>,
}

impl CircuitBreaker {
    pub fn new(cfg: BreakerConfig, log: Logger) -> Self {
        CircuitBreaker {
            cfg,
            drones: HashMap::new(),
            log: log.new(slog::o!("actor" => "circuit_breaker")),
            metrics: Arc::default(),
        }
    }

    /// Counts groundings into `metrics` (see [`crate::metrics`]).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Ends a cool-off that is over; the drone comes back with a clean count.
    fn refresh(&mut self, drone: &str) {
        if let Some(h) = self.drones.get_mut(drone) {
            if h.grounded_until.is_some_and(|t| Instant::now() >= t) {
                info!(self.log, "cool-off over, drone may work again"; "drone" => drone);
                *h = Health::default();
            }
        }
    }
}

fn unix_in(d: Duration) -> u64 {
    (SystemTime::now() + d)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Actor for CircuitBreaker {
    type Context = Context<Self>;
}

impl Handler<RecordOutcome> for CircuitBreaker {
    type Result = ();
    fn handle(&mut self, msg: RecordOutcome, _: &mut Self::Context) {
        self.refresh(&msg.drone);
        let h = self.drones.entry(msg.drone.clone()).or_default();
        match msg.outcome {
            Outcome::Success => h.consecutive = 0,
            Outcome::Failure {
                kind: FailureKind::Cancelled,
                ..
            } => {}
            Outcome::Failure { kind, reason } => {
                if h.grounded_until.is_some() {
                    return;
                }
                h.consecutive += 1;
                if h.consecutive >= self.cfg.max_failures {
                    let cooloff = Duration::from_secs(self.cfg.cooloff_s);
                    h.grounded_until = Some(Instant::now() + cooloff);
                    h.grounded_until_unix = Some(unix_in(cooloff));
                    let why = format!(
                        "{} consecutive failures, last ({kind}): {reason}",
                        h.consecutive
                    );
                    self.metrics.breaker_trips.inc();
                    warn!(self.log, "drone grounded"; "drone" => &msg.drone, "cooloff_s" => self.cfg.cooloff_s, "why" => &why);
                    h.reason = Some(why);
                }
            }
        }
    }
}

impl Handler<MayClaim> for CircuitBreaker {
    type Result = Result<(), Grounded>;
    fn handle(&mut self, msg: MayClaim, _: &mut Self::Context) -> Self::Result {
        self.refresh(&msg.drone);
        match self.drones.get(&msg.drone) {
            Some(h) if h.grounded_until.is_some() => Err(Grounded {
                until_unix: h.grounded_until_unix.unwrap_or(0),
                reason: h.reason.clone().unwrap_or_default(),
            }),
            _ => Ok(()),
        }
    }
}

impl Handler<Unground> for CircuitBreaker {
    type Result = bool;
    fn handle(&mut self, msg: Unground, _: &mut Self::Context) -> bool {
        match self.drones.get_mut(&msg.drone) {
            Some(h) => {
                let was = h.grounded_until.is_some();
                *h = Health::default();
                info!(self.log, "ungrounded by operator"; "drone" => &msg.drone, "was_grounded" => was);
                was
            }
            None => false,
        }
    }
}

impl Handler<HealthReport> for CircuitBreaker {
    type Result = MessageResult<HealthReport>;
    fn handle(&mut self, _: HealthReport, _: &mut Self::Context) -> Self::Result {
        let names: Vec<String> = self.drones.keys().cloned().collect();
        for n in &names {
            self.refresh(n);
        }
        MessageResult(
            self.drones
                .iter()
                .map(|(name, h)| {
                    (
                        name.clone(),
                        HealthView {
                            failures: h.consecutive,
                            grounded_until: h.grounded_until.and(h.grounded_until_unix),
                            reason: h.reason.clone(),
                        },
                    )
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::Capture;

    fn fail(d: &str) -> RecordOutcome {
        RecordOutcome {
            drone: d.into(),
            outcome: Outcome::Failure {
                kind: FailureKind::Infra,
                reason: "rsync exit 30".into(),
            },
        }
    }

    #[actix_web::test]
    async fn five_failures_ground_for_the_cooloff_then_a_clean_count() {
        tokio::time::pause();
        let b = CircuitBreaker::new(
            BreakerConfig::default(),
            Capture::default().logger(slog::Level::Info),
        )
        .start();
        for _ in 0..4 {
            b.send(fail("d1")).await.unwrap();
        }
        assert!(b
            .send(MayClaim { drone: "d1".into() })
            .await
            .unwrap()
            .is_ok());
        b.send(fail("d1")).await.unwrap();
        let g = b
            .send(MayClaim { drone: "d1".into() })
            .await
            .unwrap()
            .unwrap_err();
        assert!(g.reason.contains("5 consecutive failures"), "{}", g.reason);
        tokio::time::advance(Duration::from_secs(119)).await;
        assert!(b
            .send(MayClaim { drone: "d1".into() })
            .await
            .unwrap()
            .is_err());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(b
            .send(MayClaim { drone: "d1".into() })
            .await
            .unwrap()
            .is_ok());
        let report = b.send(HealthReport).await.unwrap();
        assert_eq!(report["d1"].failures, 0);
    }

    #[actix_web::test]
    async fn success_and_cancellation() {
        let b = CircuitBreaker::new(
            BreakerConfig::default(),
            Capture::default().logger(slog::Level::Info),
        )
        .start();
        for _ in 0..4 {
            b.send(fail("d1")).await.unwrap();
        }
        b.send(RecordOutcome {
            drone: "d1".into(),
            outcome: Outcome::Success,
        })
        .await
        .unwrap();
        for _ in 0..4 {
            b.send(fail("d1")).await.unwrap();
        }
        for _ in 0..10 {
            b.send(RecordOutcome {
                drone: "d1".into(),
                outcome: Outcome::Failure {
                    kind: FailureKind::Cancelled,
                    reason: "operator".into(),
                },
            })
            .await
            .unwrap();
        }
        assert!(b
            .send(MayClaim { drone: "d1".into() })
            .await
            .unwrap()
            .is_ok());
        b.send(fail("d1")).await.unwrap();
        assert!(b
            .send(MayClaim { drone: "d1".into() })
            .await
            .unwrap()
            .is_err());
        assert!(b.send(Unground { drone: "d1".into() }).await.unwrap());
        assert!(b
            .send(MayClaim { drone: "d1".into() })
            .await
            .unwrap()
            .is_ok());
    }
}
