//! A binary package's metadata (`CATEGORY`, `PF`, `SLOT`, `USE`, `*DEPEND`, …), read the
//! way Portage reads it: from a gpkg's `metadata.tar[.zst|.xz|.bz2|.gz|.lz4]` member (one
//! file per key under `metadata/`), or from the xpak trailer of a `.tbz2`/`.xpak` file.
//! Blocking reads; everything read is bounded, so a hostile upload cannot exhaust memory.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};

/// Key → value, as stored (not yet whitespace-normalized).
pub type Metadata = BTreeMap<String, String>;

/// At most this much decompressed metadata is read per package.
const MAX_METADATA: u64 = 64 << 20;
/// Values larger than this (an `environment.bz2`, say) are skipped.
const MAX_VALUE: u64 = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinpkgFormat {
    /// `*.gpkg.tar`
    Gpkg,
    /// `*.tbz2` or `*.xpak`: data followed by an xpak trailer.
    Xpak,
}

impl BinpkgFormat {
    /// The format a published path names, if it is a binary package.
    pub fn of(path: &str) -> Option<Self> {
        if path.ends_with(".gpkg.tar") {
            Some(BinpkgFormat::Gpkg)
        } else if path.ends_with(".tbz2") || path.ends_with(".xpak") {
            Some(BinpkgFormat::Xpak)
        } else {
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("reading the package: {0}")]
    Io(#[source] io::Error),
    #[error("not a gpkg: {0}")]
    NotGpkg(String),
    #[error("the gpkg has no metadata member (metadata.tar, or .zst, .xz, .bz2, .gz, .lz4)")]
    NoMetadata,
    #[error("{member}: {source}")]
    Member {
        member: String,
        #[source]
        source: io::Error,
    },
    #[error("{member} holds more than {} MiB of metadata", MAX_METADATA >> 20)]
    TooLarge { member: String },
    #[error("no xpak trailer at the end of the file")]
    NoXpak,
    #[error("damaged xpak: {0}")]
    BadXpak(&'static str),
    #[error("the metadata has no {0}")]
    Missing(&'static str),
    #[error("the metadata is for {found}, not {expected}")]
    OtherPackage { expected: String, found: String },
}

/// Reads the metadata of the binary package `f` holds (from its start), through a buffer
/// (tar headers are 512-byte reads: one system call each without it).
pub fn read<R: Read + Seek>(f: &mut R, format: BinpkgFormat) -> Result<Metadata, MetadataError> {
    f.seek(SeekFrom::Start(0)).map_err(MetadataError::Io)?;
    let mut buffered = io::BufReader::with_capacity(64 * 1024, f);
    match format {
        BinpkgFormat::Gpkg => read_gpkg(&mut buffered),
        BinpkgFormat::Xpak => read_xpak(&mut buffered),
    }
}

/// `CATEGORY/PF` of the metadata, checked against the package it should be.
pub fn check_package(meta: &Metadata, category: &str, pf: &str) -> Result<(), MetadataError> {
    let get = |k: &'static str| {
        meta.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or(MetadataError::Missing(k))
    };
    let (c, p) = (get("CATEGORY")?, get("PF")?);
    if c != category || p != pf {
        return Err(MetadataError::OtherPackage {
            expected: format!("{category}/{pf}"),
            found: format!("{c}/{p}"),
        });
    }
    Ok(())
}

/// A buffer that refuses to grow past [`MAX_METADATA`] (xz decompresses into one).
struct Bounded(Vec<u8>);

impl io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if (self.0.len() + buf.len()) as u64 > MAX_METADATA {
            self.0.resize(MAX_METADATA as usize + 1, 0);
            return Err(io::Error::other("metadata too large"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn member_err(member: &str) -> impl FnOnce(io::Error) -> MetadataError + '_ {
    move |source| MetadataError::Member {
        member: member.to_string(),
        source,
    }
}

fn read_gpkg<R: Read>(f: &mut R) -> Result<Metadata, MetadataError> {
    let mut outer = tar::Archive::new(f);
    let entries = outer
        .entries()
        .map_err(|e| MetadataError::NotGpkg(e.to_string()))?;
    for entry in entries {
        let entry = entry.map_err(|e| MetadataError::NotGpkg(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| MetadataError::NotGpkg(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        // `<pf>[-<build id>]/metadata.tar.<c>`: one directory, then the member.
        let mut parts = path.trim_end_matches('/').split('/');
        let (Some(_top), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Some(compression) = name.strip_prefix("metadata.tar") else {
            continue;
        };
        let name = name.to_string();
        let limited = entry.take(MAX_METADATA + 1);
        let inner: Box<dyn Read + '_> = match compression {
            "" => Box::new(limited),
            ".zst" => Box::new(
                ruzstd::decoding::StreamingDecoder::new(limited)
                    .map_err(|e| member_err(&name)(io::Error::other(e)))?,
            ),
            ".gz" => Box::new(flate2::read::GzDecoder::new(limited)),
            ".bz2" => Box::new(bzip2::read::BzDecoder::new(limited)),
            ".lz4" => Box::new(lz4_flex::frame::FrameDecoder::new(limited)),
            ".xz" => {
                let mut out = Bounded(Vec::new());
                let mut input = io::BufReader::new(limited);
                lzma_rs::xz_decompress(&mut input, &mut out).map_err(|e| {
                    if out.0.len() as u64 > MAX_METADATA {
                        MetadataError::TooLarge {
                            member: name.clone(),
                        }
                    } else {
                        member_err(&name)(io::Error::other(e.to_string()))
                    }
                })?;
                Box::new(io::Cursor::new(out.0))
            }
            // `.sig` files and anything unknown next to the member.
            _ => continue,
        };
        return read_metadata_tar(inner.take(MAX_METADATA + 1), &name);
    }
    Err(MetadataError::NoMetadata)
}

/// The inner tar: `metadata/<KEY>` files.
fn read_metadata_tar<R: Read>(r: R, member: &str) -> Result<Metadata, MetadataError> {
    let mut meta = Metadata::new();
    let mut total = 0u64;
    let mut inner = tar::Archive::new(r);
    let entries = inner.entries().map_err(member_err(member))?;
    for entry in entries {
        let mut entry = entry.map_err(member_err(member))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry
            .path()
            .map_err(member_err(member))?
            .to_string_lossy()
            .into_owned();
        let Some(key) = path.strip_prefix("metadata/") else {
            continue;
        };
        total += entry.size();
        if total > MAX_METADATA {
            return Err(MetadataError::TooLarge {
                member: member.to_string(),
            });
        }
        if !is_key(key) || entry.size() > MAX_VALUE {
            continue;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .by_ref()
            .take(MAX_VALUE)
            .read_to_end(&mut bytes)
            .map_err(member_err(member))?;
        meta.insert(
            key.to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        );
    }
    Ok(meta)
}

/// Metadata keys are names like `RDEPEND`, `repository`, `BUILD_ID`.
fn is_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= 64 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn be32(b: &[u8]) -> usize {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
}

/// The xpak trailer: `… XPAKPACK <index len> <data len> <index> <data> XPAKSTOP <xpak
/// len> STOP`.
fn read_xpak<R: Read + Seek>(f: &mut R) -> Result<Metadata, MetadataError> {
    let len = f.seek(SeekFrom::End(0)).map_err(MetadataError::Io)?;
    if len < 8 {
        return Err(MetadataError::NoXpak);
    }
    f.seek(SeekFrom::End(-8)).map_err(MetadataError::Io)?;
    let mut tail = [0u8; 8];
    f.read_exact(&mut tail).map_err(MetadataError::Io)?;
    if &tail[4..] != b"STOP" {
        return Err(MetadataError::NoXpak);
    }
    let xpak_len = be32(&tail[..4]) as u64;
    if xpak_len < 24 || xpak_len + 8 > len || xpak_len > MAX_METADATA {
        return Err(MetadataError::BadXpak("its length does not fit the file"));
    }
    f.seek(SeekFrom::Start(len - 8 - xpak_len))
        .map_err(MetadataError::Io)?;
    let mut x = vec![0u8; xpak_len as usize];
    f.read_exact(&mut x).map_err(MetadataError::Io)?;
    if &x[..8] != b"XPAKPACK" || &x[x.len() - 8..] != b"XPAKSTOP" {
        return Err(MetadataError::BadXpak("no XPAKPACK/XPAKSTOP marks"));
    }
    let (index_len, data_len) = (be32(&x[8..12]), be32(&x[12..16]));
    if 16 + index_len + data_len + 8 != x.len() {
        return Err(MetadataError::BadXpak(
            "index and data lengths do not add up",
        ));
    }
    let index = &x[16..16 + index_len];
    let data = &x[16 + index_len..16 + index_len + data_len];
    let mut meta = Metadata::new();
    let mut at = 0;
    while at < index.len() {
        let field = |from: usize, n: usize| {
            index
                .get(from..from + n)
                .ok_or(MetadataError::BadXpak("an index entry runs past the index"))
        };
        let name_len = be32(field(at, 4)?);
        let name = String::from_utf8_lossy(field(at + 4, name_len)?).into_owned();
        let off = be32(field(at + 4 + name_len, 4)?);
        let n = be32(field(at + 8 + name_len, 4)?);
        at += 12 + name_len;
        let value = data
            .get(off..off + n)
            .ok_or(MetadataError::BadXpak("a value runs past the data"))?;
        if is_key(&name) && (n as u64) <= MAX_VALUE {
            meta.insert(name, String::from_utf8_lossy(value).into_owned());
        }
    }
    Ok(meta)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A gpkg with these metadata keys (uncompressed members), as a stand-in builder
    /// makes one.
    pub fn gpkg(dir: &str, keys: &[(&str, &str)]) -> Vec<u8> {
        let mut inner = tar::Builder::new(Vec::new());
        for (k, v) in keys {
            let mut h = tar::Header::new_gnu();
            h.set_size(v.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            inner
                .append_data(&mut h, format!("metadata/{k}"), v.as_bytes())
                .unwrap();
        }
        let inner = inner.into_inner().unwrap();
        let mut outer = tar::Builder::new(Vec::new());
        for (name, data) in [("gpkg-1", &b""[..]), ("metadata.tar", &inner[..])] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            outer
                .append_data(&mut h, format!("{dir}/{name}"), data)
                .unwrap();
        }
        outer.into_inner().unwrap()
    }

    fn xpak(keys: &[(&str, &str)]) -> Vec<u8> {
        let (mut index, mut data): (Vec<u8>, Vec<u8>) = (Vec::new(), Vec::new());
        for (k, v) in keys {
            index.extend((k.len() as u32).to_be_bytes());
            index.extend(k.as_bytes());
            index.extend((data.len() as u32).to_be_bytes());
            index.extend((v.len() as u32).to_be_bytes());
            data.extend(v.as_bytes());
        }
        let mut x = b"XPAKPACK".to_vec();
        x.extend((index.len() as u32).to_be_bytes());
        x.extend((data.len() as u32).to_be_bytes());
        x.extend(index);
        x.extend(data);
        x.extend(b"XPAKSTOP");
        let mut f = b"BZh9 not really bzip2".to_vec();
        let n = x.len() as u32;
        f.extend(x);
        f.extend(n.to_be_bytes());
        f.extend(b"STOP");
        f
    }

    const KEYS: &[(&str, &str)] = &[
        ("CATEGORY", "app-misc\n"),
        ("PF", "foo-1.0\n"),
        ("SLOT", "0/1\n"),
        ("RDEPEND", "dev-libs/a\n   dev-libs/b\n"),
    ];

    #[test]
    fn a_gpkg_and_an_xpak_give_the_same_keys() {
        let g = read(
            &mut io::Cursor::new(gpkg("foo-1.0-1", KEYS)),
            BinpkgFormat::Gpkg,
        )
        .unwrap();
        let x = read(&mut io::Cursor::new(xpak(KEYS)), BinpkgFormat::Xpak).unwrap();
        assert_eq!(g, x);
        assert_eq!(g["PF"], "foo-1.0\n");
        check_package(&g, "app-misc", "foo-1.0").unwrap();
        let e = check_package(&g, "app-misc", "bar-1.0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the metadata is for app-misc/foo-1.0, not app-misc/bar-1.0"
        );
    }

    #[test]
    fn compressed_metadata_members_are_read() {
        // gzip (the one encoder at hand); zstd, xz, bz2 and lz4 are exercised against
        // packages real Portage made (tests/it/portage).
        let plain = gpkg("foo-1.0", KEYS);
        let mut outer = tar::Archive::new(io::Cursor::new(plain));
        let mut inner = Vec::new();
        for e in outer.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().ends_with("metadata.tar") {
                e.read_to_end(&mut inner).unwrap();
            }
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &inner).unwrap();
        let gz = gz.finish().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(gz.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "foo-1.0/metadata.tar.gz", &gz[..])
            .unwrap();
        let m = read(
            &mut io::Cursor::new(b.into_inner().unwrap()),
            BinpkgFormat::Gpkg,
        )
        .unwrap();
        assert_eq!(m["CATEGORY"], "app-misc\n");
    }

    #[test]
    fn damaged_packages_are_refused_with_a_reason() {
        let no_meta = {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            h.set_cksum();
            b.append_data(&mut h, "foo-1.0/gpkg-1", &b""[..]).unwrap();
            b.into_inner().unwrap()
        };
        assert!(matches!(
            read(&mut io::Cursor::new(no_meta), BinpkgFormat::Gpkg),
            Err(MetadataError::NoMetadata)
        ));
        let full = gpkg("foo-1.0", KEYS);
        let truncated = full[..700].to_vec();
        assert!(read(&mut io::Cursor::new(truncated), BinpkgFormat::Gpkg).is_err());
        assert!(matches!(
            read(
                &mut io::Cursor::new(b"random bytes".to_vec()),
                BinpkgFormat::Xpak
            ),
            Err(MetadataError::NoXpak)
        ));
        let mut bad = xpak(KEYS);
        let n = bad.len();
        bad[n - 8..n - 4].copy_from_slice(&9999u32.to_be_bytes());
        assert!(matches!(
            read(&mut io::Cursor::new(bad), BinpkgFormat::Xpak),
            Err(MetadataError::BadXpak(_))
        ));
        let m = read(
            &mut io::Cursor::new(gpkg("x", &[("PF", "a-1")])),
            BinpkgFormat::Gpkg,
        )
        .unwrap();
        assert!(matches!(
            check_package(&m, "c", "a-1"),
            Err(MetadataError::Missing("CATEGORY"))
        ));
    }
}
