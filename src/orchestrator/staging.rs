//! The orchestrator's staging directory: one upload directory per active lease
//! (`staging_dir/lease-N`, docs/contract.md §5 `upload_dir`), the pool of emptied ones
//! handed to later leases, and their removal (docs/design.md, "Upload directories").
//!
//! All functions here do blocking file work: callers run them on a blocking thread.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::orchestrator::publish::UploadDirs;
use crate::wire::orchestrator::LeaseId;

/// Upload directories kept for reuse at most: enough for every lease in flight on a
/// large farm, a few thousand empty directories on disk.
pub const POOL_LIMIT: usize = 4096;

/// The upload directory of a lease, relative to the staging directory.
pub fn lease_dir_name(lease: LeaseId) -> String {
    format!("lease-{lease}")
}

/// A kept upload directory: its name in staging and the one (empty) category directory
/// it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub name: String,
    pub category: String,
}

/// Empty upload directories of published packages, by the one category directory each
/// still holds. Owned by the package queue; only names, no file work.
#[derive(Debug, Default)]
pub struct UploadDirPool {
    by_category: HashMap<String, Vec<String>>,
    len: usize,
}

impl UploadDirPool {
    /// Keeps `name` (a directory in staging holding only an empty `category/`) for a
    /// later lease. When the pool is full, one of the category with the most kept
    /// directories makes room: its name is returned, for the caller to remove.
    pub fn put(&mut self, category: &str, name: String) -> Option<String> {
        let evicted = if self.len >= POOL_LIMIT {
            self.largest().and_then(|c| self.pop(&c))
        } else {
            None
        };
        self.by_category
            .entry(category.to_string())
            .or_default()
            .push(name);
        self.len += 1;
        evicted
    }

    /// A directory for a new lease of `category`: one that holds `category` if any is
    /// kept, else one of the category with the most kept (its category directory is then
    /// renamed, so the pool follows the categories being built).
    pub fn take(&mut self, category: &str) -> Option<Kept> {
        let from = if self.by_category.contains_key(category) {
            category.to_string()
        } else {
            self.largest()?
        };
        let name = self.pop(&from)?;
        Some(Kept {
            name,
            category: from,
        })
    }

    /// Forgets `name` if it is kept (it is about to be removed). Scans the pool: only
    /// for the rare paths that remove a directory that may be kept.
    pub fn forget(&mut self, name: &str) -> bool {
        let mut found = None;
        for (c, names) in &mut self.by_category {
            if let Some(i) = names.iter().position(|n| n == name) {
                names.swap_remove(i);
                found = Some(c.clone());
                break;
            }
        }
        let Some(c) = found else {
            return false;
        };
        if self.by_category.get(&c).is_some_and(|v| v.is_empty()) {
            self.by_category.remove(&c);
        }
        self.len -= 1;
        true
    }

    fn largest(&self) -> Option<String> {
        self.by_category
            .iter()
            .max_by_key(|(_, v)| v.len())
            .map(|(c, _)| c.clone())
    }

    fn pop(&mut self, category: &str) -> Option<String> {
        let names = self.by_category.get_mut(category)?;
        let name = names.pop()?;
        if names.is_empty() {
            self.by_category.remove(category);
        }
        self.len -= 1;
        Some(name)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every kept name (the sweep must leave these alone).
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.by_category.values().flatten()
    }
}

/// After a published package's file was renamed out of its upload directory (`dirs`, as
/// opened for the publish): does it hold nothing but `category/`, itself holding at most
/// empty directories (the multi-instance layout leaves `category/name/`)? Those inner
/// directories are removed and the answer is yes; anything else (a file, a symbolic link,
/// another directory, an unreadable entry) means no, and the caller removes it whole.
pub fn emptied_after_publish(dirs: &UploadDirs, category: &str) -> bool {
    match dirs.lease.entries().as_deref() {
        Ok([(name, true)]) if name == category => {}
        _ => return false,
    }
    let opened;
    let cat = match dirs.below.first() {
        Some((name, d)) if name == category => d,
        _ => match dirs.lease.open_dir(OsStr::new(category)) {
            Ok(d) => {
                opened = d;
                &opened
            }
            Err(_) => return false,
        },
    };
    let Ok(inner) = cat.entries() else {
        return false;
    };
    // `rmdir` refuses anything but an empty directory.
    inner
        .iter()
        .all(|(name, is_dir)| *is_dir && cat.remove_dir(name).is_ok())
}

/// A kept directory handed to a lease of another category: its category directory is
/// renamed beside the claim's commit, before the drone hears of the lease.
#[derive(Debug, Clone)]
pub struct CategorySwap {
    /// The upload directory (the lease's `upload_dir` under staging).
    pub dir: PathBuf,
    /// The category directory it holds, and the one the lease needs.
    pub held: String,
    pub wanted: String,
}

