//! Tests of the parent module.

use super::*;
use crate::domain::parse_package_set_bytes;
use std::time::Duration;

fn graph(set: &str) -> PackageGraph {
    let mut g = PackageGraph::new(ScheduleOrder::CriticalPath);
    let set = parse_package_set_bytes(set.as_bytes()).unwrap();
    g.submit(&set);
    g
}

fn id(g: &PackageGraph, atom: &str) -> u32 {
    g.find(atom).unwrap()
}

fn take(g: &mut PackageGraph) -> Option<String> {
    let id = g.take_ready(Instant::now(), |_, _| true)?;
    g.set_state(id, PackageState::Building);
    Some(g.get(id).atom_str.clone())
}

fn policy() -> FailurePolicy {
    FailurePolicy {
        build_failure_drones: 2,
        max_infra_retries: 3,
        infra_backoff: Duration::from_secs(10),
    }
}

/// a <- b <- d, a <- c <- d (a diamond), plus a lone e; estimates make a-c-d the
/// critical path.
const DIAMOND: &str = r#"{"packages": [
    {"atom": "x/e-1", "estimate_s": 50},
    {"atom": "x/a-1", "estimate_s": 10},
    {"atom": "x/b-1", "deps": ["x/a-1"], "estimate_s": 1},
    {"atom": "x/c-1", "deps": ["x/a-1"], "estimate_s": 30},
    {"atom": "x/d-1", "deps": ["x/b-1", "x/c-1"], "estimate_s": 20}
]}"#;

#[test]
fn critical_path_first_then_dependents_after_their_dependencies() {
    let mut g = graph(DIAMOND);
    assert_eq!(g.count(PackageState::Queued), 2);
    assert_eq!(g.count(PackageState::Waiting), 3);
    // a heads a 60 s chain (a, c, d); e is 50 s alone.
    assert_eq!(g.get(id(&g, "x/a-1")).priority, 60_000);
    assert_eq!(take(&mut g).as_deref(), Some("x/a-1"));
    assert_eq!(take(&mut g).as_deref(), Some("x/e-1"));
    assert_eq!(take(&mut g), None, "b, c, d wait for a");
    g.mark_built(id(&g, "x/a-1"), "x/a-1.gpkg.tar".into(), 1, "AB", true);
    assert_eq!(g.get(id(&g, "x/a-1")).sha256.as_deref(), Some("ab"));
    assert_eq!(
        take(&mut g).as_deref(),
        Some("x/c-1"),
        "the longer chain first"
    );
    assert_eq!(take(&mut g).as_deref(), Some("x/b-1"));
    assert_eq!(take(&mut g), None, "d waits for b and c");
    g.mark_built(id(&g, "x/b-1"), "p".into(), 1, "00", true);
    assert_eq!(take(&mut g), None);
    g.mark_built(id(&g, "x/c-1"), "p".into(), 1, "00", true);
    assert_eq!(take(&mut g).as_deref(), Some("x/d-1"));
}

/// With a binhost index, a built package's dependents wait until an index lists it.
#[test]
fn dependents_wait_for_the_index() {
    let mut g = graph(DIAMOND);
    assert_eq!(take(&mut g).as_deref(), Some("x/a-1"));
    g.mark_built(id(&g, "x/a-1"), "p".into(), 1, "00", false);
    assert_eq!(g.unindexed(), 1);
    assert_eq!(take(&mut g).as_deref(), Some("x/e-1"));
    assert_eq!(take(&mut g), None, "b and c wait for a's index entry");
    assert!(g.mark_indexed(id(&g, "x/a-1")));
    assert!(!g.mark_indexed(id(&g, "x/a-1")), "once");
    assert_eq!(g.unindexed(), 0);
    assert_eq!(take(&mut g).as_deref(), Some("x/c-1"));
    // A package that is not built is not indexed.
    assert!(!g.mark_indexed(id(&g, "x/d-1")));
    // After a restart built packages wait for the index again.
    let rows: Vec<_> = (0..g.len() as u32).map(|i| g.get(i).row(i)).collect();
    let deps: Vec<(u32, u32)> = (0..g.len() as u32)
        .flat_map(|i| {
            g.get(i)
                .deps
                .iter()
                .map(move |d| (i, *d))
                .collect::<Vec<_>>()
        })
        .collect();
    let (r, _) = PackageGraph::restore(ScheduleOrder::CriticalPath, rows, deps, false);
    assert_eq!(r.unindexed(), 1);
    assert!(!r.get(id(&r, "x/a-1")).usable());
}

