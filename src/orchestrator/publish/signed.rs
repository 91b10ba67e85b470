//! Publishing a gpkg signed (`[signing] key`): the upload is read once, front to back,
//! into a new signed file beside its final name while its SHA-256 is checked; the signed
//! file's own sums go into the index; only a signed file whose upload verified is renamed
//! into place. The upload's SHA-256 is kept on the published file (extended attribute
//! `user.build-swarm.upload-sha256`) so a completion retried after a crash finds it (on a
//! filesystem without user extended attributes it does not: the drone builds again).

use super::{create_partial, index_entry, io_err, PublishError, PublishJob, Signing};
use crate::orchestrator::binhost::index::Entry;
use crate::sys::digest::{SumHasher, Sums};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

const UPLOAD_SHA256: &std::ffi::CStr = c"user.build-swarm.upload-sha256";

/// Signs what is left to read of `upload` (checked against the job's size and SHA-256)
/// into the job's destination. Durable once the destination's filesystem is synced.
pub(super) fn publish(
    job: &PublishJob,
    signing: &Signing,
    upload: &mut File,
) -> Result<Option<Entry>, PublishError> {
    let to = &job.dest;
    let (tmp, out) = create_partial(to)?;
    let result = sign_into(job, signing, upload, &out, &tmp).and_then(|entry| {
        set_upload_sum(&out, &job.sha256).map_err(io_err(&tmp))?;
        fs::rename(&tmp, to).map_err(io_err(to))?;
        Ok(entry)
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn sign_into(
    job: &PublishJob,
    signing: &Signing,
    upload: &mut File,
    out: &File,
    tmp: &Path,
) -> Result<Option<Entry>, PublishError> {
    let mut read = SumHasher::new(false);
    let mut written = SumHasher::new(job.index.is_some());
    {
        let mut input = Hashing {
            inner: BufReader::with_capacity(256 * 1024, &mut *upload),
            sums: &mut read,
        };
        let output = Hashing {
            inner: BufWriter::with_capacity(256 * 1024, out),
            sums: &mut written,
        };
        let signed = signing.signer.sign_gpkg(&mut input, output);
        // What follows the tar's end (padding) is part of the upload's checksum.
        io::copy(&mut input, &mut io::sink()).map_err(io_err(&job.staged))?;
        let read = std::mem::replace(input.sums, SumHasher::new(false)).finish();
        // A wrong upload is named as such before anything about its content.
        check_upload(job, &read)?;
        signed.map_err(|source| PublishError::Signing {
            path: job.staged.clone(),
            source,
        })?;
    }
    let sums = written.finish();
    match &job.index {
        Some(want) => {
            use std::os::unix::fs::MetadataExt;
            let mut signed = File::open(tmp).map_err(io_err(tmp))?;
            let mtime = signed.metadata().map_err(io_err(tmp))?.mtime().max(0) as u64;
            index_entry(want, &mut signed, &sums, mtime, &job.staged)
        }
        None => Ok(None),
    }
}

fn check_upload(job: &PublishJob, read: &Sums) -> Result<(), PublishError> {
    if read.len != job.size {
        return Err(PublishError::Size {
            path: job.staged.clone(),
            expected: job.size,
            actual: read.len,
        });
    }
    if !read.sha256.eq_ignore_ascii_case(&job.sha256) {
        return Err(PublishError::Checksum {
            path: job.staged.clone(),
            expected: job.sha256.clone(),
            actual: read.sha256.clone(),
        });
    }
    Ok(())
}

/// Whether the job's destination is this upload, published signed before (a completion
/// retried after the orchestrator stopped between publishing and recording it): the
/// upload checksum recorded on it is the job's.
pub(super) fn already_there(job: &PublishJob) -> Result<bool, PublishError> {
    let f = match File::open(&job.dest) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(&job.dest)(e)),
    };
    Ok(upload_sum(&f).is_some_and(|sum| sum.eq_ignore_ascii_case(&job.sha256)))
}

/// Records the upload's SHA-256 on the signed file; a filesystem without user extended
/// attributes is not an error (a retried completion then finds nothing).
fn set_upload_sum(f: &File, sha256: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the name is NUL-terminated, the value's pointer and length are a live slice.
    let rc = unsafe {
        libc::fsetxattr(
            f.as_raw_fd(),
            UPLOAD_SHA256.as_ptr(),
            sha256.as_ptr().cast(),
            sha256.len(),
            0,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOTSUP) => Ok(()),
        _ => Err(e),
    }
}

fn upload_sum(f: &File) -> Option<String> {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 128];
    // SAFETY: the name is NUL-terminated; the buffer is writable for its length.
    let n = unsafe {
        libc::fgetxattr(
            f.as_raw_fd(),
            UPLOAD_SHA256.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

/// Passes bytes through, adding them to `sums`.
struct Hashing<'a, T> {
    inner: T,
    sums: &'a mut SumHasher,
}

impl<T: Read> Read for Hashing<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sums.update(&buf[..n]);
        Ok(n)
    }
}

impl<T: Write> Write for Hashing<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sums.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
