//! What the queue needs to publish: the completions waiting for a verification lane and
//! the lanes at work, the pool of emptied upload directories handed to new leases, the
//! directories waiting to be removed, and the category renames a claim's commit must
//! carry. Plain bookkeeping: the queue actor spawns the blocking work it hands out.

use crate::domain::Atom;
use crate::orchestrator::binhost::index::Entry;
use crate::orchestrator::publish::{
    self, join_inside, IndexWanted, PublishError, PublishJob, Published, Signing,
};
use crate::orchestrator::staging::{self, CategorySwap, UploadDirPool};
use crate::wire::orchestrator::LeaseId;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// At most this many blocking threads verify uploads at once. Each takes everything
/// queued when it starts and reports each upload as soon as it is done, so under load
/// one thread hop serves a whole batch, and one big package being hashed holds up only
/// what its lane took with it.
pub const VERIFY_LANES: usize = 4;

/// Longest `path` a completion may name (docs/contract.md §5).
pub const MAX_PATH: usize = 1024;

/// A completion's `path` that cannot be this package's artifact.
#[derive(Debug, thiserror::Error)]
#[error("path `{path}` refused: {why} (expected `{category}/{pf}.gpkg.tar` or `{category}/{name}/{pf}-N.gpkg.tar`)")]
pub struct PathRefused {
    pub path: String,
    pub why: &'static str,
    pub category: String,
    pub name: String,
    pub pf: String,
}

/// Checks that `path` names this package's artifact inside its category, in one of the
/// PKGDIR layouts.
pub fn check_artifact_path(atom: &Atom, path: &str) -> Result<(), PathRefused> {
    let parts: Vec<&str> = path.split('/').collect();
    let pf = atom.pf();
    let refuse = |why: &'static str| {
        Err(PathRefused {
            path: path.to_string(),
            why,
            category: atom.category.clone(),
            name: atom.name.clone(),
            pf: pf.clone(),
        })
    };
    if path.len() > MAX_PATH {
        return refuse("it is longer than 1024 bytes");
    }
    if join_inside(Path::new("/"), path).is_none() {
        return refuse("it must be a plain relative path without `..`");
    }
    if parts.first() != Some(&atom.category.as_str()) {
        return refuse("it is outside the package's category");
    }
    let ok = match parts.as_slice() {
        [_, file] => [".gpkg.tar", ".tbz2", ".xpak"]
            .iter()
            .any(|ext| *file == format!("{pf}{ext}")),
        [_, dir, file] if *dir == atom.name => [".gpkg.tar", ".xpak"].iter().any(|ext| {
            file.strip_suffix(ext)
                .and_then(|stem| stem.strip_prefix(&format!("{pf}-")))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        }),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        refuse("it names another package or an unknown layout")
    }
}

/// How one verification ended.
pub struct Verification {
    /// How it was published, and its index entry when the binhost has an index.
    pub published: Result<(Published, Option<Entry>), PublishError>,
    /// The upload directory now holds only its empty category directory.
    pub reusable: bool,
}

/// The work of one lane: jobs by id, each with its package's category.
pub struct Lane {
    pub work: Vec<(u64, PublishJob, String)>,
}

impl Lane {
    pub fn job_ids(&self) -> Vec<u64> {
        self.work.iter().map(|(id, _, _)| *id).collect()
    }

    /// Verifies and publishes each job in turn (blocking file work: run on a blocking
    /// thread), reporting each as soon as it is done. A panic in one job reports that job
    /// as failed and goes on.
    pub fn run(self, report: impl Fn(u64, Verification)) {
        for (id, job, category) in self.work {
            let run = std::panic::AssertUnwindSafe(|| match publish::verify_and_publish(&job) {
                Ok(p) => Verification {
                    reusable: p
                        .dirs
                        .is_some_and(|d| staging::emptied_after_publish(&d, &category)),
                    published: Ok((p.how, p.entry)),
                },
                Err(e) => Verification {
                    published: Err(e),
                    reusable: false,
                },
            });
            let outcome = std::panic::catch_unwind(run).unwrap_or_else(|_| Verification {
                published: Err(PublishError::Io {
                    path: job.staged.clone(),
                    source: std::io::Error::other("the verification panicked"),
                }),
                reusable: false,
            });
            report(id, outcome);
        }
    }
}

