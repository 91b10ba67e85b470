//! Channels: `/binhost/<channel>/` serves one snapshot's packages with an index of the
//! channel's own. Each tag (and rollback) writes a new generation `gen-<n>/` — the
//! snapshot's `Packages` with a `TIMESTAMP` newer than any the channel served — and moves
//! the `current` symbolic link to it with one `rename`, so a reader always finds a
//! complete index and Portage clients holding an older one fetch the new one.

use super::snapshot::SnapshotMeta;
use super::{io_err, names, write_atomic, ReleaseError, Releases};
use crate::orchestrator::binhost::index_file;
use crate::orchestrator::binhost::live::CLIENT_TOLERANCE_S;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const STATE: &str = "channel.json";
const CURRENT: &str = "current";
const SNAPSHOT_FILE: &str = "SNAPSHOT";
/// How many tags a channel's rollback stack remembers.
const STACK: usize = 50;

/// One generation a channel served.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Generation {
    pub gen: u64,
    pub snapshot: String,
    /// `TIMESTAMP` (and mtime) of its index.
    pub timestamp: u64,
    pub tagged_at: u64,
    /// When another generation replaced it (`None`: current).
    pub untagged_at: Option<u64>,
}

/// A channel's record (`channel.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ChannelState {
    pub name: String,
    /// Generations still on disk, oldest first; the last is current.
    pub generations: Vec<Generation>,
    /// The snapshots tagged, in order (a rollback pops the top).
    pub stack: Vec<String>,
    /// The newest `TIMESTAMP` this channel ever served.
    pub last_timestamp: u64,
}

impl ChannelState {
    pub fn current(&self) -> Option<&Generation> {
        self.generations.last()
    }

    /// The snapshot tagged before the current one, if the channel remembers one.
    pub fn previous(&self) -> Option<&str> {
        self.stack
            .len()
            .checked_sub(2)
            .map(|i| self.stack[i].as_str())
    }

    /// The snapshot a rollback would tag: the one tagged before the current one or, when
    /// the channel was tagged only once (or that one is gone), the newest snapshot taken
    /// before the one it serves. `snapshots`: those that exist, oldest first.
    pub fn rollback_target<'a>(&'a self, snapshots: &'a [SnapshotMeta]) -> Option<&'a str> {
        let exists = |n: &str| snapshots.iter().any(|s| s.name == n);
        if let Some(p) = self.previous().filter(|p| exists(p)) {
            return Some(p);
        }
        let current = &self.current()?.snapshot;
        let at = snapshots.iter().position(|s| &s.name == current)?;
        snapshots[..at].last().map(|s| s.name.as_str())
    }

    /// The `TIMESTAMP` of the next generation at `now`: newer than every one served, and
    /// more than 5 s newer, so it is never a cached one + Portage's tolerance (which a
    /// server answering 304 on an exact If-Modified-Since match would take for "not
    /// modified").
    fn next_timestamp(&self, now: u64) -> u64 {
        if self.last_timestamp == 0 {
            now
        } else {
            now.max(self.last_timestamp + CLIENT_TOLERANCE_S + 1)
        }
    }
}

