//! The builder of the scheduling benchmark's drones (`swarm-bench build-stub`): a real
//! process per package that "builds" for the package's `estimate_s` × scale and leaves a
//! small gpkg-shaped file in PKGDIR, like the stand-in builder but without the dozen
//! helper processes a shell script spawns (their cost would blur the figures).
//!
//! The estimates are in a directory the benchmark writes: `<dir>/<category>/<pf>` holds
//! the seconds as text.

use super::{io, BenchError};
use std::path::Path;
use std::time::Duration;

/// Writes `estimates/<category>/<pf>` for every package of `graph`.
pub fn write_estimates(graph: &super::graph::Graph, dir: &Path) -> Result<(), BenchError> {
    for p in &graph.packages {
        let path = dir.join(&p.atom);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        std::fs::write(&path, super::graph::estimate(p).to_string())
            .map_err(io(format!("writing {}", path.display())))?;
    }
    Ok(())
}

/// Builds `atom` into `pkgdir`: sleeps, then writes `<category>/<pf>.gpkg.tar` atomically.
pub fn run(
    estimates: &Path,
    scale: f64,
    kb: usize,
    atom: &str,
    pkgdir: &Path,
) -> Result<(), BenchError> {
    let (category, pf) = atom
        .split_once('/')
        .ok_or_else(|| BenchError::Setup(format!("`{atom}` is not category/name-version")))?;
    let est: f64 = std::fs::read_to_string(estimates.join(atom))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1.0);
    println!(">>> Emerging (1 of 1) {atom}::gentoo ({est} s estimated)");
    let secs = (est * scale).max(0.0);
    if secs > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(secs));
    }
    let dir = pkgdir.join(category);
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let dest = dir.join(format!("{pf}.gpkg.tar"));
    let tmp = dir.join(format!(".{pf}.gpkg.tar.tmp"));
    let mut payload = format!("{atom}\n").into_bytes();
    payload.resize(kb * 1024, b'.');
    let content = build_swarm::domain::binpkg::stand_in_gpkg(category, pf, None, &payload)
        .map_err(io("making a gpkg"))?;
    std::fs::write(&tmp, &content).map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, &dest).map_err(io(format!("renaming to {}", dest.display())))?;
    println!(">>> Completed installing {atom} into {}", dest.display());
    Ok(())
}