#[test]
fn fifo_order_ignores_estimates() {
    let mut g = PackageGraph::new(ScheduleOrder::Fifo);
    g.submit(&parse_package_set_bytes(DIAMOND.as_bytes()).unwrap());
    assert_eq!(take(&mut g).as_deref(), Some("x/e-1"));
    assert_eq!(take(&mut g).as_deref(), Some("x/a-1"));
}

#[test]
fn a_failure_blocks_dependents_and_retry_unblocks_them() {
    let mut g = graph(DIAMOND);
    let a = id(&g, "x/a-1");
    g.mark_failed(a, "broken".into());
    for atom in ["x/b-1", "x/c-1", "x/d-1"] {
        assert_eq!(g.get(id(&g, atom)).state, PackageState::Blocked, "{atom}");
    }
    let res = g
        .retry(&RetryRequest {
            atoms: vec!["=x/a-1".into()],
            state: None,
        })
        .unwrap();
    assert_eq!((res.retried, res.unblocked), (1, 3));
    assert_eq!(g.get(a).state, PackageState::Queued);
    assert_eq!(g.get(id(&g, "x/d-1")).state, PackageState::Waiting);
    assert!(matches!(
        g.retry(&RetryRequest {
            atoms: vec!["x/zz-1".into()],
            state: None
        }),
        Err(RetryError::Unknown(_))
    ));
    assert!(matches!(
        g.retry(&RetryRequest::default()),
        Err(RetryError::NothingNamed)
    ));
}

/// A built package the index cannot list (its file went bad) is built again on retry;
/// one the index lists is left alone.
#[test]
fn retry_builds_again_a_built_package_the_index_does_not_list() {
    let mut g = graph(DIAMOND);
    let (a, e) = (id(&g, "x/a-1"), id(&g, "x/e-1"));
    assert_eq!(take(&mut g).as_deref(), Some("x/a-1"));
    assert_eq!(take(&mut g).as_deref(), Some("x/e-1"));
    g.mark_built(a, "x/a-1.gpkg.tar".into(), 1, "00", false);
    g.mark_built(e, "x/e-1.gpkg.tar".into(), 1, "00", true);
    assert_eq!(g.unindexed(), 1);
    let res = g
        .retry(&RetryRequest {
            atoms: vec!["x/a-1".into(), "x/e-1".into()],
            state: None,
        })
        .unwrap();
    assert_eq!((res.retried, res.unblocked), (1, 0));
    assert_eq!(g.get(e).state, PackageState::Built, "listed: left alone");
    assert_eq!(g.get(a).state, PackageState::Queued);
    assert_eq!((g.get(a).path.as_deref(), g.unindexed()), (None, 0));
    assert_eq!(g.count(PackageState::Built), 1);
    // Its dependents still wait for it, and go once it is built and listed.
    assert_eq!(take(&mut g).as_deref(), Some("x/a-1"));
    assert_eq!(take(&mut g), None);
    g.mark_built(a, "x/a-1.gpkg.tar".into(), 1, "00", true);
    assert_eq!(take(&mut g).as_deref(), Some("x/c-1"));
}

#[test]
fn a_late_set_raises_the_priority_of_what_it_depends_on() {
    let mut g = graph(
        r#"{"packages": [{"atom": "x/a-1", "estimate_s": 1}, {"atom": "x/z-1", "estimate_s": 5}]}"#,
    );
    let later = parse_package_set_bytes(
        br#"{"packages": [{"atom": "x/a-1"}, {"atom": "x/big-1", "deps": ["x/a-1"], "estimate_s": 100}]}"#,
    )
    .unwrap();
    let res = g.submit(&later);
    assert_eq!((res.added, res.existing), (1, 1));
    assert_eq!(g.get(id(&g, "x/a-1")).priority, 101_000);
    assert_eq!(take(&mut g).as_deref(), Some("x/a-1"));
    assert_eq!(g.new_deps, vec![(2, 0)]);
}

#[test]
fn the_policy_decides_between_requeue_and_failed_for_good() {
    let mut g = graph(DIAMOND);
    let a = id(&g, "x/a-1");
    let now = Instant::now();
    take(&mut g);
    let v = g.attempt_failed(
        &policy(),
        a,
        FailureKind::Build,
        "d1",
        "oops",
        "tail",
        true,
        false,
        now,
    );
    assert_eq!(v, Verdict::Retry);
    assert_eq!(g.get(a).state, PackageState::Queued);
    assert_eq!(g.get(a).log_tail.as_deref(), Some("tail"));
    let v = g.attempt_failed(
        &policy(),
        a,
        FailureKind::Build,
        "d2",
        "oops",
        "",
        true,
        false,
        now,
    );
    assert!(
        matches!(v, Verdict::GiveUp(ref why) if why.contains("poison")),
        "{v:?}"
    );
    assert_eq!(g.get(a).state, PackageState::Failed);
    assert_eq!(g.get(id(&g, "x/d-1")).state, PackageState::Blocked);
}

