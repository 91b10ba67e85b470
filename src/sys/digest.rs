//! SHA-256 of files, as lowercase hex: what a drone reports for its artifact and what the
//! orchestrator checks before it publishes one.

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
}
