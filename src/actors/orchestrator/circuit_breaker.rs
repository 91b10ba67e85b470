//! **CircuitBreaker** — owns every drone's failure count and grounding (closed, open for
//! `cooloff_s`, half-open with one probe lease) and the fleet-wide central-fault flag
//! (docs/design.md, "Failure policy").
//!
//! Hears `RecordOutcome` from the queue, `MayClaim`/`ProbeUnused` from drone sessions,
//! `FleetSize` from the registry, `Unground` from the operator, `HealthReport` and
//! `FaultReport` for reads. Tells the queue `FaultChanged` and the notifier `Notify`
//! (groundings, central faults and their ends; fire-and-forget); it never awaits anyone.

use crate::actors::orchestrator::notifier::Notify;
use crate::domain::FailureKind;
use crate::orchestrator::metrics::Metrics;
use crate::orchestrator::notify::{Event, EventKind};
use crate::sys::clock::SharedClock;
use actix::prelude::*;
use slog::{info, warn, Logger};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct BreakerSettings {
    pub max_failures: u32,
    pub cooloff: Duration,
    /// Share of the online drones that may be grounded at once (0.0-1.0).
    pub max_grounded_share: f64,
    /// During a central fault, a failing drone waits this long (±50 %) before claiming.
    pub central_backoff: Duration,
}

impl From<&crate::config::orchestrator::BreakerConfig> for BreakerSettings {
    fn from(c: &crate::config::orchestrator::BreakerConfig) -> Self {
        BreakerSettings {
            max_failures: c.max_failures,
            cooloff: Duration::from_secs(c.cooloff_s),
            max_grounded_share: c.max_grounded_share,
            central_backoff: Duration::from_secs(c.central_backoff_s),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success,
    Failure {
        kind: FailureKind,
        reason: String,
    },
    /// The attempt ended without a verdict on the drone (a build failure whose fault is
    /// not known yet, a lease made moot by another drone's artifact). Counts nothing, but
    /// ends a probe, so the next claim can be the probe again.
    Neutral,
}

/// A drone's attempt ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordOutcome {
    pub drone: String,
    pub outcome: Outcome,
}

/// May this drone take work now?
#[derive(Message)]
#[rtype(result = "Result<Admission, Refusal>")]
pub struct MayClaim {
    pub drone: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// This claim is the half-open breaker's one probe.
    pub probe: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// Grounded (breaker open) rather than waiting for a probe or backing off.
    pub grounded: bool,
    pub until_unix: Option<u64>,
    pub reason: String,
}

/// The probe admission was not used (the claim found no work).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProbeUnused {
    pub drone: String,
}

/// Which drones are online (from the registry, when that changes). The fleet guard
/// counts only these: offline drones neither make room for groundings nor use it up.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FleetSize {
    pub online: Vec<String>,
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
    /// Half-open: waiting for (or running) its probe lease.
    pub probing: bool,
}

#[derive(Message)]
#[rtype(result = "HashMap<String, HealthView>")]
pub struct HealthReport;

pub use crate::wire::orchestrator::CentralFault;

#[derive(Message)]
#[rtype(result = "Option<CentralFault>")]
pub struct FaultReport;

/// Sent to the queue when a central fault starts (`true`) or ends.
#[derive(Message, Debug, Clone, PartialEq)]
#[rtype(result = "()")]
pub struct FaultChanged {
    pub central: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Closed,
    Open { until: Instant, until_unix: u64 },
    HalfOpen { probe_out: bool },
}

#[derive(Debug)]
struct Health {
    consecutive: u32,
    mode: Mode,
    reason: Option<String>,
    backoff_until: Option<Instant>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            consecutive: 0,
            mode: Mode::Closed,
            reason: None,
            backoff_until: None,
        }
    }
}

pub struct CircuitBreaker {
    settings: BreakerSettings,
    clock: SharedClock,
    drones: HashMap<String, Health>,
    /// Online drones, as last told by the registry; `None` until it has said anything.
    online: Option<std::collections::HashSet<String>>,
    central: Option<CentralFault>,
    queue: Option<Recipient<FaultChanged>>,
    notify: Option<Recipient<Notify>>,
    jitter: u64,
    metrics: Arc<Metrics>,
    log: Logger,
}

