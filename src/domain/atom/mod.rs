//! Gentoo package atoms as the swarm accepts them: `category/name-version`
//! (docs/contract.md §3), checked against the Package Manager Specification (PMS).
//!
//! The parser is strict and hand-written. It never panics: every string
//! operation below either works on bytes or slices at the byte index of an
//! ASCII character, and non-ASCII input is refused before any splitting.
//!
//! Rules applied by [`Atom::parse`], in this order (the first one broken
//! decides the error):
//!
//! 1. not empty, at most [`MAX_ATOM_LEN`] bytes;
//! 2. only the characters `A-Z a-z 0-9 + _ . - /` (whitespace, shell
//!    metacharacters, control characters and non-ASCII are refused, and the
//!    first offending character is named);
//! 3. no `..` anywhere;
//! 4. exactly one `/`, with a non-empty category before it and a non-empty
//!    package part after it;
//! 5. the category (PMS 3.1.1) uses `[A-Za-z0-9+_.-]` and does not start
//!    with `-`, `.` or `+`;
//! 6. the package part is split into name and version at the hyphen that
//!    leaves the *shortest* suffix matching the PMS version syntax (which
//!    may include `-rN`). This split is the only possible one: a version
//!    contains no hyphen except the one in `-rN`, and `rN` alone is not a
//!    version, so no longer suffix can be a version as well;
//! 7. the name (PMS 3.1.2) uses `[A-Za-z0-9+_-]`, does not start with `-` or
//!    `+`, and does not end in a hyphen followed by something matching the
//!    version syntax. Because the split in 6 is unique, an atom such as
//!    `cat/x86-64-1.0` (name `x86-64`) is refused rather than re-split.

use std::fmt;
use std::str::FromStr;

/// The longest atom accepted, in bytes.
pub const MAX_ATOM_LEN: usize = 256;

/// A fully versioned package: `category/name-version`.
///
/// `version` includes the `-rN` revision, if any.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Atom {
    pub category: String,
    pub name: String,
    pub version: String,
}

/// Why a string is not an [`Atom`]. Every message names the input in
/// backticks (escaped and shortened if need be) and says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtomError {
    #[error("an empty string is not a valid atom: expected `category/name-version`")]
    Empty,
    /// `input` holds only the start of the (over-long) input.
    #[error("`{}` is not a valid atom: it is {len} bytes long, at most {max} are allowed", Shown(.input), max = MAX_ATOM_LEN)]
    TooLong { input: String, len: usize },
    #[error("`{}` is not a valid atom: whitespace is not allowed", Shown(.input))]
    Whitespace { input: String },
    #[error("`{}` is not a valid atom: {}", Shown(.input), CharProblem(*.ch))]
    ForbiddenChar { input: String, ch: char },
    #[error("`{}` is not a valid atom: `..` is not allowed", Shown(.input))]
    DotDot { input: String },
    #[error("`{}` is not a valid atom: {}", Shown(.input), SlashProblem(*.count))]
    SlashCount { input: String, count: usize },
    #[error("`{}` is not a valid atom: the category before `/` is empty", Shown(.input))]
    EmptyCategory { input: String },
    #[error("`{}` is not a valid atom: the package part after `/` is empty", Shown(.input))]
    EmptyPackage { input: String },
    #[error("`{}` is not a valid atom: category `{}` {reason}", Shown(.input), Shown(.category))]
    BadCategory {
        input: String,
        category: String,
        reason: &'static str,
    },
    #[error("`{}` is not a valid atom: the package name before the version is empty", Shown(.input))]
    EmptyName { input: String },
    #[error("`{}` is not a valid atom: package name `{}` {reason}", Shown(.input), Shown(.name))]
    BadName {
        input: String,
        name: String,
        reason: &'static str,
    },
    #[error("`{}` is not a valid atom: it has no version (expected `category/name-version`, e.g. `app-misc/foo-1.0`)", Shown(.input))]
    MissingVersion { input: String },
    #[error("`{}` is not a valid atom: `{}` is not a valid version (expected e.g. `1.2.3`, `5.27.10-r1`, `1.0_rc2`, `2.4a_p20240101`)", Shown(.input), Shown(.version))]
    InvalidVersion { input: String, version: String },
}

