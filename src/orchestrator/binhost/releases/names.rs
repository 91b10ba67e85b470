//! What a snapshot or a channel may be called: each names a directory, and a channel is
//! also the first segment of its URL under `/binhost/`.

use super::ReleaseError;

/// A snapshot name: 1–64 letters, digits, `.`, `_` or `-`, starting with a letter or
/// digit (so never `..`, never hidden, never a path), not `live` (the live binhost in a
/// diff).
pub fn check_snapshot(name: &str) -> Result<(), ReleaseError> {
    let ok = (1..=64).contains(&name.len())
        && name != super::snapshot::LIVE
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ReleaseError::InvalidName {
            what: "snapshot",
            name: name.to_string(),
            rule: "use 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit (not 'live')",
        })
    }
}

/// A channel name: 1–32 lower-case letters, digits or `_`, starting with a letter, not
/// `virtual`. Gentoo's category names all contain `-` (but `virtual`), so a channel's URL
/// never hides a category of the live binhost.
pub fn check_channel(name: &str) -> Result<(), ReleaseError> {
    let ok = (1..=32).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name != "virtual";
    if ok {
        Ok(())
    } else {
        Err(ReleaseError::InvalidName {
            what: "channel",
            name: name.to_string(),
            rule: "use 1–32 lower-case letters, digits or '_', starting with a letter, not 'virtual' (no '-': it could hide a category of the binhost)",
        })
    }
}

/// The default name of a snapshot taken at `now` (unix seconds): `YYYYMMDD-HHMMSS` (UTC).
pub fn default_snapshot_name(now: u64) -> String {
    let (y, m, d, hh, mm, ss) = crate::sys::clock::utc(now);
    format!("{y:04}{m:02}{d:02}-{hh:02}{mm:02}{ss:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_their_directory_are_refused() {
        for bad in [
            "",
            "a/b",
            "..",
            ".hidden",
            "-x",
            "a b",
            "x\0",
            "live",
            &"a".repeat(65),
        ] {
            let e = check_snapshot(bad).unwrap_err().to_string();
            assert!(e.starts_with("snapshot name `"), "{e}");
        }
        for good in ["2026-11-30", "v1.2_rc", "A"] {
            check_snapshot(good).unwrap();
        }
        for bad in ["", "Stable", "stable-1", "1st", "virtual", "a.b", "a/b"] {
            assert!(check_channel(bad).is_err(), "{bad}");
        }
        check_channel("stable").unwrap();
        check_channel("testing_2").unwrap();
    }

    #[test]
    fn default_names_are_utc_dates() {
        assert_eq!(default_snapshot_name(0), "19700101-000000");
        assert_eq!(default_snapshot_name(1_796_083_199), "20261130-235959");
        assert_eq!(default_snapshot_name(951_782_400), "20000229-000000");
    }
}
