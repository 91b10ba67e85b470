//! Checking the binhost against its index (`build-swarm binhost verify`), and the file
//! work of bringing the index up to date at start-up. Blocking file work.

use super::index::{Entry, FileFacts};
use super::index_file;
use super::metadata::{self, BinpkgFormat};
use crate::orchestrator::publish::Signing;
use crate::sys::digest::sums_sized;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// One thing that is not as the index says.
pub use crate::wire::orchestrator::BinhostProblem as Problem;

/// Temporary files younger than this may belong to a publish or an index write under
/// way: not reported, not removed.
const TEMP_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The binary-package files under `dir` (relative paths, sorted) and the temporary files
/// left by a publish or an index write that did not finish (older than an hour).
pub fn scan(dir: &Path) -> io::Result<(Vec<String>, Vec<String>)> {
    let mut packages = Vec::new();
    let mut temps = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let rd = match std::fs::read_dir(dir.join(&rel)) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !rel.as_os_str().is_empty() => {
                continue
            }
            Err(e) => return Err(e),
        };
        for entry in rd {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = rel.join(&name);
            let ty = entry.file_type()?;
            if ty.is_dir() && !name.starts_with('.') {
                todo.push(path);
            } else if ty.is_file() {
                let p = path.to_string_lossy().into_owned();
                let temp = index_file::is_temp(&name)
                    || (name.starts_with('.') && name.contains(".partial-"));
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|age| age >= TEMP_GRACE);
                if temp {
                    if old {
                        temps.push(p);
                    }
                } else if BinpkgFormat::of(&name).is_some() {
                    packages.push(p);
                }
            }
        }
    }
    packages.sort();
    temps.sort();
    Ok((packages, temps))
}

/// The index entry of a published file from what it holds (its metadata, checksums,
/// size, mtime). `expect`: `(category, pf)` it must be.
pub fn entry_of_file(dir: &Path, rel: &str, expect: Option<(&str, &str)>) -> Result<Entry, String> {
    entry_of_signed_file(dir, rel, expect, None)
}

/// [`entry_of_file`]; with `signing`, the file must also carry a good signature by the
/// binhost's key (as publishing checked), so a file changed while nobody watched is not
/// listed again unsigned. One open file for both, so the entry is of the file checked.
pub fn entry_of_signed_file(
    dir: &Path,
    rel: &str,
    expect: Option<(&str, &str)>,
    signing: Option<&Signing>,
) -> Result<Entry, String> {
    use std::os::unix::fs::MetadataExt;
    let format = BinpkgFormat::of(rel).ok_or_else(|| "not a binary package".to_string())?;
    let mut f = File::open(dir.join(rel)).map_err(|e| e.to_string())?;
    if let Some(signing) = signing {
        if let Some(why) = bad_signature(signing, &mut f, rel) {
            return Err(format!("bad signature: {why}"));
        }
        io::Seek::rewind(&mut f).map_err(|e| e.to_string())?;
    }
    let m = f.metadata().map_err(|e| e.to_string())?;
    let sums = sums_sized(&mut f, m.len(), true).map_err(|e| e.to_string())?;
    let meta = metadata::read(&mut f, format).map_err(|e| e.to_string())?;
    if let Some((category, pf)) = expect {
        metadata::check_package(&meta, category, pf).map_err(|e| e.to_string())?;
    }
    Entry::new(
        &meta,
        &FileFacts {
            path: rel.to_string(),
            size: sums.len,
            md5: sums.md5.unwrap_or_default(),
            sha1: sums.sha1.unwrap_or_default(),
            mtime: m.mtime().max(0) as u64,
        },
    )
    .map_err(|e| e.to_string())
}

/// Whether the file still looks like its entry (size and mtime), without reading it.
pub fn unchanged(dir: &Path, e: &Entry) -> bool {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(dir.join(e.path())) {
        Ok(m) => Some(m.len()) == e.size() && Some(m.mtime().max(0) as u64) == e.mtime(),
        Err(_) => false,
    }
}