impl CircuitBreaker {
    pub fn new(
        settings: BreakerSettings,
        clock: SharedClock,
        queue: Option<Recipient<FaultChanged>>,
        log: Logger,
    ) -> Self {
        let seed = clock.unix() ^ 0x9e37_79b9_7f4a_7c15;
        CircuitBreaker {
            settings,
            clock,
            drones: HashMap::new(),
            online: None,
            central: None,
            queue,
            notify: None,
            jitter: seed | 1,
            metrics: Arc::default(),
            log: log.new(slog::o!("actor" => "circuit_breaker")),
        }
    }

    /// Counts groundings into `metrics` (see [`crate::orchestrator::metrics`]).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Tells `notify` of groundings and central faults.
    pub fn with_notify(mut self, notify: Option<Recipient<Notify>>) -> Self {
        self.notify = notify;
        self
    }

    fn tell(&self, e: Event) {
        if let Some(n) = &self.notify {
            n.do_send(Notify(e));
        }
    }

    /// 0.5..1.5 (xorshift; jitter needs no cryptography).
    fn jitter_factor(&mut self) -> f64 {
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        0.5 + (self.jitter % 1000) as f64 / 1000.0
    }

    /// An open breaker whose cool-off is over becomes half-open.
    fn refresh(&mut self, drone: &str) {
        let now = self.clock.now();
        if let Some(h) = self.drones.get_mut(drone) {
            if let Mode::Open { until, .. } = h.mode {
                if now >= until {
                    info!(self.log, "cool-off over, one probe lease allowed"; "drone" => drone);
                    h.mode = Mode::HalfOpen { probe_out: false };
                }
            }
        }
    }

    fn is_online(&self, drone: &str) -> bool {
        self.online.as_ref().is_none_or(|o| o.contains(drone))
    }

    /// Grounded drones that are online.
    fn grounded_count(&self) -> usize {
        self.drones
            .iter()
            .filter(|(d, h)| matches!(h.mode, Mode::Open { .. }) && self.is_online(d))
            .count()
    }

    /// How many online drones may be grounded at once.
    fn ground_limit(&self) -> usize {
        let fleet = match &self.online {
            Some(o) => o.len(),
            None => self.drones.len(),
        };
        (self.settings.max_grounded_share * fleet.max(1) as f64).floor() as usize
    }

    fn set_central(&mut self, reason: String) {
        if self.central.is_some() {
            return;
        }
        let online = self
            .online
            .as_ref()
            .map(|o| o.len())
            .unwrap_or(self.drones.len());
        warn!(self.log, "central fault: too many drones failing at once, not grounding them";
              "reason" => &reason, "online" => online);
        self.central = Some(CentralFault {
            since: self.clock.unix(),
            reason,
        });
        // The drones grounded so far were victims of the same fault.
        let mut freed = Vec::new();
        for (d, h) in self.drones.iter_mut() {
            if matches!(h.mode, Mode::Open { .. } | Mode::HalfOpen { .. }) {
                *h = Health::default();
                freed.push(d.clone());
            }
        }
        if let Some(q) = &self.queue {
            q.do_send(FaultChanged { central: true });
        }
        if let Some(c) = &self.central {
            self.tell(Event::central_fault(&c.reason));
        }
        for d in freed {
            self.tell(Event::recovered(EventKind::DroneGrounded, Some(&d)));
        }
    }

    fn clear_central(&mut self) {
        if self.central.take().is_some() {
            info!(self.log, "central fault cleared: work succeeds again");
            for h in self.drones.values_mut() {
                h.backoff_until = None;
            }
            if let Some(q) = &self.queue {
                q.do_send(FaultChanged { central: false });
            }
            self.tell(Event::recovered(EventKind::CentralFault, None));
        }
    }

    fn back_off(&mut self, drone: &str) {
        let wait = self.settings.central_backoff.mul_f64(self.jitter_factor());
        let until = self.clock.now() + wait;
        if let Some(h) = self.drones.get_mut(drone) {
            h.consecutive = 0;
            h.backoff_until = Some(until);
        }
    }

