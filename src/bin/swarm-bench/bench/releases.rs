//! Signing and snapshots, in process: milliseconds to sign a package (small and large,
//! through the publish path's `Signer`), and the time and disk a snapshot of many
//! published files takes (hard links: no package data is copied).

use super::{io, BenchError, Scratch};
use build_swarm::domain::binpkg::stand_in_gpkg;
use build_swarm::orchestrator::binhost::index::Header;
use build_swarm::orchestrator::binhost::live::LiveIndex;
use build_swarm::orchestrator::binhost::releases::{Policy, Releases};
use build_swarm::orchestrator::binhost::signing::Signer;
use build_swarm::orchestrator::binhost::verify;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

/// The benchmark's signing key (the tests' Ed25519 key: local only).
pub const KEY: &str = include_str!("../../../../tests/fixtures/signing/test-key.asc");

/// Writes [`KEY`] under `dir`; its path.
pub fn key_file(dir: &Path) -> Result<std::path::PathBuf, BenchError> {
    let path = dir.join("signing-key.asc");
    std::fs::write(&path, KEY).map_err(io("writing the signing key"))?;
    Ok(path)
}

fn signer(dir: &Path) -> Result<Signer, BenchError> {
    Signer::load(&key_file(dir)?, "SWARM_BENCH_NO_PASSPHRASE")
        .map_err(|e| BenchError::Setup(e.to_string()))
}

/// Signing a gpkg of each size in `sizes` (payload bytes), `samples` times each: ms per
/// package (median, p99) and MB/s for the large ones.
pub fn sign(sizes: &[usize], samples: usize, keep: bool) -> Result<Value, BenchError> {
    let scratch = Scratch::new("sign", keep)?;
    let s = signer(&scratch.path)?;
    let mut out = serde_json::Map::new();
    for &size in sizes {
        // Incompressible payload, as a real image.tar.zst is.
        let mut payload = vec![0u8; size];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for b in payload.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let pkg = stand_in_gpkg("bench", "pkg-1.0", None, &payload).map_err(io("making a gpkg"))?;
        let mut ms = Vec::with_capacity(samples);
        let mut signed = Vec::with_capacity(pkg.len() + 4096);
        for _ in 0..samples.max(1) {
            signed.clear();
            let t = Instant::now();
            s.sign_gpkg(&pkg[..], &mut signed)
                .map_err(|e| BenchError::Failed(e.to_string()))?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        s.check_gpkg(&signed[..])
            .map_err(|e| BenchError::Failed(format!("the signed package does not check: {e}")))?;
        ms.sort_by(f64::total_cmp);
        let p = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
        let median = p(0.5);
        out.insert(
            format!("{size}"),
            json!({
                "package_bytes": pkg.len(),
                "ms_p50": round3(median),
                "ms_p99": round3(p(0.99)),
                "mb_per_s": round3(pkg.len() as f64 / 1e6 / (median / 1000.0)),
            }),
        );
    }
    Ok(json!({ "benchmark": "sign", "key": "ed25519", "by_payload_bytes": out }))
}

/// A snapshot of `files` published packages: seconds, and the disk it takes beyond the
/// package data it links.
pub fn snapshot(files: usize, dir: Option<&Path>, keep: bool) -> Result<Value, BenchError> {
    let scratch = match dir {
        Some(d) => Scratch::new_in(d, "snapshot", keep)?,
        None => Scratch::new("snapshot", keep)?,
    };
    let binhost = scratch.path.join("binhost");
    let mut live = LiveIndex::new(Header::default());
    let t = Instant::now();
    let template = stand_in_gpkg("bench", "p-1.0", None, b"payload").map_err(io("gpkg"))?;
    let mut package_bytes = 0u64;
    for i in 0..files {
        let category = format!("cat-{}", i % 100);
        let pf = format!("p{i}-1.0");
        let rel = format!("{category}/{pf}.gpkg.tar");
        let path = binhost.join(&rel);
        if i < 100 {
            std::fs::create_dir_all(path.parent().unwrap_or(&binhost)).map_err(io("mkdir"))?;
        }
        // Each a real gpkg of its own package (metadata read back for its entry).
        let bytes = if i == 0 {
            template.clone()
        } else {
            stand_in_gpkg(&category, &pf, None, b"payload").map_err(io("gpkg"))?
        };
        package_bytes += bytes.len() as u64;
        std::fs::write(&path, &bytes).map_err(io("writing a package"))?;
        let entry = verify::entry_of_file(&binhost, &rel, None).map_err(BenchError::Failed)?;
        live.insert(entry);
    }
    let setup_s = t.elapsed().as_secs_f64();
    live.next_timestamp(build_swarm::sys::clock::unix_now());
    let releases = Releases {
        root: scratch.path.join("binhost.releases"),
        binhost: binhost.clone(),
        gzip: true,
        policy: Policy::default(),
    };
    let free_before = free_bytes(&scratch.path);
    let t = Instant::now();
    let capture = live.capture();
    let meta = releases
        .take_snapshot(Some("bench"), &capture, build_swarm::sys::clock::unix_now())
        .map_err(|e| BenchError::Failed(e.to_string()))?;
    let snapshot_s = t.elapsed().as_secs_f64();
    let free_after = free_bytes(&scratch.path);
    let own = own_bytes(&releases.snapshot_dir("bench"));
    Ok(json!({
        "benchmark": "snapshot",
        "files": meta.packages,
        "package_bytes": package_bytes,
        "setup_s": round3(setup_s),
        "snapshot_s": round3(snapshot_s),
        "files_per_s": (meta.packages as f64 / snapshot_s.max(1e-9)).round(),
        "snapshot_own_bytes": own,
        "filesystem_bytes_used": free_before.saturating_sub(free_after),
    }))
}

/// Bytes allocated to what only the snapshot holds (its directories, its index): files
/// with one link and directories, by allocated blocks.
fn own_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        if let Ok(m) = std::fs::metadata(&d) {
            total += m.blocks() * 512;
        }
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                todo.push(e.path());
            } else if m.nlink() == 1 {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

fn free_bytes(path: &Path) -> u64 {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return 0;
    };
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statvfs the call fills.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return 0;
    }
    (s.f_bfree as u64).saturating_mul(s.f_frsize as u64)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
