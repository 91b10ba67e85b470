//! Drone names: shown in URLs and typed on the command line, so kept plain.

/// A drone name that is not 1-128 letters, digits, `-`, `_` or `.`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("drone name `{}` is not valid: use 1-128 letters, digits, '-', '_' or '.'", .0.escape_default())]
pub struct BadDroneName(pub String);

pub fn check_drone_name(name: &str) -> Result<(), BadDroneName> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(BadDroneName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_only() {
        for ok in ["d1", "build-host_2.lan", &"a".repeat(128)] {
            assert!(check_drone_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "ä", &"a".repeat(129)] {
            assert!(check_drone_name(bad).is_err(), "{bad}");
        }
        let e = check_drone_name("a\nb").unwrap_err().to_string();
        assert!(e.contains("`a\\nb`"), "{e}");
    }
}