impl AtomError {
    /// The offending input (only its start for [`AtomError::TooLong`]).
    pub fn input(&self) -> &str {
        match self {
            AtomError::Empty => "",
            AtomError::TooLong { input, .. }
            | AtomError::Whitespace { input }
            | AtomError::ForbiddenChar { input, .. }
            | AtomError::DotDot { input }
            | AtomError::SlashCount { input, .. }
            | AtomError::EmptyCategory { input }
            | AtomError::EmptyPackage { input }
            | AtomError::BadCategory { input, .. }
            | AtomError::EmptyName { input }
            | AtomError::BadName { input, .. }
            | AtomError::MissingVersion { input }
            | AtomError::InvalidVersion { input, .. } => input,
        }
    }
}

impl Atom {
    /// Parses a strict `category/name-version` (no leading `=`, no `::repo`,
    /// no slot). See the module documentation for the rules.
    pub fn parse(s: &str) -> Result<Atom, AtomError> {
        if s.is_empty() {
            return Err(AtomError::Empty);
        }
        if s.len() > MAX_ATOM_LEN {
            return Err(AtomError::TooLong {
                input: prefix(s, 64).to_string(),
                len: s.len(),
            });
        }
        let input = || s.to_string();
        for ch in s.chars() {
            if ch.is_whitespace() {
                return Err(AtomError::Whitespace { input: input() });
            }
            if !is_atom_char(ch) {
                return Err(AtomError::ForbiddenChar { input: input(), ch });
            }
        }
        // From here on the input is pure ASCII, so any byte index is a char
        // boundary.
        if s.contains("..") {
            return Err(AtomError::DotDot { input: input() });
        }
        let count = s.bytes().filter(|&b| b == b'/').count();
        let Some((category, package)) = s.split_once('/').filter(|_| count == 1) else {
            return Err(AtomError::SlashCount {
                input: input(),
                count,
            });
        };
        if category.is_empty() {
            return Err(AtomError::EmptyCategory { input: input() });
        }
        if package.is_empty() {
            return Err(AtomError::EmptyPackage { input: input() });
        }
        if let Some(reason) = category_problem(category) {
            return Err(AtomError::BadCategory {
                input: input(),
                category: category.to_string(),
                reason,
            });
        }
        let Some((name, version)) = split_name_version(package) else {
            return Err(match version_candidate(package) {
                Some(version) => AtomError::InvalidVersion {
                    input: input(),
                    version: version.to_string(),
                },
                None => AtomError::MissingVersion { input: input() },
            });
        };
        if name.is_empty() {
            return Err(AtomError::EmptyName { input: input() });
        }
        if let Some(reason) = name_problem(name) {
            return Err(AtomError::BadName {
                input: input(),
                name: name.to_string(),
                reason,
            });
        }
        Ok(Atom {
            category: category.to_string(),
            name: name.to_string(),
            version: version.to_string(),
        })
    }

    /// `name-version` (Portage's `PF`).
    pub fn pf(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}-{}", self.category, self.name, self.version)
    }
}

impl FromStr for Atom {
    type Err = AtomError;

    fn from_str(s: &str) -> Result<Atom, AtomError> {
        Atom::parse(s)
    }
}

impl serde::Serialize for Atom {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Atom {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Atom, D::Error> {
        struct AtomVisitor;

