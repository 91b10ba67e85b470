//! `swarm-orchestrator --config FILE` (docs/contract.md §2, orchestrator keys).

use super::{check_url, env_override, load_file, ConfigError};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrchestratorConfig {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// Shown in status and used by the gateway.
    pub name: String,
    /// Durable state (SQLite) lives here.
    pub state_dir: PathBuf,
    /// Uploads land here, one directory per lease.
    pub staging_dir: PathBuf,
    /// Verified packages are published here (PKGDIR layout).
    pub binhost_dir: PathBuf,
    /// The rsync destination drones use for `staging_dir`; empty = `staging_dir` itself.
    pub upload_target: String,
    /// argv run after publishing (coalesced: one run covers every publish since the last).
    pub publish_command: Vec<String>,
    /// Seconds `publish_command` may run before it is killed.
    pub publish_timeout_s: u64,
    /// Gateway URL to register with (optional).
    pub gateway: Option<String>,
    /// The URL the gateway should use to reach this orchestrator (defaults from `listen`).
    pub public_url: Option<String>,
    /// Largest accepted package-set body, in bytes.
    pub max_submit_bytes: usize,
    pub auth: AuthConfig,
    pub binhost: BinhostConfig,
    pub signing: SigningConfig,
    pub releases: ReleasesConfig,
    pub environment: EnvironmentConfig,
    pub breaker: BreakerConfig,
    pub leases: LeaseConfig,
    pub policy: PolicyConfig,
    pub log: LogConfig,
    /// `[[notify]]`: where events go (webhooks, programs).
    pub notify: Vec<super::notify::NotifyConfig>,
    /// `[heal]`: restarting drones that stay offline.
    pub heal: super::notify::HealConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub admin_token: Option<String>,
    /// The token every drone may use (for drones not enrolled with their own).
    pub drone_token: Option<String>,
    /// Whether `drone_token` works at all; `false`: only enrolled drones' own tokens do.
    pub shared_drone_token: bool,
    /// When set, read endpoints need this token (or the admin or drone token).
    pub read_token: Option<String>,
}

/// `[binhost]`: the `Packages` index the orchestrator writes and serving the binhost.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BinhostConfig {
    /// Write `binhost_dir/Packages` as packages are published; a package's dependents
    /// are handed out only once an index that lists it is on disk.
    pub index: bool,
    /// Write `Packages.gz` beside it (Portage fetches that first).
    pub compress_index: bool,
    /// At most one index write per this many milliseconds; publishes in between go into
    /// the next write.
    pub write_interval_ms: u64,
    /// Serve `binhost_dir` at `/binhost/` (read-only, no listing).
    pub serve: bool,
    /// Header keys of the index (the builders' profile and configuration: `ARCH`,
    /// `ACCEPT_KEYWORDS`, `PROFILE`, `USE`, …). `CHOST` defaults to the first published
    /// package's.
    pub header: std::collections::BTreeMap<String, String>,
}

impl Default for BinhostConfig {
    fn default() -> Self {
        BinhostConfig {
            index: true,
            compress_index: true,
            write_interval_ms: 1000,
            serve: true,
            header: Default::default(),
        }
    }
}

/// `[signing]`: the orchestrator signs every published gpkg (Portage's
/// `binpkg-signing` layout) with one OpenPGP key it holds; drones hold no key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    /// An ASCII-armored OpenPGP secret key (`gpg --armor --export-secret-keys`); none:
    /// packages are published unsigned.
    pub key: Option<PathBuf>,
    /// `true` (the default once `key` is set): what cannot be signed (an xpak `.tbz2`, an
    /// artifact that is no gpkg) is refused, never published unsigned. `false`: gpkgs are
    /// signed, anything else is published unsigned with a warning.
    pub required: Option<bool>,
    /// The environment variable holding the key's passphrase, if it has one.
    pub passphrase_env: String,
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig {
            key: None,
            required: None,
            passphrase_env: "BUILD_SWARM_SIGNING_PASSPHRASE".into(),
        }
    }
}

