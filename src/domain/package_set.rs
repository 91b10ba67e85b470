//! Package sets as accepted by `build-swarm submit FILE` and
//! `POST /api/v1/packages` (SPEC §3): plain text, `emerge --pretend` output,
//! or JSON with dependencies and estimates.
//!
//! Parsing either yields a whole, validated [`PackageSet`] or a [`SetError`];
//! nothing partial is ever returned. All checks are iterative and roughly
//! linear in the size of the input, so sets of 100,000 packages with long
//! dependency chains are fine.
//!
//! Format detection (after dropping a UTF-8 byte-order mark):
//! * first non-whitespace character `{` → JSON;
//! * otherwise, any line that (trimmed, with ANSI colour codes removed)
//!   starts with `[ebuild` or `[binary` → Portage;
//! * otherwise → plain text.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

use super::atom::{Atom, AtomError, Shown};

/// One package of a set.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageSpec {
    pub atom: Atom,
    /// Atoms of the same set this one must be built after (JSON only; empty
    /// for the other formats). Deduplicated, in first-mention order.
    pub deps: Vec<Atom>,
    /// Expected build time in seconds (JSON only), finite and `>= 0`.
    pub estimate_s: Option<f64>,
}

/// Which of the three accepted formats a set was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SetFormat {
    Plain,
    Portage,
    Json,
}

impl fmt::Display for SetFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SetFormat::Plain => "plain",
            SetFormat::Portage => "portage",
            SetFormat::Json => "json",
        })
    }
}

/// A validated package set.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageSet {
    pub format: SetFormat,
    /// In set order (file order, emerge order, or JSON array order).
    pub packages: Vec<PackageSpec>,
    /// `[binary]`, `[uninstall]`, `[blocks]` and `[nomerge]` lines skipped
    /// (Portage only; 0 for the other formats).
    pub skipped: usize,
}

/// Where in the input something was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A 1-based line number (plain and Portage formats).
    Line(usize),
    /// A 0-based index into the JSON `packages` array.
    Index(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Index(i) => write!(f, "packages[{i}]"),
        }
    }
}

/// Why a package set was refused. `Display` is one sentence naming the line
/// (or JSON index) and the offending atom or text in backticks.
///
/// Two fields are boxed only to keep the type small enough for
/// `clippy::result_large_err`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SetError {
    /// `offset` is the byte offset of the first invalid byte.
    #[error("line {line}: the package set is not valid UTF-8 (invalid byte at offset {offset})")]
    InvalidUtf8 { line: usize, offset: usize },
    #[error("the package set is empty")]
    Empty,
    /// Portage output whose every bracket line was skipped.
    #[error("the package set is empty: nothing to build ({skipped} `[binary]`, `[uninstall]`, `[blocks]` or `[nomerge]` lines skipped)")]
    NothingToBuild { skipped: usize },
    #[error("{at}: {error}")]
    InvalidAtom { at: Location, error: AtomError },
    #[error("line {line}: `{}` holds more than one atom; list one atom per line", Shown(.text))]
    MultipleAtoms { line: usize, text: String },
    #[error("line {line}: `{}` is not a valid emerge line: {reason}", Shown(.text))]
    BadPortageLine {
        line: usize,
        text: String,
        reason: &'static str,
    },
    #[error("{at}: `{atom}` is listed twice (first {})", FirstAt(*.first))]
    Duplicate {
        at: Location,
        atom: Atom,
        first: Location,
    },
    #[error("packages[{index}]: the \"atom\" field is missing")]
    MissingAtom { index: usize },
    #[error("`{atom}`: invalid dependency: {error}")]
    InvalidDep { atom: Atom, error: Box<AtomError> },
    #[error("`{atom}` depends on `{dep}`, which is not in the set")]
    UnknownDep { atom: Atom, dep: Box<Atom> },
    #[error("`{atom}` depends on itself")]
    SelfDep { atom: Atom },
    /// `path` starts and ends with the same atom; each depends on the next.
    #[error("dependency cycle: {}", CyclePath(.path))]
    Cycle { path: Vec<Atom> },
    #[error("invalid JSON: {message}")]
    InvalidJson { message: String },
    #[error("`{atom}`: estimate_s must be a finite number >= 0")]
    BadEstimate { atom: Atom },
}

/// Parses a request body or file: bytes that must be UTF-8.
pub fn parse_package_set_bytes(body: &[u8]) -> Result<PackageSet, SetError> {
    match std::str::from_utf8(body) {
        Ok(text) => parse_package_set(text),
        Err(e) => {
            let offset = e.valid_up_to();
            let line = body
                .get(..offset)
                .unwrap_or_default()
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            Err(SetError::InvalidUtf8 { line, offset })
        }
    }
}

/// Parses a package set in any of the three formats (see the module docs).
pub fn parse_package_set(text: &str) -> Result<PackageSet, SetError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with('{') {
        return parse_json(text);
    }
    let is_portage = text.lines().any(|line| {
        let line = strip_ansi(line);
        let line = line.trim_start();
        line.starts_with("[ebuild") || line.starts_with("[binary")
    });
    if is_portage {
        parse_portage(text)
    } else {
        parse_plain(text)
    }
}

