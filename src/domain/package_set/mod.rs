//! Package sets as accepted by `build-swarm submit FILE` and
//! `POST /api/v1/packages` (docs/contract.md §3): plain text, `emerge --pretend` output,
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
    /// What the drone that builds it must have (JSON only).
    pub requirements: super::environment::Requirements,
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
    /// Operator priority of the whole set (JSON `"priority"`; `submit --priority` wins).
    pub priority: Option<i32>,
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
    #[error("`{atom}`: {reason}")]
    BadRequirement { atom: Atom, reason: String },
    #[error("priority {0} is out of range (-1000 to 1000)")]
    BadPriority(i64),
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
                requirements: Default::default(),
            })
            .collect(),
        skipped,
        priority: None,
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
    priority: Option<i64>,
}

#[derive(serde::Deserialize)]
struct RawPackage {
    atom: Option<String>,
    deps: Option<Vec<String>>,
    estimate_s: Option<f64>,
    requires: Option<Vec<String>>,
    min_memory_mb: Option<u64>,
    min_disk_mb: Option<u64>,
}

fn parse_json(text: &str) -> Result<PackageSet, SetError> {
    let raw: RawSet = serde_json::from_str(text).map_err(|e| SetError::InvalidJson {
        message: e.to_string(),
    })?;
    if raw.packages.is_empty() {
        return Err(SetError::Empty);
    }
    let raw_priority = raw.priority;

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
        let mut requires = package.requires.unwrap_or_default();
        for c in &requires {
            super::environment::check_capability(c).map_err(|e| SetError::BadRequirement {
                atom: atom.clone(),
                reason: e.to_string(),
            })?;
        }
        requires.sort();
        requires.dedup();
        if requires.len() > super::environment::MAX_CAPABILITIES {
            return Err(SetError::BadRequirement {
                atom,
                reason: "more than 64 capabilities in `requires`".into(),
            });
        }
        specs.push(PackageSpec {
            atom,
            deps,
            estimate_s: package.estimate_s,
            requirements: super::environment::Requirements {
                requires,
                min_memory_mb: package.min_memory_mb,
                min_disk_mb: package.min_disk_mb,
            },
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

    let priority = match raw_priority {
        Some(p) if !(-1000..=1000).contains(&p) => return Err(SetError::BadPriority(p)),
        p => p.map(|p| p as i32),
    };
    Ok(PackageSet {
        format: SetFormat::Json,
        packages: specs,
        skipped: 0,
        priority,
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
mod tests;
