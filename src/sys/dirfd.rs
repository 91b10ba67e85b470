//! File operations relative to an open directory (`openat`, `renameat`, `unlinkat`,
//! `getdents64`), for the orchestrator's work on uploads: each directory from a lease's
//! upload directory down to the package is opened once, never through a symbolic link,
//! and the file is read and renamed out of that very directory — no path is walked again
//! from `/` and nothing can be swapped in above the file between its check and its
//! rename. Directories are read without updating their access time where the
//! orchestrator owns them (`O_NOATIME`), and without the 32 KiB buffer `opendir`
//! allocates. [`rename_noreplace`] (by path, `renameat2`) is here too, for the staging
//! directory's category swaps.
//!
//! Blocking: run on a blocking thread.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// An open directory.
#[derive(Debug)]
pub struct Dir(OwnedFd);

fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

/// The result of a call that returns 0 or -1 and sets `errno`.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Renames `from` to `to`, never replacing anything that is already at `to`
/// (`RENAME_NOREPLACE`; `EEXIST` then, `EINVAL` where the filesystem cannot).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let (from, to) = (
        cstr(from.as_os_str().as_bytes())?,
        cstr(to.as_os_str().as_bytes())?,
    );
    // SAFETY: both are NUL-terminated paths that outlive the call.
    check(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    })
}

/// A single path component: not empty, no `/`, not `.` or `..`.
fn component(name: &OsStr) -> io::Result<CString> {
    let b = name.as_bytes();
    if b.is_empty() || b.contains(&b'/') || b == b"." || b == b".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{}` is not a single file name", name.to_string_lossy()),
        ));
    }
    cstr(b)
}

/// `openat` with `O_NOATIME` when allowed (the caller owns the file), else without it.
fn open_at(dir: RawFd, name: &CString, flags: i32) -> io::Result<OwnedFd> {
    let open = |flags: i32| {
        // SAFETY: `name` is NUL-terminated and outlives the call; `dir` is an open
        // descriptor or AT_FDCWD.
        let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC) };
        if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            // SAFETY: a new descriptor that nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        }
    };
    match open(flags | libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(flags),
        r => r,
    }
}

const DIR_FLAGS: i32 = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;

impl Dir {
    /// Opens the directory at `path`; a symbolic link as its last component is refused,
    /// as is anything else not a directory (`ENOTDIR`; `ELOOP` on some kernels).
    pub fn open(path: &Path) -> io::Result<Dir> {
        open_at(
            libc::AT_FDCWD,
            &cstr(path.as_os_str().as_bytes())?,
            DIR_FLAGS,
        )
        .map(Dir)
    }

