//! SHA-256 of files, as lowercase hex: what a drone reports for its artifact and what the
//! orchestrator checks before it publishes one (with MD5 and SHA-1 for the binhost index
//! in the same pass).

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// SHA-256 of a file, lowercase hex, and its length.
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    sha256_open(&mut File::open(path)?)
}

/// SHA-256 of what is left to read of `f`, lowercase hex, and its length.
fn sha256_open(f: &mut File) -> io::Result<(String, u64)> {
    let len_hint = f.metadata().map(|m| m.len()).unwrap_or(0);
    sha256_sized(f, len_hint)
}

/// The same, for a file of about `len_hint` bytes (sizes the read buffer).
pub fn sha256_sized(f: &mut File, len_hint: u64) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    // No bigger than the file: most packages are small, and a 256 KiB buffer zeroed per
    // verification showed in profiles. A small file is read into a buffer on the stack
    // (one read, no allocation), a larger one through at most 256 KiB from the heap.
    const SMALL: usize = 16 * 1024;
    let mut small = [0u8; SMALL];
    let mut large = Vec::new();
    let buf: &mut [u8] = if len_hint < SMALL as u64 {
        &mut small
    } else {
        large.resize((len_hint.min(256 * 1024) + 1) as usize, 0);
        &mut large
    };
    let mut len = 0u64;
    loop {
        let n = f.read(buf)?;
        if n == 0 {
            break;
        }
        len += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex(&h.finalize()), len))
}

/// Checksums of one pass over a file: SHA-256 always, MD5 and SHA-1 when a Portage
/// `Packages` index needs them too.
pub struct Sums {
    pub sha256: String,
    pub md5: Option<String>,
    pub sha1: Option<String>,
    pub len: u64,
}

/// Computes [`Sums`] over what is fed to it.
pub struct SumHasher {
    sha256: Sha256,
    portage: Option<(md5::Md5, sha1::Sha1)>,
    len: u64,
}

impl SumHasher {
    pub fn new(portage: bool) -> Self {
        SumHasher {
            sha256: Sha256::new(),
            portage: portage.then(|| (md5::Md5::new(), sha1::Sha1::new())),
            len: 0,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        if let Some((m, s)) = &mut self.portage {
            m.update(bytes);
            s.update(bytes);
        }
        self.len += bytes.len() as u64;
    }

    pub fn finish(self) -> Sums {
        let (md5, sha1) = match self.portage {
            Some((m, s)) => (Some(hex(&m.finalize())), Some(hex(&s.finalize()))),
            None => (None, None),
        };
        Sums {
            sha256: hex(&self.sha256.finalize()),
            md5,
            sha1,
            len: self.len,
        }
    }
}

/// [`Sums`] of what is left to read of `f` (about `len_hint` bytes).
pub fn sums_sized(f: &mut File, len_hint: u64, portage: bool) -> io::Result<Sums> {
    let mut h = SumHasher::new(portage);
    let mut large = vec![0u8; (len_hint.min(256 * 1024) + 1) as usize];
    loop {
        let n = f.read(&mut large)?;
        if n == 0 {
            break;
        }
        h.update(&large[..n]);
    }
    Ok(h.finish())
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_small_and_large_files_alike() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 5, 16 * 1024, 300 * 1024] {
            let path = dir.path().join(format!("f{len}"));
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            std::fs::write(&path, &data).unwrap();
            let (sum, n) = sha256_file(&path).unwrap();
            assert_eq!(n, len as u64);
            assert_eq!(sum, hex(&Sha256::digest(&data)));
        }
        assert_eq!(hex(&[0, 255, 16]), "00ff10", "lowercase");
    }

    #[test]
    fn md5_and_sha1_come_with_sha256_in_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let s = sums_sized(&mut File::open(&path).unwrap(), 3, true).unwrap();
        assert_eq!(s.md5.as_deref(), Some("900150983cd24fb0d6963f7d28e17f72"));
        assert_eq!(
            s.sha1.as_deref(),
            Some("a9993e364706816aba3e25717850c26c9cd0d89d")
        );
        assert_eq!(s.sha256, sha256_file(&path).unwrap().0);
        let plain = sums_sized(&mut File::open(&path).unwrap(), 3, false).unwrap();
        assert!(plain.md5.is_none() && plain.len == 3);
    }
}
