//! The index the orchestrator keeps and serves: every entry, by CPV as Portage orders
//! them, each block rendered once; the header; and the `TIMESTAMP` rule. Plain data, no
//! file work (the binhost-index actor writes what [`LiveIndex::render`] gives).
//!
//! `TIMESTAMP` strictly increases across writes and restarts. Portage's client asks with
//! `If-Modified-Since` = its cached `TIMESTAMP` + 5 s, and a server with exact-match
//! semantics answers 304 only when that equals the current `Last-Modified`: so no index
//! gets a `TIMESTAMP` exactly 5 s after one served before, and a client never mistakes a
//! newer index for its own.

use super::index::{self, Entry, Header};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// Portage's `TIMESTAMP_TOLERANCE`: what its client adds to its cached `TIMESTAMP`.
pub const CLIENT_TOLERANCE_S: u64 = 5;
/// How many timestamps served are remembered for the rule above.
const REMEMBERED: usize = 4096;

/// The live index at one moment ([`LiveIndex::capture`]): what a snapshot holds.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    pub header: Header,
    pub timestamp: u64,
    pub items: Vec<Captured>,
    /// Paths `binhost verify --fix` stopped listing (since the start) and nothing listed
    /// again: the only live files retention may remove.
    pub dropped: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Captured {
    /// The entry as the index renders it.
    pub block: Arc<str>,
    pub path: String,
    pub size: Option<u64>,
    pub mtime: Option<u64>,
}

#[derive(Default)]
pub struct LiveIndex {
    pub header: Header,
    /// (CPV, PATH) → the entry and its rendered block.
    entries: BTreeMap<(String, String), (Entry, Arc<str>)>,
    by_path: HashMap<String, String>,
    bytes: usize,
    last_timestamp: u64,
    served: VecDeque<u64>,
}

impl LiveIndex {
    pub fn new(header: Header) -> Self {
        LiveIndex {
            header,
            ..LiveIndex::default()
        }
    }

    /// An index that continues one written before (its newest `TIMESTAMP`). The ones
    /// before it are not known: the next is more than 5 s after it, so it cannot be any of
    /// them + 5.
    pub fn after(mut self, timestamp: u64) -> Self {
        if timestamp > 0 {
            self.last_timestamp = self.last_timestamp.max(timestamp + CLIENT_TOLERANCE_S);
            self.served.push_back(timestamp);
        }
        self
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        let cpv = self.by_path.get(path)?;
        self.entries
            .get(&(cpv.clone(), path.to_string()))
            .map(|(e, _)| e)
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values().map(|(e, _)| e)
    }

    /// Adds or replaces the entry of its path.
    pub fn insert(&mut self, entry: Entry) {
        let path = entry.path().to_string();
        self.remove(&path);
        let block: Arc<str> = entry.render(&self.header).into();
        self.bytes += block.len();
        self.by_path.insert(path.clone(), entry.cpv().to_string());
        self.entries
            .insert((entry.cpv().to_string(), path), (entry, block));
    }

    pub fn remove(&mut self, path: &str) -> Option<Entry> {
        let cpv = self.by_path.remove(path)?;
        let (e, block) = self.entries.remove(&(cpv, path.to_string()))?;
        self.bytes -= block.len();
        Some(e)
    }

    /// Sets a header key (every block is rendered again when it changes what an entry
    /// leaves out).
    pub fn set_header(&mut self, key: &str, value: &str) {
        if self.header.keys.get(key).map(String::as_str) == Some(value) {
            return;
        }
        self.header.keys.insert(key.into(), value.into());
        if index::INHERITED.contains(&key) {
            let all: Vec<Entry> = self.entries.values().map(|(e, _)| e.clone()).collect();
            for e in all {
                self.insert(e);
            }
        }
    }

    /// The `TIMESTAMP` of the next write at `now` (unix seconds), remembered as served.
    pub fn next_timestamp(&mut self, now: u64) -> u64 {
        let mut t = now.max(self.last_timestamp + 1);
        while self.served.iter().any(|s| s + CLIENT_TOLERANCE_S == t) {
            t += 1;
        }
        self.last_timestamp = t;
        self.served.push_back(t);
        if self.served.len() > REMEMBERED {
            self.served.pop_front();
        }
        t
    }

