//! The timeline view (docs/design.md, "Timeline"): the attempts that overlap a window,
//! one row per drone slot (the slot each lease took at its claim), how many ended per
//! bucket, and the progress samples. A pure function over the lease table (which remembers a day of leases); at
//! most `limit` bars, so an answer stays small however many packages the set has.

use super::graph::PackageGraph;
use super::leases::{LeasePhase, LeaseTable};
use crate::wire::orchestrator::{
    ProgressSample, ThroughputBucket, Timeline, TimelineBar, TimelineRow,
};
use std::collections::{BTreeMap, VecDeque};

/// Throughput buckets per window.
pub const BUCKETS: usize = 60;

/// The window starts no later than this before its end when it is fitted.
const MIN_FITTED_SPAN: u64 = 10;

/// `fit`: start the window at the first attempt that overlaps it (the current set),
/// not before.
pub fn timeline(
    leases: &LeaseTable,
    graph: &PackageGraph,
    progress: &VecDeque<ProgressSample>,
    now_sample: ProgressSample,
    (from, to): (u64, u64),
    limit: usize,
    fit: bool,
) -> Timeline {
    let overlaps = |l: &super::leases::Lease, from: u64| {
        l.created_unix <= to && l.ended_unix.is_none_or(|e| e >= from)
    };
    let from = match leases
        .iter()
        .filter(|(_, l)| overlaps(l, from))
        .map(|(_, l)| l.created_unix)
        .min()
    {
        Some(first) if fit => first.clamp(from, to.saturating_sub(MIN_FITTED_SPAN).max(from)),
        _ => from,
    };
    let mut bars: Vec<((String, u32), TimelineBar)> = leases
        .iter()
        .filter(|(_, l)| overlaps(l, from))
        .map(|(_, l)| {
            let outcome = match (l.phase, l.end) {
                (LeasePhase::Ended, Some(e)) => e.as_str(),
                (LeasePhase::Ended, None) => "ended",
                (LeasePhase::Uploading, _) => "uploading",
                (LeasePhase::Building, _) => "building",
            };
            (
                (l.drone.clone(), l.slot),
                TimelineBar {
                    atom: graph
                        .packages
                        .get(l.pkg as usize)
                        .map(|p| p.atom_str.clone())
                        .unwrap_or_default(),
                    start: l.created_unix,
                    uploading: l.uploading_unix,
                    end: l.ended_unix,
                    outcome: outcome.to_string(),
                },
            )
        })
        .collect();
    bars.sort_by(|a, b| (a.1.start, &a.0).cmp(&(b.1.start, &b.0)));
    let truncated = bars.len() > limit;
    if truncated {
        bars.drain(..bars.len() - limit);
    }
    // One row per drone slot (the slot each lease took when it was claimed).
    let mut by_slot: BTreeMap<(String, u32), Vec<TimelineBar>> = BTreeMap::new();
    for (key, bar) in bars {
        by_slot.entry(key).or_default().push(bar);
    }
    let rows = by_slot
        .into_iter()
        .map(|((drone, slot), bars)| TimelineRow { drone, slot, bars })
        .collect();
    let span = to.saturating_sub(from).max(1);
    let width = span.div_ceil(BUCKETS as u64).max(1);
    let mut throughput: Vec<ThroughputBucket> = (0..BUCKETS as u64)
        .map(|i| ThroughputBucket {
            start: from.saturating_add(i.saturating_mul(width)),
            ..Default::default()
        })
        .take_while(|b| b.start <= to)
        .collect();
    for (_, l) in leases.iter() {
        let (Some(end), Some(how)) = (l.ended_unix, l.end) else {
            continue;
        };
        if end < from || end > to {
            continue;
        }
        // An end at `to` itself counts in the last bucket.
        let i = (((end - from) / width) as usize).min(throughput.len().saturating_sub(1));
        if let Some(b) = throughput.get_mut(i) {
            match how {
                super::leases::LeaseEnd::Built => b.built += 1,
                super::leases::LeaseEnd::Failed => b.failed += 1,
                _ => {}
            }
        }
    }
    let mut samples: Vec<ProgressSample> = progress
        .iter()
        .filter(|s| s.t >= from && s.t <= to)
        .copied()
        .collect();
    if now_sample.t >= from && now_sample.t <= to {
        samples.push(now_sample);
    }
    Timeline {
        from,
        to,
        now: now_sample.t,
        rows,
        truncated,
        throughput,
        progress: samples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::orchestrator::queue::leases::{Lease, LeaseEnd, LEASE_ID_BITS};
    use crate::config::orchestrator::ScheduleOrder;
    use crate::sys::random::KeyedIds;

    fn lease(drone: &str, slot: u32, start: u64, end: Option<(u64, LeaseEnd)>) -> Lease {
        Lease {
            seq: 0,
            pkg: 0,
            epoch: 1,
            drone: drone.into(),
            phase: if end.is_some() {
                LeasePhase::Ended
            } else {
                LeasePhase::Building
            },
            created: tokio::time::Instant::now(),
            timed: true,
            built_in: None,
            created_unix: start,
            ended_unix: end.map(|e| e.0),
            upload_dir: String::new(),
            stop: false,
            uploading_unix: None,
            slot,
            end: end.map(|e| e.1),
        }
    }

    fn table(leases: Vec<Lease>) -> LeaseTable {
        let mut t = LeaseTable::new(0, KeyedIds::with_key([7; 32], LEASE_ID_BITS));
        for l in leases {
            let id = t.next_id();
            t.start(id, l);
        }
        t
    }

    fn graph() -> PackageGraph {
        let mut g = PackageGraph::new(ScheduleOrder::Fifo);
        let set = crate::domain::parse_package_set_bytes(b"app-misc/a-1\n").unwrap();
        g.submit(&set);
        g
    }

    #[test]
    fn each_drone_slot_is_a_row_and_ends_are_counted_per_bucket() {
        let t = table(vec![
            lease("d1", 0, 100, Some((200, LeaseEnd::Built))),
            lease("d1", 1, 150, Some((260, LeaseEnd::Failed))),
            lease("d1", 0, 210, None),
            lease("d2", 0, 120, Some((130, LeaseEnd::Infra))),
            // Outside the window.
            lease("d2", 0, 10, Some((20, LeaseEnd::Built))),
        ]);
        let tl = timeline(
            &t,
            &graph(),
            &VecDeque::new(),
            ProgressSample {
                t: 300,
                ..Default::default()
            },
            (60, 300),
            100,
            false,
        );
        let slots: Vec<(String, u32, usize)> = tl
            .rows
            .iter()
            .map(|r| (r.drone.clone(), r.slot, r.bars.len()))
            .collect();
        assert_eq!(
            slots,
            [
                ("d1".into(), 0, 2),
                ("d1".into(), 1, 1),
                ("d2".into(), 0, 1)
            ],
            "d1's third attempt took slot 0 again once the first ended"
        );
        assert_eq!(tl.rows[0].bars[1].outcome, "building");
        assert_eq!(tl.rows[0].bars[0].atom, "app-misc/a-1");
        let built: u32 = tl.throughput.iter().map(|b| b.built).sum();
        let failed: u32 = tl.throughput.iter().map(|b| b.failed).sum();
        assert_eq!((built, failed), (1, 1));
        assert!(!tl.truncated);
        assert_eq!(tl.progress.len(), 1, "the sample for now");
        let small = timeline(
            &t,
            &graph(),
            &VecDeque::new(),
            ProgressSample::default(),
            (60, 300),
            2,
            false,
        );
        let fitted = timeline(
            &t,
            &graph(),
            &VecDeque::new(),
            ProgressSample::default(),
            (30, 300),
            100,
            true,
        );
        assert_eq!(
            fitted.from, 100,
            "starts with the first attempt in the window"
        );
        assert!(small.truncated);
        assert_eq!(small.rows.iter().map(|r| r.bars.len()).sum::<usize>(), 2);
    }
}
