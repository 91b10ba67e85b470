//! A drone's build environment and whether it fits the swarm (docs/design.md,
//! "Environments"): reading the `KEY=VALUE` lines a drone's `environment_command` prints,
//! comparing a fingerprint with the expected one, and what a package requires of a drone.
//! Plain data, shared by the drone (which collects) and the orchestrator (which matches).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Keys compared by default (orchestrator `[environment] keys`): what decides what a
/// binary package is.
pub const DEFAULT_KEYS: &[&str] = &[
    "PROFILE",
    "CHOST",
    "CBUILD",
    "CFLAGS",
    "CXXFLAGS",
    "LDFLAGS",
    "USE",
    "ACCEPT_KEYWORDS",
    "FEATURES",
    "BINPKG_FORMAT",
];

/// The FEATURES that change what goes into a binary package; the rest (fetching, locks,
/// sandboxes, …) are left out of the comparison.
pub const RELEVANT_FEATURES: &[&str] = &[
    "binpkg-docompress",
    "binpkg-dostrip",
    "compressdebug",
    "installsources",
    "nodoc",
    "noinfo",
    "noman",
    "nostrip",
    "splitdebug",
    "strict",
];

/// Lines of this form name a repository's revision: `REPO_REVISION/<repo>=<revision>`.
pub const REPO_REVISION: &str = "REPO_REVISION/";
/// … and when it was made (unix seconds): `REPO_TIMESTAMP/<repo>=<seconds>`.
pub const REPO_TIMESTAMP: &str = "REPO_TIMESTAMP/";

/// Most keys a fingerprint may have.
pub const MAX_KEYS: usize = 256;
/// Longest value of one key.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most output an environment command may print.
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;
/// Most capabilities a drone may declare, and the longest one.
pub const MAX_CAPABILITIES: usize = 64;
pub const MAX_CAPABILITY_BYTES: usize = 64;

/// `KEY` → value.
pub type Fingerprint = BTreeMap<String, String>;
/// Repository name → revision.
pub type Repos = BTreeMap<String, RepoRevision>;

/// A repository's revision as a drone has it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepoRevision {
    pub revision: String,
    /// Unix seconds of that revision, when known (decides "lags" against "differs").
    #[serde(default)]
    pub timestamp: Option<u64>,
}

/// What a drone has to build with.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Resources {
    pub cores: u32,
    pub memory_mb: u64,
    /// Free space where its builds leave packages (PKGDIR).
    pub pkgdir_free_mb: u64,
    /// Free space where builds run (PORTAGE_TMPDIR).
    pub tmpdir_free_mb: u64,
}

/// A drone's build environment as it reports it in `register` and `heartbeat` (added).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DroneEnvironment {
    /// `KEY` → value printed by its `environment_command` (CHOST, CFLAGS, USE, PROFILE, …).
    #[serde(default)]
    pub fingerprint: BTreeMap<String, String>,
    /// Repository name → revision.
    #[serde(default)]
    pub repos: BTreeMap<String, RepoRevision>,
    #[serde(default)]
    pub resources: Resources,
    /// Operator-declared (drone config `capabilities`).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The environment command failed or hung: why. A drone with an error gets no work
    /// while an environment is expected.
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvironmentError {
    #[error("line {line}: `{text}` is not KEY=VALUE")]
    NotKeyValue { line: usize, text: String },
    #[error("line {line}: key `{key}` may hold only letters, digits and `_./:+-` (at most 128)")]
    BadKey { line: usize, key: String },
    #[error("`{key}` is {len} bytes long (at most {MAX_VALUE_BYTES})")]
    TooLong { key: String, len: usize },
    #[error("more than {MAX_KEYS} keys")]
    TooManyKeys,
    #[error("`{key}`: `{value}` is not a unix time in seconds")]
    BadTimestamp { key: String, value: String },
    #[error("capability `{0}` may hold only letters, digits and `_.+-` (1-64)")]
    BadCapability(String),
    #[error("more than {MAX_CAPABILITIES} capabilities")]
    TooManyCapabilities,
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:+-".contains(&b))
}

