//! Releases of the binhost (docs/design.md, "Releases"): snapshots of the live binhost
//! (hard links and the index of the moment, [`snapshot`]), channels served under
//! `/binhost/<channel>/` that point at one snapshot each and move by one atomic rename
//! ([`channel`]), and the retention policy that removes what nothing needs any more
//! ([`retention`]). Blocking file work; the release-manager actor serializes it.
//!
//! Everything lives under `releases_dir` (same filesystem as `binhost_dir`):
//! `snapshots/<name>/` (the files, `Packages`, `.snapshot.json`),
//! `channels/<channel>/` (`current` → `gen-<n>`, each generation's `Packages`,
//! `Packages.gz` and `SNAPSHOT`, and `channel.json`), and `gc.json`.

pub mod channel;
pub mod names;
pub mod retention;
pub mod snapshot;

use std::io;
use std::path::{Path, PathBuf};

pub use channel::ChannelState;
pub use retention::Policy;

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{what} name `{name}` is not allowed: {rule}")]
    InvalidName {
        what: &'static str,
        name: String,
        rule: &'static str,
    },
    #[error("there is no snapshot `{0}` (build-swarm binhost list shows them)")]
    UnknownSnapshot(String),
    #[error("a snapshot `{0}` exists already")]
    SnapshotExists(String),
    #[error("there is no channel `{0}` (build-swarm binhost list shows them)")]
    UnknownChannel(String),
    #[error("channel `{channel}` cannot roll back: {why}")]
    NoRollback { channel: String, why: String },
    #[error("channel `{0}` would hide `{0}/` of the live binhost, which exists")]
    Shadows(String),
    #[error("snapshots need the orchestrator's own index ([binhost] index = true)")]
    NoIndex,
    #[error("the binhost index is still being read back after the start; try again shortly")]
    IndexLoading,
    #[error("the operation was interrupted: {0}")]
    Interrupted(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot hard-link from {binhost} into {releases}: they are on different filesystems (set [releases] dir to a directory on the binhost's filesystem)")]
    CrossDevice { binhost: PathBuf, releases: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ReleaseError + '_ {
    move |source| ReleaseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The releases of one binhost.
#[derive(Debug, Clone)]
pub struct Releases {
    /// `releases_dir`.
    pub root: PathBuf,
    /// `binhost_dir`.
    pub binhost: PathBuf,
    /// Write `Packages.gz` beside each channel's `Packages`.
    pub gzip: bool,
    pub policy: Policy,
}

impl Releases {
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    pub fn channels_dir(&self) -> PathBuf {
        self.root.join("channels")
    }

    pub fn snapshot_dir(&self, name: &str) -> PathBuf {
        self.snapshots_dir().join(name)
    }

    pub fn channel_dir(&self, name: &str) -> PathBuf {
        self.channels_dir().join(name)
    }

    /// Removes what an interrupted snapshot or removal left (hidden directories under
    /// `snapshots/`, and a snapshot without its record, which no list or tag sees); run
    /// at start, before any operation.
    pub fn clean_leftovers(&self) -> Result<(), ReleaseError> {
        let dir = self.snapshots_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let leftover = name.starts_with('.')
                && (name.contains(".partial-") || name.contains(".removing-"));
            let unrecorded =
                !name.starts_with('.') && !entry.path().join(".snapshot.json").exists();
            if leftover || unrecorded {
                let path = entry.path();
                std::fs::remove_dir_all(&path).map_err(io_err(&path))?;
            }
        }
        Ok(())
    }
}

/// The names in directory `dir` (none when it does not exist yet).
pub(crate) fn entry_names(dir: &Path) -> Result<Vec<String>, ReleaseError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    rd.map(|entry| {
        entry
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .map_err(io_err(dir))
    })
    .collect()
}

/// Writes `bytes` to `path` through a hidden temporary name, synced, then renamed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReleaseError> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

#[cfg(test)]
mod tests;
