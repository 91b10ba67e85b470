use super::*;
use crate::domain::binpkg::stand_in_gpkg;
use crate::orchestrator::binhost::index::{self, Header};
use crate::orchestrator::binhost::live::LiveIndex;
use crate::orchestrator::binhost::verify;
use std::collections::{HashMap, HashSet};
use std::fs;

struct World {
    _dir: tempfile::TempDir,
    releases: Releases,
    live: LiveIndex,
    /// What `verify --fix` stopped listing (the binhost-index actor keeps this).
    dropped: HashSet<String>,
    next: u32,
}

impl World {
    fn new(policy: Policy) -> World {
        let dir = tempfile::tempdir().unwrap();
        let binhost = dir.path().join("binhost");
        fs::create_dir_all(&binhost).unwrap();
        World {
            releases: Releases {
                root: dir.path().join("binhost.releases"),
                binhost,
                gzip: true,
                policy,
            },
            _dir: dir,
            live: LiveIndex::new(Header::default()),
            dropped: HashSet::new(),
            next: 0,
        }
    }

    /// Publishes `cat/<pf>.gpkg.tar` (replacing the file by a rename if it exists).
    fn publish_path(&mut self, pf: &str, payload: &[u8]) -> String {
        let rel = format!("cat/{pf}.gpkg.tar");
        let path = self.releases.binhost.join(&rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, stand_in_gpkg("cat", pf, None, payload).unwrap()).unwrap();
        fs::rename(&tmp, &path).unwrap();
        let e = verify::entry_of_file(&self.releases.binhost, &rel, None).unwrap();
        self.live.insert(e);
        self.dropped.remove(&rel);
        // The index on disk, as the binhost-index actor writes it.
        let ts = self.live.next_timestamp(1_000);
        let text = self.live.render(ts);
        crate::orchestrator::binhost::index_file::write(&self.releases.binhost, &text, ts, false)
            .unwrap();
        rel
    }

    fn publish(&mut self) -> String {
        self.next += 1;
        let pf = format!("p{}-1.0", self.next);
        self.publish_path(&pf, b"payload")
    }

    fn snapshot(
        &mut self,
        name: Option<&str>,
        now: u64,
    ) -> Result<snapshot::SnapshotMeta, ReleaseError> {
        self.releases.take_snapshot(name, &self.live.capture(), now)
    }

    fn listed(&self) -> HashSet<String> {
        self.live.entries().map(|e| e.path().to_string()).collect()
    }
}

fn paths_of(text: &str) -> Vec<String> {
    index::parse(text)
        .entries
        .iter()
        .map(|e| e["PATH"].clone())
        .collect()
}

fn timestamp_of(path: &std::path::Path) -> u64 {
    index::parse(&fs::read_to_string(path).unwrap())
        .timestamp()
        .unwrap()
}