/// Checks a capability name (drone config and package sets' `requires`).
pub fn check_capability(c: &str) -> Result<(), EnvironmentError> {
    let ok = !c.is_empty()
        && c.len() <= MAX_CAPABILITY_BYTES
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(EnvironmentError::BadCapability(
            crate::sys::process::tail_str(c, 80).to_string(),
        ))
    }
}

/// Removes one level of shell quoting as `portageq envvar -v` prints it (`'…'`, `"…"`,
/// a quote inside single quotes as `'\''` or, Python's `shlex.quote`, `'"'"'`).
fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1]
            .replace("'\\''", "'")
            .replace("'\"'\"'", "'");
    }
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        return v[1..v.len() - 1].replace("\\\"", "\"");
    }
    v.to_string()
}

/// Reads an environment command's output: `KEY=VALUE` lines (values may be shell-quoted),
/// blank lines and `#` comments ignored; `REPO_REVISION/<repo>` and `REPO_TIMESTAMP/<repo>`
/// go to the repositories.
pub fn parse_output(text: &str) -> Result<(Fingerprint, Repos), EnvironmentError> {
    let mut keys = BTreeMap::new();
    let mut repos: BTreeMap<String, RepoRevision> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(EnvironmentError::NotKeyValue {
                line: i + 1,
                text: crate::sys::process::tail_str(line, 80).to_string(),
            });
        };
        let key = key.trim();
        if !valid_key(key) {
            return Err(EnvironmentError::BadKey {
                line: i + 1,
                key: crate::sys::process::tail_str(key, 80).to_string(),
            });
        }
        let value = unquote(value);
        if value.len() > MAX_VALUE_BYTES {
            return Err(EnvironmentError::TooLong {
                key: key.to_string(),
                len: value.len(),
            });
        }
        let repo_key = key
            .strip_prefix(REPO_REVISION)
            .or_else(|| key.strip_prefix(REPO_TIMESTAMP));
        if repo_key == Some("") {
            return Err(EnvironmentError::BadKey {
                line: i + 1,
                key: key.to_string(),
            });
        }
        if let Some(repo) = key.strip_prefix(REPO_REVISION) {
            repos.entry(repo.to_string()).or_default().revision = value;
        } else if let Some(repo) = key.strip_prefix(REPO_TIMESTAMP) {
            let ts = value
                .parse::<u64>()
                .map_err(|_| EnvironmentError::BadTimestamp {
                    key: key.to_string(),
                    value: crate::sys::process::tail_str(&value, 40).to_string(),
                })?;
            repos.entry(repo.to_string()).or_default().timestamp = Some(ts);
        } else {
            keys.insert(key.to_string(), value);
        }
        if keys.len() + repos.len() > MAX_KEYS {
            return Err(EnvironmentError::TooManyKeys);
        }
    }
    Ok((keys, repos))
}

impl DroneEnvironment {
    /// Worth reporting as a change from `old`: anything but the resources differs, or a
    /// resource moved by more than a tenth (free disk: and by more than 1 GB) — free space
    /// changes with every build and is not news each time.
    pub fn differs_from(&self, old: &DroneEnvironment) -> bool {
        let moved = |a: u64, b: u64, floor: u64| a.abs_diff(b) > (a.max(b) / 10).max(floor);
        let (r, o) = (&self.resources, &old.resources);
        self.fingerprint != old.fingerprint
            || self.repos != old.repos
            || self.capabilities != old.capabilities
            || self.error != old.error
            || r.cores != o.cores
            || moved(r.memory_mb, o.memory_mb, 0)
            || moved(r.pkgdir_free_mb, o.pkgdir_free_mb, 1024)
            || moved(r.tmpdir_free_mb, o.tmpdir_free_mb, 1024)
    }

