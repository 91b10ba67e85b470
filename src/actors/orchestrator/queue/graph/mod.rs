//! The package graph: every package, its dependency edges, its state, the counts per state
//! and the ready heap, ordered by critical path (docs/design.md, "Scheduling"). Plain data,
//! no actix: the queue actor owns one and the tests below drive it directly.
//!
//! Every package whose row changed is remembered in `dirty` until the commit batch takes it.
//! Operator priorities (set priorities, `bump`) and the fair turn are in [`boost`];
//! packages with requirements and the drones that may build them in [`placement`]; taking
//! from the ready heap in [`ready`].

pub mod boost;
pub mod placement;
mod ready;

use super::policy::{Attempts, FailurePolicy, Verdict};
use crate::actors::orchestrator::store::PackageRow;
use crate::config::orchestrator::ScheduleOrder;
use crate::domain::{Atom, FailureKind, PackageSet, PackageState};
use crate::sys::process::tail_str;
use crate::wire::orchestrator::{LeaseId, RetryRequest, RetryResult, SubmitResult};
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use tokio::time::Instant;

/// Longest log tail kept per package.
pub const LOG_TAIL_BYTES: usize = 16 * 1024;
/// Longest failure reason kept.
pub const REASON_BYTES: usize = 2048;
/// How many ready entries a claim looks at to find one the drone may take.
const CLAIM_SCAN: usize = 256;

/// One package as the queue knows it.
#[derive(Debug)]
pub struct Package {
    pub atom: Atom,
    pub atom_str: String,
    pub seq: u64,
    pub state: PackageState,
    /// What the failure policy counts.
    pub tries: Attempts,
    pub reason: Option<String>,
    pub log_tail: Option<String>,
    pub estimate_s: Option<f64>,
    /// Critical-path priority (ms of estimated work from here to the end of the graph).
    pub priority: u64,
    /// Operator priority: the highest of the sets it belongs to (`submit --priority`),
    /// raised by `bump`. Ranks before the critical path.
    pub boost: i32,
    pub epoch: u64,
    pub drone: Option<String>,
    pub path: Option<String>,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub deps: Vec<u32>,
    pub dependents: Vec<u32>,
    /// Dependencies not usable yet: not built, or built but not yet in a live binhost
    /// index.
    pub unbuilt: u32,
    /// Built and listed by the binhost index on disk (or there is no index): its
    /// dependents may go.
    pub indexed: bool,
    /// The active lease, if any (at most one at a time).
    pub lease: Option<LeaseId>,
    /// A completion is being verified; another one must wait.
    pub publishing: bool,
    /// What the drone that builds it must have (None: nothing).
    pub requirements: Option<Box<crate::domain::environment::Requirements>>,
    /// Ready, but no drone that may build has what it requires: it waits, and this says
    /// why (not stored; decided again whenever the drones change).
    pub parked: Option<String>,
    /// Put back by `retry` after it failed for good: its build ends that alert (not
    /// stored).
    pub retried: bool,
}

impl Package {
    /// The reason operators see: why a parked package waits (no drone may build it),
    /// before any earlier failure's reason.
    pub fn shown_reason(&self) -> Option<String> {
        self.parked.clone().or_else(|| self.reason.clone())
    }

    /// Built and in a live index: a dependent may be built against it.
    pub fn usable(&self) -> bool {
        self.state == PackageState::Built && self.indexed
    }

    fn new(atom: Atom, atom_str: String, seq: u64, state: PackageState) -> Self {
        Package {
            atom,
            atom_str,
            seq,
            state,
            tries: Attempts::default(),
            reason: None,
            log_tail: None,
            estimate_s: None,
            priority: 0,
            boost: 0,
            epoch: 0,
            drone: None,
            path: None,
            size: None,
            sha256: None,
            deps: Vec::new(),
            dependents: Vec::new(),
            unbuilt: 0,
            indexed: false,
            lease: None,
            publishing: false,
            requirements: None,
            parked: None,
            retried: false,
        }
    }

