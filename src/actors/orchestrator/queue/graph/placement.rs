//! Packages with requirements (`requires`, `min_memory_mb`, `min_disk_mb` in a JSON set)
//! go only to drones that meet them (the claim's `may_take`). A ready package that no drone
//! which may build now meets is *parked*: state `waiting`, with the reason, out of the
//! ready heap — so it never fills the claim's scan and never blocks other work. Whenever
//! the drones change ([`PackageGraph::set_builders`]) parked packages are looked at again.

use super::PackageGraph;
use crate::domain::environment::{DroneEnvironment, Requirements};
use crate::domain::PackageState;
use std::sync::Arc;

impl PackageGraph {
    /// Why no drone that may build now can take a package needing `req` (None: one can).
    fn unplaceable(&self, req: &Requirements) -> Option<String> {
        if self
            .builders
            .iter()
            .any(|env| req.unmet(env.as_deref()).is_none())
        {
            return None;
        }
        Some(format!(
            "waiting for a drone with {} (no drone online that may build has it)",
            req.describe()
        ))
    }

    /// The package's dependencies are usable: queued and in the ready heap, or parked
    /// when no drone may build it.
    pub(super) fn make_ready(&mut self, id: u32) {
        let why = self.packages[id as usize]
            .requirements
            .as_deref()
            .and_then(|r| self.unplaceable(r));
        match why {
            Some(why) => {
                self.set_state(id, PackageState::Waiting);
                self.packages[id as usize].parked = Some(why);
            }
            None => {
                self.set_state(id, PackageState::Queued);
                self.push_ready(id);
            }
        }
    }

    /// The drones that may build changed (their environments; `None`: one that reported
    /// none). Parked packages that one of them can build now are queued; queued ones none
    /// can build are parked. Returns how many moved.
    pub fn set_builders(&mut self, builders: Vec<Option<Arc<DroneEnvironment>>>) -> usize {
        self.builders = builders;
        let mut moved = 0;
        for i in 0..self.constrained.len() {
            let id = self.constrained[i];
            let p = &self.packages[id as usize];
            let Some(req) = p.requirements.as_deref() else {
                continue;
            };
            let why = self.unplaceable(req);
            match (p.state, &p.parked, why) {
                (PackageState::Waiting, Some(_), None) => {
                    self.packages[id as usize].parked = None;
                    self.make_ready(id);
                    moved += 1;
                }
                (PackageState::Waiting, Some(old), Some(why)) if *old != why => {
                    self.packages[id as usize].parked = Some(why);
                }
                (PackageState::Queued, _, Some(why)) => {
                    self.set_state(id, PackageState::Waiting);
                    self.packages[id as usize].parked = Some(why);
                    moved += 1;
                }
                _ => {}
            }
        }
        moved
    }

    /// May a drone with `env` build `id`?
    pub fn fits(&self, id: u32, env: Option<&DroneEnvironment>) -> bool {
        self.packages[id as usize]
            .requirements
            .as_deref()
            .is_none_or(|r| r.unmet(env).is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::super::PackageGraph;
    use crate::config::orchestrator::ScheduleOrder;
    use crate::domain::environment::DroneEnvironment;
    use crate::domain::{parse_package_set, PackageState};
    use std::sync::Arc;
    use tokio::time::Instant;

    fn big_mem() -> Option<Arc<DroneEnvironment>> {
        Some(Arc::new(DroneEnvironment {
            capabilities: vec!["big-mem".into()],
            ..DroneEnvironment::default()
        }))
    }

    fn graph() -> PackageGraph {
        let set = parse_package_set(
            r#"{"packages": [
                {"atom": "www-client/chromium-1", "requires": ["big-mem"]},
                {"atom": "app-misc/a-1"},
                {"atom": "app-misc/b-1", "deps": ["www-client/chromium-1"]},
                {"atom": "app-misc/c-1", "requires": ["no-such-thing"]}]}"#,
        )
        .expect("set");
        let mut g = PackageGraph::new(ScheduleOrder::CriticalPath);
        g.set_builders(vec![None, big_mem()]);
        g.submit(&set);
        g
    }

    #[test]
    fn a_package_goes_only_to_a_drone_that_has_what_it_requires() {
        let mut g = graph();
        let chromium = g.find("www-client/chromium-1").expect("id");
        let impossible = g.find("app-misc/c-1").expect("id");
        assert_eq!(g.get(chromium).state, PackageState::Queued);
        // Nobody has `no-such-thing`: it waits, saying why, out of the way.
        assert_eq!(g.get(impossible).state, PackageState::Waiting);
        assert!(g
            .get(impossible)
            .parked
            .as_deref()
            .is_some_and(|r| r.contains("no-such-thing")));
        // A plain drone is passed over chromium and gets the plain package.
        let got = g.take_ready(Instant::now(), |_, p| {
            p.requirements
                .as_deref()
                .is_none_or(|r| r.unmet(None).is_none())
        });
        assert_eq!(got, g.find("app-misc/a-1"));
        assert_eq!(g.get(chromium).state, PackageState::Queued);
        // The big-mem drone gets it.
        let got = g.take_ready(Instant::now(), |id, _| id == chromium);
        assert_eq!(got, Some(chromium));
    }

    #[test]
    fn packages_park_when_their_drone_goes_and_come_back_with_it() {
        let mut g = graph();
        let chromium = g.find("www-client/chromium-1").expect("id");
        assert!(g.fits(chromium, big_mem().as_deref()));
        assert!(!g.fits(chromium, None));
        // The big-mem drone goes away: chromium waits with the reason; others are not held.
        assert_eq!(g.set_builders(vec![None]), 1);
        assert_eq!(g.get(chromium).state, PackageState::Waiting);
        assert!(g.get(chromium).parked.is_some());
        let a = g.take_ready(Instant::now(), |_, _| true);
        assert_eq!(a, g.find("app-misc/a-1"));
        assert_eq!(g.take_ready(Instant::now(), |_, _| true), None);
        // It comes back: chromium is queued again.
        assert_eq!(g.set_builders(vec![None, big_mem()]), 1);
        assert_eq!(g.get(chromium).state, PackageState::Queued);
        assert!(g.get(chromium).parked.is_none());
        assert_eq!(g.take_ready(Instant::now(), |_, _| true), Some(chromium));
        // Rows keep the requirements; a restored graph parks again without drones.
        let rows: Vec<_> = (0..g.len() as u32).map(|id| g.get(id).row(id)).collect();
        assert_eq!(rows[chromium as usize].requirements.requires, ["big-mem"]);
        let (mut back, problems) =
            PackageGraph::restore(ScheduleOrder::CriticalPath, rows, Vec::new(), true);
        assert!(problems.is_empty());
        back.after_restore();
        let c = back.find("app-misc/c-1").expect("id");
        assert_eq!(back.get(c).state, PackageState::Waiting);
        assert!(back.get(c).parked.is_some());
    }
}
