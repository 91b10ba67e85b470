//! What the queue knows of the drones (pushed by the registry with `Fleet`): which may
//! build now, with which environment and how many slots — for packages' requirements
//! ([`super::graph::placement`]), for the ETA, and for handing the longest chains to the
//! faster drones (docs/design.md, "Learned durations").

use super::leases::LeaseEnd;
use super::PackageQueue;
use crate::domain::environment::DroneEnvironment;
use crate::domain::PackageState;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// A drone counts as faster than another when its speed factor is below the other's
/// divided by this.
const FASTER_BY: f64 = 1.25;
/// A slower drone passes over at most this many of the longest chains.
const MAX_PASSED_FOR_FASTER: usize = 8;

/// One drone as the queue sees it.
#[derive(Debug, Clone)]
pub struct FleetMember {
    pub slots: u32,
    /// Online, not paused, its environment fits: it may be given work.
    pub may_build: bool,
    /// Keys of its build environment differ from the expected ones: what it builds now
    /// would not be what the binhost promises (its leases are withdrawn, its completions
    /// not published). A drone that only lags, or whose command failed, is not.
    pub withdrawn: bool,
    pub environment: Option<Arc<DroneEnvironment>>,
}

/// Every registered drone (registry → queue, whenever one changes).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fleet(pub HashMap<String, FleetMember>);

/// A drone's build environment stopped fitting (keys differ): its active leases end
/// and are handed out again at no cost to the package or the drone (registry → queue).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WithdrawDrone {
    pub drone: String,
    pub reason: String,
}

impl Handler<WithdrawDrone> for PackageQueue {
    type Result = ();
    fn handle(&mut self, msg: WithdrawDrone, ctx: &mut Self::Context) {
        if self.reloading {
            return;
        }
        let leases = self.leases.active_of(&msg.drone);
        if leases.is_empty() {
            return;
        }
        slog::warn!(self.log, "withdrawing a drone's work: its build environment no longer fits";
                    "drone" => &msg.drone, "leases" => leases.len(), "reason" => &msg.reason);
        for id in leases {
            let Some(pkg) = self.leases.get(id).map(|l| l.pkg) else {
                continue;
            };
            self.end_lease(id, true, LeaseEnd::Cancelled);
            self.attempt_failed(
                pkg,
                crate::domain::FailureKind::Cancelled,
                &msg.drone,
                &msg.reason,
                "",
                false,
            );
            self.verdict(
                msg.drone.clone(),
                crate::actors::orchestrator::circuit_breaker::Outcome::Neutral,
            );
        }
        self.flush(ctx);
    }
}

impl PackageQueue {
    /// Whether `drone`'s work is withdrawn (its environment's keys differ).
    pub(super) fn withdrawn(&self, drone: &str) -> bool {
        self.fleet.get(drone).is_some_and(|m| m.withdrawn)
    }
}

/// Write what was learned now (the binary, once its server stopped; tests); answered
/// once it is committed.
#[derive(Message)]
#[rtype(result = "Result<(), super::QueueError>")]
pub struct SaveLearned;

impl Handler<SaveLearned> for PackageQueue {
    type Result = ResponseFuture<Result<(), super::QueueError>>;
    fn handle(&mut self, _: SaveLearned, ctx: &mut Self::Context) -> Self::Result {
        self.save_learned(ctx);
        let rx = self.durable(ctx);
        super::answer_after(rx, Ok(()))
    }
}

/// Each drone's learned speed factor (drones not listed: 1.0).
#[derive(Message)]
#[rtype(result = "HashMap<String, f64>")]
pub struct SpeedFactors;

impl Handler<SpeedFactors> for PackageQueue {
    type Result = MessageResult<SpeedFactors>;
    fn handle(&mut self, _: SpeedFactors, _: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.fleet
                .keys()
                .map(|d| (d.clone(), self.durations.speed(d)))
                .collect(),
        )
    }
}

/// Seconds until the set is done (`Status.eta_s`).
#[derive(Message)]
#[rtype(result = "Option<u64>")]
pub struct GetEta;

impl Handler<Fleet> for PackageQueue {
    type Result = ();
    fn handle(&mut self, msg: Fleet, ctx: &mut Self::Context) {
        self.fleet = msg.0;
        if self.apply_fleet() > 0 {
            self.flush(ctx);
        }
    }
}

impl Handler<GetEta> for PackageQueue {
    type Result = Option<u64>;
    fn handle(&mut self, _: GetEta, _: &mut Self::Context) -> Self::Result {
        self.eta_now()
    }
}

impl PackageQueue {
    /// Seconds until the set is done over the slots of the drones that may build.
    pub(super) fn eta_now(&self) -> Option<u64> {
        let slots: u32 = self
            .fleet
            .values()
            .filter(|m| m.may_build)
            .map(|m| m.slots)
            .sum();
        eta(&self.graph, slots)
    }
}

impl PackageQueue {
    /// Tells the graph which drones may build now (after a `Fleet`, or a reload).
    pub(super) fn apply_fleet(&mut self) -> usize {
        let builders = self
            .fleet
            .values()
            .filter(|m| m.may_build)
            .map(|m| m.environment.clone())
            .collect();
        self.graph.set_builders(builders)
    }