/// Publishing bookkeeping, generic over what the queue keeps per job (`M`: the lease, the
/// request and where to send the answer).
pub struct Publisher<M> {
    staging_dir: PathBuf,
    binhost_dir: PathBuf,
    waiting: Vec<(PublishJob, String, M)>,
    lanes: usize,
    verifying: HashMap<u64, M>,
    next_job: u64,
    upload_dirs: UploadDirPool,
    /// False once the staging filesystem refused `RENAME_NOREPLACE`: directories are then
    /// made by the drones and removed after each package, as without reuse.
    reuse: bool,
    /// Upload directories of finished leases, removed in the background (a removal can
    /// take milliseconds; no completion waits for it).
    cleanup: Vec<PathBuf>,
    cleaning: bool,
    /// Kept directories handed to leases of the next batch whose category directory must
    /// be renamed beside its commit, before the claims are answered.
    swaps: Vec<CategorySwap>,
    /// Every published gpkg is signed (with `[signing] key`).
    signing: Option<Signing>,
}

impl<M> Publisher<M> {
    pub fn new(staging_dir: PathBuf, binhost_dir: PathBuf) -> Self {
        Publisher {
            staging_dir,
            binhost_dir,
            waiting: Vec::new(),
            lanes: 0,
            verifying: HashMap::new(),
            next_job: 0,
            upload_dirs: UploadDirPool::default(),
            reuse: true,
            cleanup: Vec::new(),
            cleaning: false,
            swaps: Vec::new(),
            signing: None,
        }
    }

    pub fn with_signing(mut self, signing: Option<Signing>) -> Self {
        self.signing = signing;
        self
    }

    pub fn staging_dir(&self) -> &Path {
        &self.staging_dir
    }

    /// The job that publishes `path` from the upload directory `upload_dir`; None when the
    /// path would leave either directory.
    pub fn job(
        &self,
        upload_dir: &str,
        path: &str,
        size: u64,
        sha256: &str,
        index: Option<IndexWanted>,
    ) -> Option<PublishJob> {
        let lease_dir = self.staging_dir.join(upload_dir);
        Some(PublishJob {
            staged: join_inside(&lease_dir, path)?,
            dest: join_inside(&self.binhost_dir, path)?,
            size,
            sha256: sha256.to_string(),
            lease_dir,
            index,
            signing: self.signing.clone(),
        })
    }

    /// The binhost directory a published `path` lands in (synced before its commit).
    pub fn dest_dir(&self, path: &str) -> Option<PathBuf> {
        join_inside(&self.binhost_dir, path).and_then(|d| d.parent().map(PathBuf::from))
    }

    // ------------------------------------------------------------ verification lanes

    pub fn enqueue(&mut self, job: PublishJob, category: String, meta: M) {
        self.waiting.push((job, category, meta));
    }

    /// Everything waiting, for a new lane — None when none waits or every lane is busy.
    pub fn next_lane(&mut self) -> Option<Lane> {
        if self.lanes >= VERIFY_LANES || self.waiting.is_empty() {
            return None;
        }
        self.lanes += 1;
        let mut work = Vec::with_capacity(self.waiting.len());
        for (job, category, meta) in std::mem::take(&mut self.waiting) {
            let id = self.next_job;
            self.next_job += 1;
            self.verifying.insert(id, meta);
            work.push((id, job, category));
        }
        Some(Lane { work })
    }

    /// What is kept for each job being verified.
    pub fn verifying(&self) -> impl Iterator<Item = &M> {
        self.verifying.values()
    }

    /// A lane reported job `id`.
    pub fn reported(&mut self, id: u64) -> Option<M> {
        self.verifying.remove(&id)
    }

