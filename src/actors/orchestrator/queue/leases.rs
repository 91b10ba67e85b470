//! The lease table: every lease by id, the active ones by drone, the next lease number.
//! Plain data; the queue actor decides when a lease starts and ends.
//!
//! A lease has a number (`seq`: one more than the last, kept across restarts, the order
//! leases were made in) and an id (what the API shows: 53 bits derived from the number
//! under a per-process key, so a drone cannot guess another's lease from its own).

use crate::actors::orchestrator::store::LeaseRow;
pub use crate::domain::LeasePhase;
use crate::sys::random::KeyedIds;
use crate::wire::orchestrator::LeaseId;
use std::collections::{HashMap, HashSet};
use tokio::time::Instant;

#[derive(Debug)]
pub struct Lease {
    /// The order leases were made in (set by [`LeaseTable::start`]).
    pub seq: u64,
    pub pkg: u32,
    pub epoch: u64,
    pub drone: String,
    pub phase: LeasePhase,
    pub created: Instant,
    /// Made by this process (a restored lease's `created` is its restore): its build
    /// time can be measured.
    pub timed: bool,
    /// Claim to `uploading`: how long the build took (timed leases).
    pub built_in: Option<std::time::Duration>,
    pub created_unix: u64,
    pub ended_unix: Option<u64>,
    /// Its upload directory under staging (`upload_dir`, docs/contract.md §5): `lease-N`,
    /// or a kept one of an earlier lease (see [`crate::orchestrator::staging`]).
    pub upload_dir: String,
    /// Ended because the package no longer needs it (built elsewhere, cancelled by the
    /// operator): the drone should stop.
    pub stop: bool,
    /// When it started uploading (not stored: for the timeline).
    pub uploading_unix: Option<u64>,
    /// Which of its drone's slots it took: the lowest no other active lease of the drone
    /// held (not stored: for the timeline; 0 for leases restored at start).
    pub slot: u32,
    /// How it ended (not stored: for the timeline; None while it runs or when it ended
    /// before the orchestrator last started).
    pub end: Option<LeaseEnd>,
}

/// How a lease ended, as the timeline colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEnd {
    /// Its artifact was published.
    Built,
    /// The build failed.
    Failed,
    /// Infrastructure: upload failed or did not verify, deadline passed, drone lost.
    Infra,
    /// Cancelled, withdrawn, or made moot by another drone's artifact.
    Cancelled,
}

impl LeaseEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseEnd::Built => "built",
            LeaseEnd::Failed => "failed",
            LeaseEnd::Infra => "infra",
            LeaseEnd::Cancelled => "cancelled",
        }
    }
}