impl Releases {
    /// The record of channel `name`, read back; generations the `current` link never
    /// reached (a crash between recording and renaming) are dropped.
    pub fn channel(&self, name: &str) -> Result<Option<ChannelState>, ReleaseError> {
        names::check_channel(name)?;
        let dir = self.channel_dir(name);
        let path = dir.join(STATE);
        let mut state: ChannelState = match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| io_err(&path)(io::Error::new(io::ErrorKind::InvalidData, e)))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        state.name = name.to_string();
        let current = current_gen(&dir);
        if let Some(cur) = current {
            while state.generations.last().is_some_and(|g| g.gen > cur) {
                state.generations.pop();
            }
            if let Some(g) = state.generations.last_mut() {
                g.untagged_at = None;
            }
        }
        Ok(Some(state))
    }

    /// Every channel, by name.
    pub fn channels(&self) -> Result<Vec<ChannelState>, ReleaseError> {
        let mut out = Vec::new();
        for name in super::entry_names(&self.channels_dir())? {
            if names::check_channel(&name).is_err() {
                continue;
            }
            if let Some(state) = self.channel(&name)? {
                out.push(state);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Points `channel` at `snapshot` (made when new) and records the tag.
    pub fn tag(
        &self,
        channel: &str,
        snapshot: &str,
        now: u64,
    ) -> Result<ChannelState, ReleaseError> {
        names::check_channel(channel)?;
        names::check_snapshot(snapshot)?;
        if self.snapshot_meta(snapshot)?.is_none() {
            return Err(ReleaseError::UnknownSnapshot(snapshot.to_string()));
        }
        if self.binhost.join(channel).exists() {
            return Err(ReleaseError::Shadows(channel.to_string()));
        }
        let mut state = self.channel(channel)?.unwrap_or(ChannelState {
            name: channel.to_string(),
            ..ChannelState::default()
        });
        self.switch(&mut state, snapshot, now, |stack| {
            stack.push(snapshot.to_string());
            if stack.len() > STACK {
                stack.remove(0);
            }
        })?;
        Ok(state)
    }

    /// Points `channel` back at its rollback target ([`ChannelState::rollback_target`]).
    pub fn rollback(&self, channel: &str, now: u64) -> Result<ChannelState, ReleaseError> {
        let mut state = self
            .channel(channel)?
            .ok_or_else(|| ReleaseError::UnknownChannel(channel.to_string()))?;
        let no = |why: String| ReleaseError::NoRollback {
            channel: channel.to_string(),
            why,
        };
        let snapshots = self.snapshots()?;
        let target = state
            .rollback_target(&snapshots)
            .ok_or_else(|| {
                no("it was tagged once and no snapshot is older than the one it serves".into())
            })?
            .to_string();
        self.switch(&mut state, &target, now, |stack| {
            if stack.len() >= 2 && stack[stack.len() - 2] == target {
                stack.pop();
            } else {
                *stack = vec![target.clone()];
            }
        })?;
        Ok(state)
    }

    /// Writes the next generation for `snapshot` and moves `current` to it. The record
    /// (with the rollback stack as `stack` leaves it) is saved before the rename, so a
    /// `TIMESTAMP` is never served unrecorded; the generation is complete and synced
    /// before either.
    fn switch(
        &self,
        state: &mut ChannelState,
        snapshot: &str,
        now: u64,
        stack: impl FnOnce(&mut Vec<String>),
    ) -> Result<(), ReleaseError> {
        let dir = self.channel_dir(&state.name);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let gen = state.generations.last().map_or(1, |g| g.gen + 1);
        let timestamp = state.next_timestamp(now);
        let gen_dir = dir.join(format!("gen-{gen}"));
        if gen_dir.exists() {
            fs::remove_dir_all(&gen_dir).map_err(io_err(&gen_dir))?;
        }
        fs::create_dir(&gen_dir).map_err(io_err(&gen_dir))?;
        let src = self.snapshot_dir(snapshot);
        let text = index_file::read(&src)
            .map_err(io_err(&src))?
            .ok_or_else(|| ReleaseError::UnknownSnapshot(snapshot.to_string()))?;
        // SNAPSHOT first: the index write syncs the directory with both in it.
        write_atomic(&gen_dir.join(SNAPSHOT_FILE), snapshot.as_bytes())?;
        index_file::write(&gen_dir, &restamp(&text, timestamp), timestamp, self.gzip).map_err(
            |e| ReleaseError::Io {
                path: e.path,
                source: e.source,
            },
        )?;
        if let Some(g) = state.generations.last_mut() {
            g.untagged_at = Some(now);
        }
        state.generations.push(Generation {
            gen,
            snapshot: snapshot.to_string(),
            timestamp,
            tagged_at: now,
            untagged_at: None,
        });
        state.last_timestamp = timestamp;
        stack(&mut state.stack);
        self.save(state)?;
        // One rename replaces the link: there is never a moment without one.
        let tmp = dir.join(format!(".{CURRENT}.tmp-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(format!("gen-{gen}"), &tmp).map_err(io_err(&tmp))?;
        fs::rename(&tmp, dir.join(CURRENT)).map_err(io_err(&dir))?;
        crate::orchestrator::publish::sync_dir(&dir).map_err(io_err(&dir))
    }

    pub(super) fn save(&self, state: &ChannelState) -> Result<(), ReleaseError> {
        let json = serde_json::to_vec_pretty(state).unwrap_or_default();
        write_atomic(&self.channel_dir(&state.name).join(STATE), &json)
    }

    /// Removes generation `gen` of `channel` (never the current one).
    pub(super) fn remove_generation(&self, channel: &str, gen: u64) -> Result<(), ReleaseError> {
        let dir = self.channel_dir(channel);
        if current_gen(&dir) == Some(gen) {
            return Ok(());
        }
        let g = dir.join(format!("gen-{gen}"));
        match fs::remove_dir_all(&g) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&g)(e)),
        }
    }

    /// The file `rel` of channel `channel` as served at `/binhost/<channel>/<rel>`: its
    /// index from the current generation, a package from the snapshot it serves or, for a
    /// client holding an older index, from one the channel served before (while that is
    /// kept). `None`: not a channel, or no such file.
    pub fn channel_file(&self, channel: &str, rel: &str) -> Option<PathBuf> {
        names::check_channel(channel).ok()?;
        let dir = self.channel_dir(channel);
        let gen = current_gen(&dir)?;
        let gen_dir = dir.join(format!("gen-{gen}"));
        if rel == index_file::INDEX || rel == index_file::INDEX_GZ {
            return Some(gen_dir.join(rel));
        }
        let current = fs::read_to_string(gen_dir.join(SNAPSHOT_FILE)).ok()?;
        let mut tried = vec![current];
        if let Ok(Some(state)) = self.channel(channel) {
            for g in state.generations.iter().rev() {
                if !tried.contains(&g.snapshot) {
                    tried.push(g.snapshot.clone());
                }
            }
        }
        tried
            .iter()
            .filter(|s| names::check_snapshot(s).is_ok())
            .map(|s| self.snapshot_dir(s))
            .find_map(|root| {
                let path = crate::orchestrator::publish::join_inside(&root, rel)?;
                super::snapshot::inside(&root, &path).then_some(path)
            })
    }

    /// Whether `name` is a channel (has a current generation).
    pub fn is_channel(&self, name: &str) -> bool {
        names::check_channel(name).is_ok() && current_gen(&self.channel_dir(name)).is_some()
    }
}

/// The generation `current` points at.
fn current_gen(dir: &Path) -> Option<u64> {
    let target = fs::read_link(dir.join(CURRENT)).ok()?;
    target.to_str()?.strip_prefix("gen-")?.parse().ok()
}

/// `text` (an index) with its header's `TIMESTAMP` set to `timestamp`.
pub fn restamp(text: &str, timestamp: u64) -> String {
    let (header, rest) = match text.find("\n\n") {
        Some(i) => (&text[..i + 1], &text[i + 1..]),
        None => (text, ""),
    };
    let mut out = String::with_capacity(text.len() + 16);
    let mut done = false;
    for line in header.lines() {
        if line.starts_with("TIMESTAMP:") {
            out.push_str(&format!("TIMESTAMP: {timestamp}\n"));
            done = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !done {
        out.push_str(&format!("TIMESTAMP: {timestamp}\n"));
    }
    out.push_str(rest);
    out
}