    /// The package as the store writes it.
    pub fn row(&self, id: u32) -> PackageRow {
        PackageRow {
            id,
            atom: self.atom_str.clone(),
            seq: self.seq,
            state: self.state,
            attempts: self.tries.attempts,
            infra_failures: self.tries.infra_failures,
            reason: self.reason.clone(),
            log_tail: self.log_tail.clone(),
            estimate_s: self.estimate_s,
            priority: self.priority,
            boost: self.boost,
            epoch: self.epoch,
            drone: self.drone.clone(),
            failed_on: self.tries.failed_on.clone(),
            path: self.path.clone(),
            size: self.size,
            sha256: self.sha256.clone(),
            requirements: self.requirements.as_deref().cloned().unwrap_or_default(),
        }
    }
}

/// A ready heap entry: highest operator priority first, then critical path, then set
/// order. Entries go stale when the package leaves `queued` or is pushed again at a higher
/// priority; stale ones are skipped.
#[derive(Debug, PartialEq, Eq)]
pub struct Ready {
    pub boost: i32,
    pub priority: u64,
    pub seq: Reverse<u64>,
    pub id: u32,
}

impl Ord for Ready {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.boost, self.priority, self.seq).cmp(&(other.boost, other.priority, other.seq))
    }
}
impl PartialOrd for Ready {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A package's estimate in milliseconds (1 s when unknown or nonsense).
pub(crate) fn priority_ms(estimate_s: Option<f64>) -> u64 {
    let s = estimate_s
        .filter(|e| e.is_finite() && *e >= 0.0)
        .unwrap_or(1.0);
    (s * 1000.0).round().min(1e15) as u64
}

/// Why `retry` refused.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("`{0}` is not in this orchestrator's package set")]
    Unknown(String),
    #[error("give `atoms` or `state` to retry")]
    NothingNamed,
}

pub struct PackageGraph {
    pub packages: Vec<Package>,
    pub by_atom: HashMap<String, u32>,
    pub ready: BinaryHeap<Ready>,
    /// The same ready packages, oldest in set order first: every [`boost::FAIR_EVERY`]th
    /// hand-out goes to the oldest one when higher operator priorities keep it waiting.
    fair: BinaryHeap<Reverse<(u64, u32)>>,
    /// Hand-outs so far (for the fair turn).
    takes: u64,
    counts: [usize; 7],
    /// Built packages not yet in a live index.
    unindexed: usize,
    next_seq: u64,
    order: ScheduleOrder,
    /// Packages with requirements (the ones [`placement`] looks at).
    constrained: Vec<u32>,
    /// The environments of the drones that may build now (online, environment fits).
    builders: Vec<Option<std::sync::Arc<crate::domain::environment::DroneEnvironment>>>,
    /// Packages whose row changed since the last commit batch took them.
    pub dirty: HashSet<u32>,
    /// Dependency edges added since the last commit batch took them.
    pub new_deps: Vec<(u32, u32)>,
}

impl PackageGraph {
    pub fn new(order: ScheduleOrder) -> Self {
        PackageGraph {
            packages: Vec::new(),
            by_atom: HashMap::new(),
            ready: BinaryHeap::new(),
            fair: BinaryHeap::new(),
            takes: 0,
            counts: [0; 7],
            unindexed: 0,
            next_seq: 0,
            order,
            constrained: Vec::new(),
            builders: Vec::new(),
            dirty: HashSet::new(),
            new_deps: Vec::new(),
        }
    }

