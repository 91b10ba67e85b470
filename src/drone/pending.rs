//! Results not yet acknowledged by the orchestrator, kept in `state_dir/pending/` so a
//! built package survives a drone restart or power cut: each is written to a temporary
//! name, synced, renamed and its directory synced before it is sent. Blocking file work:
//! the agent runs these on a blocking thread.

use crate::sys::digest::hex;
use crate::wire::orchestrator::{CompleteRequest, FailRequest, LeaseId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What the drone reports for a lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Report {
    Complete(CompleteRequest),
    Fail(FailRequest),
}

/// One result as kept on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingResult {
    pub orchestrator: String,
    pub lease: LeaseId,
    pub atom: String,
    pub report: Report,
}

/// A file in the pending directory that could not be read back; renamed to `*.bad`.
#[derive(Debug)]
pub struct SetAside {
    pub path: PathBuf,
    pub error: String,
}

#[derive(Debug, Clone)]
pub struct PendingStore {
    dir: PathBuf,
}

impl PendingStore {
    pub fn new(state_dir: &Path) -> Self {
        PendingStore {
            dir: state_dir.join("pending"),
        }
    }

    /// The file of `lease` of `orchestrator` (lease ids are per orchestrator).
    fn file(&self, lease: LeaseId, orchestrator: &str) -> PathBuf {
        let tag = hex(&Sha256::digest(orchestrator.as_bytes())[..6]);
        self.dir.join(format!("{tag}-lease-{lease}.json"))
    }

    /// Writes `r` durably: temporary name, fsync, rename, fsync of the directory.
    pub fn save(&self, r: &PendingResult) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let path = self.file(r.lease, &r.orchestrator);
        let tmp = path.with_extension("tmp");
        let body = serde_json::to_vec(r).map_err(io::Error::other)?;
        let mut f = File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()
    }

    /// Forgets the result of `lease` (acknowledged). A missing file is fine.
    pub fn remove(&self, lease: LeaseId, orchestrator: &str) -> io::Result<()> {
        match fs::remove_file(self.file(lease, orchestrator)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every result kept from before; unreadable files are renamed to `*.bad` and named,
    /// leftover temporary files removed.
    pub fn load(&self) -> (Vec<PendingResult>, Vec<SetAside>) {
        let mut found = Vec::new();
        let mut aside = Vec::new();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return (found, aside);
        };
        for e in entries.flatten() {
            let path = e.path();
            match path.extension().and_then(|x| x.to_str()) {
                Some("json") => {}
                Some("tmp") => {
                    let _ = fs::remove_file(&path);
                    continue;
                }
                _ => continue,
            }
            let read = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
            match read {
                Ok(r) => found.push(r),
                Err(error) => {
                    let _ = fs::rename(&path, path.with_extension("bad"));
                    aside.push(SetAside { path, error });
                }
            }
        }
        found.sort_by_key(|r: &PendingResult| r.lease);
        (found, aside)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FailureKind;

    fn result(lease: LeaseId, orch: &str) -> PendingResult {
        PendingResult {
            orchestrator: orch.into(),
            lease,
            atom: "app-misc/foo-1".into(),
            report: Report::Fail(FailRequest {
                epoch: 1,
                kind: FailureKind::Build,
                reason: "x".into(),
                log_tail: String::new(),
            }),
        }
    }

    #[test]
    fn saved_results_come_back_and_removed_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = PendingStore::new(dir.path());
        assert!(store.load().0.is_empty(), "no directory yet");
        store.save(&result(7, "http://a")).unwrap();
        // The same lease id at another orchestrator is another result.
        store.save(&result(7, "http://b")).unwrap();
        store.save(&result(3, "http://a")).unwrap();
        let (found, aside) = store.load();
        assert!(aside.is_empty());
        assert_eq!(found.len(), 3);
        assert_eq!(found[0], result(3, "http://a"));
        store.remove(7, "http://a").unwrap();
        store.remove(7, "http://a").unwrap();
        assert_eq!(store.load().0.len(), 2);
        assert!(fs::read_dir(dir.path().join("pending"))
            .unwrap()
            .flatten()
            .all(|e| e.path().extension().is_some_and(|x| x == "json")));
    }

    #[test]
    fn unreadable_files_are_set_aside_and_temporary_ones_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = PendingStore::new(dir.path());
        store.save(&result(1, "http://a")).unwrap();
        let pending = dir.path().join("pending");
        fs::write(pending.join("x-lease-2.json"), b"{half").unwrap();
        fs::write(pending.join("x-lease-3.tmp"), b"{half").unwrap();
        let (found, aside) = store.load();
        assert_eq!(found.len(), 1);
        assert_eq!(aside.len(), 1);
        assert!(pending.join("x-lease-2.bad").exists());
        assert!(!pending.join("x-lease-3.tmp").exists());
    }
}
