//! Snapshots: the live binhost at one moment — every indexed file hard-linked (no data
//! copied) under `snapshots/<name>/` with the index of that moment — listed and compared.

use super::{io_err, names, write_atomic, ReleaseError, Releases};
use crate::orchestrator::binhost::index;
use crate::orchestrator::binhost::index_file;
use crate::orchestrator::binhost::live::Capture;
use crate::orchestrator::binhost::verify;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A snapshot's own record (`.snapshot.json`, hidden: never served).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotMeta {
    pub name: String,
    /// Unix seconds.
    pub created: u64,
    pub packages: usize,
    /// `TIMESTAMP` of its `Packages`.
    pub timestamp: u64,
    /// Order of taking (snapshots of the same second keep their order).
    #[serde(default)]
    pub seq: u64,
}

const META: &str = ".snapshot.json";

/// The name `live` stands for the live binhost in [`Releases::diff`].
pub const LIVE: &str = "live";

/// What changed from one index to another, by CPV and BUILD_ID.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diff {
    pub added: Vec<PackageRef>,
    pub removed: Vec<PackageRef>,
    /// Same CPV and BUILD_ID, another file (size or checksums differ).
    pub changed: Vec<PackageRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PackageRef {
    pub cpv: String,
    pub build_id: Option<String>,
    pub path: String,
}

impl Releases {
    /// Takes a snapshot of `capture` (the live index at this moment) named `name` (or
    /// after the time). Built under a hidden name and renamed: a snapshot is whole or not
    /// there. A file gone since the capture is left out; one changed since is indexed
    /// from the linked file.
    pub fn take_snapshot(
        &self,
        name: Option<&str>,
        capture: &Capture,
        now: u64,
    ) -> Result<SnapshotMeta, ReleaseError> {
        let name = match name {
            Some(n) => {
                names::check_snapshot(n)?;
                n.to_string()
            }
            None => self.free_default_name(now),
        };
        let dest = self.snapshot_dir(&name);
        if dest.exists() {
            return Err(ReleaseError::SnapshotExists(name));
        }
        let snapshots = self.snapshots_dir();
        fs::create_dir_all(&snapshots).map_err(io_err(&snapshots))?;
        let tmp = snapshots.join(format!(".{name}.partial-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        let seq = self.snapshots()?.iter().map(|m| m.seq).max().unwrap_or(0) + 1;
        let built = self.fill(&tmp, capture, &name, now, seq).and_then(|meta| {
            // Links, directories and records durable before the name says it is whole.
            let dir = fs::File::open(&tmp).map_err(io_err(&tmp))?;
            crate::orchestrator::publish::sync_filesystem(&dir).map_err(io_err(&tmp))?;
            fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
            crate::orchestrator::publish::sync_dir(&snapshots).map_err(io_err(&snapshots))?;
            Ok(meta)
        });
        if built.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        built
    }

    fn free_default_name(&self, now: u64) -> String {
        let base = names::default_snapshot_name(now);
        let mut name = base.clone();
        let mut n = 1;
        while self.snapshot_dir(&name).exists() {
            n += 1;
            name = format!("{base}-{n}");
        }
        name
    }

    fn fill(
        &self,
        dir: &Path,
        capture: &Capture,
        name: &str,
        now: u64,
        seq: u64,
    ) -> Result<SnapshotMeta, ReleaseError> {
        use std::os::unix::fs::MetadataExt;
        let mut made: HashSet<PathBuf> = HashSet::new();
        let mut blocks: Vec<std::sync::Arc<str>> = Vec::with_capacity(capture.items.len());
        let mut bytes = 0;
        for item in &capture.items {
            let Some(to) = crate::orchestrator::publish::join_inside(dir, &item.path) else {
                continue;
            };
            let from = self.binhost.join(&item.path);
            // Only a regular file inside the binhost: a symbolic link (of the file or of
            // a directory on its way) could make the snapshot serve a file from anywhere.
            if !inside(&self.binhost, &from) {
                continue;
            }
            if let Some(parent) = to.parent() {
                if made.insert(parent.to_path_buf()) {
                    fs::create_dir_all(parent).map_err(io_err(parent))?;
                }
            }
            match fs::hard_link(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                    return Err(ReleaseError::CrossDevice {
                        binhost: self.binhost.clone(),
                        releases: self.root.clone(),
                    })
                }
                Err(e) => return Err(io_err(&from)(e)),
            }
            let m = fs::metadata(&to).map_err(io_err(&to))?;
            let same = Some(m.len()) == item.size && Some(m.mtime().max(0) as u64) == item.mtime;
            let block = if same {
                item.block.clone()
            } else {
                // Replaced between the capture and the link: index what was linked.
                match verify::entry_of_file(dir, &item.path, None) {
                    Ok(e) => e.render(&capture.header).into(),
                    Err(_) => {
                        let _ = fs::remove_file(&to);
                        continue;
                    }
                }
            };
            bytes += block.len();
            blocks.push(block);
        }
        let text = index::render(
            &capture.header,
            capture.timestamp,
            blocks.len(),
            blocks.iter().map(|b| &**b),
            bytes,
        );
        index_file::write(dir, &text, capture.timestamp, false).map_err(|e| ReleaseError::Io {
            path: e.path,
            source: e.source,
        })?;
        let meta = SnapshotMeta {
            name: name.to_string(),
            created: now,
            packages: blocks.len(),
            timestamp: capture.timestamp,
            seq,
        };
        let json = serde_json::to_vec_pretty(&meta).unwrap_or_default();
        write_atomic(&dir.join(META), &json)?;
        Ok(meta)
    }

    /// Every snapshot, oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotMeta>, ReleaseError> {
        let mut out = Vec::new();
        for name in super::entry_names(&self.snapshots_dir())? {
            if names::check_snapshot(&name).is_err() {
                continue;
            }
            if let Some(meta) = self.snapshot_meta(&name)? {
                out.push(meta);
            }
        }
        out.sort_by(|a, b| (a.created, a.seq, &a.name).cmp(&(b.created, b.seq, &b.name)));
        Ok(out)
    }