    /// The limits a report must keep (the orchestrator refuses one that does not).
    pub fn check(&self) -> Result<(), EnvironmentError> {
        if self.fingerprint.len() + self.repos.len() > MAX_KEYS {
            return Err(EnvironmentError::TooManyKeys);
        }
        for (k, v) in self
            .fingerprint
            .iter()
            .chain(self.repos.iter().map(|(k, r)| (k, &r.revision)))
        {
            if !valid_key(k) {
                return Err(EnvironmentError::BadKey {
                    line: 0,
                    key: crate::sys::process::tail_str(k, 80).to_string(),
                });
            }
            if v.len() > MAX_VALUE_BYTES {
                return Err(EnvironmentError::TooLong {
                    key: k.clone(),
                    len: v.len(),
                });
            }
        }
        if self.capabilities.len() > MAX_CAPABILITIES {
            return Err(EnvironmentError::TooManyCapabilities);
        }
        self.capabilities
            .iter()
            .try_for_each(|c| check_capability(c))?;
        if let Some(e) = &self.error {
            if e.len() > MAX_VALUE_BYTES {
                return Err(EnvironmentError::TooLong {
                    key: "error".into(),
                    len: e.len(),
                });
            }
        }
        Ok(())
    }
}

/// The environment drones are expected to have: values per key and repository revisions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    pub keys: BTreeMap<String, String>,
    pub repos: BTreeMap<String, RepoRevision>,
}

impl Expected {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.repos.is_empty()
    }
}

/// How a drone's environment fits the expected one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// Nothing is expected, or the drone reports no fingerprint (an older drone, or
    /// `environment_command = []`): it counts as matching.
    Unspecified,
    Matched,
    /// Only repository revisions differ, each older than expected (or of unknown age):
    /// the drone is told to sync.
    Lagging {
        repos: Vec<String>,
    },
    /// Only repository revisions differ, each newer than expected: the reference drone
    /// (if there is one) is told to sync.
    Ahead {
        repos: Vec<String>,
    },
    /// These keys differ (a repository as `REPO_REVISION/<name>`).
    Mismatched {
        keys: Vec<String>,
    },
    /// Its environment command failed.
    Broken {
        reason: String,
    },
}

impl Fit {
    /// May the drone be given work?
    pub fn may_build(&self) -> bool {
        matches!(self, Fit::Unspecified | Fit::Matched)
    }

    /// What an operator reads in the drone's `mismatch` field.
    pub fn describe(&self) -> Option<String> {
        match self {
            Fit::Unspecified | Fit::Matched => None,
            Fit::Lagging { repos } => Some(format!(
                "repository revision lags: {} (told to sync)",
                repos.join(", ")
            )),
            Fit::Ahead { repos } => Some(format!(
                "repository revision newer than expected: {} (the reference drone is told to sync)",
                repos.join(", ")
            )),
            Fit::Mismatched { keys } => Some(format!("differs: {}", keys.join(", "))),
            Fit::Broken { reason } => Some(format!("environment command failed: {reason}")),
        }
    }
}

/// FEATURES as compared: only [`RELEVANT_FEATURES`], sorted.
fn relevant_features(v: &str) -> Vec<&str> {
    let mut on: Vec<&str> = Vec::new();
    for f in v.split_whitespace() {
        let (name, set) = match f.strip_prefix('-') {
            Some(n) => (n, false),
            None => (f, true),
        };
        if !RELEVANT_FEATURES.contains(&name) {
            continue;
        }
        on.retain(|x| *x != name);
        if set {
            on.push(name);
        }
    }
    on.sort_unstable();
    on
}

/// Whether two values of `key` mean the same: USE and ACCEPT_KEYWORDS as sets, FEATURES
/// by its relevant flags, the rest with whitespace runs collapsed.
pub fn same_value(key: &str, a: &str, b: &str) -> bool {
    match key {
        "USE" | "ACCEPT_KEYWORDS" => {
            let set = |v: &str| -> std::collections::BTreeSet<String> {
                v.split_whitespace().map(str::to_string).collect()
            };
            set(a) == set(b)
        }
        "FEATURES" => relevant_features(a) == relevant_features(b),
        _ => {
            let norm = |v: &str| v.split_whitespace().collect::<Vec<_>>().join(" ");
            norm(a) == norm(b)
        }
    }
}