#[test]
fn a_snapshot_links_every_indexed_file_and_keeps_the_index_of_its_moment() {
    use std::os::unix::fs::MetadataExt;
    let mut w = World::new(Policy::default());
    let a = w.publish();
    let b = w.publish();
    let meta = w.snapshot(Some("first"), 1_000).unwrap();
    assert_eq!(meta.packages, 2);
    let snap = w.releases.snapshot_dir("first");
    for rel in [&a, &b] {
        let (x, y) = (
            fs::metadata(w.releases.binhost.join(rel)).unwrap(),
            fs::metadata(snap.join(rel)).unwrap(),
        );
        assert_eq!(
            (x.dev(), x.ino()),
            (y.dev(), y.ino()),
            "a hard link, not a copy"
        );
    }
    let text = fs::read_to_string(snap.join("Packages")).unwrap();
    assert_eq!(paths_of(&text), [a.clone(), b.clone()]);
    // Publishing more changes the live binhost, not the snapshot.
    let c = w.publish();
    assert_eq!(fs::read_to_string(snap.join("Packages")).unwrap(), text);
    assert!(!snap.join(&c).exists());
    // Same name again, bad names, unknown ones.
    assert!(matches!(
        w.snapshot(Some("first"), 2_000),
        Err(ReleaseError::SnapshotExists(_))
    ));
    for bad in ["../x", "a/b", ".."] {
        let e = w.snapshot(Some(bad), 2_000).unwrap_err();
        assert!(matches!(e, ReleaseError::InvalidName { .. }), "{e}");
    }
    assert_eq!(fs::read_dir(w.releases.snapshots_dir()).unwrap().count(), 1);
    // Default names are the time, made unique.
    let d1 = w.snapshot(None, 1_796_083_199).unwrap();
    let d2 = w.snapshot(None, 1_796_083_199).unwrap();
    assert_eq!(d1.name, "20261130-235959");
    assert_eq!(d2.name, "20261130-235959-2");
    let listed: Vec<String> = w
        .releases
        .snapshots()
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(listed, ["first", "20261130-235959", "20261130-235959-2"]);
    // A diff by CPV and BUILD_ID.
    let d = w.releases.diff("first", "live").unwrap();
    assert_eq!(
        d.added.iter().map(|p| p.path.clone()).collect::<Vec<_>>(),
        [c]
    );
    assert!(d.removed.is_empty() && d.changed.is_empty());
    w.publish_path("p1-1.0", b"rebuilt");
    let d = w.releases.diff("first", "live").unwrap();
    assert_eq!(d.changed.len(), 1);
    assert_eq!(d.changed[0].cpv, "cat/p1-1.0");
    assert!(matches!(
        w.releases.diff("nope", "live"),
        Err(ReleaseError::UnknownSnapshot(_))
    ));
}

#[test]
fn tags_move_the_link_atomically_with_newer_timestamps_and_rollback_goes_back() {
    let mut w = World::new(Policy::default());
    let a = w.publish();
    w.snapshot(Some("one"), 1_000).unwrap();
    let b = w.publish();
    w.snapshot(Some("two"), 1_001).unwrap();
    let st = w.releases.tag("stable", "two", 2_000).unwrap();
    assert_eq!(st.current().unwrap().snapshot, "two");
    let index = w.releases.channel_file("stable", "Packages").unwrap();
    let t1 = timestamp_of(&index);
    assert_eq!(t1, 2_000);
    assert!(w.releases.channel_file("stable", &b).is_some());
    // Rolled back in the same second: the index is still newer, by more than 5 s.
    let st = w.releases.tag("stable", "one", 2_000).unwrap();
    assert_eq!(st.previous(), Some("two"));
    let st = w.releases.rollback("stable", 2_000).unwrap();
    assert_eq!(st.current().unwrap().snapshot, "two");
    let t3 = timestamp_of(&w.releases.channel_file("stable", "Packages").unwrap());
    assert!(t3 > t1 + 5 + 5, "{t1} {t3}");
    assert_eq!(st.last_timestamp, t3);
    {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(w.releases.channel_file("stable", "Packages").unwrap()).unwrap();
        assert_eq!(m.mtime() as u64, t3, "Last-Modified is the TIMESTAMP");
    }
    // Tagged once more than rolled back: back to the snapshot taken before "two".
    let st = w.releases.rollback("stable", 2_001).unwrap();
    assert_eq!(st.current().unwrap().snapshot, "one");
    let e = w.releases.rollback("stable", 2_002).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("channel `stable` cannot roll back"),
        "{e}"
    );
    // A file only the older snapshot has is still served (a client with its index).
    assert!(w.releases.channel_file("stable", &a).is_some());
    // Bad input changes nothing.
    let before = fs::read_link(w.releases.channel_dir("stable").join("current")).unwrap();
    assert!(matches!(
        w.releases.tag("stable", "nope", 3_000),
        Err(ReleaseError::UnknownSnapshot(_))
    ));
    assert!(matches!(
        w.releases.tag("stable", "../one", 3_000),
        Err(ReleaseError::InvalidName { .. })
    ));
    assert!(matches!(
        w.releases.tag("Stable-1", "one", 3_000),
        Err(ReleaseError::InvalidName { .. })
    ));
    assert!(matches!(
        w.releases.tag("cat", "one", 3_000),
        Err(ReleaseError::InvalidName { .. }) | Err(ReleaseError::Shadows(_))
    ));
    fs::create_dir_all(w.releases.binhost.join("shadow")).unwrap();
    assert!(matches!(
        w.releases.tag("shadow", "one", 3_000),
        Err(ReleaseError::Shadows(_))
    ));
    assert!(matches!(
        w.releases.rollback("nope", 3_000),
        Err(ReleaseError::UnknownChannel(_))
    ));
    assert_eq!(
        fs::read_link(w.releases.channel_dir("stable").join("current")).unwrap(),
        before
    );
    assert_eq!(w.releases.channels().unwrap().len(), 1);
    assert!(w.releases.channel_file("stable", "../../x").is_none());
    assert!(w.releases.channel_file("nope", "Packages").is_none());
}