/// Every difference between the files under `dir` and `entries`: each entry's file must
/// exist with its size, MD5 and SHA-1 (and, with `signing`, each gpkg must carry a good
/// signature by its key); every package file must be indexed; no temporary file may be
/// left.
pub fn check(dir: &Path, entries: &[Entry], signing: Option<&Signing>) -> io::Result<Vec<Problem>> {
    let (files, temps) = scan(dir)?;
    let mut problems = Vec::new();
    let problem = |path: &str, kind: &str, detail: String| Problem {
        path: path.to_string(),
        kind: kind.to_string(),
        detail,
    };
    let indexed: std::collections::HashSet<&str> = entries.iter().map(Entry::path).collect();
    for e in entries {
        let path = dir.join(e.path());
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                problems.push(problem(
                    e.path(),
                    "missing",
                    "indexed, but there is no such file".into(),
                ));
                continue;
            }
            Err(err) => {
                problems.push(problem(e.path(), "unreadable", err.to_string()));
                continue;
            }
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let sums = match sums_sized(&mut f, len, true) {
            Ok(s) => s,
            Err(err) => {
                problems.push(problem(e.path(), "unreadable", err.to_string()));
                continue;
            }
        };
        if Some(sums.len) != e.size() {
            problems.push(problem(
                e.path(),
                "size",
                format!(
                    "the index says {} bytes, the file has {}",
                    e.get("SIZE").unwrap_or("?"),
                    sums.len
                ),
            ));
        }
        if let Some(problem_text) = signing.and_then(|s| bad_signature(s, &mut f, e.path())) {
            problems.push(problem(e.path(), "signature", problem_text));
        }
        for (key, got) in [("MD5", &sums.md5), ("SHA1", &sums.sha1)] {
            let want = e.get(key).unwrap_or_default();
            if got.as_deref() != Some(want) {
                problems.push(problem(
                    e.path(),
                    &key.to_ascii_lowercase(),
                    format!(
                        "the index says {want}, the file has {}",
                        got.as_deref().unwrap_or("?")
                    ),
                ));
            }
        }
    }
    for f in files.iter().filter(|f| !indexed.contains(f.as_str())) {
        // Not listed because its signature is not good (found at start-up, or after a
        // refused commit): said as such, since listing it would need a good file.
        let unsigned = signing.and_then(|s| {
            let mut file = File::open(dir.join(f)).ok()?;
            bad_signature(s, &mut file, f)
        });
        problems.push(match unsigned {
            Some(why) => problem(f, "signature", format!("not listed: {why}")),
            None => problem(
                f,
                "unindexed",
                "a package file the index does not list".into(),
            ),
        });
    }
    for t in temps {
        problems.push(problem(
            &t,
            "temporary",
            "left by a publish or an index write that did not finish".into(),
        ));
    }
    Ok(problems)
}

/// What is wrong with the signature of the package `f` at `rel`, if anything: a gpkg
/// must carry a good one; anything else cannot, which is wrong only when signing is
/// `required`.
pub fn bad_signature(signing: &Signing, f: &mut File, rel: &str) -> Option<String> {
    if BinpkgFormat::of(rel) != Some(BinpkgFormat::Gpkg) {
        return signing
            .required
            .then(|| "not a gpkg: it cannot carry a signature, and signing is required".into());
    }
    let signer = &signing.signer;
    if let Err(e) = io::Seek::rewind(f) {
        return Some(e.to_string());
    }
    signer
        .check_gpkg(io::BufReader::new(f))
        .err()
        .map(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::binhost::metadata::tests::gpkg;

    #[test]
    fn a_deleted_a_corrupted_and_an_unindexed_file_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut entries = Vec::new();
        for pf in ["a-1", "b-1", "c-1"] {
            std::fs::create_dir_all(d.join("cat")).unwrap();
            let rel = format!("cat/{pf}.gpkg.tar");
            std::fs::write(d.join(&rel), gpkg(pf, &[("CATEGORY", "cat"), ("PF", pf)])).unwrap();
            entries.push(entry_of_file(d, &rel, Some(("cat", pf))).unwrap());
        }
        assert!(check(d, &entries, None).unwrap().is_empty());
        assert!(entry_of_file(d, "cat/a-1.gpkg.tar", Some(("cat", "b-1"))).is_err());
        std::fs::remove_file(d.join("cat/a-1.gpkg.tar")).unwrap();
        let mut bytes = std::fs::read(d.join("cat/b-1.gpkg.tar")).unwrap();
        bytes[600] ^= 1;
        std::fs::write(d.join("cat/b-1.gpkg.tar"), bytes).unwrap();
        std::fs::write(d.join("cat/z-9.gpkg.tar"), b"x").unwrap();
        let partial = d.join("cat/.z-9.gpkg.tar.partial-1-0");
        std::fs::write(&partial, b"x").unwrap();
        // A fresh one may be a publish under way: only an old one is reported.
        std::fs::write(d.join("cat/.y-1.gpkg.tar.partial-1-1"), b"x").unwrap();
        let old = std::time::SystemTime::now() - TEMP_GRACE - std::time::Duration::from_secs(1);
        std::fs::File::options()
            .write(true)
            .open(&partial)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let found: Vec<(String, String)> = check(d, &entries, None)
            .unwrap()
            .into_iter()
            .map(|p| (p.path, p.kind))
            .collect();
        let want = |p: &str, k: &str| (p.to_string(), k.to_string());
        assert_eq!(
            found,
            vec![
                want("cat/a-1.gpkg.tar", "missing"),
                want("cat/b-1.gpkg.tar", "md5"),
                want("cat/b-1.gpkg.tar", "sha1"),
                want("cat/z-9.gpkg.tar", "unindexed"),
                want("cat/.z-9.gpkg.tar.partial-1-0", "temporary"),
            ]
        );
        assert!(unchanged(d, &entries[2]));
        assert!(!unchanged(d, &entries[0]));
    }
}