fn parse_plain(text: &str) -> Result<PackageSet, SetError> {
    let mut atoms = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = strip_comment(raw).trim();
        if content.is_empty() {
            continue;
        }
        let candidate = content.strip_prefix('=').unwrap_or(content);
        match Atom::parse(candidate) {
            Ok(atom) => atoms.push((Location::Line(line), atom)),
            Err(error) => {
                let mut tokens = content.split_whitespace();
                let several = tokens.clone().nth(1).is_some()
                    && tokens.all(|t| Atom::parse(t.strip_prefix('=').unwrap_or(t)).is_ok());
                return Err(if several {
                    SetError::MultipleAtoms {
                        line,
                        text: content.to_string(),
                    }
                } else {
                    SetError::InvalidAtom {
                        at: Location::Line(line),
                        error,
                    }
                });
            }
        }
    }
    finish_simple(SetFormat::Plain, atoms, 0)
}

fn parse_portage(text: &str) -> Result<PackageSet, SetError> {
    let mut atoms = Vec::new();
    let mut skipped = 0;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let clean = strip_ansi(raw);
        let content = clean.trim();
        let Some(after_open) = content.strip_prefix('[') else {
            continue;
        };
        let bad = |reason| SetError::BadPortageLine {
            line,
            text: content.to_string(),
            reason,
        };
        let Some((inside, rest)) = after_open.split_once(']') else {
            return Err(bad("it has no closing `]`"));
        };
        match inside.split_whitespace().next().unwrap_or_default() {
            "ebuild" => {}
            "binary" | "uninstall" | "blocks" | "nomerge" => {
                skipped += 1;
                continue;
            }
            _ => {
                return Err(bad(
                    "expected `[ebuild ...]`, `[binary ...]`, `[uninstall ...]`, `[blocks ...]` or `[nomerge ...]`",
                ))
            }
        }
        let Some(token) = rest.split_whitespace().next() else {
            return Err(bad("no package after `]`"));
        };
        // `cat/name-ver::repo` or, with --verbose, `cat/name-ver:slot/sub::repo`.
        let atom_text = token.split(':').next().unwrap_or_default();
        match Atom::parse(atom_text) {
            Ok(atom) => atoms.push((Location::Line(line), atom)),
            Err(error) => {
                return Err(SetError::InvalidAtom {
                    at: Location::Line(line),
                    error,
                })
            }
        }
    }
    finish_simple(SetFormat::Portage, atoms, skipped)
}

/// Plain and Portage sets: no dependencies, so only emptiness and
/// duplicates are left to check.
fn finish_simple(
    format: SetFormat,
    atoms: Vec<(Location, Atom)>,
    skipped: usize,
) -> Result<PackageSet, SetError> {
    if atoms.is_empty() {
        return Err(if skipped > 0 {
            SetError::NothingToBuild { skipped }
        } else {
            SetError::Empty
        });
    }
    index_atoms(atoms.iter().map(|(at, atom)| (*at, atom)))?;
    Ok(PackageSet {
        format,
        packages: atoms
            .into_iter()
            .map(|(_, atom)| PackageSpec {
                atom,
                deps: Vec::new(),
                estimate_s: None,
            })
            .collect(),
        skipped,
    })
}

/// Maps each atom to its position in the set, refusing duplicates.
fn index_atoms<'a>(
    atoms: impl Iterator<Item = (Location, &'a Atom)>,
) -> Result<HashMap<&'a Atom, (usize, Location)>, SetError> {
    let mut index: HashMap<&Atom, (usize, Location)> = HashMap::new();
    for (i, (at, atom)) in atoms.enumerate() {
        if let Some(&(_, first)) = index.get(atom) {
            return Err(SetError::Duplicate {
                at,
                atom: atom.clone(),
                first,
            });
        }
        index.insert(atom, (i, at));
    }
    Ok(index)
}

#[derive(serde::Deserialize)]
struct RawSet {
    packages: Vec<RawPackage>,
}

#[derive(serde::Deserialize)]
struct RawPackage {
    atom: Option<String>,
    deps: Option<Vec<String>>,
    estimate_s: Option<f64>,
}

fn parse_json(text: &str) -> Result<PackageSet, SetError> {
    let raw: RawSet = serde_json::from_str(text).map_err(|e| SetError::InvalidJson {
        message: e.to_string(),
    })?;
    if raw.packages.is_empty() {
        return Err(SetError::Empty);
    }

    // Atoms, estimates and the syntax of every dependency, in set order.
    let mut specs = Vec::with_capacity(raw.packages.len());
    for (index, package) in raw.packages.into_iter().enumerate() {
        let Some(atom_text) = package.atom else {
            return Err(SetError::MissingAtom { index });
        };
        let atom = Atom::parse(&atom_text).map_err(|error| SetError::InvalidAtom {
            at: Location::Index(index),
            error,
        })?;
        if let Some(e) = package.estimate_s {
            if !(e.is_finite() && e >= 0.0) {
                return Err(SetError::BadEstimate { atom });
            }
        }
        let mut deps = Vec::new();
        for dep in package.deps.unwrap_or_default() {
            match Atom::parse(&dep) {
                Ok(dep) => deps.push(dep),
                Err(error) => {
                    return Err(SetError::InvalidDep {
                        atom,
                        error: Box::new(error),
                    })
                }
            }
        }
        dedup(&mut deps);
        specs.push(PackageSpec {
            atom,
            deps,
            estimate_s: package.estimate_s,
        });
    }

    let graph = {
        let index = index_atoms(
            specs
                .iter()
                .enumerate()
                .map(|(i, s)| (Location::Index(i), &s.atom)),
        )?;
        resolve_deps(&specs, &index)?
    };
    if let Some(cycle) = find_cycle(&graph) {
        return Err(SetError::Cycle {
            path: cycle
                .into_iter()
                .filter_map(|i| specs.get(i).map(|s| s.atom.clone()))
                .collect(),
        });
    }

    Ok(PackageSet {
        format: SetFormat::Json,
        packages: specs,
        skipped: 0,
    })
}