/// How `env` (None: the drone reported none) fits `expected`.
pub fn fit(expected: &Expected, env: Option<&DroneEnvironment>) -> Fit {
    if expected.is_empty() {
        return Fit::Unspecified;
    }
    let Some(env) = env else {
        return Fit::Unspecified;
    };
    if let Some(reason) = &env.error {
        return Fit::Broken {
            reason: reason.clone(),
        };
    }
    if env.fingerprint.is_empty() && env.repos.is_empty() {
        return Fit::Unspecified;
    }
    let mut keys: Vec<String> = expected
        .keys
        .iter()
        .filter(|(k, want)| {
            env.fingerprint
                .get(*k)
                .is_none_or(|have| !same_value(k, want, have))
        })
        .map(|(k, _)| k.clone())
        .collect();
    let mut lagging = Vec::new();
    let mut ahead = Vec::new();
    for (name, want) in &expected.repos {
        match env.repos.get(name) {
            Some(have) if have.revision == want.revision => {}
            Some(have) => {
                let newer = matches!((have.timestamp, want.timestamp), (Some(h), Some(w)) if h > w);
                if newer {
                    ahead.push(name.clone());
                } else {
                    lagging.push(name.clone());
                }
            }
            None => keys.push(format!("{REPO_REVISION}{name}")),
        }
    }
    match (keys.is_empty(), lagging.is_empty(), ahead.is_empty()) {
        (true, true, true) => Fit::Matched,
        (true, false, true) => Fit::Lagging { repos: lagging },
        (true, true, false) => Fit::Ahead { repos: ahead },
        _ => {
            let mut repos: Vec<&String> = lagging.iter().chain(ahead.iter()).collect();
            repos.sort();
            keys.extend(repos.into_iter().map(|r| format!("{REPO_REVISION}{r}")));
            Fit::Mismatched { keys }
        }
    }
}

/// The expected environment taken from a reference drone's: the `keys` it has, and its
/// repositories.
pub fn expected_from(env: &DroneEnvironment, keys: &[String]) -> Expected {
    Expected {
        keys: keys
            .iter()
            .filter_map(|k| env.fingerprint.get(k).map(|v| (k.clone(), v.clone())))
            .collect(),
        repos: env.repos.clone(),
    }
}

/// What a package needs of the drone that builds it (JSON sets: `requires`,
/// `min_memory_mb`, `min_disk_mb`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Requirements {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_memory_mb: Option<u64>,
    /// Free disk, in PKGDIR and PORTAGE_TMPDIR alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_disk_mb: Option<u64>,
}

impl Requirements {
    pub fn is_empty(&self) -> bool {
        self.requires.is_empty() && self.min_memory_mb.is_none() && self.min_disk_mb.is_none()
    }

    /// What a drone with `env` lacks for this package (None: it may build it). A drone
    /// that reported no environment has no capabilities and no known resources: it may
    /// build only packages without requirements.
    pub fn unmet(&self, env: Option<&DroneEnvironment>) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let empty = DroneEnvironment::default();
        let env = env.unwrap_or(&empty);
        let mut lacks = Vec::new();
        for c in &self.requires {
            if !env.capabilities.contains(c) {
                lacks.push(c.clone());
            }
        }
        if let Some(m) = self.min_memory_mb.filter(|m| env.resources.memory_mb < *m) {
            lacks.push(format!("{m} MB memory"));
        }
        if let Some(d) = self
            .min_disk_mb
            .filter(|d| env.resources.pkgdir_free_mb < *d || env.resources.tmpdir_free_mb < *d)
        {
            lacks.push(format!("{d} MB free disk"));
        }
        (!lacks.is_empty()).then(|| lacks.join(", "))
    }

    /// The requirements as an operator reads them: `big-mem, 16000 MB memory`.
    pub fn describe(&self) -> String {
        let mut parts = self.requires.clone();
        if let Some(m) = self.min_memory_mb {
            parts.push(format!("{m} MB memory"));
        }
        if let Some(d) = self.min_disk_mb {
            parts.push(format!("{d} MB free disk"));
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests;