impl Lease {
    pub fn row(&self, id: LeaseId) -> LeaseRow {
        LeaseRow {
            id,
            seq: self.seq,
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

/// Lease ids fit in 53 bits: JSON numbers that JavaScript reads exactly.
pub const LEASE_ID_BITS: u32 = 53;

pub struct LeaseTable {
    leases: HashMap<LeaseId, Lease>,
    by_drone: HashMap<String, HashSet<LeaseId>>,
    /// The number of the next lease.
    next: u64,
    ids: KeyedIds,
    /// Leases whose row changed since the last commit batch took them.
    pub dirty: HashSet<LeaseId>,
}

impl LeaseTable {
    pub fn new(next: u64, ids: KeyedIds) -> Self {
        LeaseTable {
            leases: HashMap::new(),
            by_drone: HashMap::new(),
            next: next.max(1),
            ids,
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
        self.next = self.next.max(lease.seq + 1);
        self.leases.insert(id, lease);
    }

    /// The id the next lease gets: derived from its number, skipping (rarely) numbers
    /// whose id is 0 or that of a lease still remembered.
    pub fn next_id(&mut self) -> LeaseId {
        loop {
            let id = self.ids.id(self.next);
            if id != 0 && !self.leases.contains_key(&id) {
                return id;
            }
            self.next += 1;
        }
    }

    /// Starts a new lease under the id [`Self::next_id`] gave.
    pub fn start(&mut self, id: LeaseId, mut lease: Lease) {
        debug_assert_eq!(self.ids.id(self.next), id);
        lease.seq = self.next;
        self.next += 1;
        self.by_drone
            .entry(lease.drone.clone())
            .or_default()
            .insert(id);
        self.leases.insert(id, lease);
        self.dirty.insert(id);
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

    /// Active leases of `drone`, oldest first.
    /// The lowest slot of `drone` that none of its active leases holds.
    pub fn free_slot(&self, drone: &str) -> u32 {
        let used: HashSet<u32> = self
            .by_drone
            .get(drone)
            .map(|s| {
                s.iter()
                    .filter_map(|id| self.leases.get(id))
                    .map(|l| l.slot)
                    .collect()
            })
            .unwrap_or_default();
        (0..).find(|s| !used.contains(s)).unwrap_or(0)
    }

    pub fn active_of(&self, drone: &str) -> Vec<LeaseId> {
        self.by_drone
            .get(drone)
            .map(|s| self.in_order(s))
            .unwrap_or_default()
    }

    fn in_order(&self, ids: &HashSet<LeaseId>) -> Vec<LeaseId> {
        let mut v: Vec<(u64, LeaseId)> = ids
            .iter()
            .map(|id| (self.leases.get(id).map_or(0, |l| l.seq), *id))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, id)| id).collect()
    }

    pub fn active_count(&self, drone: &str) -> usize {
        self.by_drone.get(drone).map_or(0, |s| s.len())
    }

    /// Every drone with active leases, and its leases oldest first.
    pub fn active_by_drone(&self) -> impl Iterator<Item = (&String, Vec<LeaseId>)> {
        self.by_drone.iter().map(|(d, s)| (d, self.in_order(s)))
    }

    pub fn total_active(&self) -> usize {
        self.by_drone.values().map(|s| s.len()).sum()
    }

    /// Ends an active lease at `now_unix`. Returns it when it was active.
    pub fn end(&mut self, id: LeaseId, stop: bool, end: LeaseEnd, now_unix: u64) -> Option<&Lease> {
        let l = self.leases.get_mut(&id)?;
        if !l.is_active() {
            return None;
        }
        l.phase = LeasePhase::Ended;
        l.ended_unix = Some(now_unix);
        l.stop = stop;
        l.end = Some(end);
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

    /// Whether a lease made after `lease` was given the upload directory `name` (any
    /// lease, when `lease` is forgotten). Scans the leases: only for the rare path of a
    /// completion retried after its package was built.
    pub fn upload_dir_given_since(&self, name: &str, lease: LeaseId) -> bool {
        let after = self.leases.get(&lease).map_or(0, |l| l.seq + 1);
        self.leases
            .values()
            .any(|l| l.seq >= after && l.upload_dir == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(drone: &str, dir: &str) -> Lease {
        Lease {
            seq: 0,
            pkg: 0,
            epoch: 1,
            drone: drone.into(),
            phase: LeasePhase::Building,
            created: Instant::now(),
            timed: true,
            built_in: None,
            created_unix: 100,
            ended_unix: None,
            upload_dir: dir.into(),
            stop: false,
            uploading_unix: None,
            slot: 0,
            end: None,
        }
    }

    fn table(next: u64) -> LeaseTable {
        LeaseTable::new(next, KeyedIds::with_key([7; 32], LEASE_ID_BITS))
    }

    fn start(t: &mut LeaseTable, l: Lease) -> LeaseId {
        let id = t.next_id();
        t.start(id, l);
        id
    }

    #[test]
    fn leases_are_tracked_per_drone_until_they_end() {
        let mut t = table(0);
        let a = start(&mut t, lease("d1", "lease-1"));
        let b = start(&mut t, lease("d1", "lease-2"));
        let c = start(&mut t, lease("d2", "lease-3"));
        assert!(a != b && b != c && a != c);
        assert!([a, b, c].iter().all(|&id| id < 1 << LEASE_ID_BITS));
        assert_eq!(t.get(c).map(|l| l.seq), Some(3));
        assert_eq!(t.active_of("d1"), vec![a, b], "oldest first");
        assert_eq!(t.total_active(), 3);
        assert!(t
            .end(a, true, LeaseEnd::Cancelled, 200)
            .is_some_and(|l| l.stop));
        assert!(
            t.end(a, false, LeaseEnd::Cancelled, 200).is_none(),
            "ends once"
        );
        assert_eq!(t.active_of("d1"), vec![b]);
        t.end(b, false, LeaseEnd::Cancelled, 200);
        assert_eq!(t.active_count("d1"), 0);
        assert_eq!(t.active_by_drone().count(), 1);
        assert_eq!(t.dirty.len(), 3);
    }

    #[test]
    fn prune_forgets_only_long_ended_leases() {
        let mut t = table(5);
        let a = start(&mut t, lease("d1", "lease-5"));
        let b = start(&mut t, lease("d1", "lease-6"));
        t.end(a, false, LeaseEnd::Cancelled, 1000);
        assert!(!t.prune(1050, 100));
        assert!(t.prune(1200, 100));
        assert!(t.get(a).is_none() && t.get(b).is_some());
        let c = start(&mut t, lease("d1", "lease-7"));
        assert_eq!(t.get(c).map(|l| l.seq), Some(7));
    }

    #[test]
    fn restored_leases_move_the_next_number_past_them() {
        let mut t = table(1);
        let old = Lease {
            seq: 41,
            ..lease("d1", "lease-41")
        };
        t.restore(41, old);
        assert_eq!(t.active_of("d1"), vec![41]);
        assert!(t.dirty.is_empty());
        let next = start(&mut t, lease("d1", "lease-41"));
        assert_eq!(t.get(next).map(|l| l.seq), Some(42));
        assert!(t.upload_dir_given_since("lease-41", 41));
        assert!(!t.upload_dir_given_since("lease-41", next));
        assert!(t.upload_dir_given_since("lease-41", 999), "forgotten lease");
    }

    #[test]
    fn the_same_number_gives_the_same_id_so_a_refused_claim_uses_none_up() {
        let mut a = table(9);
        let mut b = table(9);
        assert_eq!(a.next_id(), b.next_id());
        let id = a.next_id();
        a.start(id, lease("d1", "x"));
        assert_ne!(a.next_id(), id);
    }
}