/// Keeps only the first mention of each atom, in order.
fn dedup(atoms: &mut Vec<Atom>) {
    let keep: Vec<bool> = {
        let mut seen = HashSet::with_capacity(atoms.len());
        atoms.iter().map(|a| seen.insert(a)).collect()
    };
    let mut keep = keep.into_iter();
    atoms.retain(|_| keep.next().unwrap_or(true));
}

/// Turns every package's (already deduplicated) dependencies into set
/// indices, refusing unknown dependencies and self-dependencies.
fn resolve_deps(
    specs: &[PackageSpec],
    index: &HashMap<&Atom, (usize, Location)>,
) -> Result<Vec<Vec<usize>>, SetError> {
    let mut graph = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let mut deps = Vec::with_capacity(spec.deps.len());
        for dep in &spec.deps {
            let Some(&(j, _)) = index.get(dep) else {
                return Err(SetError::UnknownDep {
                    atom: spec.atom.clone(),
                    dep: Box::new(dep.clone()),
                });
            };
            if j == i {
                return Err(SetError::SelfDep {
                    atom: spec.atom.clone(),
                });
            }
            deps.push(j);
        }
        graph.push(deps);
    }
    Ok(graph)
}

/// Finds one dependency cycle, iteratively (Kahn's algorithm, then a walk
/// through what is left). `graph[i]` lists what `i` depends on. The returned
/// path starts and ends with the same node, each depending on the next.
fn find_cycle(graph: &[Vec<usize>]) -> Option<Vec<usize>> {
    let n = graph.len();
    // Unbuilt dependencies left per node, and who depends on each node.
    let mut pending: Vec<usize> = graph.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, deps) in graph.iter().enumerate() {
        for &j in deps {
            if let Some(d) = dependents.get_mut(j) {
                d.push(i);
            }
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
    let mut done = vec![false; n];
    let mut done_count = 0;
    while let Some(j) = ready.pop() {
        done[j] = true;
        done_count += 1;
        for &i in dependents.get(j).map(Vec::as_slice).unwrap_or_default() {
            if let Some(p) = pending.get_mut(i) {
                *p -= 1;
                if *p == 0 {
                    ready.push(i);
                }
            }
        }
    }
    if done_count == n {
        return None;
    }
    // Every node not done still has a dependency that is not done, so
    // walking such dependencies from any of them must revisit a node.
    let start = done.iter().position(|d| !d)?;
    let mut position = vec![usize::MAX; n];
    let mut path = Vec::new();
    let mut current = start;
    loop {
        if let Some(&p) = position.get(current).filter(|&&p| p != usize::MAX) {
            let mut cycle = path.split_off(p);
            cycle.push(current);
            return Some(cycle);
        }
        position[current] = path.len();
        path.push(current);
        current = *graph
            .get(current)?
            .iter()
            .find(|&&j| !done.get(j).copied().unwrap_or(true))?;
    }
}

/// Cuts a trailing `# comment`: a `#` at the start of the line or right
/// after whitespace. A `#` inside a word is left for the atom check.
fn strip_comment(line: &str) -> &str {
    let mut after_space = true;
    for (i, c) in line.char_indices() {
        if c == '#' && after_space {
            return line.get(..i).unwrap_or_default();
        }
        after_space = c.is_whitespace();
    }
    line
}

/// Removes ANSI escape sequences (`emerge` colours its output when asked to
/// or when run under `script`): CSI sequences `ESC [ ... final` and other
/// `ESC intermediates... final` sequences such as `ESC ( B` are dropped whole.
fn strip_ansi(line: &str) -> Cow<'_, str> {
    if !line.contains('\u{1b}') {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            // CSI: parameters and intermediates up to a final byte.
            Some('[') => {
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
            // Other escapes: intermediate bytes, then one final byte.
            Some(c) if ('\u{20}'..='\u{2f}').contains(&c) => {
                for c in chars.by_ref() {
                    if !('\u{20}'..='\u{2f}').contains(&c) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    Cow::Owned(out)
}

struct FirstAt(Location);

impl fmt::Display for FirstAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Location::Line(n) => write!(f, "on line {n}"),
            Location::Index(i) => write!(f, "at packages[{i}]"),
        }
    }
}

/// A cycle path, shortened in the middle when long.
struct CyclePath<'a>(&'a [Atom]);

