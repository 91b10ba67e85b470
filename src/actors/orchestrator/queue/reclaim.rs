//! Taking work back: a lease whose deadline passed, every lease of a drone that is gone,
//! and leases a drone's heartbeat no longer lists. Each is an infrastructure failure of
//! the attempt (the failure policy decides what follows) and of the drone.

use super::leases::LeaseEnd;
use super::{CheckLeases, PackageQueue, ReclaimDrone};
use crate::actors::orchestrator::lease_deadlines::{DeadlineKind, LeaseTimedOut};
use crate::domain::{FailureKind, LeasePhase, PackageState};
use crate::orchestrator::metrics::ReclaimReason;
use crate::wire::orchestrator::LeaseId;
use actix::prelude::*;
use slog::warn;
use std::collections::HashSet;

impl PackageQueue {
    /// Ends `leases` of `drone` as infrastructure failures (the drone is gone or no
    /// longer works on them).
    fn reclaim(&mut self, drone: &str, leases: Vec<LeaseId>, reason: &str) {
        for id in leases {
            let Some(pkg) = self.leases.get(id).map(|l| l.pkg) else {
                continue;
            };
            self.end_lease(id, false, LeaseEnd::Infra);
            self.attempt_failed(pkg, FailureKind::Infra, drone, reason, "", false);
        }
    }
}

impl Handler<LeaseTimedOut> for PackageQueue {
    type Result = ();
    fn handle(&mut self, msg: LeaseTimedOut, ctx: &mut Self::Context) {
        // While the committed state is read back: its leases get fresh deadlines then.
        if self.reloading {
            return;
        }
        let Some(l) = self.leases.get(msg.lease) else {
            return;
        };
        // A build deadline that fired just before the drone said `uploading` is late.
        let current = matches!(
            (msg.deadline, l.phase),
            (DeadlineKind::Build, LeasePhase::Building)
                | (DeadlineKind::Upload, LeasePhase::Uploading)
        );
        if !current || l.epoch != msg.epoch {
            return;
        }
        let (pkg, drone) = (l.pkg, l.drone.clone());
        let (reason, why) = match msg.deadline {
            DeadlineKind::Build => (
                format!(
                    "no upload started within build_timeout_s ({} s)",
                    msg.after.as_secs()
                ),
                ReclaimReason::BuildTimeout,
            ),
            DeadlineKind::Upload => (
                format!(
                    "upload not completed within upload_timeout_s ({} s)",
                    msg.after.as_secs()
                ),
                ReclaimReason::UploadTimeout,
            ),
        };
        warn!(self.log, "lease timed out, work reclaimed"; "atom" => &self.graph.get(pkg).atom_str,
              "drone" => &drone, "lease" => msg.lease, "reason" => &reason);
        self.metrics.reclaimed(why, 1);
        self.end_lease(msg.lease, true, LeaseEnd::Infra);
        self.attempt_failed(pkg, FailureKind::Infra, &drone, &reason, "", false);
        self.infra_failure(drone, reason);
        self.flush(ctx);
    }
}

impl Handler<ReclaimDrone> for PackageQueue {
    type Result = ();
    fn handle(&mut self, msg: ReclaimDrone, ctx: &mut Self::Context) {
        if self.reloading {
            self.deferred_reclaims.push(msg);
            return;
        }
        self.reclaim_drone(msg, ctx);
    }
}

impl PackageQueue {
    /// The drone is gone: its active leases are reclaimed.
    pub(super) fn reclaim_drone(&mut self, msg: ReclaimDrone, ctx: &mut Context<Self>) {
        let leases = self.leases.active_of(&msg.drone);
        if leases.is_empty() {
            return;
        }
        self.active_drones.remove(&msg.drone);
        self.metrics
            .reclaimed(ReclaimReason::DroneLost, leases.len());
        warn!(self.log, "reclaiming a drone's work"; "drone" => &msg.drone, "leases" => leases.len(), "reason" => &msg.reason);
        self.reclaim(&msg.drone, leases, &msg.reason);
        self.infra_failure(msg.drone, msg.reason);
        self.flush(ctx);
    }
}

impl Handler<CheckLeases> for PackageQueue {
    type Result = MessageResult<CheckLeases>;
    fn handle(&mut self, msg: CheckLeases, ctx: &mut Self::Context) -> Self::Result {
        if self.reloading {
            return MessageResult(Vec::new());
        }
        let listed: HashSet<LeaseId> = msg.listed.iter().copied().collect();
        // Held here but no longer worked on by the drone.
        let grace = self.settings.heartbeat_ttl;
        let dropped: Vec<LeaseId> = self
            .leases
            .active_of(&msg.drone)
            .into_iter()
            .filter(|id| !listed.contains(id))
            .filter(|id| {
                self.leases
                    .get(*id)
                    .is_some_and(|l| l.created.elapsed() > grace)
            })
            .collect();
        self.metrics
            .reclaimed(ReclaimReason::Dropped, dropped.len());
        let reason = "the drone no longer reports working on it";
        for id in dropped {
            warn!(self.log, "lease dropped by its drone, reclaimed"; "drone" => &msg.drone, "lease" => id);
            self.reclaim(&msg.drone, vec![id], reason);
            self.infra_failure(msg.drone.clone(), reason.to_string());
        }
        // Worked on by the drone but no longer wanted.
        let mut stop = Vec::new();
        for id in msg.listed {
            match self.leases.get(id) {
                None => stop.push(id),
                Some(l) if l.drone != msg.drone => stop.push(id),
                Some(l) if !l.is_active() => {
                    let st = self.graph.get(l.pkg).state;
                    // A reclaimed lease whose package is still wanted may finish: valid
                    // work is never thrown away.
                    if l.stop
                        || matches!(
                            st,
                            PackageState::Built | PackageState::Failed | PackageState::Blocked
                        )
                    {
                        stop.push(id);
                    }
                }
                Some(_) => {}
            }
        }
        self.flush(ctx);
        MessageResult(stop)
    }
}
