//! `binhost_dir/Packages` (and `Packages.gz`) on disk: written whole under a temporary
//! name, synced and renamed, so a reader — or a crash — only ever sees a complete index.
//! `Packages.gz` is written first, so the two never disagree for long and the compressed
//! one Portage fetches first is never the older. Both get the index's `TIMESTAMP` as
//! modification time, as Portage does. Blocking file work.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub const INDEX: &str = "Packages";
pub const INDEX_GZ: &str = "Packages.gz";
/// Temporary files are hidden and carry this mark (and are removed at start).
const TEMP_MARK: &str = ".Packages.tmp-";

#[derive(Debug, thiserror::Error)]
#[error("writing {path}: {source}")]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn err(path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| WriteError {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `text` as `dir/Packages` (and, with `gzip`, `dir/Packages.gz` at gzip's fastest
/// level: a large index is written every second or so, and level 6 cost twice the CPU for
/// a tenth less size; without, any `Packages.gz` is removed so none is ever stale), each
/// complete before it is renamed into place; durable when this returns.
pub fn write(dir: &Path, text: &str, timestamp: u64, gzip: bool) -> Result<(), WriteError> {
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(timestamp);
    let gz_path = dir.join(INDEX_GZ);
    if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(text.as_bytes()).map_err(err(&gz_path))?;
        let bytes = enc.finish().map_err(err(&gz_path))?;
        replace(dir, INDEX_GZ, &bytes, mtime)?;
    } else {
        match fs::remove_file(&gz_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(&gz_path)(e)),
        }
    }
    replace(dir, INDEX, text.as_bytes(), mtime)?;
    crate::orchestrator::publish::sync_dir(dir).map_err(err(dir))
}

fn replace(dir: &Path, name: &str, bytes: &[u8], mtime: SystemTime) -> Result<(), WriteError> {
    let tmp = dir.join(format!("{TEMP_MARK}{name}-{}", std::process::id()));
    let dest = dir.join(name);
    let result = (|| {
        let mut f = File::create(&tmp).map_err(err(&tmp))?;
        f.write_all(bytes).map_err(err(&tmp))?;
        f.set_modified(mtime).map_err(err(&tmp))?;
        f.sync_all().map_err(err(&tmp))?;
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(0o644))
                .map_err(err(&tmp))?;
        }
        fs::rename(&tmp, &dest).map_err(err(&dest))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The index on disk, if there is one.
pub fn read(dir: &Path) -> io::Result<Option<String>> {
    match fs::read(dir.join(INDEX)) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Temporary files a crash left behind; removed. Returns how many.
pub fn remove_temps(dir: &Path) -> usize {
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_MARK))
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
}

/// Whether `name` (a file name) is one of this module's temporary files.
pub fn is_temp(name: &str) -> bool {
    name.starts_with(TEMP_MARK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn both_files_are_written_whole_with_the_timestamp_as_mtime() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "VERSION: 0\n\n", 1_700_000_000, true).unwrap();
        let text = read(dir.path()).unwrap().unwrap();
        assert_eq!(text, "VERSION: 0\n\n");
        let mut gz = String::new();
        flate2::read::GzDecoder::new(File::open(dir.path().join(INDEX_GZ)).unwrap())
            .read_to_string(&mut gz)
            .unwrap();
        assert_eq!(gz, text);
        for name in [INDEX, INDEX_GZ] {
            let m = fs::metadata(dir.path().join(name)).unwrap();
            assert_eq!(m.mtime(), 1_700_000_000);
        }
        // Without gzip a stale Packages.gz goes.
        write(
            dir.path(),
            "VERSION: 0\nPACKAGES: 0\n\n",
            1_700_000_001,
            false,
        )
        .unwrap();
        assert!(!dir.path().join(INDEX_GZ).exists());
        File::create(dir.path().join(format!("{TEMP_MARK}Packages-1"))).unwrap();
        assert_eq!(remove_temps(dir.path()), 1);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