    /// Opens the directory `name` inside this one, with the same refusals.
    pub fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
        open_at(self.0.as_raw_fd(), &component(name)?, DIR_FLAGS).map(Dir)
    }

    /// Opens the file `name` in this directory for reading: never through a symbolic link
    /// (`ELOOP`), never waiting for a writer if it is a FIFO.
    pub fn open_file(&self, name: &OsStr) -> io::Result<File> {
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK;
        open_at(self.0.as_raw_fd(), &component(name)?, flags).map(File::from)
    }

    /// Renames `name` in this directory to `to` (replacing what is there, as `rename`).
    pub fn rename_out(&self, name: &OsStr, to: &Path) -> io::Result<()> {
        let (from, to) = (component(name)?, cstr(to.as_os_str().as_bytes())?);
        // SAFETY: both names are NUL-terminated and outlive the call.
        check(unsafe {
            libc::renameat(
                self.0.as_raw_fd(),
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
            )
        })
    }

    /// Removes the file `name` in this directory.
    pub fn remove_file(&self, name: &OsStr) -> io::Result<()> {
        self.unlink(name, 0)
    }

    /// Removes the empty directory `name` in this directory.
    pub fn remove_dir(&self, name: &OsStr) -> io::Result<()> {
        self.unlink(name, libc::AT_REMOVEDIR)
    }

    fn unlink(&self, name: &OsStr, flags: i32) -> io::Result<()> {
        let name = component(name)?;
        // SAFETY: `name` is NUL-terminated and outlives the call.
        check(unsafe { libc::unlinkat(self.0.as_raw_fd(), name.as_ptr(), flags) })
    }

    /// The entries (not `.` and `..`) and whether each is a directory, never following a
    /// symbolic link. Reads from the start each time (it moves the descriptor's offset:
    /// not for two threads at once on one `Dir`).
    pub fn entries(&self) -> io::Result<Vec<(OsString, bool)>> {
        let fd = self.0.as_raw_fd();
        // SAFETY: plain syscall on a descriptor we own.
        if unsafe { libc::lseek(fd, 0, libc::SEEK_SET) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // A `linux_dirent64` holds 8-byte fields: keep the buffer aligned for them.
        let mut buf = [0u64; 512];
        let mut out = Vec::new();
        loop {
            // SAFETY: the kernel writes at most `size_of_val(&buf)` bytes into `buf`.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    libc::c_long::from(fd),
                    buf.as_mut_ptr(),
                    std::mem::size_of_val(&buf),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                return Ok(out);
            }
            // SAFETY: `n` bytes of `buf` are initialised; viewed as bytes.
            let bytes =
                unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
            let mut at = 0;
            while at + 19 <= bytes.len() {
                // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type;
                // char d_name[]; } — read field by field, no alignment assumed.
                let reclen = u16::from_ne_bytes([bytes[at + 16], bytes[at + 17]]) as usize;
                if reclen < 19 || at + reclen > bytes.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "malformed directory entry",
                    ));
                }
                let d_type = bytes[at + 18];
                let name_bytes = &bytes[at + 19..at + reclen];
                let len = name_bytes
                    .iter()
                    .position(|b| *b == 0)
                    .unwrap_or(name_bytes.len());
                let name = &name_bytes[..len];
                at += reclen;
                if name == b"." || name == b".." {
                    continue;
                }
                let is_dir = match d_type {
                    libc::DT_DIR => true,
                    libc::DT_UNKNOWN => self.is_dir_at(name)?,
                    _ => false,
                };
                out.push((OsString::from_vec(name.to_vec()), is_dir));
            }
        }
    }

    /// Whether `name` here is a directory (not following a symbolic link): for
    /// filesystems that do not say in their directory entries.
    fn is_dir_at(&self, name: &[u8]) -> io::Result<bool> {
        let name = cstr(name)?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `name` is NUL-terminated; the kernel fills `st` on success.
        let rc = unsafe {
            libc::fstatat(
                self.0.as_raw_fd(),
                name.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: initialised by the successful fstatat.
        let mode = unsafe { st.assume_init() }.st_mode;
        Ok(mode & libc::S_IFMT == libc::S_IFDIR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn opens_down_a_tree_lists_renames_out_and_removes() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("lease-1/app-misc/inner")).unwrap();
        fs::write(t.path().join("lease-1/app-misc/foo.gpkg.tar"), b"x").unwrap();
        let lease = Dir::open(&t.path().join("lease-1")).unwrap();
        assert_eq!(lease.entries().unwrap(), [("app-misc".into(), true)]);
        let cat = lease.open_dir(OsStr::new("app-misc")).unwrap();
        let mut e = cat.entries().unwrap();
        e.sort();
        assert_eq!(e, [("foo.gpkg.tar".into(), false), ("inner".into(), true)]);
        let mut f = cat.open_file(OsStr::new("foo.gpkg.tar")).unwrap();
        let mut s = String::new();
        io::Read::read_to_string(&mut f, &mut s).unwrap();
        assert_eq!(s, "x");
        cat.rename_out(OsStr::new("foo.gpkg.tar"), &t.path().join("out"))
            .unwrap();
        assert!(t.path().join("out").is_file());
        cat.remove_dir(OsStr::new("inner")).unwrap();
        assert!(cat.entries().unwrap().is_empty());
    }

    #[test]
    fn many_entries_span_several_reads() {
        let t = tempfile::tempdir().unwrap();
        for i in 0..600 {
            fs::write(
                t.path().join(format!("a-rather-long-file-name-{i:04}")),
                b"",
            )
            .unwrap();
        }
        let d = Dir::open(t.path()).unwrap();
        let e = d.entries().unwrap();
        assert_eq!(e.len(), 600);
        assert!(e.iter().all(|(_, dir)| !dir));
        assert_eq!(d.entries().unwrap().len(), 600, "read from the start again");
    }

    #[test]
    fn symbolic_links_and_odd_names_are_refused() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("real")).unwrap();
        fs::write(t.path().join("real/f"), b"").unwrap();
        std::os::unix::fs::symlink(t.path().join("real"), t.path().join("link")).unwrap();
        std::os::unix::fs::symlink(t.path().join("real/f"), t.path().join("real/l")).unwrap();
        let loop_err = |e: io::Error| e.raw_os_error() == Some(libc::ELOOP);
        // A link where a directory is expected: not a directory (`O_DIRECTORY` is
        // checked on the link itself).
        let not_dir = |e: io::Error| e.raw_os_error() == Some(libc::ENOTDIR);
        assert!(Dir::open(&t.path().join("link")).is_err_and(not_dir));
        let top = Dir::open(t.path()).unwrap();
        assert!(top.open_dir(OsStr::new("link")).is_err_and(not_dir));
        let real = top.open_dir(OsStr::new("real")).unwrap();
        assert!(real.open_file(OsStr::new("l")).is_err_and(loop_err));
        for bad in ["", ".", "..", "a/b"] {
            assert!(top.open_dir(OsStr::new(bad)).is_err(), "{bad}");
        }
    }
}
