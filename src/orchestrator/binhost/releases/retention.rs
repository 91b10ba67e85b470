//! Retention: which snapshots, channel generations and unindexed live files go. Plain
//! decisions ([`plan_snapshots`], [`plan_generations`], [`plan_files`]) over what is on
//! disk and the time, tested without a filesystem; [`Releases::gc`] gathers, decides and
//! removes.
//!
//! Kept: the newest `keep_last` snapshots, those younger than `keep_days`, every snapshot
//! a channel serves and each channel's rollback target (a removed snapshot leaves the
//! channels' rollback stacks, so the target is always one that is kept), and — for `grace_s` after a
//! channel stopped serving it — every snapshot a channel served (clients holding that
//! index still fetch its files). A live-binhost package file the index does not list goes
//! `grace_s` after gc first saw it unlisted (and only if it is still that very file).

use super::channel::ChannelState;
use super::snapshot::SnapshotMeta;
use super::{io_err, write_atomic, ReleaseError, Releases};
use crate::wire::orchestrator::{GcItem, GcReport};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;

/// `[releases]` retention.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub keep_last: usize,
    pub keep_days: u64,
    pub grace_s: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            keep_last: 10,
            keep_days: 30,
            grace_s: 86_400,
        }
    }
}

/// Why each snapshot stays (empty: it goes), oldest first as given.
pub fn plan_snapshots(
    snapshots: &[SnapshotMeta],
    channels: &[ChannelState],
    policy: &Policy,
    now: u64,
) -> Vec<(String, Vec<String>)> {
    let newest_from = snapshots.len().saturating_sub(policy.keep_last);
    snapshots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut why = Vec::new();
            if i >= newest_from {
                why.push(format!("one of the newest {}", policy.keep_last));
            }
            if now.saturating_sub(s.created) < policy.keep_days.saturating_mul(86_400) {
                why.push(format!("younger than {} days", policy.keep_days));
            }
            for c in channels {
                if c.current().is_some_and(|g| g.snapshot == s.name) {
                    why.push(format!("served by channel {}", c.name));
                }
                if c.rollback_target(snapshots) == Some(s.name.as_str()) {
                    why.push(format!("rollback target of channel {}", c.name));
                }
                let until = c
                    .generations
                    .iter()
                    .filter(|g| g.snapshot == s.name)
                    .filter_map(|g| g.untagged_at)
                    .map(|u| u.saturating_add(policy.grace_s))
                    .max();
                if let Some(until) = until.filter(|u| now < *u) {
                    if c.current().is_none_or(|g| g.snapshot != s.name) {
                        why.push(format!(
                            "served by channel {} until recently (kept until {until})",
                            c.name
                        ));
                    }
                }
            }
            (s.name.clone(), why)
        })
        .collect()
}

/// The generations channels no longer need.
#[derive(Debug, Default, PartialEq)]
pub struct GenerationPlan {
    /// `(channel, gen)` to remove now.
    pub remove: Vec<(String, u64)>,
    /// `(channel, gen, when it may go)`.
    pub waiting: Vec<(String, u64, u64)>,
}

/// Which generations go: those a channel stopped serving more than `grace_s` ago.
pub fn plan_generations(channels: &[ChannelState], policy: &Policy, now: u64) -> GenerationPlan {
    let mut remove = Vec::new();
    let mut waiting = Vec::new();
    for c in channels {
        for g in &c.generations {
            let Some(untagged) = g.untagged_at else {
                continue;
            };
            let at = untagged.saturating_add(policy.grace_s);
            if now >= at {
                remove.push((c.name.clone(), g.gen));
            } else {
                waiting.push((c.name.clone(), g.gen, at));
            }
        }
    }
    GenerationPlan { remove, waiting }
}

/// A live file gc saw unlisted: since when, and which file it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub since: u64,
    pub id: FileId,
}

/// Which file a path holds: a file renamed over it (a rebuild) is another one, even if
/// its inode number was used before. (Not the change time: a snapshot's hard link
/// changes that.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl FileId {
    pub fn of(m: &fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        }
    }
}

/// A package file of the live binhost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveFile {
    pub path: String,
    pub id: FileId,
}

/// What happens to the live files the index does not list.
#[derive(Debug, Default)]
pub struct FilePlan {
    pub remove: Vec<LiveFile>,
    /// `(path, when it may go)`.
    pub waiting: Vec<(String, u64)>,
    /// What gc remembers until next time.
    pub seen: BTreeMap<String, Seen>,
}

/// Which unlisted live files go now, which wait (until when), and what to remember.
pub fn plan_files(
    files: &[LiveFile],
    listed: &HashSet<String>,
    seen: &BTreeMap<String, Seen>,
    grace_s: u64,
    now: u64,
) -> FilePlan {
    let mut remove = Vec::new();
    let mut waiting = Vec::new();
    let mut next = BTreeMap::new();
    for f in files {
        if listed.contains(&f.path) {
            continue;
        }
        let s = match seen.get(&f.path) {
            Some(s) if s.id == f.id => *s,
            _ => Seen {
                since: now,
                id: f.id,
            },
        };
        let at = s.since.saturating_add(grace_s);
        if now >= at {
            remove.push(f.clone());
        } else {
            waiting.push((f.path.clone(), at));
            next.insert(f.path.clone(), s);
        }
    }
    FilePlan {
        remove,
        waiting,
        seen: next,
    }
}