    fn trip(&mut self, drone: &str, why: String) {
        if self.central.is_some() {
            self.back_off(drone);
            return;
        }
        if self.grounded_count() + 1 > self.ground_limit() {
            self.set_central(format!("drone {drone}: {why}"));
            self.back_off(drone);
            return;
        }
        let until = self.clock.now() + self.settings.cooloff;
        let until_unix = self.clock.unix() + self.settings.cooloff.as_secs();
        self.metrics.breaker_trips.inc();
        warn!(self.log, "drone grounded"; "drone" => drone, "cooloff_s" => self.settings.cooloff.as_secs(), "why" => &why);
        self.tell(Event::drone(
            EventKind::DroneGrounded,
            drone,
            Some(why.clone()),
        ));
        if let Some(h) = self.drones.get_mut(drone) {
            h.mode = Mode::Open { until, until_unix };
            h.reason = Some(why);
        }
    }
}

impl Actor for CircuitBreaker {
    type Context = Context<Self>;
}

impl Handler<RecordOutcome> for CircuitBreaker {
    type Result = ();
    fn handle(&mut self, msg: RecordOutcome, _: &mut Self::Context) {
        self.refresh(&msg.drone);
        let max = self.settings.max_failures;
        let h = self.drones.entry(msg.drone.clone()).or_default();
        match msg.outcome {
            Outcome::Success => {
                let was_grounded = !matches!(h.mode, Mode::Closed);
                *h = Health::default();
                if was_grounded {
                    info!(self.log, "probe succeeded, breaker closed"; "drone" => &msg.drone);
                    self.tell(Event::recovered(EventKind::DroneGrounded, Some(&msg.drone)));
                }
                self.clear_central();
            }
            Outcome::Neutral
            | Outcome::Failure {
                kind: FailureKind::Cancelled,
                ..
            } => {
                // Costs nothing; the probe may be tried again.
                if let Mode::HalfOpen { .. } = h.mode {
                    h.mode = Mode::HalfOpen { probe_out: false };
                }
            }
            Outcome::Failure { kind, reason } => match h.mode {
                Mode::Open { .. } => {}
                Mode::HalfOpen { .. } => {
                    let why = format!("probe failed ({kind}): {reason}");
                    self.trip(&msg.drone, why);
                }
                Mode::Closed => {
                    h.consecutive += 1;
                    if h.consecutive >= max {
                        let why = format!(
                            "{} consecutive failures, last ({kind}): {reason}",
                            h.consecutive
                        );
                        self.trip(&msg.drone, why);
                    } else if self.central.is_some() {
                        self.back_off(&msg.drone);
                    }
                }
            },
        }
    }
}

impl Handler<MayClaim> for CircuitBreaker {
    type Result = Result<Admission, Refusal>;
    fn handle(&mut self, msg: MayClaim, _: &mut Self::Context) -> Self::Result {
        self.refresh(&msg.drone);
        let now = self.clock.now();
        let central = self.central.as_ref().map(|c| c.reason.clone());
        let h = self.drones.entry(msg.drone).or_default();
        match h.mode {
            Mode::Open { until_unix, .. } => Err(Refusal {
                grounded: true,
                until_unix: Some(until_unix),
                reason: h.reason.clone().unwrap_or_default(),
            }),
            Mode::HalfOpen { probe_out: true } => Err(Refusal {
                grounded: false,
                until_unix: None,
                reason: "waiting for the outcome of the probe lease".into(),
            }),
            Mode::HalfOpen { probe_out: false } => {
                h.mode = Mode::HalfOpen { probe_out: true };
                Ok(Admission { probe: true })
            }
            Mode::Closed => match h.backoff_until {
                Some(t) if t > now => Err(Refusal {
                    grounded: false,
                    until_unix: None,
                    reason: format!(
                        "backing off: central fault ({})",
                        central.unwrap_or_default()
                    ),
                }),
                _ => Ok(Admission { probe: false }),
            },
        }
    }
}