#[test]
fn restamp_replaces_or_adds_the_header_timestamp() {
    assert_eq!(
        channel::restamp("A: 1\nTIMESTAMP: 5\n\nCPV: x\n\n", 9),
        "A: 1\nTIMESTAMP: 9\n\nCPV: x\n\n"
    );
    assert_eq!(channel::restamp("A: 1\n\n", 9), "A: 1\nTIMESTAMP: 9\n\n");
}

#[test]
fn retention_plans_are_explained() {
    let snap = |name: &str, created: u64| snapshot::SnapshotMeta {
        name: name.into(),
        created,
        packages: 0,
        timestamp: 0,
        seq: 0,
    };
    let policy = Policy {
        keep_last: 1,
        keep_days: 1,
        grace_s: 100,
    };
    let snaps = [
        snap("a", 0),
        snap("b", 10),
        snap("c", 20),
        snap("d", 200_000),
    ];
    let chan = ChannelState {
        name: "stable".into(),
        generations: vec![
            channel::Generation {
                gen: 1,
                snapshot: "a".into(),
                timestamp: 1,
                tagged_at: 0,
                untagged_at: Some(199_950),
            },
            channel::Generation {
                gen: 2,
                snapshot: "b".into(),
                timestamp: 7,
                tagged_at: 199_950,
                untagged_at: None,
            },
        ],
        stack: vec!["c".into(), "b".into()],
        last_timestamp: 7,
    };
    let plan = retention::plan_snapshots(&snaps, std::slice::from_ref(&chan), &policy, 200_000);
    let why: HashMap<String, Vec<String>> = plan.into_iter().collect();
    assert!(why["a"][0].contains("until recently"), "{:?}", why["a"]);
    assert_eq!(why["b"], ["served by channel stable"]);
    assert_eq!(why["c"], ["rollback target of channel stable"]);
    assert!(why["d"].iter().any(|w| w.contains("newest")));
    let plan = retention::plan_generations(&[chan], &policy, 200_000);
    assert!(plan.remove.is_empty());
    assert_eq!(plan.waiting, [("stable".to_string(), 1, 200_050)]);
}

/// A tiny deterministic generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// An index a channel served: its snapshot, its PATHs, when it stopped.
type Served = (String, Vec<String>, Option<u64>);

/// What the test remembers of what happened.
#[derive(Default)]
struct Model {
    /// Live paths unlisted (and still on disk): when the first gc after that ran.
    unlisted_at: HashMap<String, u64>,
    /// Snapshots in the order they were taken.
    taken: Vec<String>,
    /// Per channel: (snapshot, index PATHs, untagged at).
    served: HashMap<String, Vec<Served>>,
}

fn files_under(dir: &std::path::Path) -> HashSet<String> {
    let (files, _) = verify::scan(dir).unwrap_or_default();
    files.into_iter().collect()
}