        impl serde::de::Visitor<'_> for AtomVisitor {
            type Value = Atom;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an atom string like `category/name-version`")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Atom, E> {
                Atom::parse(v).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(AtomVisitor)
    }
}

/// PMS version syntax:
/// `\d+(\.\d+)*[a-z]?((_alpha|_beta|_pre|_rc|_p)\d*)*(-r\d+)?`.
pub fn is_valid_version(v: &str) -> bool {
    let b = v.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| -> usize {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if digits(&mut i) == 0 {
        return false;
    }
    while b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if b.get(i).is_some_and(u8::is_ascii_lowercase) {
        i += 1;
    }
    while b.get(i) == Some(&b'_') {
        i += 1;
        let rest = b.get(i..).unwrap_or_default();
        // `pre` before `p`: the only overlapping pair.
        let Some(suffix) = [&b"alpha"[..], b"beta", b"pre", b"rc", b"p"]
            .into_iter()
            .find(|s| rest.starts_with(s))
        else {
            return false;
        };
        i += suffix.len();
        digits(&mut i);
    }
    if i < b.len() {
        if !b.get(i..).unwrap_or_default().starts_with(b"-r") {
            return false;
        }
        i += 2;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

fn is_atom_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '_' | '.' | '-' | '/')
}

fn category_problem(category: &str) -> Option<&'static str> {
    if category.starts_with(['-', '.', '+']) {
        return Some("must not start with `-`, `.` or `+`");
    }
    if !category
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '_' | '.' | '-'))
    {
        return Some("may contain only letters, digits, `+`, `_`, `.` and `-`");
    }
    None
}

fn name_problem(name: &str) -> Option<&'static str> {
    if name.starts_with(['-', '+']) {
        return Some("must not start with `-` or `+`");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '_' | '-'))
    {
        return Some("may contain only letters, digits, `+`, `_` and `-`");
    }
    if name
        .match_indices('-')
        .any(|(i, _)| is_valid_version(name.get(i + 1..).unwrap_or_default()))
    {
        return Some("must not end in a hyphen followed by something that looks like a version");
    }
    None
}

/// Splits `name-version` at the hyphen leaving the shortest valid version.
fn split_name_version(package: &str) -> Option<(&str, &str)> {
    package.match_indices('-').rev().find_map(|(i, _)| {
        let name = package.get(..i)?;
        let version = package.get(i + 1..)?;
        is_valid_version(version).then_some((name, version))
    })
}

/// For error messages only: the part that was probably meant as a version,
/// i.e. everything after the last hyphen that is followed by a digit.
fn version_candidate(package: &str) -> Option<&str> {
    package
        .match_indices('-')
        .rev()
        .filter_map(|(i, _)| package.get(i + 1..))
        .find(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// At most `max` bytes of `s`, cut at a char boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// Shows user input safely inside an error message: printable ASCII as is,
/// everything else (control characters, non-ASCII) escaped like `\u{e9}`, and
/// long input shortened with `...`, so that messages stay one short line and
/// cannot smuggle terminal escapes or bidi overrides into logs.
pub(crate) struct Shown<'a>(pub(crate) &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX_CHARS: usize = 100;
        for (n, c) in self.0.chars().enumerate() {
            if n == MAX_CHARS {
                return f.write_str("...");
            }
            if matches!(c, ' '..='~') {
                fmt::Write::write_char(f, c)?;
            } else {
                write!(f, "{}", c.escape_default())?;
            }
        }
        Ok(())
    }
}

struct CharProblem(char);

impl fmt::Display for CharProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        if c.is_control() {
            write!(f, "control character U+{:04X} is not allowed", u32::from(c))
        } else if !c.is_ascii() {
            write!(
                f,
                "non-ASCII character U+{:04X} is not allowed",
                u32::from(c)
            )
        } else if c == '`' {
            f.write_str("the backtick character is not allowed")
        } else {
            write!(f, "character `{c}` is not allowed")
        }
    }
}

struct SlashProblem(usize);

impl fmt::Display for SlashProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("it has no `/` between category and package"),
            n => write!(
                f,
                "it has {n} `/` characters, exactly one (between category and package) is allowed"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