    /// `drone` built package `pkg` in the time its lease measured: learned for its name and
    /// the drone's speed (written by [`Self::save_learned`]).
    pub(super) fn learn(&mut self, pkg: u32, lease: super::LeaseId, drone: &str) {
        let Some(l) = self.leases.get(lease).filter(|l| l.timed) else {
            return;
        };
        let took = l.built_in.unwrap_or_else(|| l.created.elapsed());
        let atom = &self.graph.get(pkg).atom;
        let name = format!("{}/{}", atom.category, atom.name);
        self.durations.record(&name, drone, took.as_secs_f64());
    }

    /// Writes what was learned since the last time, with the next batch. Called every
    /// [`super::SAVE_LEARNED_EVERY`], not per build: each name's row is its own page of
    /// the table, and a write per build cost a tenth of the throughput (BENCHMARKS.md §7).
    /// A crash loses at most that much learning, never a package.
    pub(super) fn save_learned(&mut self, ctx: &mut Context<Self>) {
        let (names, speeds) = self.durations.take_dirty();
        if names.is_empty() && speeds.is_empty() {
            return;
        }
        for n in names {
            self.commit
                .push(crate::actors::orchestrator::store::Write::Duration(n));
        }
        for s in speeds {
            self.commit
                .push(crate::actors::orchestrator::store::Write::Speed(s));
        }
        self.flush(ctx);
    }

    /// The drone's learned speed factor (1.0 until known).
    pub fn speed_of(&self, drone: &str) -> f64 {
        self.durations.speed(drone)
    }

    /// The environment `drone` reported (None: none, or not known to the queue).
    pub(super) fn environment_of(&self, drone: &str) -> Option<Arc<DroneEnvironment>> {
        self.fleet.get(drone).and_then(|m| m.environment.clone())
    }

    /// The drones faster than `drone` with free slots that claimed lately (a grounded or
    /// gone one does not), and how many of the longest chains to leave to them: their free
    /// slots together, at most [`MAX_PASSED_FOR_FASTER`].
    pub(super) fn faster_with_room(
        &self,
        drone: &str,
    ) -> (Vec<Option<Arc<DroneEnvironment>>>, usize) {
        if !self.durations.any_speed_known() {
            return (Vec::new(), 0);
        }
        let mine = self.durations.speed(drone);
        let horizon = self.settings.heartbeat_ttl;
        let mut free = 0usize;
        let mut envs = Vec::new();
        for (name, m) in &self.fleet {
            if name == drone || !m.may_build {
                continue;
            }
            if self.durations.speed(name) * FASTER_BY > mine {
                continue;
            }
            let lately = self
                .active_drones
                .get(name)
                .is_some_and(|t| t.elapsed() < horizon);
            let room = (m.slots as usize).saturating_sub(self.leases.active_count(name));
            if lately && room > 0 {
                free += room;
                envs.push(m.environment.clone());
            }
        }
        (envs, free.min(MAX_PASSED_FOR_FASTER))
    }
}

/// The longest remaining chain or the remaining work spread over `slots`, whichever is
/// longer, in seconds (estimates: declared or learned, 1 s when unknown). None: nothing
/// left, or no slot to build it.
pub fn eta(g: &super::graph::PackageGraph, slots: u32) -> Option<u64> {
    let mut chain_ms = 0u64;
    let mut work_ms = 0u64;
    let mut left = false;
    for p in &g.packages {
        // A parked package waits for a drone that may never come: no estimate for it.
        if p.parked.is_some() {
            continue;
        }
        if !matches!(
            p.state,
            PackageState::Waiting
                | PackageState::Queued
                | PackageState::Building
                | PackageState::Uploading
        ) {
            continue;
        }
        left = true;
        chain_ms = chain_ms.max(p.priority);
        work_ms = work_ms.saturating_add(super::graph::priority_ms(p.estimate_s));
    }
    if !left || slots == 0 {
        return None;
    }
    let spread = work_ms / u64::from(slots);
    Some(chain_ms.max(spread).div_ceil(1000))
}

#[cfg(test)]
mod tests {
    use super::eta;
    use crate::actors::orchestrator::queue::graph::PackageGraph;
    use crate::config::orchestrator::ScheduleOrder;
    use crate::domain::parse_package_set;

    #[test]
    fn the_eta_is_the_longest_chain_or_the_work_per_slot() {
        let set = parse_package_set(
            r#"{"packages": [
                {"atom": "a/chain-1", "estimate_s": 100},
                {"atom": "a/chain-2", "deps": ["a/chain-1"], "estimate_s": 100},
                {"atom": "a/x-1", "estimate_s": 50},
                {"atom": "a/y-1", "estimate_s": 50}]}"#,
        )
        .expect("set");
        let mut g = PackageGraph::new(ScheduleOrder::CriticalPath);
        g.submit(&set);
        // 300 s of work: one slot takes 300 s; four slots wait for the 200 s chain.
        assert_eq!(eta(&g, 1), Some(300));
        assert_eq!(eta(&g, 4), Some(200));
        assert_eq!(eta(&g, 0), None);
        assert_eq!(
            eta(&PackageGraph::new(ScheduleOrder::CriticalPath), 4),
            None
        );
    }
}
