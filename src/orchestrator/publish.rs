//! Verifying an uploaded artifact and publishing it into the binhost. Blocking file work:
//! callers run it on a blocking thread, never inside an actor's handler.
//!
//! Exactly the verified bytes are published, and the published file belongs to the
//! orchestrator (docs/design.md, "Publishing"): an upload the orchestrator's user owns
//! with a single link is hashed through its descriptor, made read-only and renamed, and
//! the renamed inode is checked to be the one hashed (a file swapped in meanwhile is
//! removed again and refused); any other upload (another owner, or another hard link
//! kept) is copied from its descriptor while it is hashed, into a new read-only file. A
//! published file only ever appears complete under its final name.
//!
//! The rename itself (and the file's data) is made durable before the package is recorded
//! as built: the package queue has the store `syncfs` the binhost's filesystem once per
//! group commit (see `store::Write::SyncDir`) instead of syncing a directory per package.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::orchestrator::binhost::index::{Entry, FileFacts, IndexError};
use crate::orchestrator::binhost::metadata::{self, BinpkgFormat, MetadataError};
use crate::orchestrator::binhost::signing::{SignError, Signer};
use crate::sys::digest::{sha256_file, sums_sized, SumHasher, Sums};
use crate::sys::dirfd::Dir;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the uploaded file {0} is missing")]
    Missing(PathBuf),
    #[error("size mismatch for {path}: the drone reported {expected} bytes, the orchestrator has {actual}")]
    Size {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("checksum mismatch for {path}: the drone reported sha256 {expected}, the orchestrator computed {actual}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{0} is a symbolic link or not a regular file; only regular files are published")]
    NotRegular(PathBuf),
    #[error("{0} was replaced while it was being verified; nothing was published")]
    Replaced(PathBuf),
    #[error("{path} is not a binary package of the leased atom: {source}")]
    Metadata {
        path: PathBuf,
        #[source]
        source: MetadataError,
    },
    #[error("{path}: no index entry can be made: {source}")]
    Index {
        path: PathBuf,
        #[source]
        source: IndexError,
    },
    #[error("{path} could not be signed: {source}")]
    Signing {
        path: PathBuf,
        #[source]
        source: SignError,
    },
    #[error("{path} cannot carry a signature (only gpkg packages can) and [signing] required = true: it is not published")]
    Unsignable { path: PathBuf },
    #[error("publishing {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Signing on publish: the key, and whether what cannot be signed is refused.
#[derive(Debug, Clone)]
pub struct Signing {
    pub signer: std::sync::Arc<Signer>,
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Moved from staging into the binhost now.
    Now,
    /// Already in the binhost with the same content (a completion retried after a crash).
    AlreadyThere,
}

#[derive(Debug, Clone)]
pub struct PublishJob {
    pub staged: PathBuf,
    pub dest: PathBuf,
    pub size: u64,
    pub sha256: String,
    /// The lease's upload directory (`staged` is inside it; nothing above it is checked
    /// for symbolic links; the caller reuses or removes it afterwards).
    pub lease_dir: PathBuf,
    /// Read the package's metadata, check it is this package and make its index entry
    /// (`None`: the binhost has no index of the orchestrator's).
    pub index: Option<IndexWanted>,
    /// Publish it signed (`None`: as uploaded).
    pub signing: Option<Signing>,
}

/// The package an artifact must be, and its path in the index.
#[derive(Debug, Clone)]
pub struct IndexWanted {
    pub category: String,
    /// `name-version` (Portage's `PF`).
    pub pf: String,
    /// Relative to the binhost (`PATH`).
    pub rel_path: String,
}

/// The artifact's metadata checked against `want` and its index entry, from `f` (its
/// start) with `sums` of its bytes. `None` for a file that is no binary package (a
/// generic artifact).
fn index_entry(
    want: &IndexWanted,
    f: &mut File,
    sums: &Sums,
    mtime: u64,
    path: &Path,
) -> Result<Option<Entry>, PublishError> {
    let Some(format) = BinpkgFormat::of(&want.rel_path) else {
        return Ok(None);
    };
    let meta_err = |source| PublishError::Metadata {
        path: path.to_path_buf(),
        source,
    };
    let meta = metadata::read(f, format).map_err(meta_err)?;
    metadata::check_package(&meta, &want.category, &want.pf).map_err(meta_err)?;
    let facts = FileFacts {
        path: want.rel_path.clone(),
        size: sums.len,
        md5: sums.md5.clone().unwrap_or_default(),
        sha1: sums.sha1.clone().unwrap_or_default(),
        mtime,
    };
    Entry::new(&meta, &facts)
        .map(Some)
        .map_err(|source| PublishError::Index {
            path: path.to_path_buf(),
            source,
        })
}