#[test]
fn gc_never_removes_what_a_snapshot_a_channel_or_the_live_index_needs() {
    let grace = 100;
    // keep_days 0: only the other rules keep a snapshot (retention_plans_are_explained
    // covers the age rule).
    let policy = Policy {
        keep_last: 2,
        keep_days: 0,
        grace_s: grace,
    };
    for seed in 1..=12u64 {
        let mut w = World::new(policy);
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut m = Model::default();
        let mut now = 1_700_000_000u64;
        let mut pending: HashSet<String> = HashSet::new();
        // A file nobody indexed (put there by hand, or not indexable at start): never
        // retention's to remove.
        let manual = w.releases.binhost.join("cat/manual-1.gpkg.tar");
        fs::create_dir_all(manual.parent().unwrap()).unwrap();
        fs::write(&manual, b"not ours").unwrap();
        for step in 0..120 {
            let ctx = format!("seed {seed} step {step}");
            match rng.below(10) {
                0..=2 => {
                    let rel = w.publish();
                    m.unlisted_at.remove(&rel);
                    pending.remove(&rel);
                }
                3 => {
                    // Rebuilt in place (binpkg-multi-instance off): a new file, listed.
                    let mut all: Vec<String> =
                        files_under(&w.releases.binhost).into_iter().collect();
                    all.retain(|p| !p.contains("manual"));
                    all.sort();
                    if let Some(rel) = all.get(rng.below(all.len() as u64) as usize) {
                        let pf = rel
                            .trim_start_matches("cat/")
                            .trim_end_matches(".gpkg.tar")
                            .to_string();
                        let rel = w.publish_path(&pf, format!("rebuilt {step}").as_bytes());
                        m.unlisted_at.remove(&rel);
                        pending.remove(&rel);
                    }
                }
                4 => {
                    // Dropped from the index (verify --fix), the file left behind.
                    let listed: Vec<String> = w.listed().into_iter().collect();
                    if let Some(p) = listed.get(rng.below(listed.len() as u64) as usize) {
                        w.live.remove(p);
                        w.dropped.insert(p.clone());
                        pending.insert(p.clone());
                    }
                }
                5 => {
                    m.taken.push(w.snapshot(None, now).unwrap().name);
                }
                6 | 7 => {
                    let snaps = w.releases.snapshots().unwrap();
                    if let Some(s) = snaps.get(rng.below(snaps.len() as u64) as usize) {
                        let ch = ["stable", "testing"][rng.below(2) as usize];
                        let state = w.releases.tag(ch, &s.name, now).unwrap();
                        record(&mut m, &w, ch, &state, now);
                    }
                }
                8 => {
                    let ch = ["stable", "testing"][rng.below(2) as usize];
                    if let Ok(state) = w.releases.rollback(ch, now) {
                        record(&mut m, &w, ch, &state, now);
                    }
                }
                _ => {
                    now += rng.below(3 * grace);
                    // Unlisted since the last gc: this gc is the first to see them.
                    for p in pending.drain() {
                        m.unlisted_at.entry(p).or_insert(now);
                    }
                    let before = files_under(&w.releases.binhost);
                    let snaps_before = w.releases.snapshots().unwrap();
                    let targets = |w: &World| -> Vec<Option<String>> {
                        let snaps = w.releases.snapshots().unwrap();
                        w.releases
                            .channels()
                            .unwrap()
                            .iter()
                            .map(|c| c.rollback_target(&snaps).map(String::from))
                            .collect()
                    };
                    let rollback_before = targets(&w);
                    // A dry run changes nothing.
                    let dry = w
                        .releases
                        .gc(Some((&w.listed(), &w.dropped)), now, true)
                        .unwrap();
                    assert_eq!(files_under(&w.releases.binhost), before, "{ctx}");
                    assert_eq!(w.releases.snapshots().unwrap(), snaps_before, "{ctx}");
                    let real = w
                        .releases
                        .gc(Some((&w.listed(), &w.dropped)), now, false)
                        .unwrap();
                    let names = |r: &crate::wire::orchestrator::GcReport| {
                        let mut v: Vec<String> = r
                            .removed
                            .iter()
                            .filter(|i| i.kind == "snapshot")
                            .map(|i| i.name.clone())
                            .collect();
                        v.sort();
                        v
                    };
                    assert_eq!(
                        names(&dry),
                        names(&real),
                        "{ctx}: the dry run says what goes"
                    );
                    // A rollback goes where it went before the gc.
                    assert_eq!(targets(&w), rollback_before, "{ctx}");
                    let after = files_under(&w.releases.binhost);
                    for gone in before.difference(&after) {
                        let since = m.unlisted_at.get(gone).copied();
                        assert!(
                            since.is_some_and(|s| s + grace <= now),
                            "{ctx}: {gone} removed though unlisted since {since:?} (now {now})"
                        );
                        m.unlisted_at.remove(gone);
                    }
                    // And what has waited long enough does go.
                    for (p, since) in &m.unlisted_at {
                        assert!(
                            !(since + grace <= now && after.contains(p)),
                            "{ctx}: {p} kept past its grace"
                        );
                    }
                    check(&w, &m, &policy, now, &ctx);
                    assert!(manual.exists(), "{ctx}: a file never indexed was removed");
                }
            }
        }
    }
}

