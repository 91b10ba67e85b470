//! Taking packages from the ready heap: the best one a claim may take, the longest chains
//! left to faster drones, and the hand-out order the views show.

use super::{boost, Package, PackageGraph, Ready, CLAIM_SCAN};
use crate::domain::PackageState;
use tokio::time::Instant;

impl PackageGraph {
    /// Takes the best queued package that `may_take` accepts and is not backing off at
    /// `now`, looking at most at `CLAIM_SCAN` entries; the ones passed over stay ready.
    pub fn take_ready(
        &mut self,
        now: Instant,
        may_take: impl Fn(u32, &Package) -> bool,
    ) -> Option<u32> {
        self.take_ready_leaving(now, may_take, |_| false, 0)
    }

    /// [`Self::take_ready`], passing over the first `leave` packages it could take that
    /// `leave_to` accepts (the longest chains, left to faster drones that can build them)
    /// when there is another; with nothing else, the last one it passed over.
    pub fn take_ready_leaving(
        &mut self,
        now: Instant,
        may_take: impl Fn(u32, &Package) -> bool,
        leave_to: impl Fn(&Package) -> bool,
        leave: usize,
    ) -> Option<u32> {
        self.takes += 1;
        if self.takes.is_multiple_of(boost::FAIR_EVERY) {
            if let Some(id) = self.take_starved(now, &may_take) {
                return Some(id);
            }
        }
        let mut passed = Vec::new();
        let mut found = None;
        // Packages passed over for faster drones (a package may have several heap
        // entries: a second one is not another candidate).
        let mut left: Vec<u32> = Vec::new();
        let mut last_left = None;
        while let Some(r) = self.ready.pop() {
            let p = &self.packages[r.id as usize];
            if p.state != PackageState::Queued {
                continue; // stale heap entry
            }
            if left.contains(&r.id) {
                continue; // a duplicate of an entry already passed over
            }
            let backing_off = p.tries.not_before.is_some_and(|t| t > now);
            if !backing_off && may_take(r.id, p) {
                if left.len() >= leave || !leave_to(p) {
                    found = Some(r.id);
                    break;
                }
                left.push(r.id);
                last_left = Some(passed.len());
            }
            passed.push(r);
            if passed.len() >= CLAIM_SCAN {
                break;
            }
        }
        if found.is_none() {
            if let Some(i) = last_left {
                found = Some(passed.swap_remove(i).id);
            }
        }
        self.ready.extend(passed);
        found
    }

    /// The best few queued packages in hand-out order (for views), deduplicated.
    pub fn ready_in_order(&self) -> Vec<u32> {
        let mut heap: Vec<&Ready> = self
            .ready
            .iter()
            .filter(|r| self.packages[r.id as usize].state == PackageState::Queued)
            .collect();
        heap.sort_by(|a, b| b.cmp(a));
        heap.dedup_by_key(|r| r.id);
        heap.into_iter().map(|r| r.id).collect()
    }
}