/// `[releases]`: snapshots of the binhost, channels served under `/binhost/<channel>/`,
/// and how long what nothing references any more is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReleasesConfig {
    /// Snapshots and channels; on the binhost's filesystem (snapshots are hard links).
    /// Default: `binhost_dir` with `.releases` appended.
    pub dir: Option<PathBuf>,
    /// Keep the newest this many snapshots.
    pub keep_last: usize,
    /// Keep snapshots younger than this many days.
    pub keep_days: u64,
    /// Keep what a channel served, and live package files no longer indexed, this many
    /// seconds after that stopped (clients may hold an index that lists them).
    pub grace_s: u64,
    /// Apply the retention policy this often (seconds; 0: only `build-swarm binhost gc`).
    pub gc_interval_s: u64,
}

/// `[environment]`: the build environment drones must have to be given work
/// (docs/design.md, "Environments").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvironmentConfig {
    /// Fixed values (`CHOST = "…"`, `CFLAGS = "…"`, `"REPO_REVISION/gentoo" = "…"`);
    /// they win over the reference drone's.
    pub expected: std::collections::BTreeMap<String, String>,
    /// A drone whose reported environment is the reference for the others (its `keys`
    /// and its repositories).
    pub reference: Option<String>,
    /// The keys taken from the reference drone.
    pub keys: Vec<String>,
    /// Ask a lagging drone to sync again after this many seconds if it still lags.
    pub resync_s: u64,
}

impl Default for EnvironmentConfig {
    fn default() -> Self {
        EnvironmentConfig {
            expected: Default::default(),
            reference: None,
            keys: crate::domain::environment::DEFAULT_KEYS
                .iter()
                .map(|k| k.to_string())
                .collect(),
            resync_s: 3600,
        }
    }
}

impl Default for ReleasesConfig {
    fn default() -> Self {
        ReleasesConfig {
            dir: None,
            keep_last: 10,
            keep_days: 30,
            grace_s: 86_400,
            gc_interval_s: 3600,
        }
    }
}

impl SigningConfig {
    /// Whether a package that cannot be signed is refused.
    pub fn is_required(&self) -> bool {
        self.key.is_some() && self.required.unwrap_or(true)
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            admin_token: None,
            drone_token: None,
            shared_drone_token: true,
            read_token: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures that ground a drone.
    pub max_failures: u32,
    /// Seconds a grounded drone waits before it may work again (then one probe lease).
    pub cooloff_s: u64,
    /// Never more than this share of the online drones grounded at once; past it the
    /// failures are a central fault and drones back off instead.
    pub max_grounded_share: f64,
    /// During a central fault a failing drone pauses this long (jittered ±50 %).
    pub central_backoff_s: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            max_failures: 5,
            cooloff_s: 120,
            max_grounded_share: 0.5,
            central_backoff_s: 15,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseConfig {
    /// A drone with no heartbeat for this long is offline and its leases are reclaimed.
    pub heartbeat_ttl_s: u64,
    /// A lease must reach `uploading` within this long after the claim.
    pub build_timeout_s: u64,
    /// A lease must complete within this long after `uploading`.
    pub upload_timeout_s: u64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            heartbeat_ttl_s: 60,
            build_timeout_s: 6 * 3600,
            upload_timeout_s: 900,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// A package whose build failed on this many distinct drones is `failed` for good.
    pub build_failure_drones: u32,
    /// Infrastructure failures of one package before it is `failed`.
    pub max_infra_retries: u32,
    /// After an infrastructure failure a package waits this long before it is handed out
    /// again, doubling with each further failure (at most 10 minutes).
    pub infra_backoff_s: u64,
    /// The order ready packages are handed out in.
    pub order: ScheduleOrder,
}

/// `[policy] order`: which ready package a claim gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleOrder {
    /// The one with the longest remaining dependency chain (sum of `estimate_s`), then set
    /// order.
    #[default]
    CriticalPath,
    /// Set order only (first in, first out), as a baseline.
    Fifo,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            build_failure_drones: 2,
            max_infra_retries: 5,
            infra_backoff_s: 10,
            order: ScheduleOrder::CriticalPath,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// trace, debug, info, warning, error, critical
    pub level: String,
    /// Log to this file instead of standard error.
    pub file: Option<PathBuf>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            file: None,
        }
    }
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        OrchestratorConfig {
            listen: "0.0.0.0:8080".into(),
            name: "orchestrator".into(),
            state_dir: "/var/lib/build-swarm".into(),
            staging_dir: "/var/cache/build-swarm/staging".into(),
            binhost_dir: "/var/cache/build-swarm/binhost".into(),
            upload_target: String::new(),
            publish_command: Vec::new(),
            publish_timeout_s: 600,
            gateway: None,
            public_url: None,
            max_submit_bytes: 64 * 1024 * 1024,
            auth: AuthConfig::default(),
            binhost: BinhostConfig::default(),
            signing: SigningConfig::default(),
            releases: ReleasesConfig::default(),
            environment: EnvironmentConfig::default(),
            breaker: BreakerConfig::default(),
            leases: LeaseConfig::default(),
            policy: PolicyConfig::default(),
            log: LogConfig::default(),
            notify: Vec::new(),
            heal: super::notify::HealConfig::default(),
        }
    }
}