    /// Rebuilds the graph from stored rows. Returns the rows whose atom no longer parses
    /// (kept under a placeholder so ids stay dense) and whether the ids were not dense.
    /// `indexed`: built packages count as in the index (there is none); otherwise they wait
    /// for the index to say so ([`Self::mark_indexed`]).
    pub fn restore(
        order: ScheduleOrder,
        rows: Vec<PackageRow>,
        deps: Vec<(u32, u32)>,
        indexed: bool,
    ) -> (Self, Vec<RestoreProblem>) {
        let mut g = PackageGraph::new(order);
        let mut problems = Vec::new();
        g.packages.reserve(rows.len());
        for row in rows {
            let atom = match Atom::parse(&row.atom) {
                Ok(a) => a,
                Err(e) => {
                    problems.push(RestoreProblem::InvalidAtom(e.to_string()));
                    Atom {
                        category: "invalid".into(),
                        name: "invalid".into(),
                        version: "0".into(),
                    }
                }
            };
            if row.id as usize != g.packages.len() {
                problems.push(RestoreProblem::NotDense(row.id));
            }
            g.next_seq = g.next_seq.max(row.seq + 1);
            g.by_atom.insert(row.atom.clone(), g.packages.len() as u32);
            g.counts[row.state.index()] += 1;
            let mut p = Package::new(atom, row.atom, row.seq, row.state);
            p.tries.attempts = row.attempts;
            p.tries.infra_failures = row.infra_failures;
            p.tries.failed_on = row.failed_on;
            p.reason = row.reason;
            p.log_tail = row.log_tail;
            p.estimate_s = row.estimate_s;
            p.priority = row.priority;
            p.boost = row.boost;
            p.epoch = row.epoch;
            p.drone = row.drone;
            p.path = row.path;
            p.size = row.size;
            p.sha256 = row.sha256;
            if !row.requirements.is_empty() {
                p.requirements = Some(Box::new(row.requirements));
                g.constrained.push(g.packages.len() as u32);
            }
            if row.state == PackageState::Built {
                p.indexed = indexed;
                g.unindexed += usize::from(!indexed);
            }
            g.packages.push(p);
        }
        let n = g.packages.len() as u32;
        for (pkg, dep) in deps {
            if pkg < n && dep < n {
                g.packages[pkg as usize].deps.push(dep);
                g.packages[dep as usize].dependents.push(pkg);
            }
        }
        for i in 0..g.packages.len() {
            g.packages[i].unbuilt = g.unbuilt_deps(i as u32);
        }
        (g, problems)
    }

    /// After the leases are restored: a leased package without an active lease goes back
    /// to the queue (cannot come from a committed batch, but must never hang), and every
    /// queued package enters the ready heap. Returns the atoms requeued that way.
    pub fn after_restore(&mut self) -> Vec<String> {
        let mut requeued = Vec::new();
        for i in 0..self.packages.len() as u32 {
            let p = &self.packages[i as usize];
            if p.state.is_leased() && p.lease.is_none() {
                requeued.push(p.atom_str.clone());
                self.set_state(i, PackageState::Queued);
            }
            let p = &self.packages[i as usize];
            // Queued, or waiting only because it was parked (no drones are known yet).
            if p.state == PackageState::Queued
                || (p.state == PackageState::Waiting && p.unbuilt == 0)
            {
                self.make_ready(i);
            }
        }
        requeued
    }

