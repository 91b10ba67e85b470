//! Handing out work: which ready package a claiming drone gets (critical path, operator
//! priority, requirements, a package that failed there, the longest chains left to faster
//! drones) and the lease it gets it under.

use super::graph;
use super::leases::{Lease, LeasePhase};
use super::{FleetMember, PackageQueue};
use crate::actors::orchestrator::build_logs::LeaseLog;
use crate::actors::orchestrator::lease_deadlines::{Arm, DeadlineKind};
use crate::domain::PackageState;
use crate::wire::orchestrator::WorkAssignment;
use slog::debug;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

impl PackageQueue {
    /// May `drone` build `id`? Not if its build already failed there while another drone
    /// that has not failed it, and could build it, is around.
    pub(super) fn eligible(&self, id: u32, drone: &str) -> bool {
        eligible(
            &self.active_drones,
            &self.fleet,
            self.settings.heartbeat_ttl,
            self.graph.get(id),
            drone,
        )
    }

    pub(super) fn claim(&mut self, drone: &str, slots: u32) -> Option<WorkAssignment> {
        self.active_drones.insert(drone.to_string(), Instant::now());
        if self.leases.active_count(drone) >= slots.max(1) as usize || self.withdrawn(drone) {
            return None;
        }
        let now = self.settings.clock.now();
        let (faster, leave) = self.faster_with_room(drone);
        let env = self.environment_of(drone);
        let (active, fleet, ttl) = (
            &self.active_drones,
            &self.fleet,
            self.settings.heartbeat_ttl,
        );
        let id = self.graph.take_ready_leaving(
            now,
            |_, p| eligible(active, fleet, ttl, p, drone) && fits(p, env.as_deref()),
            |p| faster.iter().any(|f| fits(p, f.as_deref())),
            leave,
        )?;
        let lease_id = self.leases.next_id();
        let category = self.graph.get(id).atom.category.clone();
        // The drone finds its upload directory already there when one was kept: renamed
        // to this category beside this claim's commit if it held another.
        let (upload_dir, reused) = self.publisher.upload_dir_for(lease_id, &category);
        if reused {
            self.metrics.upload_dir_reused(self.publisher.kept());
        }
        let p = self.graph.get_mut(id);
        p.epoch += 1;
        p.lease = Some(lease_id);
        p.drone = Some(drone.to_string());
        let epoch = p.epoch;
        let assignment = WorkAssignment {
            lease: lease_id,
            epoch,
            atom: p.atom_str.clone(),
            category,
            name: p.atom.name.clone(),
            version: p.atom.version.clone(),
            upload_dir: upload_dir.clone(),
        };
        self.graph.set_state(id, PackageState::Building);
        let slot = self.leases.free_slot(drone);
        self.leases.start(
            lease_id,
            Lease {
                seq: 0,
                pkg: id,
                epoch,
                drone: drone.to_string(),
                phase: LeasePhase::Building,
                created: Instant::now(),
                timed: true,
                built_in: None,
                created_unix: crate::sys::clock::unix_now(),
                ended_unix: None,
                upload_dir,
                stop: false,
                uploading_unix: None,
                slot,
                end: None,
            },
        );
        self.peers.deadlines.do_send(Arm {
            lease: lease_id,
            epoch,
            deadline: DeadlineKind::Build,
            after: self.settings.build_timeout,
        });
        self.tell_log(LeaseLog::Started {
            lease: lease_id,
            atom: assignment.atom.clone(),
            drone: drone.to_string(),
            epoch,
        });
        debug!(self.log, "claimed"; "atom" => &assignment.atom, "drone" => drone, "lease" => lease_id, "epoch" => epoch);
        Some(assignment)
    }
}

/// Whether a drone with `env` meets `p`'s requirements.
fn fits(p: &graph::Package, env: Option<&crate::domain::environment::DroneEnvironment>) -> bool {
    p.requirements
        .as_deref()
        .is_none_or(|r| r.unmet(env).is_none())
}

fn eligible(
    active: &HashMap<String, Instant>,
    fleet: &HashMap<String, FleetMember>,
    ttl: Duration,
    p: &graph::Package,
    drone: &str,
) -> bool {
    if !p.tries.failed_on.iter().any(|d| d == drone) {
        return true;
    }
    let horizon = ttl * 2;
    // Another drone counts only if it may build the package (a drone the registry has
    // not told about yet is given the benefit of the doubt).
    let could = |d: &String| {
        fleet
            .get(d)
            .is_none_or(|m| m.may_build && fits(p, m.environment.as_deref()))
    };
    !active
        .iter()
        .any(|(d, t)| t.elapsed() < horizon && !p.tries.failed_on.contains(d) && could(d))
}