/// The tokens after environment overrides; both are required.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub admin: String,
    /// The shared drone token; `None` when `[auth] shared_drone_token = false`.
    pub drone: Option<String>,
    pub read: Option<String>,
}

impl OrchestratorConfig {
    /// Reads, applies the environment and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut cfg: OrchestratorConfig = load_file(path)?;
        cfg.apply_env();
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn apply_env(&mut self) {
        self.auth.admin_token =
            env_override("BUILD_SWARM_ADMIN_TOKEN", self.auth.admin_token.take());
        self.auth.drone_token =
            env_override("BUILD_SWARM_DRONE_TOKEN", self.auth.drone_token.take());
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            ConfigError::invalid(
                "listen",
                format!("`{}` is not an address like 0.0.0.0:8080", self.listen),
            )
        })
    }

    /// Where snapshots and channels live (`[releases] dir`, or beside `binhost_dir`).
    pub fn releases_dir(&self) -> PathBuf {
        self.releases.dir.clone().unwrap_or_else(|| {
            // A sibling of binhost_dir (however it is written, `/x/` too).
            let mut name = self
                .binhost_dir
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default();
            name.push(".releases");
            match self.binhost_dir.parent() {
                Some(parent) => parent.join(name),
                None => PathBuf::from(name),
            }
        })
    }

    /// What drones are told to rsync into.
    pub fn effective_upload_target(&self) -> String {
        if self.upload_target.trim().is_empty() {
            self.staging_dir.display().to_string()
        } else {
            self.upload_target.trim().trim_end_matches('/').to_string()
        }
    }

    pub fn tokens(&self) -> Result<Tokens, ConfigError> {
        let admin = self
            .auth
            .admin_token
            .clone()
            .ok_or_else(|| ConfigError::Missing {
                key: "auth.admin_token".into(),
                hint: " (set it in [auth] or BUILD_SWARM_ADMIN_TOKEN)".into(),
            })?;
        let drone = if self.auth.shared_drone_token {
            Some(self.auth.drone_token.clone().ok_or_else(|| {
                ConfigError::Missing {
                    key: "auth.drone_token".into(),
                    hint: " (set it in [auth] or BUILD_SWARM_DRONE_TOKEN, or set \
                               [auth] shared_drone_token = false and enroll each drone)"
                        .into(),
                }
            })?)
        } else {
            None
        };
        Ok(Tokens {
            admin,
            drone,
            read: self.auth.read_token.clone().filter(|t| !t.is_empty()),
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        for (i, n) in self.notify.iter().enumerate() {
            n.validate(i)?;
            if let Some(j) = self.notify[..i]
                .iter()
                .position(|m| m.sink_name() == n.sink_name())
            {
                return Err(ConfigError::invalid(
                    &format!("notify[{i}]"),
                    format!(
                        "sends to the same {} as notify[{j}]; merge their `events` into one entry",
                        if n.url.is_some() { "url" } else { "command" }
                    ),
                ));
            }
        }
        self.heal.validate()?;
        if let Some(r) = &self.environment.reference {
            crate::domain::check_drone_name(r)
                .map_err(|e| ConfigError::invalid("environment.reference", e.to_string()))?;
        }
        let mut expected = crate::domain::environment::DroneEnvironment::default();
        for (k, v) in &self.environment.expected {
            match k.strip_prefix(crate::domain::environment::REPO_REVISION) {
                Some(repo) => {
                    expected.repos.insert(
                        repo.to_string(),
                        crate::domain::environment::RepoRevision {
                            revision: v.clone(),
                            timestamp: None,
                        },
                    );
                }
                None => {
                    expected.fingerprint.insert(k.clone(), v.clone());
                }
            }
        }
        expected
            .check()
            .map_err(|e| ConfigError::invalid("environment.expected", e.to_string()))?;
        if self.environment.resync_s < 60 {
            return Err(ConfigError::invalid(
                "environment.resync_s",
                "must be at least 60",
            ));
        }
        if self.name.trim().is_empty() {
            return Err(ConfigError::invalid("name", "must not be empty"));
        }
        for (key, dir) in [
            ("state_dir", &self.state_dir),
            ("staging_dir", &self.staging_dir),
            ("binhost_dir", &self.binhost_dir),
        ] {
            if dir.as_os_str().is_empty() {
                return Err(ConfigError::invalid(key, "must not be empty"));
            }
        }
        if self.staging_dir.starts_with(&self.binhost_dir)
            || self.binhost_dir.starts_with(&self.staging_dir)
        {
            return Err(ConfigError::invalid(
                "binhost_dir",
                "must not contain staging_dir or be inside it (uploads would be served and indexed half-written)",
            ));
        }
        if self.staging_dir == self.binhost_dir {
            return Err(ConfigError::invalid(
                "binhost_dir",
                "must differ from staging_dir (uploads must never show up half-written in the binhost)",
            ));
        }
        if self.publish_command.first().is_some_and(|c| c.is_empty()) {
            return Err(ConfigError::invalid(
                "publish_command",
                "the program name (first element) is empty",
            ));
        }
        for (key, url) in [("gateway", &self.gateway), ("public_url", &self.public_url)] {
            if let Some(url) = url {
                check_url(key, url)?;
            }
        }
        if self.breaker.max_failures == 0 {
            return Err(ConfigError::invalid(
                "breaker.max_failures",
                "must be at least 1",
            ));
        }
        for (key, v) in [
            ("leases.heartbeat_ttl_s", self.leases.heartbeat_ttl_s),
            ("leases.build_timeout_s", self.leases.build_timeout_s),
            ("leases.upload_timeout_s", self.leases.upload_timeout_s),
            ("publish_timeout_s", self.publish_timeout_s),
        ] {
            if v == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1 second"));
            }
        }
        let releases = self.releases_dir();
        for (key, dir) in [
            ("binhost_dir", &self.binhost_dir),
            ("staging_dir", &self.staging_dir),
        ] {
            if releases.starts_with(dir) || dir.starts_with(&releases) {
                return Err(ConfigError::invalid(
                    "releases.dir",
                    format!(
                        "{} must not be inside {key} ({}) or contain it",
                        releases.display(),
                        dir.display()
                    ),
                ));
            }
        }
        if self.releases.grace_s < 60 {
            return Err(ConfigError::invalid(
                "releases.grace_s",
                "must be at least 60 seconds (clients holding an older index need its files)",
            ));
        }
        if self.signing.required == Some(true) && self.signing.key.is_none() {
            return Err(ConfigError::Missing {
                key: "signing.key".into(),
                hint: " (signing.required = true needs the key to sign with)".into(),
            });
        }
        if self
            .signing
            .key
            .as_ref()
            .is_some_and(|k| k.as_os_str().is_empty())
        {
            return Err(ConfigError::invalid("signing.key", "must not be empty"));
        }
        if self.binhost.write_interval_ms > 60_000 {
            return Err(ConfigError::invalid(
                "binhost.write_interval_ms",
                "must be at most 60000 (dependents wait for the index)",
            ));
        }
        for (k, v) in &self.binhost.header {
            let name_ok = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !name_ok || matches!(k.as_str(), "PACKAGES" | "TIMESTAMP" | "VERSION") {
                return Err(ConfigError::invalid(
                    &format!("binhost.header.{k}"),
                    "header keys are upper-case names other than PACKAGES, TIMESTAMP and VERSION",
                ));
            }
            if v.contains('\n') {
                return Err(ConfigError::invalid(
                    &format!("binhost.header.{k}"),
                    "must be one line",
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.breaker.max_grounded_share) {
            return Err(ConfigError::invalid(
                "breaker.max_grounded_share",
                format!(
                    "{} is not a share between 0.0 and 1.0",
                    self.breaker.max_grounded_share
                ),
            ));
        }
        if self.policy.build_failure_drones == 0 {
            return Err(ConfigError::invalid(
                "policy.build_failure_drones",
                "must be at least 1",
            ));
        }
        if self.max_submit_bytes < 1024 {
            return Err(ConfigError::invalid(
                "max_submit_bytes",
                "must be at least 1024",
            ));
        }
        crate::sys::logging::parse_level(&self.log.level).ok_or_else(|| {
            ConfigError::invalid(
                "log.level",
                format!(
                    "`{}` is not one of trace, debug, info, warning, error, critical",
                    self.log.level
                ),
            )
        })?;
        self.tokens()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_toml;

    fn parse(text: &str) -> Result<OrchestratorConfig, ConfigError> {
        let cfg: OrchestratorConfig = parse_toml(text, Path::new("o.toml"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    const TOKENS: &str = "[auth]\nadmin_token = \"a\"\ndrone_token = \"d\"\n";

    #[test]
    fn defaults_follow_the_spec() {
        let cfg = parse(TOKENS).unwrap();
        assert_eq!(cfg.listen, "0.0.0.0:8080");
        assert_eq!(cfg.breaker.max_failures, 5);
        assert_eq!(cfg.breaker.cooloff_s, 120);
        assert_eq!(cfg.policy.order, ScheduleOrder::CriticalPath);
    }

    #[test]
    fn schedule_order_is_read_and_checked() {
        let cfg = parse(&format!("{TOKENS}[policy]\norder = \"fifo\"\n")).unwrap();
        assert_eq!(cfg.policy.order, ScheduleOrder::Fifo);
        let err = parse(&format!("{TOKENS}[policy]\norder = \"random\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("order"), "{err}");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse(&format!("{TOKENS}[breaker]\nmax_failure = 3\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_failure"), "{err}");
        assert!(err.contains("line 5"), "{err}");
    }

    #[test]
    fn impossible_values_are_named() {
        let err = parse(&format!("listen = \"nowhere\"\n{TOKENS}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`listen`"), "{err}");
        let err = parse(&format!("{TOKENS}[leases]\nheartbeat_ttl_s = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("leases.heartbeat_ttl_s"), "{err}");
        let err = parse("").unwrap_err().to_string();
        assert!(err.contains("auth.admin_token"), "{err}");
    }

    #[test]
    fn the_shared_drone_token_is_on_unless_switched_off() {
        let tokens = parse(TOKENS).unwrap().tokens().unwrap();
        assert_eq!(tokens.drone.as_deref(), Some("d"));
        let no_shared = "[auth]\nadmin_token = \"a\"\nshared_drone_token = false\n";
        let tokens = parse(no_shared).unwrap().tokens().unwrap();
        assert_eq!(tokens.drone, None);
        let err = parse("[auth]\nadmin_token = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("auth.drone_token") && err.contains("shared_drone_token"),
            "{err}"
        );
    }
}