impl Handler<ProbeUnused> for CircuitBreaker {
    type Result = ();
    fn handle(&mut self, msg: ProbeUnused, _: &mut Self::Context) {
        if let Some(h) = self.drones.get_mut(&msg.drone) {
            if let Mode::HalfOpen { .. } = h.mode {
                h.mode = Mode::HalfOpen { probe_out: false };
            }
        }
    }
}

impl Handler<FleetSize> for CircuitBreaker {
    type Result = ();
    fn handle(&mut self, msg: FleetSize, _: &mut Self::Context) {
        self.online = Some(msg.online.into_iter().collect());
    }
}

impl Handler<Unground> for CircuitBreaker {
    type Result = bool;
    fn handle(&mut self, msg: Unground, _: &mut Self::Context) -> bool {
        let h = self.drones.entry(msg.drone.clone()).or_default();
        let was = !matches!(h.mode, Mode::Closed);
        *h = Health::default();
        info!(self.log, "ungrounded by the operator"; "drone" => &msg.drone, "was_grounded" => was);
        if was {
            self.tell(Event::recovered(EventKind::DroneGrounded, Some(&msg.drone)));
        }
        was
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
                    let grounded_until = match h.mode {
                        Mode::Open { until_unix, .. } => Some(until_unix),
                        _ => None,
                    };
                    (
                        name.clone(),
                        HealthView {
                            failures: h.consecutive,
                            grounded_until,
                            reason: h.reason.clone().filter(|_| !matches!(h.mode, Mode::Closed)),
                            probing: matches!(h.mode, Mode::HalfOpen { .. }),
                        },
                    )
                })
                .collect(),
        )
    }
}