/// The index entry of a file already published (a completion retried after its answer
/// was lost).
fn entry_of_published(want: &IndexWanted, path: &Path) -> Result<Option<Entry>, PublishError> {
    use std::os::unix::fs::MetadataExt;
    let mut f = File::open(path).map_err(io_err(path))?;
    let meta = f.metadata().map_err(io_err(path))?;
    let sums = sums_sized(&mut f, meta.len(), true).map_err(io_err(path))?;
    index_entry(want, &mut f, &sums, meta.mtime().max(0) as u64, path)
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PublishError + '_ {
    move |source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn matches(path: &Path, size: u64, sha256: &str) -> Result<bool, PublishError> {
    match fs::metadata(path) {
        Ok(m) if m.len() == size => {
            let (sum, _) = sha256_file(path).map_err(io_err(path))?;
            Ok(sum.eq_ignore_ascii_case(sha256))
        }
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// What a successful [`verify_and_publish`] did, and the upload's directories it opened.
#[derive(Debug)]
pub struct Publication {
    pub how: Published,
    /// The published file's index entry (when [`PublishJob::index`] asked for one).
    pub entry: Option<Entry>,
    /// Open from the lease's upload directory down, for the reuse check
    /// ([`crate::orchestrator::staging::emptied_after_publish`]); `None` if the upload directory is gone.
    pub dirs: Option<UploadDirs>,
}

/// The directories of an upload, each opened once, never through a symbolic link.
#[derive(Debug)]
pub struct UploadDirs {
    /// The lease's upload directory.
    pub lease: Dir,
    /// Each directory below it on the way to the file (`category`, with the
    /// multi-instance layout `category/name`), with its name.
    pub below: Vec<(OsString, Dir)>,
}

impl UploadDirs {
    /// Just the upload directory, nothing below it opened yet.
    pub fn of(lease: Dir) -> UploadDirs {
        UploadDirs {
            lease,
            below: Vec::new(),
        }
    }

    fn innermost(&self) -> &Dir {
        self.below.last().map(|(_, d)| d).unwrap_or(&self.lease)
    }
}

/// Checks size and checksum of the staged file, then moves it into place atomically. The
/// rename is durable only once the destination's filesystem is synced
/// ([`sync_filesystem`]).
///
/// An upload may carry symbolic links (`rsync -a` keeps them); following one could move a
/// file from anywhere on the orchestrator's disk into the binhost. So each directory from
/// the lease's upload directory down is opened relative to the one above it without
/// following links, the file is opened in the last one (`O_NOFOLLOW`; `O_NONBLOCK` so a
/// FIFO cannot hang the check), and the very directory it was checked in renames it.
pub fn verify_and_publish(job: &PublishJob) -> Result<Publication, PublishError> {
    let mut parts: Vec<&OsStr> = match job.staged.strip_prefix(&job.lease_dir) {
        Ok(rel) => rel
            .components()
            .map(|c| match c {
                Component::Normal(p) => Some(p),
                _ => None,
            })
            .collect::<Option<_>>()
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let Some(file_name) = parts.pop() else {
        return Err(io_err(&job.staged)(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file inside the upload directory",
        )));
    };
    // Not uploaded (or moved already by a completion whose answer was lost): published
    // already if the binhost has this very content.
    let missing = |dirs: Option<UploadDirs>| {
        let dest_name = job.dest.to_string_lossy();
        let there = match &job.signing {
            Some(_) if BinpkgFormat::of(&dest_name) == Some(BinpkgFormat::Gpkg) => {
                signed::already_there(job)?
            }
            _ => matches(&job.dest, job.size, &job.sha256)?,
        };
        if there {
            let entry = match &job.index {
                Some(want) => entry_of_published(want, &job.dest)?,
                None => None,
            };
            Ok(Publication {
                how: Published::AlreadyThere,
                dirs,
                entry,
            })
        } else {
            Err(PublishError::Missing(job.staged.clone()))
        }
    };
    let refused = |path: &Path, e: io::Error| match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => PublishError::NotRegular(path.to_path_buf()),
        _ => io_err(path)(e),
    };
    let mut dirs = match Dir::open(&job.lease_dir) {
        Ok(d) => UploadDirs::of(d),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return missing(None),
        Err(e) => return Err(refused(&job.lease_dir, e)),
    };
    let mut at = job.lease_dir.clone();
    for part in parts {
        at.push(part);
        match dirs.innermost().open_dir(part) {
            Ok(d) => dirs.below.push((part.to_os_string(), d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return missing(Some(dirs)),
            Err(e) => return Err(refused(&at, e)),
        }
    }
    let mut f = match dirs.innermost().open_file(file_name) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return missing(Some(dirs)),
        Err(e) => return Err(refused(&job.staged, e)),
    };
    let meta = f.metadata().map_err(io_err(&job.staged))?;
    if !meta.is_file() {
        return Err(PublishError::NotRegular(job.staged.clone()));
    }
    if meta.len() != job.size {
        return Err(PublishError::Size {
            path: job.staged.clone(),
            expected: job.size,
            actual: meta.len(),
        });
    }
    if let Some(signing) = &job.signing {
        let name = file_name.to_string_lossy();
        if BinpkgFormat::of(&name) == Some(BinpkgFormat::Gpkg) {
            // Read once into a new, signed file only this process writes: the upload
            // itself is never renamed, whoever owns it.
            let entry = signed::publish(job, signing, &mut f)?;
            let _ = dirs.innermost().remove_file(file_name);
            return Ok(Publication {
                how: Published::Now,
                dirs: Some(dirs),
                entry,
            });
        }
        if signing.required {
            return Err(PublishError::Unsignable {
                path: job.staged.clone(),
            });
        }
    }
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let mine = meta.uid() == unsafe { libc::geteuid() } && meta.nlink() == 1;
    let entry = if mine {
        // Nobody else can write to it: hash it (and read its metadata), then move this
        // very inode.
        let sums =
            sums_sized(&mut f, meta.len(), job.index.is_some()).map_err(io_err(&job.staged))?;
        check_sum(job, &sums.sha256)?;
        let entry = match &job.index {
            Some(want) => {
                index_entry(want, &mut f, &sums, meta.mtime().max(0) as u64, &job.staged)?
            }
            None => None,
        };
        make_read_only(&f).map_err(io_err(&job.staged))?;
        install(dirs.innermost(), file_name, &mut f, &meta, &job.dest)?;
        entry
    } else {
        // Its owner (or whoever holds another link) could still change it: publish a copy
        // of exactly the bytes that were hashed.
        let entry = copy_verified(job, &mut f)?;
        let _ = dirs.innermost().remove_file(file_name);
        entry
    };
    Ok(Publication {
        how: Published::Now,
        dirs: Some(dirs),
        entry,
    })
}

fn check_sum(job: &PublishJob, sum: &str) -> Result<(), PublishError> {
    if sum.eq_ignore_ascii_case(&job.sha256) {
        Ok(())
    } else {
        Err(PublishError::Checksum {
            path: job.staged.clone(),
            expected: job.sha256.clone(),
            actual: sum.to_string(),
        })
    }
}

/// Published files are read-only (`0444`).
fn make_read_only(f: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(fs::Permissions::from_mode(0o444))
}

/// A hidden name in `to`'s directory for a file being written (unique in this process).
fn partial_name(to: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let file_name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    to.with_file_name(format!(".{file_name}.partial-{}-{n}", std::process::id()))
}

/// Creates `to`'s directory when it is missing.
fn make_parent(to: &Path) -> Result<(), PublishError> {
    match to.parent() {
        Some(parent) => fs::create_dir_all(parent).map_err(io_err(parent)),
        None => Err(io_err(to)(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no parent directory",
        ))),
    }
}

/// Copies what is left to read of `from` to a new read-only file at `to` (through a
/// hidden temporary name), hashing exactly the bytes written; publishes only if they are
/// the job's (and, with an index, only a package whose metadata is the job's). Durable
/// once `to`'s filesystem is synced.
fn copy_verified(job: &PublishJob, from: &mut File) -> Result<Option<Entry>, PublishError> {
    use std::io::{Read, Write};
    let to = &job.dest;
    let (tmp, mut out) = create_partial(to)?;
    let mut copy = || -> io::Result<Sums> {
        let mut h = SumHasher::new(job.index.is_some());
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = from.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n])?;
        }
        Ok(h.finish())
    };
    let result = copy().map_err(io_err(&job.staged)).and_then(|sums| {
        if sums.len != job.size {
            return Err(PublishError::Size {
                path: job.staged.clone(),
                expected: job.size,
                actual: sums.len,
            });
        }
        check_sum(job, &sums.sha256)?;
        // The metadata of the copy, which only this process can write.
        let entry = match &job.index {
            Some(want) => {
                use std::os::unix::fs::MetadataExt;
                let mut copied = File::open(&tmp).map_err(io_err(&tmp))?;
                let mtime = copied.metadata().map_err(io_err(&tmp))?.mtime().max(0) as u64;
                index_entry(want, &mut copied, &sums, mtime, &job.staged)?
            }
            None => None,
        };
        fs::rename(&tmp, to).map_err(io_err(to))?;
        Ok(entry)
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A new read-only file under a hidden name beside `to` (its directory made when
/// missing), open for reading and writing: where a published file is written before it
/// is renamed to `to`.
fn create_partial(to: &Path) -> Result<(PathBuf, File), PublishError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = partial_name(to);
    let create = || {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&tmp)
    };
    let file = match create() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            make_parent(to)?;
            create()
        }
        // Left by an earlier run of this process that had the same pid: nobody writes it.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(&tmp).map_err(io_err(&tmp))?;
            create()
        }
        other => other,
    }
    .map_err(io_err(&tmp))?;
    Ok((tmp, file))
}

