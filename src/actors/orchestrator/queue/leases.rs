//! The lease table: every lease by id, the active ones by drone, the next lease id. Plain
//! data; the queue actor decides when a lease starts and ends.

use crate::actors::orchestrator::store::LeaseRow;
pub use crate::domain::LeasePhase;
use crate::wire::orchestrator::LeaseId;
use std::collections::{HashMap, HashSet};
use tokio::time::Instant;

#[derive(Debug)]
pub struct Lease {
    pub pkg: u32,
    pub epoch: u64,
    pub drone: String,
    pub phase: LeasePhase,
    pub created: Instant,
    pub created_unix: u64,
    pub ended_unix: Option<u64>,
    /// Its upload directory under staging (`upload_dir`, docs/contract.md §5): `lease-N`,
    /// or a kept one of an earlier lease (see [`crate::orchestrator::staging`]).
    pub upload_dir: String,
    /// Ended because the package no longer needs it (built elsewhere, cancelled by the
    /// operator): the drone should stop.
    pub stop: bool,
}

impl Lease {
    pub fn row(&self, id: LeaseId) -> LeaseRow {
        LeaseRow {
            id,
            pkg: self.pkg,
            epoch: self.epoch,
            drone: self.drone.clone(),
            phase: self.phase,
            created_unix: self.created_unix,
            ended_unix: self.ended_unix,
            upload_dir: self.upload_dir.clone(),
        }
    }

    pub fn is_active(&self) -> bool {
        self.phase != LeasePhase::Ended
    }
}

pub struct LeaseTable {
    leases: HashMap<LeaseId, Lease>,
    by_drone: HashMap<String, HashSet<LeaseId>>,
    next: LeaseId,
    /// Leases whose row changed since the last commit batch took them.
    pub dirty: HashSet<LeaseId>,
}

impl LeaseTable {
    pub fn new(next: LeaseId) -> Self {
        LeaseTable {
            leases: HashMap::new(),
            by_drone: HashMap::new(),
            next: next.max(1),
            dirty: HashSet::new(),
        }
    }

    /// A stored lease (clean: it is on disk already).
    pub fn restore(&mut self, id: LeaseId, lease: Lease) {
        if lease.is_active() {
            self.by_drone
                .entry(lease.drone.clone())
                .or_default()
                .insert(id);
        }
        self.next = self.next.max(id + 1);
        self.leases.insert(id, lease);
    }

    /// Starts a new lease; returns its id.
    pub fn start(&mut self, lease: Lease) -> LeaseId {
        let id = self.next;
        self.next += 1;
        self.by_drone
            .entry(lease.drone.clone())
            .or_default()
            .insert(id);
        self.leases.insert(id, lease);
        self.dirty.insert(id);
        id
    }

    /// The id the next lease will get.
    pub fn next_id(&self) -> LeaseId {
        self.next
    }

    pub fn get(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    pub fn get_mut(&mut self, id: LeaseId) -> Option<&mut Lease> {
        let l = self.leases.get_mut(&id)?;
        self.dirty.insert(id);
        Some(l)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&LeaseId, &Lease)> {
        self.leases.iter()
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Active leases of `drone`, in id order.
    pub fn active_of(&self, drone: &str) -> Vec<LeaseId> {
        let mut ids: Vec<LeaseId> = self
            .by_drone
            .get(drone)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    pub fn active_count(&self, drone: &str) -> usize {
        self.by_drone.get(drone).map_or(0, |s| s.len())
    }

    /// Every drone with active leases, and its leases in id order.
    pub fn active_by_drone(&self) -> impl Iterator<Item = (&String, Vec<LeaseId>)> {
        self.by_drone.iter().map(|(d, s)| {
            let mut ids: Vec<LeaseId> = s.iter().copied().collect();
            ids.sort_unstable();
            (d, ids)
        })
    }

    pub fn total_active(&self) -> usize {
        self.by_drone.values().map(|s| s.len()).sum()
    }

    /// Ends an active lease at `now_unix`. Returns it when it was active.
    pub fn end(&mut self, id: LeaseId, stop: bool, now_unix: u64) -> Option<&Lease> {
        let l = self.leases.get_mut(&id)?;
        if !l.is_active() {
            return None;
        }
        l.phase = LeasePhase::Ended;
        l.ended_unix = Some(now_unix);
        l.stop = stop;
        if let Some(set) = self.by_drone.get_mut(&l.drone) {
            set.remove(&id);
            if set.is_empty() {
                self.by_drone.remove(&l.drone);
            }
        }
        self.dirty.insert(id);
        Some(l)
    }

    /// Forgets leases that ended more than `horizon_s` before `now_unix`. Returns whether
    /// any was forgotten.
    pub fn prune(&mut self, now_unix: u64, horizon_s: u64) -> bool {
        let before = self.leases.len();
        self.leases.retain(|_, l| {
            l.is_active()
                || l.ended_unix
                    .is_none_or(|e| now_unix.saturating_sub(e) < horizon_s)
        });
        self.leases.len() != before
    }

    /// Whether a lease after `lease` was given the upload directory `name`. Scans the
    /// leases: only for the rare path of a completion retried after its package was built.
    pub fn upload_dir_given_since(&self, name: &str, lease: LeaseId) -> bool {
        self.leases
            .iter()
            .any(|(id, l)| *id > lease && l.upload_dir == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(drone: &str, dir: &str) -> Lease {
        Lease {
            pkg: 0,
            epoch: 1,
            drone: drone.into(),
            phase: LeasePhase::Building,
            created: Instant::now(),
            created_unix: 100,
            ended_unix: None,
            upload_dir: dir.into(),
            stop: false,
        }
    }

    #[test]
    fn leases_are_tracked_per_drone_until_they_end() {
        let mut t = LeaseTable::new(0);
        let a = t.start(lease("d1", "lease-1"));
        let b = t.start(lease("d1", "lease-2"));
        let c = t.start(lease("d2", "lease-3"));
        assert_eq!((a, b, c), (1, 2, 3));
        assert_eq!(t.active_of("d1"), vec![1, 2]);
        assert_eq!(t.total_active(), 3);
        assert!(t.end(a, true, 200).is_some_and(|l| l.stop));
        assert!(t.end(a, false, 200).is_none(), "ends once");
        assert_eq!(t.active_of("d1"), vec![2]);
        t.end(b, false, 200);
        assert_eq!(t.active_count("d1"), 0);
        assert_eq!(t.active_by_drone().count(), 1);
        assert_eq!(t.dirty.len(), 3);
    }

    #[test]
    fn prune_forgets_only_long_ended_leases() {
        let mut t = LeaseTable::new(5);
        let a = t.start(lease("d1", "lease-5"));
        let b = t.start(lease("d1", "lease-6"));
        t.end(a, false, 1000);
        assert!(!t.prune(1050, 100));
        assert!(t.prune(1200, 100));
        assert!(t.get(a).is_none() && t.get(b).is_some());
        assert_eq!(t.next_id(), 7);
    }

    #[test]
    fn restored_leases_move_the_next_id_past_them() {
        let mut t = LeaseTable::new(1);
        t.restore(41, lease("d1", "lease-41"));
        assert_eq!(t.next_id(), 42);
        assert_eq!(t.active_of("d1"), vec![41]);
        assert!(t.dirty.is_empty());
        assert!(t.upload_dir_given_since("lease-41", 40));
        assert!(!t.upload_dir_given_since("lease-41", 41));
    }
}