impl Handler<FaultReport> for CircuitBreaker {
    type Result = Option<CentralFault>;
    fn handle(&mut self, _: FaultReport, _: &mut Self::Context) -> Self::Result {
        self.central.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::clock::ManualClock;
    use crate::sys::logging::Capture;
    use std::sync::Arc;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            max_failures: 5,
            cooloff: Duration::from_secs(120),
            max_grounded_share: 0.5,
            central_backoff: Duration::from_secs(10),
        }
    }

    fn fail(d: &str) -> RecordOutcome {
        RecordOutcome {
            drone: d.into(),
            outcome: Outcome::Failure {
                kind: FailureKind::Infra,
                reason: "rsync exit 30".into(),
            },
        }
    }

    fn ok(d: &str) -> RecordOutcome {
        RecordOutcome {
            drone: d.into(),
            outcome: Outcome::Success,
        }
    }

    fn start(clock: Arc<ManualClock>, online: usize) -> Addr<CircuitBreaker> {
        let b = CircuitBreaker::new(
            settings(),
            clock,
            None,
            Capture::default().logger(slog::Level::Info),
        )
        .start();
        b.do_send(FleetSize {
            online: (1..=online).map(|i| format!("d{i}")).collect(),
        });
        b
    }

    async fn may(b: &Addr<CircuitBreaker>, d: &str) -> Result<Admission, Refusal> {
        b.send(MayClaim { drone: d.into() }).await.unwrap()
    }

    #[actix_web::test]
    async fn grounded_then_exactly_one_probe_then_closed() {
        let clock = ManualClock::new();
        let b = start(clock.clone(), 4);
        for _ in 0..4 {
            b.send(fail("d1")).await.unwrap();
        }
        assert!(may(&b, "d1").await.is_ok());
        b.send(fail("d1")).await.unwrap();
        let r = may(&b, "d1").await.unwrap_err();
        assert!(
            r.grounded && r.reason.contains("5 consecutive failures"),
            "{r:?}"
        );
        clock.advance(Duration::from_secs(119));
        assert!(may(&b, "d1").await.is_err());
        clock.advance(Duration::from_secs(2));
        assert_eq!(may(&b, "d1").await, Ok(Admission { probe: true }));
        let second = may(&b, "d1").await.unwrap_err();
        assert!(!second.grounded, "half-open admits exactly one probe");
        b.send(ok("d1")).await.unwrap();
        assert_eq!(may(&b, "d1").await, Ok(Admission { probe: false }));
        assert_eq!(b.send(HealthReport).await.unwrap()["d1"].failures, 0);
    }

    #[actix_web::test]
    async fn a_failed_probe_grounds_again_and_an_unused_probe_can_be_retried() {
        let clock = ManualClock::new();
        let b = start(clock.clone(), 4);
        for _ in 0..5 {
            b.send(fail("d1")).await.unwrap();
        }
        clock.advance(Duration::from_secs(121));
        assert!(may(&b, "d1").await.unwrap().probe);
        b.send(ProbeUnused { drone: "d1".into() }).await.unwrap();
        assert!(may(&b, "d1").await.unwrap().probe);
        b.send(fail("d1")).await.unwrap();
        assert!(may(&b, "d1").await.unwrap_err().grounded);
    }

    #[actix_web::test]
    async fn a_probe_that_ends_without_a_verdict_can_be_tried_again() {
        let clock = ManualClock::new();
        let b = start(clock.clone(), 4);
        for _ in 0..5 {
            b.send(fail("d1")).await.unwrap();
        }
        clock.advance(Duration::from_secs(121));
        assert!(may(&b, "d1").await.unwrap().probe);
        assert!(may(&b, "d1").await.is_err());
        // The probe landed on a poison package: its build failure says nothing yet.
        b.send(RecordOutcome {
            drone: "d1".into(),
            outcome: Outcome::Neutral,
        })
        .await
        .unwrap();
        assert!(may(&b, "d1").await.unwrap().probe, "not shut out for good");
    }

    #[actix_web::test]
    async fn offline_drones_do_not_make_room_for_groundings() {
        let clock = ManualClock::new();
        let b = start(clock.clone(), 4);
        // Only d1 and d2 are online now: one of them may be grounded, not both.
        b.send(FleetSize {
            online: vec!["d1".into(), "d2".into()],
        })
        .await
        .unwrap();
        for d in ["d1", "d2"] {
            for _ in 0..5 {
                b.send(fail(d)).await.unwrap();
            }
        }
        let report = b.send(HealthReport).await.unwrap();
        let grounded = report
            .values()
            .filter(|h| h.grounded_until.is_some())
            .count();
        assert_eq!(
            grounded, 0,
            "the second grounding made it a central fault: {report:?}"
        );
        assert!(b.send(FaultReport).await.unwrap().is_some());
    }

    #[actix_web::test]
    async fn the_fleet_guard_turns_mass_failures_into_a_central_fault() {
        let clock = ManualClock::new();
        let b = start(clock.clone(), 4);
        for d in ["d1", "d2", "d3", "d4"] {
            for _ in 0..5 {
                b.send(fail(d)).await.unwrap();
            }
        }
        let report = b.send(HealthReport).await.unwrap();
        let grounded = report
            .values()
            .filter(|h| h.grounded_until.is_some())
            .count();
        assert!(grounded <= 2, "at most half the fleet grounded: {report:?}");
        let fault = b.send(FaultReport).await.unwrap().expect("central fault");
        assert!(fault.reason.contains("rsync exit 30"));
        // Failing drones back off for a while instead of being grounded.
        let r = may(&b, "d4").await.unwrap_err();
        assert!(!r.grounded && r.reason.contains("central fault"), "{r:?}");
        clock.advance(Duration::from_secs(16));
        assert!(may(&b, "d4").await.is_ok());
        b.send(ok("d4")).await.unwrap();
        assert!(
            b.send(FaultReport).await.unwrap().is_none(),
            "a success clears the fault"
        );
        for d in ["d1", "d2", "d3", "d4"] {
            assert!(may(&b, d).await.is_ok(), "{d}");
        }
    }

    #[actix_web::test]
    async fn cancellations_cost_nothing_and_successes_reset() {
        let clock = ManualClock::new();
        let b = start(clock, 4);
        for _ in 0..4 {
            b.send(fail("d1")).await.unwrap();
        }
        b.send(ok("d1")).await.unwrap();
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
        assert!(may(&b, "d1").await.is_ok());
        b.send(fail("d1")).await.unwrap();
        assert!(may(&b, "d1").await.is_err());
        assert!(b.send(Unground { drone: "d1".into() }).await.unwrap());
        assert!(may(&b, "d1").await.is_ok());
    }
}
