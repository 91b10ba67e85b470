//! Read views over the package graph and the lease table: counts, the package listing, a
//! package's log, what each drone holds and what it would get next. Pure functions; the
//! queue actor answers its read messages with them.

use super::graph::PackageGraph;
use super::leases::LeaseTable;
use crate::domain::PackageState;
use crate::wire::orchestrator::{
    DroneQueue, LeaseView, PackageCounts, PackageInfo, PackageList, PackageLog,
};
use std::collections::HashMap;

/// How many ready packages a drone's queue view lists.
const NEXT_SHOWN: usize = 10;

pub fn counts(g: &PackageGraph) -> PackageCounts {
    PackageCounts {
        total: g.len(),
        waiting: g.count(PackageState::Waiting),
        queued: g.count(PackageState::Queued),
        building: g.count(PackageState::Building),
        uploading: g.count(PackageState::Uploading),
        built: g.count(PackageState::Built),
        failed: g.count(PackageState::Failed),
        blocked: g.count(PackageState::Blocked),
        unindexed: g.unindexed(),
    }
}

/// Packages in set order, filtered by state and by a case-insensitive substring of the
/// atom, `limit` of them from `offset`; `total` counts every match.
pub fn list(
    g: &PackageGraph,
    state: Option<PackageState>,
    search: Option<&str>,
    offset: usize,
    limit: Option<usize>,
) -> PackageList {
    let needle = search.map(str::to_ascii_lowercase);
    let matching = g.packages.iter().filter(|p| {
        state.is_none_or(|s| p.state == s)
            && needle
                .as_deref()
                .is_none_or(|n| p.atom_str.to_ascii_lowercase().contains(n))
    });
    let mut total = 0;
    let mut packages = Vec::new();
    let limit = limit.unwrap_or(usize::MAX);
    for p in matching {
        if total >= offset && packages.len() < limit {
            packages.push(PackageInfo {
                atom: p.atom_str.clone(),
                state: p.state,
                drone: p.drone.clone(),
                attempts: p.tries.attempts,
                reason: p.shown_reason(),
                priority: p.boost,
            });
        }
        total += 1;
    }
    PackageList { packages, total }
}

pub fn log(g: &PackageGraph, atom: &str) -> Option<PackageLog> {
    let p = g.get(g.find(atom)?);
    Some(PackageLog {
        atom: p.atom_str.clone(),
        state: p.state,
        reason: p.shown_reason(),
        log_tail: p.log_tail.clone().unwrap_or_default(),
    })
}

/// The atoms each drone holds an active lease on, in lease order.
pub fn current_by_drone(g: &PackageGraph, leases: &LeaseTable) -> HashMap<String, Vec<String>> {
    leases
        .active_by_drone()
        .map(|(drone, ids)| {
            let atoms = ids
                .iter()
                .filter_map(|id| leases.get(*id))
                .map(|l| g.get(l.pkg).atom_str.clone())
                .collect();
            (drone.clone(), atoms)
        })
        .collect()
}

/// What `drone` holds, and the best few ready packages it may take, in hand-out order.
pub fn drone_queue(
    g: &PackageGraph,
    leases: &LeaseTable,
    drone: String,
    eligible: impl Fn(u32) -> bool,
) -> DroneQueue {
    let current = leases
        .active_of(&drone)
        .into_iter()
        .filter_map(|id| leases.get(id).map(|l| (id, l)))
        .map(|(id, l)| {
            let p = g.get(l.pkg);
            LeaseView {
                lease: id,
                epoch: l.epoch,
                atom: p.atom_str.clone(),
                state: p.state,
                age_s: l.created.elapsed().as_secs(),
            }
        })
        .collect();
    let next = g
        .ready_in_order()
        .into_iter()
        .filter(|id| eligible(*id))
        .take(NEXT_SHOWN)
        .map(|id| g.get(id).atom_str.clone())
        .collect();
    DroneQueue {
        drone,
        current,
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::super::leases::{Lease, LeasePhase};
    use super::*;
    use crate::config::orchestrator::ScheduleOrder;
    use crate::domain::parse_package_set_bytes;
    use tokio::time::Instant;

    fn setup() -> (PackageGraph, LeaseTable) {
        let mut g = PackageGraph::new(ScheduleOrder::CriticalPath);
        g.submit(
            &parse_package_set_bytes(b"=app-misc/foo-1\n=app-misc/bar-2\n=dev-libs/baz-3\n")
                .unwrap(),
        );
        let ids = crate::sys::random::KeyedIds::with_key([3; 32], 53);
        let mut t = LeaseTable::new(1, ids);
        let id = g.take_ready(Instant::now(), |_, _| true).unwrap();
        g.set_state(id, PackageState::Building);
        let lease = t.next_id();
        t.start(
            lease,
            Lease {
                seq: 0,
                pkg: id,
                epoch: 1,
                drone: "d1".into(),
                phase: LeasePhase::Building,
                created: Instant::now(),
                timed: true,
                built_in: None,
                created_unix: 0,
                ended_unix: None,
                upload_dir: "lease-1".into(),
                stop: false,
                uploading_unix: None,
                slot: 0,
                end: None,
            },
        );
        (g, t)
    }

    #[test]
    fn counts_and_listing_follow_the_states() {
        let (g, _) = setup();
        let c = counts(&g);
        assert_eq!((c.total, c.queued, c.building), (3, 2, 1));
        let all = list(&g, None, None, 0, None);
        assert_eq!(all.total, 3);
        assert_eq!(all.packages[0].atom, "app-misc/foo-1");
        let page = list(&g, None, Some("APP-MISC"), 1, Some(5));
        assert_eq!((page.total, page.packages.len()), (2, 1));
        assert_eq!(page.packages[0].atom, "app-misc/bar-2");
        assert_eq!(
            list(&g, Some(PackageState::Building), None, 0, None).total,
            1
        );
        assert!(log(&g, "=dev-libs/baz-3").is_some());
        assert!(log(&g, "dev-libs/nope-1").is_none());
    }

    #[test]
    fn a_drone_sees_what_it_holds_and_what_comes_next() {
        let (g, t) = setup();
        let by = current_by_drone(&g, &t);
        assert_eq!(by["d1"], vec!["app-misc/foo-1".to_string()]);
        let q = drone_queue(&g, &t, "d1".into(), |_| true);
        assert_eq!(q.current.len(), 1);
        assert_eq!(
            q.next,
            vec!["app-misc/bar-2".to_string(), "dev-libs/baz-3".to_string()]
        );
        let q = drone_queue(&g, &t, "d2".into(), |id| {
            g.get(id).atom.category == "dev-libs"
        });
        assert!(q.current.is_empty());
        assert_eq!(q.next, vec!["dev-libs/baz-3".to_string()]);
    }
}