impl fmt::Display for CyclePath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEAD: usize = 8;
        const TAIL: usize = 4;
        let path = self.0;
        let write_all = |f: &mut fmt::Formatter<'_>, atoms: &[Atom], first: bool| {
            for (k, atom) in atoms.iter().enumerate() {
                if k > 0 || !first {
                    f.write_str(" -> ")?;
                }
                write!(f, "`{atom}`")?;
            }
            Ok(())
        };
        if path.len() <= HEAD + TAIL + 1 {
            return write_all(f, path, true);
        }
        let (head, rest) = path.split_at(HEAD);
        let (middle, tail) = rest.split_at(rest.len() - TAIL);
        write_all(f, head, true)?;
        write!(f, " -> ... ({} more) ...", middle.len())?;
        write_all(f, tail, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atom(s: &str) -> Atom {
        Atom::parse(s).unwrap()
    }

    fn atoms(set: &PackageSet) -> Vec<String> {
        set.packages.iter().map(|p| p.atom.to_string()).collect()
    }

    fn ok(text: &str) -> PackageSet {
        match parse_package_set(text) {
            Ok(set) => set,
            Err(e) => panic!("should parse, got: {e}\n---\n{text}"),
        }
    }

    fn err(text: &str) -> SetError {
        match parse_package_set(text) {
            Ok(set) => panic!("should be refused, got {set:?}\n---\n{text}"),
            Err(e) => e,
        }
    }

    fn msg(text: &str) -> String {
        err(text).to_string()
    }

    // ---- plain -----------------------------------------------------------

    #[test]
    fn plain_list_with_comments_equals_and_blank_lines() {
        let set = ok("# my world\n\
                      app-misc/foo-1.0\n\
                      \n\
                      =dev-libs/libxml2-2.12.6   # pinned\n\
                      \t  kde-plasma/plasma-workspace-5.27.10-r1  \n\
                      # trailing comment\n\
                      x11-libs/gtk+-3.24.41#not-a-comment-but-fine?\n"
            .replace("#not-a-comment-but-fine?", " #comment")
            .as_str());
        assert_eq!(set.format, SetFormat::Plain);
        assert_eq!(set.skipped, 0);
        assert_eq!(
            atoms(&set),
            [
                "app-misc/foo-1.0",
                "dev-libs/libxml2-2.12.6",
                "kde-plasma/plasma-workspace-5.27.10-r1",
                "x11-libs/gtk+-3.24.41"
            ]
        );
        assert!(set
            .packages
            .iter()
            .all(|p| p.deps.is_empty() && p.estimate_s.is_none()));
    }

    #[test]
    fn plain_crlf_and_no_final_newline() {
        let set = ok("# list\r\napp-misc/a-1\r\n\r\n=app-misc/b-2 # c\r\napp-misc/c-3");
        assert_eq!(
            atoms(&set),
            ["app-misc/a-1", "app-misc/b-2", "app-misc/c-3"]
        );
        let e = err("app-misc/a-1\r\napp-misc/a-1\r\n");
        assert_eq!(
            e.to_string(),
            "line 2: `app-misc/a-1` is listed twice (first on line 1)"
        );
    }

    #[test]
    fn plain_single_atom_and_bom() {
        let set = ok("\u{feff}app-misc/foo-1.0");
        assert_eq!(atoms(&set), ["app-misc/foo-1.0"]);
    }

    #[test]
    fn plain_invalid_atom_names_line_and_atom() {
        assert_eq!(
            msg("app-misc/a-1\n# c\ncat/na me-1\n"),
            "line 3: `cat/na me-1` is not a valid atom: whitespace is not allowed"
        );
        assert_eq!(
            msg("app-misc/a-1\ncat/foo-1;rm -rf /\n"),
            "line 2: `cat/foo-1;rm -rf /` is not a valid atom: character `;` is not allowed"
        );
        assert_eq!(
            msg("cat/foo-1;rm\n"),
            "line 1: `cat/foo-1;rm` is not a valid atom: character `;` is not allowed"
        );
        assert_eq!(
            msg("../../etc/passwd-1"),
            "line 1: `../../etc/passwd-1` is not a valid atom: `..` is not allowed"
        );
        assert_eq!(
            msg("a/b-1\nb/c-1\ncat/foo\n"),
            "line 3: `cat/foo` is not a valid atom: it has no version (expected `category/name-version`, e.g. `app-misc/foo-1.0`)"
        );
        assert!(matches!(
            err("a/b-1\n\ncat/foo-1#x\n"),
            SetError::InvalidAtom {
                at: Location::Line(3),
                error: AtomError::ForbiddenChar { ch: '#', .. }
            }
        ));
    }

    #[test]
    fn plain_only_one_leading_equals() {
        assert!(matches!(
            err("==app-misc/a-1"),
            SetError::InvalidAtom {
                at: Location::Line(1),
                error: AtomError::ForbiddenChar { ch: '=', .. }
            }
        ));
        assert!(matches!(
            err(">=app-misc/a-1"),
            SetError::InvalidAtom {
                error: AtomError::ForbiddenChar { ch: '>', .. },
                ..
            }
        ));
        assert!(matches!(
            err("= app-misc/a-1"),
            SetError::InvalidAtom {
                error: AtomError::Whitespace { .. },
                ..
            }
        ));
        // Repository and slot suffixes are Portage-output things only.
        assert!(matches!(
            err("app-misc/a-1::gentoo"),
            SetError::InvalidAtom {
                error: AtomError::ForbiddenChar { ch: ':', .. },
                ..
            }
        ));
    }

    #[test]
    fn plain_two_atoms_on_a_line() {
        assert_eq!(
            msg("app-misc/a-1\napp-misc/b-1 =app-misc/c-1\n"),
            "line 2: `app-misc/b-1 =app-misc/c-1` holds more than one atom; list one atom per line"
        );
        assert_eq!(
            err("app-misc/b-1\tapp-misc/c-1 # both"),
            SetError::MultipleAtoms {
                line: 1,
                text: "app-misc/b-1\tapp-misc/c-1".to_string()
            }
        );
    }

    #[test]
    fn plain_empty_sets() {
        for text in [
            "",
            "\n\n",
            "# nothing\n   # at all\r\n\t\n",
            "\u{feff}",
            "   ",
        ] {
            assert_eq!(err(text), SetError::Empty, "{text:?}");
        }
        assert_eq!(SetError::Empty.to_string(), "the package set is empty");
    }

    #[test]
    fn plain_non_ascii_and_control_characters() {
        assert_eq!(
            msg("app-misc/a-1\napp-misc/café-1\n"),
            "line 2: `app-misc/caf\\u{e9}-1` is not a valid atom: non-ASCII character U+00E9 is not allowed"
        );
        assert!(matches!(
            err("app-misc/a-1\u{1b}[0m"),
            SetError::InvalidAtom {
                error: AtomError::ForbiddenChar { ch: '\u{1b}', .. },
                ..
            }
        ));
        // A bare CR inside a line is not a line ending.
        assert!(matches!(
            err("app-misc/a-1\rapp-misc/b-1\n"),
            SetError::InvalidAtom { .. } | SetError::MultipleAtoms { .. }
        ));
        // Lines full of multibyte characters must not trip byte slicing.
        for text in [
            "日本語 # コメント",
            "#日本語\n💥",
            "é#",
            "é #x",
            "=é",
            "=",
            "#",
            " = ",
            "\u{2028}app-misc/a-1",
        ] {
            let _ = parse_package_set(text).map_err(|e| e.to_string());
        }
    }

    #[test]
    fn plain_lines_starting_with_a_bracket_are_atoms_not_portage() {
        assert!(matches!(
            err("[foo] app-misc/a-1"),
            SetError::InvalidAtom {
                error: AtomError::ForbiddenChar { ch: '[', .. },
                ..
            }
        ));
    }

    // ---- portage ---------------------------------------------------------

    const EMERGE: &str = "\
These are the packages that would be merged, in order:

Calculating dependencies... done!
[ebuild  N     ] dev-libs/libxml2-2.12.6::gentoo  USE=\"ftp -icu\" 0 KiB
[binary   R    ] sys-libs/zlib-1.3.1-r1::gentoo  0 KiB
[ebuild     U  ] kde-plasma/plasma-workspace-5.27.10-r1::gentoo [5.27.9::gentoo] 0 KiB
[ebuild   R    ] x11-libs/gtk+-3.24.41:3::gentoo
[blocks B      ] sys-apps/old-thing (\"sys-apps/old-thing\" is soft blocking sys-apps/new-1)
[ebuild  NS    ] dev-lang/python-3.12.1_rc2:3.12/3.12::gentoo
[uninstall     ] app-misc/gone-1::gentoo
[nomerge       ] app-misc/parent-1::gentoo
[ebuild  N    ~] virtual/perl-Scalar-List-Utils-1.630.0
    [ebuild  rR    ] dev-perl/Locale-gettext-1.70.0-r1::gentoo

Total: 7 packages (1 upgrade, 3 new, 1 in new slot, 1 reinstall, 1 binary), Size of downloads: 0 KiB
Conflict: 1 block
";

    #[test]
    fn portage_output_keeps_ebuild_lines_in_order() {
        let set = ok(EMERGE);
        assert_eq!(set.format, SetFormat::Portage);
        assert_eq!(
            atoms(&set),
            [
                "dev-libs/libxml2-2.12.6",
                "kde-plasma/plasma-workspace-5.27.10-r1",
                "x11-libs/gtk+-3.24.41",
                "dev-lang/python-3.12.1_rc2",
                "virtual/perl-Scalar-List-Utils-1.630.0",
                "dev-perl/Locale-gettext-1.70.0-r1",
            ]
        );
        assert_eq!(set.skipped, 4);
        let crlf = EMERGE.replace('\n', "\r\n");
        assert_eq!(ok(&crlf), set);
    }

    #[test]
    fn portage_detected_by_binary_lines_too() {
        assert_eq!(
            err("[binary   R    ] sys-libs/zlib-1.3.1::gentoo\n"),
            SetError::NothingToBuild { skipped: 1 }
        );
        assert_eq!(
            msg("Calculating dependencies... done!\n[binary  N ] a/b-1\n[binary  N ] a/c-1\nTotal: 2 packages\n"),
            "the package set is empty: nothing to build (2 `[binary]`, `[uninstall]`, `[blocks]` or `[nomerge]` lines skipped)"
        );
    }

    #[test]
    fn portage_with_colours() {
        let text = "\u{1b}[32;01m*\u{1b}[0m notice\n\
                    [\u{1b}[32;01mebuild\u{1b}[0m  \u{1b}[32;01mN\u{1b}[0m     ] \u{1b}[32;01mapp-misc/foo-1.0\u{1b}[0m::\u{1b}[0;32mgentoo\u{1b}[0m\n\
                    \u{1b}[1m[binary   R    ]\u{1b}[0m app-misc/bar-2\n";
        let set = ok(text);
        assert_eq!(atoms(&set), ["app-misc/foo-1.0"]);
        assert_eq!(set.skipped, 1);
    }

    #[test]
    fn portage_invalid_atom_names_the_line() {
        let text = "Calculating dependencies... done!\n\
                    [ebuild  N     ] app-misc/a-1::gentoo\n\
                    [ebuild  N     ] app-misc/b;rm-1::gentoo\n";
        assert_eq!(
            msg(text),
            "line 3: `app-misc/b;rm-1` is not a valid atom: character `;` is not allowed"
        );
        assert!(matches!(
            err("[ebuild  N ] ../../etc/passwd-1::x"),
            SetError::InvalidAtom {
                at: Location::Line(1),
                error: AtomError::DotDot { .. }
            }
        ));
        assert!(matches!(
            err("[ebuild  N ] ::gentoo"),
            SetError::InvalidAtom {
                error: AtomError::Empty,
                ..
            }
        ));
    }

    #[test]
    fn portage_malformed_bracket_lines() {
        assert_eq!(
            msg("[ebuild  N     ] a/b-1\n[ebuild  N  app-misc/c-1\n"),
            "line 2: `[ebuild  N  app-misc/c-1` is not a valid emerge line: it has no closing `]`"
        );
        assert_eq!(
            msg("[ebuild  N     ] a/b-1\n\n[ebuild  N     ]   \n"),
            "line 3: `[ebuild  N     ]` is not a valid emerge line: no package after `]`"
        );
        assert_eq!(
            err("[ebuild  N ] a/b-1\n[weird] a/c-1\n"),
            SetError::BadPortageLine {
                line: 2,
                text: "[weird] a/c-1".to_string(),
                reason: "expected `[ebuild ...]`, `[binary ...]`, `[uninstall ...]`, `[blocks ...]` or `[nomerge ...]`"
            }
        );
        assert!(matches!(
            err("[ebuild  N ] a/b-1\n[] a/c-1\n"),
            SetError::BadPortageLine { line: 2, .. }
        ));
        // `[ebuilds` is not `[ebuild`.
        assert!(matches!(
            err("[ebuild  N ] a/b-1\n[ebuilds N ] a/c-1\n"),
            SetError::BadPortageLine { line: 2, .. }
        ));
    }

    #[test]
    fn portage_duplicates_and_non_ascii() {
        assert_eq!(
            msg("x\n[ebuild  N ] a/b-1::gentoo\n[ebuild   R ] a/b-1::other\n"),
            "line 3: `a/b-1` is listed twice (first on line 2)"
        );
        for text in [
            "[ebuild é] a/b-1",
            "[ebuild  N ] a/é-1",
            "[ebuild  N ] é",
            "[ebuild  N ]é",
            "[binary é",
            "[ebuild\u{1b}",
            "[ebuild\u{1b}[",
            "\u{1b}",
            "[ebuild 💥] 💥:💥",
        ] {
            let _ = parse_package_set(text).map_err(|e| e.to_string());
        }
    }

    // ---- json ------------------------------------------------------------

    #[test]
    fn json_with_deps_and_estimates() {
        let text = r#"
        {
          "packages": [
            {"atom": "dev-libs/libxml2-2.12.6", "estimate_s": 120},
            {"atom": "dev-lang/python-3.12.1_rc2", "deps": ["dev-libs/libxml2-2.12.6"], "estimate_s": 900.5, "note": "ignored"},
            {"atom": "app-misc/foo-1.0", "deps": ["dev-lang/python-3.12.1_rc2", "dev-libs/libxml2-2.12.6"]},
            {"atom": "app-misc/bar-1", "deps": null, "estimate_s": null}
          ],
          "comment": "extra fields are fine"
        }"#;
        let set = ok(text);
        assert_eq!(set.format, SetFormat::Json);
        assert_eq!(set.skipped, 0);
        assert_eq!(
            set.packages,
            [
                PackageSpec {
                    atom: atom("dev-libs/libxml2-2.12.6"),
                    deps: vec![],
                    estimate_s: Some(120.0)
                },
                PackageSpec {
                    atom: atom("dev-lang/python-3.12.1_rc2"),
                    deps: vec![atom("dev-libs/libxml2-2.12.6")],
                    estimate_s: Some(900.5)
                },
                PackageSpec {
                    atom: atom("app-misc/foo-1.0"),
                    deps: vec![
                        atom("dev-lang/python-3.12.1_rc2"),
                        atom("dev-libs/libxml2-2.12.6")
                    ],
                    estimate_s: None
                },
                PackageSpec {
                    atom: atom("app-misc/bar-1"),
                    deps: vec![],
                    estimate_s: None
                },
            ]
        );
        // Dependencies may point forward in the array.
        let set = ok(r#"{"packages":[{"atom":"a/a-1","deps":["b/b-1"]},{"atom":"b/b-1"}]}"#);
        assert_eq!(set.packages[0].deps, [atom("b/b-1")]);
        // CRLF and a BOM are fine.
        let set = ok("\u{feff}{\r\n\"packages\": [\r\n{\"atom\": \"a/a-1\"}\r\n]\r\n}\r\n");
        assert_eq!(atoms(&set), ["a/a-1"]);
    }

    #[test]
    fn json_duplicate_deps_are_deduplicated_in_order() {
        let set = ok(r#"{"packages":[{"atom":"a/a-1"},{"atom":"b/b-1"},
            {"atom":"c/c-1","deps":["b/b-1","a/a-1","b/b-1","a/a-1","b/b-1"]}]}"#);
        assert_eq!(set.packages[2].deps, [atom("b/b-1"), atom("a/a-1")]);
    }

    #[test]
    fn json_unknown_dependency() {
        assert_eq!(
            msg(r#"{"packages":[{"atom":"app-misc/a-1","deps":["app-misc/zz-1"]}]}"#),
            "`app-misc/a-1` depends on `app-misc/zz-1`, which is not in the set"
        );
    }

    #[test]
    fn json_self_dependency() {
        assert_eq!(
            msg(r#"{"packages":[{"atom":"a/b-1"},{"atom":"a/a-1","deps":["a/b-1","a/a-1"]}]}"#),
            "`a/a-1` depends on itself"
        );
    }

    #[test]
    fn json_cycles() {
        assert_eq!(
            msg(
                r#"{"packages":[{"atom":"a/a-1","deps":["b/b-1"]},{"atom":"b/b-1","deps":["a/a-1"]}]}"#
            ),
            "dependency cycle: `a/a-1` -> `b/b-1` -> `a/a-1`"
        );
        // A cycle reached through a non-cyclic prefix reports only the cycle.
        let e = err(r#"{"packages":[
            {"atom":"x/root-1","deps":["x/c-1","x/ok-1"]},
            {"atom":"x/ok-1"},
            {"atom":"x/c-1","deps":["x/ok-1","x/d-1"]},
            {"atom":"x/d-1","deps":["x/e-1"]},
            {"atom":"x/e-1","deps":["x/c-1"]}
        ]}"#);
        assert_eq!(
            e.to_string(),
            "dependency cycle: `x/c-1` -> `x/d-1` -> `x/e-1` -> `x/c-1`"
        );
        let SetError::Cycle { path } = e else {
            panic!("{e:?}")
        };
        assert_eq!(path.first(), path.last());
    }

    #[test]
    fn json_diamond_is_not_a_cycle() {
        let set = ok(r#"{"packages":[
            {"atom":"d/top-1","deps":["d/l-1","d/r-1"]},
            {"atom":"d/l-1","deps":["d/base-1"]},
            {"atom":"d/r-1","deps":["d/base-1"]},
            {"atom":"d/base-1"}
        ]}"#);
        assert_eq!(set.packages.len(), 4);
    }

    #[test]
    fn json_invalid_atoms_name_the_index() {
        assert_eq!(
            msg(r#"{"packages":[{"atom":"a/a-1"},{"atom":"cat/na me-1"}]}"#),
            "packages[1]: `cat/na me-1` is not a valid atom: whitespace is not allowed"
        );
        assert_eq!(
            msg(r#"{"packages":[{"atom":"a/a-1"},{"atom":"b/b-1"},{"deps":[]}]}"#),
            "packages[2]: the \"atom\" field is missing"
        );
        assert_eq!(
            msg(r#"{"packages":[{"atom":null}]}"#),
            "packages[0]: the \"atom\" field is missing"
        );
        assert_eq!(
            msg(r#"{"packages":[{"atom":"=a/a-1"}]}"#),
            "packages[0]: `=a/a-1` is not a valid atom: character `=` is not allowed"
        );
        assert_eq!(
            msg(r#"{"packages":[{"atom":"a/a-1","deps":["../x-1"]}]}"#),
            "`a/a-1`: invalid dependency: `../x-1` is not a valid atom: `..` is not allowed"
        );
        assert_eq!(
            msg(r#"{"packages":[{"atom":"a/a-1\u0000"}]}"#),
            "packages[0]: `a/a-1\\u{0}` is not a valid atom: control character U+0000 is not allowed"
        );
    }

    #[test]
    fn json_duplicates_name_both_indices() {
        assert_eq!(
            msg(r#"{"packages":[{"atom":"a/a-1"},{"atom":"b/b-1"},{"atom":"a/a-1"}]}"#),
            "packages[2]: `a/a-1` is listed twice (first at packages[0])"
        );
    }

    #[test]
    fn json_estimates() {
        assert_eq!(
            msg(r#"{"packages":[{"atom":"x/y-1","estimate_s":-1}]}"#),
            "`x/y-1`: estimate_s must be a finite number >= 0"
        );
        let set = ok(
            r#"{"packages":[{"atom":"x/y-1","estimate_s":0},{"atom":"x/z-1","estimate_s":1e300}]}"#,
        );
        assert_eq!(set.packages[0].estimate_s, Some(0.0));
        // JSON has no NaN or infinity; out-of-range numbers are JSON errors.
        assert!(matches!(
            err(r#"{"packages":[{"atom":"x/y-1","estimate_s":1e400}]}"#),
            SetError::InvalidJson { .. }
        ));
        assert!(matches!(
            err(r#"{"packages":[{"atom":"x/y-1","estimate_s":"120"}]}"#),
            SetError::InvalidJson { .. }
        ));
    }

    #[test]
    fn json_syntax_and_shape_errors() {
        for text in [
            "{",
            "{}",
            r#"{"packages":{}}"#,
            r#"{"packages":[1]}"#,
            r#"{"packages":[{"atom":1}]}"#,
            r#"{"packages":[{"atom":"a/a-1","deps":"b/b-1"}]}"#,
            r#"{"packages":[{"atom":"a/a-1","deps":[1]}]}"#,
            r#"{"packages":[{"atom":"a/a-1","atom":"a/b-1"}]}"#,
            r#"{"packages":[]} trailing"#,
            r#"{"packages":null}"#,
        ] {
            let e = err(text);
            assert!(matches!(e, SetError::InvalidJson { .. }), "{text}: {e:?}");
            assert!(e.to_string().starts_with("invalid JSON: "), "{e}");
        }
        assert_eq!(
            msg("{}"),
            "invalid JSON: missing field `packages` at line 1 column 2"
        );
        assert_eq!(err(r#"{"packages":[]}"#), SetError::Empty);
    }

    #[test]
    fn json_deep_nesting_does_not_overflow() {
        let text = format!(
            "{{\"packages\":{}{}}}",
            "[".repeat(200_000),
            "]".repeat(200_000)
        );
        assert!(matches!(err(&text), SetError::InvalidJson { .. }));
        let text = format!(
            "{{\"packages\":[{{\"atom\":\"a/a-1\",\"x\":{}}}]}}",
            "[".repeat(100_000)
        );
        assert!(matches!(err(&text), SetError::InvalidJson { .. }));
    }

    #[test]
    fn json_non_ascii_does_not_panic() {
        for text in [
            r#"{"packages":[{"atom":"日本/語-1"}]}"#,
            r#"{"packages":[{"atom":"a/a-1","deps":["💥"]}]}"#,
            "{\"packages\":[{\"atom\":\"a/a-1\u{202e}\"}]}",
            "{ 💥",
        ] {
            let e = err(text).to_string();
            assert!(!e.contains('\u{202e}'), "{e}");
        }
    }

    // ---- bytes -----------------------------------------------------------

    #[test]
    fn bytes_must_be_utf8() {
        let body = b"app-misc/a-1\napp-misc/b-1\napp-misc/\xff-1\n";
        assert_eq!(
            parse_package_set_bytes(body),
            Err(SetError::InvalidUtf8 {
                line: 3,
                offset: 35
            })
        );
        assert_eq!(
            parse_package_set_bytes(body).unwrap_err().to_string(),
            "line 3: the package set is not valid UTF-8 (invalid byte at offset 35)"
        );
        assert_eq!(
            parse_package_set_bytes(b"\xc3"),
            Err(SetError::InvalidUtf8 { line: 1, offset: 0 })
        );
        let set = parse_package_set_bytes(b"app-misc/a-1\r\n").unwrap();
        assert_eq!(atoms(&set), ["app-misc/a-1"]);
        assert_eq!(parse_package_set_bytes(b""), Err(SetError::Empty));
    }

    // ---- scale -----------------------------------------------------------

    fn chain_json(n: usize, close_cycle: bool) -> String {
        let mut text = String::from("{\"packages\":[\n");
        for i in 0..n {
            if i > 0 {
                text.push_str(",\n");
            }
            text.push_str(&format!("{{\"atom\":\"chain/p{i}-1\""));
            if i > 0 {
                text.push_str(&format!(",\"deps\":[\"chain/p{}-1\"]", i - 1));
            } else if close_cycle {
                text.push_str(&format!(",\"deps\":[\"chain/p{}-1\"]", n - 1));
            }
            text.push_str(",\"estimate_s\":1}");
        }
        text.push_str("\n]}\n");
        text
    }

    #[test]
    fn long_chain_of_100000_packages() {
        let n = 100_000;
        let set = ok(&chain_json(n, false));
        assert_eq!(set.packages.len(), n);
        assert_eq!(
            set.packages[n - 1].deps,
            [atom(&format!("chain/p{}-1", n - 2))]
        );
        // Reversed order: every dependency points forward.
        let mut text = String::from("{\"packages\":[");
        for i in 0..n {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&format!(
                "{{\"atom\":\"chain/p{i}-1\",\"deps\":[\"chain/p{}-1\"]}}",
                i + 1
            ));
        }
        text.push_str(&format!(",{{\"atom\":\"chain/p{n}-1\"}}]}}"));
        assert_eq!(ok(&text).packages.len(), n + 1);
    }

    #[test]
    fn cycle_of_100000_packages_is_found_and_shortened() {
        let n = 100_000;
        let e = err(&chain_json(n, true));
        let SetError::Cycle { path } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(path.len(), n + 1);
        assert_eq!(path.first(), path.last());
        let shown = e.to_string();
        assert!(shown.len() < 600, "{shown}");
        assert!(
            shown.starts_with("dependency cycle: `chain/p0-1` -> `chain/p99999-1` -> "),
            "{shown}"
        );
        assert!(shown.contains(" -> ... (99989 more) ... -> "), "{shown}");
        assert!(shown.ends_with(" -> `chain/p0-1`"), "{shown}");
    }

    #[test]
    fn large_plain_and_portage_sets() {
        let n = 100_000;
        let plain: String = (0..n).map(|i| format!("=big/p{i}-1.0\n")).collect();
        assert_eq!(ok(&plain).packages.len(), n);
        let portage: String = (0..n)
            .map(|i| format!("[ebuild  N    ] big/p{i}-1.0::gentoo USE=\"\"\r\n"))
            .collect();
        assert_eq!(ok(&portage).packages.len(), n);
    }

    // ---- misc ------------------------------------------------------------

    #[test]
    fn error_types_stay_small() {
        // Callers return `Result<_, SetError>`; keep clippy's
        // `result_large_err` (128 bytes) quiet for them too.
        assert!(std::mem::size_of::<SetError>() <= 128);
        assert!(std::mem::size_of::<AtomError>() <= 128);
    }

    #[test]
    fn set_format_serializes_lowercase() {
        assert_eq!(
            serde_json::to_string(&SetFormat::Plain).unwrap(),
            "\"plain\""
        );
        assert_eq!(
            serde_json::to_string(&SetFormat::Portage).unwrap(),
            "\"portage\""
        );
        assert_eq!(serde_json::to_string(&SetFormat::Json).unwrap(), "\"json\"");
        assert_eq!(SetFormat::Portage.to_string(), "portage");
    }

    #[test]
    fn short_cycle_paths_are_shown_whole() {
        let path: Vec<Atom> = (0..13).map(|i| atom(&format!("c/p{i}-1"))).collect();
        let shown = SetError::Cycle { path }.to_string();
        assert!(!shown.contains("..."), "{shown}");
        assert_eq!(shown.matches(" -> ").count(), 12);
        let path: Vec<Atom> = (0..14).map(|i| atom(&format!("c/p{i}-1"))).collect();
        let shown = SetError::Cycle { path }.to_string();
        assert!(
            shown.contains("`c/p7-1` -> ... (2 more) ... -> `c/p10-1`"),
            "{shown}"
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(strip_comment("a # b"), "a ");
        assert_eq!(strip_comment("# b"), "");
        assert_eq!(strip_comment("a#b"), "a#b");
        assert_eq!(strip_comment("é #b"), "é ");
        assert_eq!(strip_comment("é#b"), "é#b");
        assert_eq!(strip_ansi("\u{1b}[1;32mok\u{1b}[0m"), "ok");
        assert_eq!(strip_ansi("a\u{1b}(Bb"), "ab");
        assert_eq!(strip_ansi("a\u{1b}7b\u{1b}"), "ab");
        assert_eq!(strip_ansi("trailing\u{1b}"), "trailing");
        assert_eq!(strip_ansi("é\u{1b}[é"), "é");
    }
}