impl CategorySwap {
    pub fn apply(&self) -> io::Result<()> {
        // Never over a category directory a drone that was quicker already made.
        crate::sys::dirfd::rename_noreplace(
            &self.dir.join(&self.held),
            &self.dir.join(&self.wanted),
        )
    }

    /// After a failed [`apply`](Self::apply): the held category directory is removed (it is
    /// empty) and the drone's rsync makes the one it needs.
    pub fn undo(&self) {
        let _ = fs::remove_dir(self.dir.join(&self.held));
    }
}

/// The filesystem cannot rename without replacing (`RENAME_NOREPLACE`): reuse is off.
pub fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS))
}

/// Removes a directory tree, ignoring errors (it may already be gone).
pub fn remove_quietly(dir: &Path) {
    let _ = fs::remove_dir_all(dir);
}

/// Removes `lease-N` directories that are neither in `keep` (active leases, kept for
/// reuse) nor touched for `min_age`: leftovers of leases that ended long ago (a failed
/// verification leaves its upload for the operator to look at until then).
pub fn sweep(staging: &Path, keep: &HashSet<String>, min_age: Duration) -> usize {
    let Ok(entries) = fs::read_dir(staging) else {
        return 0;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("lease-") || keep.contains(&name) {
            continue;
        }
        let touched = last_touched(&e.path());
        if touched.is_some_and(|t| now.saturating_sub(t) >= min_age.as_secs() as i64) {
            remove_quietly(&e.path());
            removed += 1;
        }
    }
    removed
}

