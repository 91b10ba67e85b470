//! Operator priority: a set submitted with `--priority N` ranks its packages (and what
//! they still need) by N before the critical path; `bump` moves one package and
//! everything it still needs ahead of all the rest. So that neither starves the rest for
//! ever, every [`FAIR_EVERY`]th hand-out goes to the ready package first in set order when
//! a higher operator priority is what keeps it waiting (docs/design.md, "Scheduling").

use super::{Package, PackageGraph, Ready};
use crate::domain::PackageState;
use std::cmp::Reverse;
use tokio::time::Instant;

/// One hand-out in this many goes to the oldest ready package if it is outranked.
pub const FAIR_EVERY: u64 = 4;

/// Operator priorities a set may have.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;

#[derive(Debug, thiserror::Error)]
pub enum BumpError {
    #[error("`{0}` is not in this orchestrator's package set")]
    Unknown(String),
    #[error("`{0}` is built already: nothing to move ahead")]
    Built(String),
}

impl PackageGraph {
    /// Adds a set ([`PackageGraph::submit`]) with operator priority `priority`: its new
    /// packages get it, and it raises what the set names and still needs to at least it.
    pub fn submit_with_priority(
        &mut self,
        set: &crate::domain::PackageSet,
        priority: i32,
        learned: &dyn Fn(&crate::domain::Atom) -> Option<f64>,
    ) -> crate::wire::orchestrator::SubmitResult {
        let before = self.packages.len() as u32;
        if priority < 0 {
            // Below the default: only the set's own new packages sink; shared ones keep
            // the higher priority they have.
            let res = self.submit_learned(set, learned);
            for id in before..self.packages.len() as u32 {
                self.packages[id as usize].boost = priority;
                self.dirty.insert(id);
                if self.packages[id as usize].state == PackageState::Queued {
                    self.push_ready(id);
                }
            }
            return res;
        }
        let res = self.submit_learned(set, learned);
        if priority > 0 {
            let named: Vec<u32> = set
                .packages
                .iter()
                .filter_map(|s| self.by_atom.get(&s.atom.to_string()).copied())
                .collect();
            self.raise_boost(named, priority);
        }
        res
    }

    /// Raises the operator priority of `ids` and of everything they still need (not
    /// built) to at least `boost`; queued ones are pushed again. How many rose.
    pub fn raise_boost(&mut self, ids: impl IntoIterator<Item = u32>, boost: i32) -> usize {
        let mut todo: Vec<u32> = ids.into_iter().collect();
        let mut raised = 0;
        while let Some(id) = todo.pop() {
            let p = &self.packages[id as usize];
            if p.state == PackageState::Built || p.boost >= boost {
                continue;
            }
            self.packages[id as usize].boost = boost;
            self.dirty.insert(id);
            raised += 1;
            if self.packages[id as usize].state == PackageState::Queued {
                self.push_ready(id);
            }
            todo.extend(self.packages[id as usize].deps.iter().copied());
        }
        raised
    }

    /// Moves `atom` and everything it still needs ahead of every other package: above the
    /// highest operator priority of any package not built. How many packages moved.
    pub fn bump(&mut self, atom: &str) -> Result<usize, BumpError> {
        let id = *self
            .by_atom
            .get(atom)
            .ok_or_else(|| BumpError::Unknown(atom.to_string()))?;
        if self.packages[id as usize].state == PackageState::Built {
            return Err(BumpError::Built(atom.to_string()));
        }
        let top = self
            .packages
            .iter()
            .filter(|p| p.state != PackageState::Built)
            .map(|p| p.boost)
            .max()
            .unwrap_or(0);
        // Even a package already at the top rises, so it goes ahead of its equals.
        Ok(self.raise_boost([id], top.saturating_add(1)))
    }

    /// The fair turn: the ready package first in set order, if `may_take` accepts it and
    /// a higher operator priority than its own leads the ready heap (else `None`, and the
    /// usual order decides).
    pub(super) fn take_starved(
        &mut self,
        now: Instant,
        may_take: &impl Fn(u32, &Package) -> bool,
    ) -> Option<u32> {
        let top = self.top_boost()?;
        let mut passed = Vec::new();
        let mut found = None;
        while let Some(Reverse((seq, id))) = self.fair.pop() {
            let p = &self.packages[id as usize];
            if p.state != PackageState::Queued || p.seq != seq {
                continue; // stale
            }
            let backing_off = p.tries.not_before.is_some_and(|t| t > now);
            if p.boost < top && !backing_off && may_take(id, p) {
                found = Some(id);
                break;
            }
            passed.push(Reverse((seq, id)));
            if passed.len() >= super::CLAIM_SCAN || p.boost >= top {
                break;
            }
        }
        self.fair.extend(passed);
        found
    }

    /// Rebuilds the fair heap from the packages still queued.
    pub(super) fn compact_fair(&mut self) {
        let mut ids: Vec<u32> = self
            .ready
            .iter()
            .map(|r| r.id)
            .filter(|id| self.packages[*id as usize].state == PackageState::Queued)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        self.fair = ids
            .into_iter()
            .map(|id| Reverse((self.packages[id as usize].seq, id)))
            .collect();
    }

    /// The operator priority leading the ready heap (stale entries dropped on the way).
    fn top_boost(&mut self) -> Option<i32> {
        while let Some(r) = self.ready.peek() {
            let p = &self.packages[r.id as usize];
            if p.state == PackageState::Queued && p.boost == r.boost {
                return Some(r.boost);
            }
            let _: Option<Ready> = self.ready.pop();
        }
        None
    }
}