const GC_STATE: &str = "gc.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct GcState {
    unlisted: BTreeMap<String, Seen>,
}

impl Releases {
    /// Applies the retention policy at `now`. `live`: the paths the live index lists and
    /// those `binhost verify --fix` stopped listing (`None`: the orchestrator keeps no
    /// index); only the latter, unlisted, are live files retention may remove. With
    /// `dry_run` nothing changes (not even what gc remembers).
    pub fn gc(
        &self,
        live: Option<(&HashSet<String>, &HashSet<String>)>,
        now: u64,
        dry_run: bool,
    ) -> Result<GcReport, ReleaseError> {
        let mut report = GcReport {
            dry_run,
            ..GcReport::default()
        };
        let snapshots = self.snapshots()?;
        let mut channels = self.channels()?;
        let mut removed_snapshots = HashSet::new();
        for (name, why) in plan_snapshots(&snapshots, &channels, &self.policy, now) {
            if why.is_empty() {
                if !dry_run {
                    self.remove_snapshot(&name)?;
                }
                report
                    .removed
                    .push(item("snapshot", &name, "kept by nothing", None));
                removed_snapshots.insert(name);
            }
        }
        let GenerationPlan {
            remove: gens,
            waiting,
        } = plan_generations(&channels, &self.policy, now);
        for (channel, gen) in &gens {
            if !dry_run {
                self.remove_generation(channel, *gen)?;
            }
            report.removed.push(item(
                "generation",
                &format!("{channel}/gen-{gen}"),
                "an index the channel stopped serving more than the grace period ago",
                None,
            ));
        }
        for (channel, gen, at) in waiting {
            report.waiting.push(item(
                "generation",
                &format!("{channel}/gen-{gen}"),
                "an index the channel served until recently",
                Some(at),
            ));
        }
        if !dry_run {
            for c in &mut channels {
                let before = (c.generations.len(), c.stack.len());
                c.generations
                    .retain(|g| !gens.iter().any(|(n, x)| *n == c.name && *x == g.gen));
                // A rollback goes to the newest earlier tag still kept.
                c.stack.retain(|s| !removed_snapshots.contains(s));
                if (c.generations.len(), c.stack.len()) != before {
                    self.save(c)?;
                }
            }
        }
        let Some((listed, dropped)) = live else {
            return Ok(report);
        };
        let mut files = self.live_files()?;
        files.retain(|f| dropped.contains(&f.path));
        let state_path = self.root.join(GC_STATE);
        let state: GcState = match fs::read(&state_path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => GcState::default(),
            Err(e) => return Err(io_err(&state_path)(e)),
        };
        let FilePlan {
            remove,
            waiting,
            seen: next,
        } = plan_files(&files, listed, &state.unlisted, self.policy.grace_s, now);
        for f in remove {
            if !dry_run && !self.remove_live_file(&f)? {
                continue;
            }
            report.removed.push(item(
                "file",
                &f.path,
                "not in the live index for longer than the grace period",
                None,
            ));
        }
        for (path, at) in waiting {
            report
                .waiting
                .push(item("file", &path, "not in the live index", Some(at)));
        }
        if !dry_run {
            fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
            let json = serde_json::to_vec(&GcState { unlisted: next }).unwrap_or_default();
            write_atomic(&state_path, &json)?;
        }
        Ok(report)
    }

    fn live_files(&self) -> Result<Vec<LiveFile>, ReleaseError> {
        let (paths, _) = crate::orchestrator::binhost::verify::scan(&self.binhost)
            .map_err(io_err(&self.binhost))?;
        let mut out = Vec::with_capacity(paths.len());
        for path in paths {
            match fs::symlink_metadata(self.binhost.join(&path)) {
                Ok(m) => out.push(LiveFile {
                    path,
                    id: FileId::of(&m),
                }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&self.binhost.join(&path))(e)),
            }
        }
        Ok(out)
    }

    /// Removes `f` if it is still that very file: moved aside to a hidden name first and
    /// checked there (a publish renaming a new file over the path in between is then
    /// not touched, and a file that turns out to be another is put back). Whether it did.
    fn remove_live_file(&self, f: &LiveFile) -> Result<bool, ReleaseError> {
        let path = self.binhost.join(&f.path);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let aside = path.with_file_name(format!(".{name}.gc-{}", std::process::id()));
        match fs::rename(&path, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(&path)(e)),
        }
        let same = fs::symlink_metadata(&aside).is_ok_and(|m| FileId::of(&m) == f.id);
        if same {
            fs::remove_file(&aside).map_err(io_err(&aside))?;
            return Ok(true);
        }
        // Another file (published meanwhile): back under its name, unless something newer
        // took the name since.
        match fs::hard_link(&aside, &path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        fs::remove_file(&aside).map_err(io_err(&aside))?;
        Ok(false)
    }
}

fn item(kind: &str, name: &str, detail: &str, at: Option<u64>) -> GcItem {
    GcItem {
        kind: kind.into(),
        name: name.into(),
        detail: detail.into(),
        at,
    }
}