/// When an upload directory was last touched (unix seconds): the newest modification or
/// change time of it and of the directories directly inside it. A reused directory keeps
/// the times of when it was first made; an upload into it changes its category
/// directory, a category swap changes the directory itself.
fn last_touched(dir: &Path) -> Option<i64> {
    use std::os::unix::fs::MetadataExt;
    let at = |m: &fs::Metadata| m.mtime().max(m.ctime());
    let mut newest = at(&fs::symlink_metadata(dir).ok()?);
    if let Ok(inner) = fs::read_dir(dir) {
        for e in inner.flatten() {
            if let Ok(m) = e.metadata() {
                if m.is_dir() {
                    newest = newest.max(at(&m));
                }
            }
        }
    }
    Some(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    /// The check on a directory opened just now (nothing below it opened).
    fn emptied(dir: &Path, category: &str) -> bool {
        crate::sys::dirfd::Dir::open(dir)
            .is_ok_and(|d| emptied_after_publish(&UploadDirs::of(d), category))
    }

    /// As the verification hands it over: the category directory already open.
    #[test]
    fn the_category_directory_opened_for_the_publish_is_used() {
        let t = tmp();
        let d = t.path().join("lease-1");
        fs::create_dir_all(d.join("app-misc/foo")).unwrap();
        let lease = crate::sys::dirfd::Dir::open(&d).unwrap();
        let cat = lease.open_dir(OsStr::new("app-misc")).unwrap();
        let dirs = UploadDirs {
            lease,
            below: vec![("app-misc".into(), cat)],
        };
        assert!(emptied_after_publish(&dirs, "app-misc"));
        assert!(!d.join("app-misc/foo").exists());
        fs::write(d.join("app-misc/stray"), b"").unwrap();
        assert!(!emptied_after_publish(&dirs, "app-misc"));
    }

    #[test]
    fn an_emptied_flat_upload_dir_is_reusable() {
        let t = tmp();
        let d = t.path().join("lease-1");
        fs::create_dir_all(d.join("app-misc")).unwrap();
        assert!(emptied(&d, "app-misc"));
        assert!(d.join("app-misc").is_dir());
    }

    #[test]
    fn the_multi_instance_name_directory_is_removed_and_the_rest_reused() {
        let t = tmp();
        let d = t.path().join("lease-1");
        fs::create_dir_all(d.join("dev-libs/foo")).unwrap();
        assert!(emptied(&d, "dev-libs"));
        assert!(!d.join("dev-libs/foo").exists());
        assert!(d.join("dev-libs").is_dir());
    }

    #[test]
    fn anything_left_in_it_makes_it_not_reusable() {
        let t = tmp();
        // a stray file (an rsync temporary of a killed transfer, say)
        let a = t.path().join("lease-1");
        fs::create_dir_all(a.join("app-misc")).unwrap();
        fs::write(a.join("app-misc/.foo-1.gpkg.tar.XyZ"), b"x").unwrap();
        assert!(!emptied(&a, "app-misc"));
        // a second category
        let b = t.path().join("lease-2");
        fs::create_dir_all(b.join("app-misc")).unwrap();
        fs::create_dir_all(b.join("dev-libs")).unwrap();
        assert!(!emptied(&b, "app-misc"));
        // another category than the package's
        let c = t.path().join("lease-3");
        fs::create_dir_all(c.join("dev-libs")).unwrap();
        assert!(!emptied(&c, "app-misc"));
        // a non-empty directory below the category
        let d = t.path().join("lease-4");
        fs::create_dir_all(d.join("dev-libs/foo")).unwrap();
        fs::write(d.join("dev-libs/foo/x"), b"x").unwrap();
        assert!(!emptied(&d, "dev-libs"));
        assert!(
            d.join("dev-libs/foo/x").exists(),
            "nothing is removed from a tree with content"
        );
        // a symbolic link where the category directory should be
        let e = t.path().join("lease-5");
        fs::create_dir_all(&e).unwrap();
        std::os::unix::fs::symlink(t.path(), e.join("app-misc")).unwrap();
        assert!(!emptied(&e, "app-misc"));
        // gone
        assert!(!emptied(&t.path().join("lease-9"), "app-misc"));
    }

    #[test]
    fn the_pool_hands_out_by_category_then_from_the_largest() {
        let mut p = UploadDirPool::default();
        assert_eq!(p.put("app-misc", "lease-1".into()), None);
        assert_eq!(p.put("dev-libs", "lease-2".into()), None);
        assert_eq!(p.put("dev-libs", "lease-3".into()), None);
        let k = p.take("app-misc").unwrap();
        assert_eq!(
            (k.name.as_str(), k.category.as_str()),
            ("lease-1", "app-misc")
        );
        // None of its own category: one of the category with the most kept.
        let k = p.take("sys-apps").unwrap();
        assert_eq!(k.category, "dev-libs");
        assert_eq!(p.len(), 1);
        assert!(p.forget("lease-2") || p.forget("lease-3"));
        assert!(p.is_empty());
        assert_eq!(p.take("sys-apps"), None);
        assert!(!p.forget("lease-9"));
    }

    #[test]
    fn a_full_pool_makes_room_from_its_largest_category() {
        let mut p = UploadDirPool::default();
        for i in 0..POOL_LIMIT - 1 {
            assert_eq!(p.put("old-cat", format!("lease-{i}")), None);
        }
        assert_eq!(p.put("new-cat", "lease-a".into()), None);
        assert_eq!(p.len(), POOL_LIMIT);
        // Full: each new one pushes out one of the category that has the most.
        let evicted = p.put("new-cat", "lease-b".into()).expect("one makes room");
        assert!(evicted.starts_with("lease-") && evicted != "lease-a" && evicted != "lease-b");
        assert_eq!(p.len(), POOL_LIMIT);
        assert_eq!(p.names().count(), POOL_LIMIT);
        assert_eq!(p.take("new-cat").unwrap().category, "new-cat");
    }

    #[test]
    fn reuse_for_another_category_renames_the_category_directory() {
        let t = tmp();
        fs::create_dir_all(t.path().join("lease-1/dev-libs")).unwrap();
        let swap = CategorySwap {
            dir: t.path().join("lease-1"),
            held: "dev-libs".into(),
            wanted: "app-misc".into(),
        };
        swap.apply().unwrap();
        assert!(t.path().join("lease-1/app-misc").is_dir());
        assert!(!t.path().join("lease-1/dev-libs").exists());
        // Never over what a drone already made; then the held one goes.
        fs::create_dir_all(t.path().join("lease-1/dev-libs")).unwrap();
        let back = CategorySwap {
            held: "dev-libs".into(),
            wanted: "app-misc".into(),
            ..swap
        };
        assert!(back.apply().is_err());
        back.undo();
        assert!(!t.path().join("lease-1/dev-libs").exists());
        assert!(t.path().join("lease-1/app-misc").is_dir());
    }

    #[test]
    fn the_sweep_goes_by_the_last_change_not_the_first_mkdir() {
        let t = tmp();
        let d = t.path().join("lease-7");
        fs::create_dir_all(&d).unwrap();
        // Made two hours ago (as a reused directory's modification time stays)...
        let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
        fs::File::open(&d)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        // ...but changed (category swapped, here: its times set) just now.
        assert_eq!(
            sweep(t.path(), &HashSet::new(), Duration::from_secs(3600)),
            0
        );
        assert!(d.exists());
    }

    #[test]
    fn the_sweep_keeps_active_and_kept_directories() {
        let t = tmp();
        for n in ["lease-1", "lease-2", "lease-3", "other"] {
            fs::create_dir_all(t.path().join(n)).unwrap();
        }
        let keep: HashSet<String> = ["lease-2".to_string()].into();
        assert_eq!(sweep(t.path(), &keep, Duration::ZERO), 2);
        assert!(t.path().join("lease-2").exists());
        assert!(t.path().join("other").exists());
        assert!(!t.path().join("lease-1").exists());
    }
}