fn record(m: &mut Model, w: &World, ch: &str, state: &ChannelState, now: u64) {
    let entries = m.served.entry(ch.to_string()).or_default();
    if let Some(last) = entries.last_mut() {
        last.2 = Some(now);
    }
    let snap = state.current().unwrap().snapshot.clone();
    let text = fs::read_to_string(w.releases.channel_file(ch, "Packages").unwrap()).unwrap();
    entries.push((snap, paths_of(&text), None));
}

fn check(w: &World, m: &Model, policy: &Policy, now: u64, ctx: &str) {
    // Everything the live index lists is there.
    for p in w.listed() {
        assert!(
            w.releases.binhost.join(&p).is_file(),
            "{ctx}: live {p} missing"
        );
    }
    // Every snapshot is whole.
    let snaps = w.releases.snapshots().unwrap();
    for s in &snaps {
        let dir = w.releases.snapshot_dir(&s.name);
        for p in paths_of(&fs::read_to_string(dir.join("Packages")).unwrap()) {
            assert!(
                dir.join(&p).is_file(),
                "{ctx}: {p} missing from snapshot {}",
                s.name
            );
        }
    }
    let exists: HashSet<&str> = snaps.iter().map(|s| s.name.as_str()).collect();
    for newest in m.taken.iter().rev().take(policy.keep_last) {
        assert!(
            exists.contains(newest.as_str()),
            "{ctx}: {newest}, one of the newest, gone"
        );
    }
    // Nothing else stays: each snapshot left has a reason.
    let plan = retention::plan_snapshots(&snaps, &w.releases.channels().unwrap(), policy, now);
    assert!(
        plan.iter().all(|(_, why)| !why.is_empty()),
        "{ctx}: {plan:?}"
    );
    // Each channel's index and every file of every index served within the grace period
    // (clients may hold it) are there.
    for (ch, served) in &m.served {
        let state = w.releases.channel(ch).unwrap().unwrap();
        assert!(
            exists.contains(state.current().unwrap().snapshot.as_str()),
            "{ctx}: {ch}'s snapshot gone"
        );
        if let Some(prev) = state.rollback_target(&snaps) {
            assert!(
                exists.contains(prev),
                "{ctx}: {ch}'s rollback target {prev} gone"
            );
        }
        assert!(
            w.releases.channel_file(ch, "Packages").unwrap().is_file(),
            "{ctx}"
        );
        for (snap, paths, untagged) in served {
            if untagged.is_none_or(|u| now < u + policy.grace_s) {
                assert!(
                    exists.contains(snap.as_str()),
                    "{ctx}: {snap}, served by {ch} until {untagged:?}, gone at {now}"
                );
                for p in paths {
                    assert!(
                        w.releases.channel_file(ch, p).is_some(),
                        "{ctx}: {ch}/{p} not served"
                    );
                }
            }
        }
    }
}