    /// A lane ended: the jobs it never reported (its thread failed) come back.
    pub fn lane_done(&mut self, jobs: Vec<u64>) -> Vec<M> {
        self.lanes = self.lanes.saturating_sub(1);
        jobs.into_iter()
            .filter_map(|id| self.verifying.remove(&id))
            .collect()
    }

    // ------------------------------------------------------------ upload directories

    /// The upload directory for a new lease of `category`: a kept one when there is one
    /// (its category directory renamed beside the next commit if it held another), else
    /// `lease-N`. Returns the name and whether it was reused.
    pub fn upload_dir_for(&mut self, lease: LeaseId, category: &str) -> (String, bool) {
        let Some(kept) = self.upload_dirs.take(category) else {
            return (staging::lease_dir_name(lease), false);
        };
        if kept.category != category {
            self.swaps.push(CategorySwap {
                dir: self.staging_dir.join(&kept.name),
                held: kept.category,
                wanted: category.to_string(),
            });
        }
        (kept.name, true)
    }

    /// Keeps the emptied upload directory `name` for a later lease, or schedules its
    /// removal when reuse is off or the pool is full (then another one goes).
    pub fn keep(&mut self, name: String, category: &str) {
        if !self.reuse {
            self.remove_later(name);
            return;
        }
        if let Some(evicted) = self.upload_dirs.put(category, name) {
            self.remove_later(evicted);
        }
    }

    /// Forgets `name` if it is kept (a retried upload may have written into it).
    pub fn forget(&mut self, name: &str) -> bool {
        self.upload_dirs.forget(name)
    }

    pub fn kept(&self) -> usize {
        self.upload_dirs.len()
    }

    pub fn kept_names(&self) -> impl Iterator<Item = &String> {
        self.upload_dirs.names()
    }

    /// The staging filesystem cannot rename without replacing: reuse stops, every kept
    /// directory is removed. Returns false if it was off already.
    pub fn stop_reuse(&mut self) -> bool {
        if !self.reuse {
            return false;
        }
        self.reuse = false;
        let kept: Vec<String> = self.upload_dirs.names().cloned().collect();
        for name in kept {
            self.upload_dirs.forget(&name);
            self.remove_later(name);
        }
        true
    }

    /// The category renames the next commit must carry.
    pub fn take_swaps(&mut self) -> Vec<CategorySwap> {
        std::mem::take(&mut self.swaps)
    }

    pub fn has_swaps(&self) -> bool {
        !self.swaps.is_empty()
    }

    // ------------------------------------------------------------ removals

    /// Schedules the removal of the upload directory `name`.
    pub fn remove_later(&mut self, name: String) {
        self.cleanup.push(self.staging_dir.join(name));
    }

    /// The directories to remove now, unless a removal is already running.
    pub fn start_cleaning(&mut self) -> Option<Vec<PathBuf>> {
        if self.cleaning || self.cleanup.is_empty() {
            return None;
        }
        self.cleaning = true;
        Some(std::mem::take(&mut self.cleanup))
    }

    pub fn cleaned(&mut self) {
        self.cleaning = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atom(s: &str) -> Atom {
        Atom::parse(s).unwrap()
    }

    #[test]
    fn artifact_paths_must_name_the_package() {
        let a = atom("app-misc/foo-1.0-r1");
        for ok in [
            "app-misc/foo-1.0-r1.gpkg.tar",
            "app-misc/foo-1.0-r1.tbz2",
            "app-misc/foo-1.0-r1.xpak",
            "app-misc/foo/foo-1.0-r1-3.gpkg.tar",
        ] {
            assert!(check_artifact_path(&a, ok).is_ok(), "{ok}");
        }
        for bad in [
            "../app-misc/foo-1.0-r1.gpkg.tar",
            "app-misc/../../etc/passwd",
            "/app-misc/foo-1.0-r1.gpkg.tar",
            "sys-apps/foo-1.0-r1.gpkg.tar",
            "app-misc/bar-1.0.gpkg.tar",
            "app-misc/foo-1.0-r1.gpkg.tar.exe",
            "app-misc/foo/foo-1.0-r1-x.gpkg.tar",
            "app-misc/foo/foo-1.0-r1-.gpkg.tar",
            "app-misc",
            &format!("app-misc/foo/foo-1.0-r1-{}.gpkg.tar", "1".repeat(1100)),
        ] {
            assert!(check_artifact_path(&a, bad).is_err(), "{bad}");
        }
        let e = check_artifact_path(&a, "app-misc/bar-1.0.gpkg.tar").unwrap_err();
        assert!(
            e.to_string()
                .contains("expected `app-misc/foo-1.0-r1.gpkg.tar`"),
            "{e}"
        );
    }

    fn publisher() -> Publisher<&'static str> {
        Publisher::new("/s".into(), "/b".into())
    }