    /// A snapshot's record; `None` when there is no such snapshot.
    pub fn snapshot_meta(&self, name: &str) -> Result<Option<SnapshotMeta>, ReleaseError> {
        names::check_snapshot(name)?;
        let path = self.snapshot_dir(name).join(META);
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| io_err(&path)(io::Error::new(io::ErrorKind::InvalidData, e))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Removes a snapshot: renamed to a hidden name first, so it is never seen half gone.
    pub fn remove_snapshot(&self, name: &str) -> Result<(), ReleaseError> {
        names::check_snapshot(name)?;
        let dir = self.snapshot_dir(name);
        let doomed = self
            .snapshots_dir()
            .join(format!(".{name}.removing-{}", std::process::id()));
        fs::rename(&dir, &doomed).map_err(io_err(&dir))?;
        fs::remove_dir_all(&doomed).map_err(io_err(&doomed))
    }

    /// The index of a snapshot (or of the live binhost, [`LIVE`]).
    pub fn index_of(&self, name: &str) -> Result<index::Parsed, ReleaseError> {
        let dir = if name == LIVE {
            self.binhost.clone()
        } else {
            names::check_snapshot(name)?;
            if self.snapshot_meta(name)?.is_none() {
                return Err(ReleaseError::UnknownSnapshot(name.to_string()));
            }
            self.snapshot_dir(name)
        };
        let text = index_file::read(&dir)
            .map_err(io_err(&dir))?
            .unwrap_or_default();
        Ok(index::parse(&text))
    }

    /// What changed from snapshot `from` to snapshot `to` (either may be [`LIVE`]).
    pub fn diff(&self, from: &str, to: &str) -> Result<Diff, ReleaseError> {
        let a = by_build(self.index_of(from)?);
        let b = by_build(self.index_of(to)?);
        let mut d = Diff::default();
        for (k, e) in &b {
            match a.get(k) {
                None => d.added.push(package_ref(k, e)),
                Some(old) if same_file(old, e) => {}
                Some(_) => d.changed.push(package_ref(k, e)),
            }
        }
        for (k, e) in &a {
            if !b.contains_key(k) {
                d.removed.push(package_ref(k, e));
            }
        }
        Ok(d)
    }
}

type Key = (String, Option<String>);

fn by_build(parsed: index::Parsed) -> BTreeMap<Key, BTreeMap<String, String>> {
    parsed
        .entries
        .into_iter()
        .filter_map(|e| {
            let cpv = e.get("CPV")?.clone();
            Some(((cpv, e.get("BUILD_ID").cloned()), e))
        })
        .collect()
}

fn same_file(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    ["SIZE", "MD5", "SHA1", "PATH"]
        .iter()
        .all(|k| a.get(*k) == b.get(*k))
}

fn package_ref(k: &Key, e: &BTreeMap<String, String>) -> PackageRef {
    PackageRef {
        cpv: k.0.clone(),
        build_id: k.1.clone(),
        path: e.get("PATH").cloned().unwrap_or_default(),
    }
}

/// Whether `path` is a regular file that is, after every symbolic link, inside `root`.
pub(crate) fn inside(root: &Path, path: &Path) -> bool {
    match (
        fs::symlink_metadata(path),
        path.canonicalize(),
        root.canonicalize(),
    ) {
        (Ok(m), Ok(real), Ok(root)) => m.file_type().is_file() && real.starts_with(root),
        _ => false,
    }
}
