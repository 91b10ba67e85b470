//! Finding the one binary package a build just produced in PKGDIR. Never more than that
//! one file is uploaded (seed bug #3: the whole 3.2 GB PKGDIR went up on every build).

use crate::sys::digest::sha256_file;
use crate::wire::orchestrator::WorkAssignment;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    /// Relative to PKGDIR, e.g. `app-misc/foo-1.0.gpkg.tar`.
    pub rel: String,
    pub size: u64,
    pub sha256: String,
}

/// Files modified this long before the build started still count (coarse mtimes).
const MTIME_SLACK: Duration = Duration::from_secs(2);

/// The layouts Portage uses, relative to PKGDIR, for the patterns that have no instance
/// number; multi-instance files are `{category}/{name}/{pf}-{N}.{gpkg.tar,xpak}`.
pub fn flat_candidates(w: &WorkAssignment) -> Vec<String> {
    let pf = format!("{}-{}", w.name, w.version);
    vec![
        format!("{}/{pf}.gpkg.tar", w.category),
        format!("{}/{pf}.tbz2", w.category),
        format!("{}/{pf}.xpak", w.category),
    ]
}

fn multi_instance(pkgdir: &Path, w: &WorkAssignment) -> Vec<(String, PathBuf)> {
    let pf = format!("{}-{}", w.name, w.version);
    let dir = pkgdir.join(&w.category).join(&w.name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let stem = file
                .strip_suffix(".gpkg.tar")
                .or_else(|| file.strip_suffix(".xpak"))?;
            let n = stem.strip_prefix(&format!("{pf}-"))?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((format!("{}/{}/{file}", w.category, w.name), e.path()))
        })
        .collect()
}

/// The newest artifact of `w` in `pkgdir` written since `since`, with its size and SHA-256.
/// Blocking (hashes the file). The error names every path that was tried.
pub fn find_artifact(
    pkgdir: &Path,
    w: &WorkAssignment,
    since: SystemTime,
) -> Result<Artifact, String> {
    let mut found: Vec<(SystemTime, String, PathBuf)> = Vec::new();
    let mut tried: Vec<String> = Vec::new();
    let cutoff = since.checked_sub(MTIME_SLACK).unwrap_or(since);
    let consider = |rel: String,
                    abs: PathBuf,
                    found: &mut Vec<(SystemTime, String, PathBuf)>,
                    tried: &mut Vec<String>| {
        match std::fs::metadata(&abs) {
            Ok(m) if m.is_file() => match m.modified() {
                Ok(t) if t >= cutoff => found.push((t, rel, abs)),
                _ => tried.push(format!("{} (older than this build)", abs.display())),
            },
            _ => tried.push(abs.display().to_string()),
        }
    };
    for rel in flat_candidates(w) {
        let abs = pkgdir.join(&rel);
        consider(rel, abs, &mut found, &mut tried);
    }
    let multi = multi_instance(pkgdir, w);
    if multi.is_empty() {
        tried.push(format!(
            "{}/{}/{}/{}-{}-N.gpkg.tar",
            pkgdir.display(),
            w.category,
            w.name,
            w.name,
            w.version
        ));
    }
    for (rel, abs) in multi {
        consider(rel, abs, &mut found, &mut tried);
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    let Some((_, rel, abs)) = found.into_iter().next() else {
        return Err(format!(
            "the build finished but left no package for {}/{}-{}; tried: {}",
            w.category,
            w.name,
            w.version,
            tried.join(", ")
        ));
    };
    let (sha256, size) =
        sha256_file(&abs).map_err(|e| format!("reading {}: {e}", abs.display()))?;
    Ok(Artifact { rel, size, sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work() -> WorkAssignment {
        WorkAssignment {
            lease: 1,
            epoch: 1,
            atom: "app-misc/foo-1.0".into(),
            category: "app-misc".into(),
            name: "foo".into(),
            version: "1.0".into(),
            upload_dir: "lease-1".into(),
        }
    }

    #[test]
    fn finds_flat_and_multi_instance_and_names_what_it_tried() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_artifact(dir.path(), &work(), SystemTime::now()).unwrap_err();
        assert!(err.contains("app-misc/foo-1.0.gpkg.tar"), "{err}");
        assert!(err.contains("foo-1.0-N.gpkg.tar"), "{err}");

        let start = SystemTime::now();
        std::fs::create_dir_all(dir.path().join("app-misc/foo")).unwrap();
        std::fs::write(dir.path().join("app-misc/foo/foo-1.0-1.gpkg.tar"), b"one").unwrap();
        std::fs::write(
            dir.path().join("app-misc/foo/foo-1.0.1-2.gpkg.tar"),
            b"other version",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("app-misc/foobar-1.0.gpkg.tar"),
            b"other package",
        )
        .unwrap();
        let a = find_artifact(dir.path(), &work(), start).unwrap();
        assert_eq!(a.rel, "app-misc/foo/foo-1.0-1.gpkg.tar");
        assert_eq!(a.size, 3);

        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(
            dir.path().join("app-misc/foo-1.0.gpkg.tar"),
            b"flat, newest",
        )
        .unwrap();
        let a = find_artifact(dir.path(), &work(), start).unwrap();
        assert_eq!(a.rel, "app-misc/foo-1.0.gpkg.tar");
    }

    #[test]
    fn an_old_file_from_before_the_build_is_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app-misc")).unwrap();
        std::fs::write(dir.path().join("app-misc/foo-1.0.tbz2"), b"old").unwrap();
        let later = SystemTime::now() + Duration::from_secs(60);
        let err = find_artifact(dir.path(), &work(), later).unwrap_err();
        assert!(err.contains("older than this build"), "{err}");
    }
}