    pub fn len(&self) -> usize {
        self.packages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    pub fn get(&self, id: u32) -> &Package {
        &self.packages[id as usize]
    }

    pub fn get_mut(&mut self, id: u32) -> &mut Package {
        self.dirty.insert(id);
        &mut self.packages[id as usize]
    }

    /// The package named by `atom` (a leading `=` is ignored).
    pub fn find(&self, atom: &str) -> Option<u32> {
        self.by_atom
            .get(atom.trim().trim_start_matches('='))
            .copied()
    }

    pub fn count(&self, state: PackageState) -> usize {
        self.counts[state.index()]
    }

    fn unbuilt_deps(&self, id: u32) -> u32 {
        self.packages[id as usize]
            .deps
            .iter()
            .filter(|d| !self.packages[**d as usize].usable())
            .count() as u32
    }

    /// Built packages not yet listed by a live index.
    pub fn unindexed(&self) -> usize {
        self.unindexed
    }

    pub fn set_state(&mut self, id: u32, state: PackageState) {
        let p = &mut self.packages[id as usize];
        if state != PackageState::Waiting {
            p.parked = None;
        }
        if p.state != state {
            self.counts[p.state.index()] -= 1;
            self.counts[state.index()] += 1;
            p.state = state;
        }
        self.dirty.insert(id);
    }

    fn push_ready(&mut self, id: u32) {
        let p = &self.packages[id as usize];
        let priority = match self.order {
            ScheduleOrder::CriticalPath => p.priority,
            ScheduleOrder::Fifo => 0,
        };
        self.ready.push(Ready {
            boost: p.boost,
            priority,
            seq: Reverse(p.seq),
            id,
        });
        self.fair.push(Reverse((p.seq, id)));
        // The fair heap is only popped on fair turns: keep it from growing with entries
        // of packages handed out long ago.
        if self.fair.len() > 2 * self.ready.len() + 4096 {
            self.compact_fair();
        }
    }

    /// Queued if every dependency is built, waiting otherwise, blocked if one failed.
    pub fn requeue(&mut self, id: u32) {
        let p = &self.packages[id as usize];
        let blocked = p.deps.iter().any(|d| {
            matches!(
                self.packages[*d as usize].state,
                PackageState::Failed | PackageState::Blocked
            )
        });
        if blocked {
            self.set_state(id, PackageState::Blocked);
        } else if p.unbuilt == 0 {
            self.make_ready(id);
        } else {
            self.set_state(id, PackageState::Waiting);
        }
    }

    /// The package's current attempt ended without an artifact: the policy decides
    /// whether it goes back to the queue or has failed for good. `backoff`: wait before
    /// handing it out again (a failed upload); not for work reclaimed from a lost drone.
    #[allow(clippy::too_many_arguments)]
    pub fn attempt_failed(
        &mut self,
        policy: &FailurePolicy,
        id: u32,
        kind: FailureKind,
        drone: &str,
        reason: &str,
        log_tail: &str,
        backoff: bool,
        central_fault: bool,
        now: Instant,
    ) -> Verdict {
        let p = self.get_mut(id);
        if !log_tail.is_empty() {
            p.log_tail = Some(tail_str(log_tail, LOG_TAIL_BYTES).to_string());
        }
        let reason = tail_str(reason, REASON_BYTES).to_string();
        let verdict = policy.judge(
            &mut p.tries,
            kind,
            drone,
            &reason,
            backoff,
            central_fault,
            now,
        );
        p.reason = Some(format!("{kind}: {reason}"));
        p.drone = None;
        match &verdict {
            Verdict::GiveUp(why) => {
                self.mark_failed(id, why.clone());
            }
            Verdict::Retry => self.requeue(id),
        }
        verdict
    }

    /// The package failed for good; everything that depends on it is blocked.
    pub fn mark_failed(&mut self, id: u32, reason: String) {
        self.packages[id as usize].reason = Some(reason);
        self.set_state(id, PackageState::Failed);
        let mut todo: VecDeque<u32> = self.packages[id as usize]
            .dependents
            .iter()
            .copied()
            .collect();
        while let Some(d) = todo.pop_front() {
            if matches!(
                self.packages[d as usize].state,
                PackageState::Waiting | PackageState::Queued
            ) {
                self.set_state(d, PackageState::Blocked);
                todo.extend(self.packages[d as usize].dependents.iter().copied());
            }
        }
    }

    /// The package is built and published: what it had blocked (a late valid completion)
    /// is free again. With `indexed` (no index to wait for) its dependents whose
    /// dependencies are all usable become ready now, else once [`Self::mark_indexed`].
    pub fn mark_built(&mut self, id: u32, path: String, size: u64, sha256: &str, indexed: bool) {
        let p = self.get_mut(id);
        p.tries.not_before = None;
        p.path = Some(path);
        p.size = Some(size);
        p.sha256 = Some(sha256.to_ascii_lowercase());
        p.reason = None;
        p.indexed = false;
        self.set_state(id, PackageState::Built);
        self.unindexed += 1;
        if indexed {
            self.mark_indexed(id);
        } else {
            let dependents = self.packages[id as usize].dependents.clone();
            self.unblock(dependents);
        }
    }

    /// A live index lists the built package: its dependents whose dependencies are all
    /// usable become ready. Returns whether anything changed.
    pub fn mark_indexed(&mut self, id: u32) -> bool {
        let p = &mut self.packages[id as usize];
        if p.state != PackageState::Built || p.indexed {
            return false;
        }
        p.indexed = true;
        self.unindexed -= 1;
        let dependents = self.packages[id as usize].dependents.clone();
        for &d in &dependents {
            let dp = &mut self.packages[d as usize];
            dp.unbuilt = dp.unbuilt.saturating_sub(1);
            if dp.unbuilt == 0 && dp.state == PackageState::Waiting && dp.parked.is_none() {
                self.make_ready(d);
            }
        }
        self.unblock(dependents);
        true
    }

    /// Re-examines blocked packages among `start` and, transitively, their dependents:
    /// those no longer behind a failed dependency go back to waiting or queued. Returns how
    /// many were unblocked.
    pub fn unblock(&mut self, start: Vec<u32>) -> usize {
        let mut todo: VecDeque<u32> = start.into();
        let mut unblocked = 0;
        while let Some(d) = todo.pop_front() {
            if self.packages[d as usize].state != PackageState::Blocked {
                continue;
            }
            self.requeue(d);
            if self.packages[d as usize].state != PackageState::Blocked {
                unblocked += 1;
                todo.extend(self.packages[d as usize].dependents.iter().copied());
            }
        }
        unblocked
    }

    /// The central fault is over: what waited out a backoff because of it may go now.
    pub fn end_backoffs(&mut self) {
        for p in &mut self.packages {
            p.tries.not_before = None;
        }
    }

    // ------------------------------------------------------------ submission

    /// Adds a checked (acyclic) package set: new packages get their edges, critical-path
    /// priorities and states; packages already known are counted, not changed, except that
    /// earlier packages the new ones depend on may rise in priority.
    pub fn submit(&mut self, set: &PackageSet) -> SubmitResult {
        self.submit_learned(set, &|_| None)
    }

    /// [`Self::submit`], with `learned` giving an estimate for a package its set gives
    /// none (its name's learned build time).
    pub fn submit_learned(
        &mut self,
        set: &PackageSet,
        learned: &dyn Fn(&Atom) -> Option<f64>,
    ) -> SubmitResult {
        let mut existing = 0;
        let mut new_ids: Vec<u32> = Vec::new();
        let mut set_ids: HashMap<String, u32> = HashMap::with_capacity(set.packages.len());
        for spec in &set.packages {
            let atom_str = spec.atom.to_string();
            if let Some(id) = self.by_atom.get(&atom_str) {
                existing += 1;
                set_ids.insert(atom_str, *id);
                continue;
            }
            let id = self.packages.len() as u32;
            let seq = self.next_seq;
            self.next_seq += 1;
            let mut p = Package::new(
                spec.atom.clone(),
                atom_str.clone(),
                seq,
                PackageState::Waiting,
            );
            p.estimate_s = spec.estimate_s.or_else(|| learned(&spec.atom));
            if !spec.requirements.is_empty() {
                p.requirements = Some(Box::new(spec.requirements.clone()));
                self.constrained.push(id);
            }
            self.packages.push(p);
            self.counts[PackageState::Waiting.index()] += 1;
            self.by_atom.insert(atom_str.clone(), id);
            set_ids.insert(atom_str, id);
            new_ids.push(id);
        }
        let mut dep_rows = Vec::new();
        let new_set: HashSet<u32> = new_ids.iter().copied().collect();
        for spec in &set.packages {
            let Some(&id) = set_ids.get(&spec.atom.to_string()) else {
                continue;
            };
            if !new_set.contains(&id) {
                continue;
            }
            for dep in &spec.deps {
                let Some(&d) = set_ids.get(&dep.to_string()) else {
                    continue;
                };
                if d == id || self.packages[id as usize].deps.contains(&d) {
                    continue;
                }
                self.packages[id as usize].deps.push(d);
                self.packages[d as usize].dependents.push(id);
                dep_rows.push((id, d));
            }
        }
        let order = self.topological(&new_ids, &new_set);
        for &id in order.iter().rev() {
            self.packages[id as usize].priority = self.chain_priority(id);
        }
        let raised: Vec<u32> = dep_rows
            .iter()
            .filter(|(_, d)| !new_set.contains(d))
            .map(|(_, d)| *d)
            .collect();
        self.raise_priorities(raised);
        for &id in &order {
            self.packages[id as usize].unbuilt = self.unbuilt_deps(id);
            self.requeue(id);
        }
        let dependencies = dep_rows.len();
        self.new_deps.extend(dep_rows);
        SubmitResult {
            format: set.format,
            added: new_ids.len(),
            existing,
            skipped: set.skipped,
            dependencies,
        }
    }

    /// The new packages in dependency order (dependencies first).
    fn topological(&self, new_ids: &[u32], new_set: &HashSet<u32>) -> Vec<u32> {
        let mut indegree: HashMap<u32, usize> = new_ids
            .iter()
            .map(|id| {
                let n = self.packages[*id as usize]
                    .deps
                    .iter()
                    .filter(|d| new_set.contains(d))
                    .count();
                (*id, n)
            })
            .collect();
        let mut order: Vec<u32> = Vec::with_capacity(new_ids.len());
        let mut frontier: VecDeque<u32> = new_ids
            .iter()
            .copied()
            .filter(|id| indegree[id] == 0)
            .collect();
        while let Some(id) = frontier.pop_front() {
            order.push(id);
            for dep in &self.packages[id as usize].dependents {
                if let Some(n) = indegree.get_mut(dep) {
                    *n -= 1;
                    if *n == 0 {
                        frontier.push_back(*dep);
                    }
                }
            }
        }
        order
    }

    /// The package's own estimate plus the longest chain of estimates among its
    /// dependents' priorities: its critical path to the end of the graph.
    fn chain_priority(&self, id: u32) -> u64 {
        let p = &self.packages[id as usize];
        let below = p
            .dependents
            .iter()
            .map(|d| self.packages[*d as usize].priority)
            .max()
            .unwrap_or(0);
        priority_ms(p.estimate_s).saturating_add(below)
    }

    /// Recomputes the priority of `ids` (earlier packages that gained dependents) and of
    /// everything they depend on, as far as it rises. Queued ones are pushed again at
    /// their new priority (the old heap entry is skipped as stale once claimed).
    fn raise_priorities(&mut self, mut ids: Vec<u32>) {
        while let Some(id) = ids.pop() {
            let prio = self.chain_priority(id);
            if prio <= self.packages[id as usize].priority {
                continue;
            }
            self.packages[id as usize].priority = prio;
            self.dirty.insert(id);
            if self.packages[id as usize].state == PackageState::Queued {
                self.push_ready(id);
            }
            ids.extend(self.packages[id as usize].deps.iter().copied());
        }
    }

    /// Failed packages named by `req` (atoms, a state, or both) go back to the queue with
    /// their failure history cleared; what they blocked is unblocked.
    pub fn retry(&mut self, req: &RetryRequest) -> Result<RetryResult, RetryError> {
        if req.atoms.is_empty() && req.state.is_none() {
            return Err(RetryError::NothingNamed);
        }
        let mut targets = Vec::new();
        for atom in &req.atoms {
            let id = self
                .find(atom)
                .ok_or_else(|| RetryError::Unknown(atom.trim().trim_start_matches('=').into()))?;
            targets.push(id);
        }
        if let Some(state) = req.state {
            targets.extend(
                self.packages
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.state == state)
                    .map(|(i, _)| i as u32),
            );
        }
        let mut retried = 0;
        let mut dependents: Vec<u32> = Vec::new();
        for id in targets {
            let p = &self.packages[id as usize];
            // Built, but the binhost index cannot list it (its file went missing or bad):
            // built again. Its dependents still count it as unbuilt.
            let unlisted = p.state == PackageState::Built && !p.indexed;
            if !unlisted && p.state != PackageState::Failed {
                continue;
            }
            let p = self.get_mut(id);
            p.tries.clear();
            p.reason = None;
            if unlisted {
                (p.path, p.size, p.sha256) = (None, None, None);
                self.unindexed -= 1;
            } else {
                p.retried = true;
            }
            self.requeue(id);
            retried += 1;
            if !unlisted {
                dependents.extend(self.packages[id as usize].dependents.iter().copied());
            }
        }
        let unblocked = self.unblock(dependents);
        Ok(RetryResult { retried, unblocked })
    }
}

/// Something odd found in the stored rows (logged by the queue; never from rows it wrote).
#[derive(Debug)]
pub enum RestoreProblem {
    InvalidAtom(String),
    NotDense(u32),
}

#[cfg(test)]
mod tests;
