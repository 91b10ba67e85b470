//! Unpredictable bytes and ids: [`fill`] reads the kernel's generator (`getrandom(2)`),
//! [`KeyedIds`] turns one 32-byte key from it into ids nobody without the key can predict
//! (SHA-256 of key and number), without a system call per id.

use sha2::{Digest, Sha256};

/// Fills `buf` from the kernel's random generator.
pub fn fill(buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: the pointer and length describe `rest`, which is valid for writes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

/// `bytes` random bytes as lower-case hex.
pub fn hex_token(bytes: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; bytes];
    fill(&mut buf)?;
    Ok(crate::sys::digest::hex(&buf))
}

/// Ids of `bits` bits (at most 64) that nobody without the key can predict: the id of
/// `n` is SHA-256 of the key and `n`. A new key per process, so no (key, n) pair repeats
/// across restarts even where `n` does.
pub struct KeyedIds {
    key: [u8; 32],
    mask: u64,
}

impl KeyedIds {
    pub fn new(bits: u32) -> std::io::Result<Self> {
        let mut key = [0u8; 32];
        fill(&mut key)?;
        Ok(Self::with_key(key, bits))
    }

    /// Ids under a given key (tests).
    pub fn with_key(key: [u8; 32], bits: u32) -> Self {
        KeyedIds {
            key,
            mask: if bits >= 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            },
        }
    }

    pub fn id(&self, n: u64) -> u64 {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(n.to_le_bytes());
        let d = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&d[..8]);
        u64::from_le_bytes(first) & self.mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_gives_different_bytes_each_time() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        fill(&mut a).unwrap();
        fill(&mut b).unwrap();
        assert_ne!(a, b);
        assert_eq!(hex_token(16).unwrap().len(), 32);
    }

    #[test]
    fn ids_stay_within_their_bits_and_differ_per_key() {
        let s = KeyedIds::with_key([1; 32], 53);
        let ids: Vec<u64> = (0..1000).map(|n| s.id(n)).collect();
        assert!(ids.iter().all(|&i| i < 1 << 53));
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        // Not a counter: neighbours are far apart.
        assert!(
            ids.windows(2)
                .filter(|w| w[0].abs_diff(w[1]) < 1 << 20)
                .count()
                < 5
        );
        assert_eq!(s.id(0), ids[0], "the same n gives the same id");
        assert_ne!(KeyedIds::with_key([2; 32], 53).id(0), ids[0]);
    }
}