#[test]
fn a_backing_off_package_is_passed_over_until_its_time() {
    let mut g = graph(r#"{"packages": [{"atom": "x/a-1"}]}"#);
    let a = id(&g, "x/a-1");
    let now = Instant::now();
    g.get_mut(a).tries.not_before = Some(now + Duration::from_secs(5));
    assert_eq!(g.take_ready(now, |_, _| true), None);
    assert_eq!(
        g.take_ready(now + Duration::from_secs(6), |_, _| true),
        Some(a)
    );
}

#[test]
fn restore_rebuilds_states_edges_and_the_ready_heap() {
    let mut g = graph(DIAMOND);
    g.mark_built(id(&g, "x/a-1"), "p".into(), 1, "00", true);
    let rows: Vec<PackageRow> = (0..g.len() as u32).map(|i| g.get(i).row(i)).collect();
    let deps = std::mem::take(&mut g.new_deps);
    let (mut r, problems) = PackageGraph::restore(ScheduleOrder::CriticalPath, rows, deps, true);
    assert!(problems.is_empty());
    assert!(r.after_restore().is_empty());
    assert_eq!(r.count(PackageState::Built), 1);
    assert_eq!(r.get(id(&r, "x/d-1")).unbuilt, 2);
    // e and c head 50 s each: set order decides.
    assert_eq!(take(&mut r).as_deref(), Some("x/e-1"));
    assert_eq!(take(&mut r).as_deref(), Some("x/c-1"));
}

#[test]
fn ready_order_is_priority_then_set_order() {
    let mut h = BinaryHeap::new();
    for (priority, seq) in [(5, 2), (9, 3), (5, 1)] {
        h.push(Ready {
            boost: 0,
            priority,
            seq: Reverse(seq),
            id: seq as u32,
        });
    }
    let order: Vec<u32> = std::iter::from_fn(|| h.pop().map(|r| r.id)).collect();
    assert_eq!(order, vec![3, 1, 2]);
}

fn submit(g: &mut PackageGraph, set: &str, priority: i32) {
    let set = parse_package_set_bytes(set.as_bytes()).unwrap();
    g.submit_with_priority(&set, priority, &|_| None);
}

/// Takes until nothing is ready, building nothing: the hand-out order.
fn order(g: &mut PackageGraph) -> Vec<String> {
    std::iter::from_fn(|| take(g)).collect()
}

#[test]
fn a_higher_priority_set_goes_first_and_lifts_what_it_needs() {
    let mut g = graph("low/a-1\nlow/b-1\nlow/c-1\n");
    // The high set needs low/c-1: it rises with the set.
    submit(
        &mut g,
        r#"{"packages": [{"atom": "low/c-1"}, {"atom": "high/x-1", "deps": ["low/c-1"]}, {"atom": "high/y-1"}]}"#,
        5,
    );
    assert_eq!(g.get(id(&g, "low/c-1")).boost, 5);
    assert_eq!(g.get(id(&g, "high/x-1")).boost, 5);
    assert_eq!(g.get(id(&g, "low/a-1")).boost, 0);
    // High first (c before y: critical path, c has a dependent), then low; the fourth
    // hand-out is the fair turn, which only matters while higher work is ready.
    let got = order(&mut g);
    assert_eq!(&got[..2], ["low/c-1", "high/y-1"]);
    assert_eq!(got.len(), 4, "{got:?}"); // high/x-1 waits for low/c-1 to be built
                                         // A negative priority sinks only the set's own new packages.
    let mut g = graph("a/shared-1\n");
    submit(&mut g, "a/shared-1\nb/background-1\n", -3);
    assert_eq!(g.get(id(&g, "a/shared-1")).boost, 0);
    assert_eq!(g.get(id(&g, "b/background-1")).boost, -3);
    assert_eq!(order(&mut g), ["a/shared-1", "b/background-1"]);
}

#[test]
fn bump_moves_a_package_and_its_missing_dependencies_ahead_of_everything() {
    let mut g = graph(DIAMOND);
    submit(&mut g, "z/other-1\n", 7);
    // d needs b and c, which need a: all four go above priority 7.
    assert_eq!(g.bump("x/d-1").unwrap(), 4);
    assert_eq!(g.get(id(&g, "x/a-1")).boost, 8);
    assert_eq!(g.get(id(&g, "x/e-1")).boost, 0);
    assert_eq!(take(&mut g).as_deref(), Some("x/a-1"));
    // Already built: refused; unknown: refused.
    g.mark_built(id(&g, "x/a-1"), "p".into(), 1, "00", true);
    assert!(matches!(g.bump("x/a-1"), Err(boost::BumpError::Built(_))));
    assert!(matches!(
        g.bump("x/nope-1"),
        Err(boost::BumpError::Unknown(_))
    ));
    // b and c (bumped) before z/other (7) before e (0).
    let got = order(&mut g);
    assert_eq!(&got[..2], ["x/c-1", "x/b-1"]);
    assert!(got.contains(&"z/other-1".to_string()) && got.contains(&"x/e-1".to_string()));
}

#[test]
fn higher_priorities_never_starve_the_rest() {
    // 40 high packages stay ready; 5 low ones wait below them.
    let mut g = graph("low/l0-1\nlow/l1-1\nlow/l2-1\nlow/l3-1\nlow/l4-1\n");
    let high: String = (0..40).map(|i| format!("high/h{i}-1\n")).collect();
    submit(&mut g, &high, 10);
    let first: Vec<String> = (0..20).filter_map(|_| take(&mut g)).collect();
    let low = first.iter().filter(|a| a.starts_with("low/")).count();
    // One hand-out in FAIR_EVERY goes to the oldest outranked package.
    assert_eq!(low, 20 / boost::FAIR_EVERY as usize, "{first:?}");
    assert_eq!(first[boost::FAIR_EVERY as usize - 1], "low/l0-1");
    // Without higher work ready, the fair turn changes nothing: critical path as usual
    // (longest estimate first, against set order).
    let set: Vec<String> = (0..8)
        .map(|i| format!(r#"{{"atom": "p/s{i}-1", "estimate_s": {}}}"#, i + 1))
        .collect();
    let mut g = graph(&format!(r#"{{"packages": [{}]}}"#, set.join(",")));
    let want: Vec<String> = (0..8).rev().map(|i| format!("p/s{i}-1")).collect();
    assert_eq!(order(&mut g), want);
}

#[test]
fn operator_priority_survives_a_restart() {
    let mut g = graph("a/x-1\n");
    submit(&mut g, "b/y-1\n", 4);
    let rows: Vec<PackageRow> = g
        .packages
        .iter()
        .enumerate()
        .map(|(i, p)| p.row(i as u32))
        .collect();
    assert_eq!(rows[1].boost, 4);
}

#[test]
fn the_fair_heap_does_not_grow_with_packages_handed_out_long_ago() {
    let set: String = (0..12_000).map(|i| format!("a/p{i}-1\n")).collect();
    let mut g = graph(&set);
    while take(&mut g).is_some() {}
    let more: String = (0..5_000).map(|i| format!("b/q{i}-1\n")).collect();
    submit(&mut g, &more, 0);
    assert!(
        g.fair.len() <= 2 * g.ready.len() + 4096 + 1,
        "{} {}",
        g.fair.len(),
        g.ready.len()
    );
}

#[test]
fn a_slower_drone_leaves_the_longest_chains_to_faster_ones_when_there_is_a_choice() {
    let set = r#"{"packages": [
        {"atom": "a/long-1", "estimate_s": 100},
        {"atom": "a/mid-1", "estimate_s": 50},
        {"atom": "a/short-1", "estimate_s": 1}]}"#;
    let now = Instant::now();
    // One faster drone with room: the longest is left, the next taken.
    let mut g = graph(set);
    let got = g.take_ready_leaving(now, |_, _| true, |_| true, 1);
    assert_eq!(got, Some(id(&g, "a/mid-1")));
    // Only what the faster drones can build is left to them.
    let mut g = graph(set);
    let long = id(&g, "a/long-1");
    let got = g.take_ready_leaving(now, |_, _| true, |p| p.atom_str != "a/long-1", 1);
    assert_eq!(got, Some(long));
    // A second heap entry of a package passed over is not another candidate (a package
    // pushed again, e.g. unparked): the next one is handed out, never the one left.
    let mut g = graph(set);
    g.push_ready(long);
    let got = g.take_ready_leaving(now, |_, _| true, |_| true, 1);
    assert_eq!(got, Some(id(&g, "a/mid-1")));
    // Nothing else to take: the last one left goes after all.
    let mut g = graph(r#"{"packages": [{"atom": "a/only-1"}]}"#);
    let got = g.take_ready_leaving(now, |_, _| true, |_| true, 3);
    assert_eq!(got, Some(id(&g, "a/only-1")));
    assert_eq!(g.take_ready_leaving(now, |_, _| true, |_| true, 3), None);
}