    /// The index text for `timestamp`: the blocks are shared, not copied, until here.
    pub fn render(&self, timestamp: u64) -> String {
        index::render(
            &self.header,
            timestamp,
            self.entries.len(),
            self.entries.values().map(|(_, b)| &**b),
            self.bytes,
        )
    }

    /// Every entry's block with the facts a snapshot checks its hard link against, in
    /// index order, and the newest `TIMESTAMP` written (for a snapshot of this moment).
    pub fn capture(&self) -> Capture {
        Capture {
            header: self.header.clone(),
            timestamp: self.last_timestamp,
            items: self
                .entries
                .values()
                .map(|(e, b)| Captured {
                    block: b.clone(),
                    path: e.path().to_string(),
                    size: e.size(),
                    mtime: e.mtime(),
                })
                .collect(),
            dropped: Vec::new(),
        }
    }

    /// The blocks, for rendering on another thread.
    pub fn snapshot(&self) -> (Header, Vec<Arc<str>>, usize) {
        (
            self.header.clone(),
            self.entries.values().map(|(_, b)| b.clone()).collect(),
            self.bytes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::binhost::index::FileFacts;
    use crate::orchestrator::binhost::metadata::Metadata;

    fn entry(cpv: &str, path: &str, chost: &str) -> Entry {
        let (cat, pf) = cpv.split_once('/').unwrap();
        let meta: Metadata = [("CATEGORY", cat), ("PF", pf), ("CHOST", chost)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Entry::new(
            &meta,
            &FileFacts {
                path: path.into(),
                size: 1,
                md5: "m".into(),
                sha1: "s".into(),
                mtime: 1,
            },
        )
        .unwrap()
    }

    #[test]
    fn entries_are_in_cpv_order_and_a_path_has_one() {
        let mut live = LiveIndex::new(Header::default());
        live.insert(entry("b/z-1", "b/z-1.gpkg.tar", "x"));
        live.insert(entry("a/y-1", "a/y/y-1-2.gpkg.tar", "x"));
        live.insert(entry("a/y-1", "a/y/y-1-1.gpkg.tar", "x"));
        live.insert(entry("a/y-1", "a/y/y-1-1.gpkg.tar", "x"));
        assert_eq!(live.len(), 3);
        let text = live.render(5);
        let cpvs: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("PATH: "))
            .collect();
        assert_eq!(
            cpvs,
            ["a/y/y-1-1.gpkg.tar", "a/y/y-1-2.gpkg.tar", "b/z-1.gpkg.tar"]
        );
        assert!(text.contains("PACKAGES: 3\n"));
        assert!(live.remove("b/z-1.gpkg.tar").is_some());
        assert_eq!(live.render(6).matches("CPV:").count(), 2);
        // A header CHOST is left out of the entries that have the same one.
        assert_eq!(live.render(7).matches("CHOST: x").count(), 2);
        live.set_header("CHOST", "x");
        assert_eq!(live.render(8).matches("CHOST: x").count(), 1);
    }

    #[test]
    fn timestamps_increase_and_never_land_five_seconds_after_one_served() {
        // After a restart only the newest is known: the next is past it + 5.
        let mut again = LiveIndex::new(Header::default()).after(200);
        assert_eq!(again.next_timestamp(201), 206);
        let mut live = LiveIndex::new(Header::default());
        assert_eq!(live.next_timestamp(100), 100);
        assert_eq!(
            live.next_timestamp(50),
            101,
            "never back, even with the clock"
        );
        assert_eq!(live.next_timestamp(101), 102);
        // 105 = 100 + 5 and 106 = 101 + 5, 107 = 102 + 5: a client that cached 100,
        // 101 or 102 would take any of them for its own.
        assert_eq!(live.next_timestamp(105), 108);
        assert_eq!(live.next_timestamp(200), 200);
        let mut seen = vec![100, 101, 102, 108, 200];
        for now in 201..400 {
            let t = live.next_timestamp(now);
            assert!(!seen.iter().any(|s| s + CLIENT_TOLERANCE_S == t), "{t}");
            assert!(t > *seen.last().unwrap());
            seen.push(t);
        }
    }
}
