//! A minimal gpkg binary package, as a stand-in builder makes one: the outer tar with
//! `gpkg-1`, an uncompressed `metadata.tar` (`metadata/CATEGORY`, `PF`, `EAPI`, `SLOT`, …)
//! and `image.tar` holding the payload. Portage reads its metadata like any other
//! (`BINPKG_COMPRESS=none` gives the same layout); the demo's shell stand-in writes the
//! same shape. Used by the tests, the benchmarks and the demo's simulated builds.

use std::io;

/// The gpkg of `category/pf` (`build_id`: the binpkg-multi-instance number, if any) with
/// `payload` as its one installed file.
pub fn stand_in_gpkg(
    category: &str,
    pf: &str,
    build_id: Option<u32>,
    payload: &[u8],
) -> io::Result<Vec<u8>> {
    let top = match build_id {
        Some(n) => format!("{pf}-{n}"),
        None => pf.to_string(),
    };
    let mut keys: Vec<(&str, String)> = vec![
        ("CATEGORY", category.to_string()),
        ("PF", pf.to_string()),
        ("EAPI", "8".into()),
        ("SLOT", "0".into()),
        ("DEFINED_PHASES", "install".into()),
        ("DESCRIPTION", format!("stand-in build of {category}/{pf}")),
        ("repository", "build-swarm-stand-in".into()),
    ];
    if let Some(n) = build_id {
        keys.push(("BUILD_ID", n.to_string()));
    }
    let mut meta = tar::Builder::new(Vec::new());
    for (k, v) in &keys {
        let value = format!("{v}\n");
        append(&mut meta, &format!("metadata/{k}"), value.as_bytes())?;
    }
    let meta = meta.into_inner()?;
    let mut image = tar::Builder::new(Vec::new());
    append(
        &mut image,
        &format!("image/usr/share/{pf}/payload"),
        payload,
    )?;
    let image = image.into_inner()?;
    let mut outer = tar::Builder::new(Vec::new());
    append(&mut outer, &format!("{top}/gpkg-1"), b"")?;
    append(&mut outer, &format!("{top}/metadata.tar"), &meta)?;
    append(&mut outer, &format!("{top}/image.tar"), &image)?;
    outer.into_inner()
}

fn append(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, path, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::binhost::metadata::{self, BinpkgFormat};

    #[test]
    fn its_metadata_names_the_package() {
        let g = stand_in_gpkg("app-misc", "foo-1.0", Some(3), b"payload").unwrap();
        let m = metadata::read(&mut io::Cursor::new(g), BinpkgFormat::Gpkg).unwrap();
        metadata::check_package(&m, "app-misc", "foo-1.0").unwrap();
        assert_eq!(m["BUILD_ID"], "3\n");
    }
}