    #[test]
    fn lanes_take_everything_waiting_up_to_the_limit() {
        let mut p = publisher();
        assert!(p.next_lane().is_none());
        let job = |n: &str| {
            p.job("lease-1", &format!("cat/{n}.gpkg.tar"), 1, "00", None)
                .unwrap()
        };
        let (j1, j2) = (job("a-1"), job("b-1"));
        assert_eq!(j1.staged, PathBuf::from("/s/lease-1/cat/a-1.gpkg.tar"));
        assert_eq!(j1.dest, PathBuf::from("/b/cat/a-1.gpkg.tar"));
        p.enqueue(j1, "cat".into(), "first");
        p.enqueue(j2, "cat".into(), "second");
        let lane = p.next_lane().unwrap();
        assert_eq!(lane.job_ids(), vec![0, 1]);
        assert_eq!(p.reported(0), Some("first"));
        // The lane ended without reporting job 1: it comes back as failed.
        assert_eq!(p.lane_done(lane.job_ids()), vec!["second"]);
        for i in 0..VERIFY_LANES + 1 {
            let j = p.job("lease-1", "cat/a-1.gpkg.tar", 1, "00", None).unwrap();
            p.enqueue(j, "cat".into(), "x");
            assert_eq!(p.next_lane().is_some(), i < VERIFY_LANES, "lane {i}");
        }
        assert!(p.job("lease-1", "../x", 1, "00", None).is_none());
    }

    #[test]
    fn kept_directories_go_to_new_leases_with_a_rename_when_the_category_differs() {
        let mut p = publisher();
        assert_eq!(p.upload_dir_for(7, "cat"), ("lease-7".into(), false));
        p.keep("lease-3".into(), "dev-libs");
        assert_eq!(p.kept(), 1);
        assert_eq!(p.upload_dir_for(8, "app-misc"), ("lease-3".into(), true));
        let swaps = p.take_swaps();
        assert_eq!(swaps.len(), 1);
        assert_eq!(
            (swaps[0].held.as_str(), swaps[0].wanted.as_str()),
            ("dev-libs", "app-misc")
        );
        p.keep("lease-4".into(), "app-misc");
        assert_eq!(p.upload_dir_for(9, "app-misc"), ("lease-4".into(), true));
        assert!(!p.has_swaps());
    }

    #[test]
    fn without_rename_noreplace_nothing_is_kept() {
        let mut p = publisher();
        p.keep("lease-1".into(), "cat");
        assert!(p.stop_reuse());
        assert!(!p.stop_reuse());
        assert_eq!(p.kept(), 0);
        p.keep("lease-2".into(), "cat");
        assert_eq!(p.kept(), 0);
        let gone = p.start_cleaning().unwrap();
        assert_eq!(
            gone,
            vec![PathBuf::from("/s/lease-1"), PathBuf::from("/s/lease-2")]
        );
        assert!(p.start_cleaning().is_none(), "one removal at a time");
        p.remove_later("lease-3".into());
        assert!(p.start_cleaning().is_none());
        p.cleaned();
        assert_eq!(p.start_cleaning().unwrap().len(), 1);
    }
}