/// Makes renames into `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes back everything of the filesystem holding `f` (`syncfs`): the data of the files
/// published since the last call and their renames, with one journal commit however many
/// directories they went to.
pub fn sync_filesystem(f: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs only takes a file descriptor, which `f` keeps open.
    if unsafe { libc::syncfs(f.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Moves the file `name` in `dir` (open as `verified`, described by `meta`) to `to` so
/// that `to` is never seen half-written, and checks that what arrived is that very inode:
/// a file renamed over `name` after it was opened is removed from `to` again and refused.
/// Sync `to`'s filesystem afterwards ([`sync_filesystem`]) to make the rename durable.
/// Across filesystems the verified descriptor is what is copied.
fn install(
    dir: &Dir,
    name: &OsStr,
    verified: &mut File,
    meta: &fs::Metadata,
    to: &Path,
) -> Result<(), PublishError> {
    use std::os::unix::fs::MetadataExt;
    // The destination directory usually exists already: create it only when missing.
    // (Then always try again: another verification lane may have made it in between.)
    let mut renamed = dir.rename_out(name, to);
    if matches!(&renamed, Err(e) if e.kind() == io::ErrorKind::NotFound) {
        make_parent(to)?;
        renamed = dir.rename_out(name, to);
    }
    match renamed {
        Ok(()) => match fs::symlink_metadata(to) {
            Ok(arrived) if (arrived.dev(), arrived.ino()) == (meta.dev(), meta.ino()) => {}
            // Something else arrived (a file or a directory renamed over the upload), or
            // it cannot be told: it does not stay under the final name.
            arrived => {
                let removed = match arrived {
                    Ok(m) if m.is_dir() => fs::remove_dir_all(to),
                    Ok(_) => fs::remove_file(to),
                    Err(e) => Err(e),
                };
                return match removed {
                    Ok(()) => Err(PublishError::Replaced(to.to_path_buf())),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        Err(PublishError::Replaced(to.to_path_buf()))
                    }
                    Err(e) => Err(io_err(to)(e)),
                };
            }
        },
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let tmp = partial_name(to);
            let mut copy = || -> io::Result<()> {
                io::Seek::seek(verified, io::SeekFrom::Start(0))?;
                let mut out = File::create(&tmp)?;
                io::copy(verified, &mut out)?;
                make_read_only(&out)?;
                out.sync_all()?;
                fs::rename(&tmp, to)
            };
            if let Err(e) = copy() {
                let _ = fs::remove_file(&tmp);
                return Err(io_err(to)(e));
            }
            let _ = dir.remove_file(name);
        }
        Err(e) => return Err(io_err(to)(e)),
    }
    Ok(())
}

/// Joins a relative path that has already been checked to stay inside `base`.
/// Returns `None` for absolute paths or any `..`, `.`-only or empty component.
pub fn join_inside(base: &Path, rel: &str) -> Option<PathBuf> {
    if rel.is_empty() || rel.contains('\0') || rel.contains('\\') {
        return None;
    }
    let p = Path::new(rel);
    let mut out = base.to_path_buf();
    for c in p.components() {
        match c {
            Component::Normal(part) => out.push(part),
            _ => return None,
        }
    }
    if rel
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return None;
    }
    Some(out)
}

mod signed;
#[cfg(test)]
mod tests;
