//! `swarm-drone --config FILE` (docs/contract.md §2, drone keys).

use super::check_url;
use super::{check_rsync_options, env_override, load_file, target_kind, ConfigError, TargetKind};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DroneConfig {
    /// Unique name of this drone (default: the host name).
    pub name: String,
    /// Other names the CLI may use for it.
    pub aliases: Vec<String>,
    /// Address the CLI uses for ssh (default: the host name).
    pub host: String,
    /// Ask this gateway which orchestrator to use (at start, when there is no work, when
    /// the orchestrator stops answering).
    pub gateway: Option<String>,
    /// Or talk to this orchestrator directly (used first when both are set).
    pub orchestrator: Option<String>,
    /// The drone token (BUILD_SWARM_DRONE_TOKEN overrides).
    pub token: Option<String>,
    /// Concurrent builds.
    pub slots: u32,
    /// Portage's PKGDIR: where builds leave their binary packages.
    pub pkgdir: PathBuf,
    /// argv of a build, never run through a shell. Placeholders: {atom} {category} {name}
    /// {version} {pkgdir}.
    pub build_command: Vec<String>,
    /// A build running longer than this is killed (with everything it started).
    pub build_timeout_s: u64,
    /// A build printing nothing for this long is hung and killed.
    pub build_idle_timeout_s: u64,
    /// argv the CLI runs over ssh when the drone does not answer over HTTP.
    pub restart_command: Vec<String>,
    /// Per-package build logs and unsent results live here.
    pub state_dir: PathBuf,
    /// Seconds between claims when there was no work (fractions allowed, at least 0.001).
    pub idle_poll_s: f64,
    /// With a gateway: ask it again after this long without work.
    pub no_work_recheck_s: u64,
    /// argv printing the build environment as `KEY=VALUE` lines (docs/contract.md, drone
    /// keys); empty: report none (the drone counts as matching any environment).
    pub environment_command: Vec<String>,
    /// `environment_command` is killed after this long (and the failure reported).
    pub environment_timeout_s: u64,
    /// Run `environment_command` again this often; a changed environment is reported with
    /// the next heartbeat.
    pub environment_check_s: u64,
    /// What the operator declares this drone has (`x86-64-v3`, `big-mem`): packages that
    /// require one go only to drones that have it.
    pub capabilities: Vec<String>,
    /// argv run when the orchestrator says the repositories lag (or `build-swarm DRONE
    /// sync`); the environment is checked again after it.
    pub sync_command: Vec<String>,
    /// `sync_command` is killed after this long.
    pub sync_timeout_s: u64,
    pub upload: UploadConfig,
    pub log: super::orchestrator::LogConfig,
    /// `[metrics]`: serving the drone's own Prometheus metrics.
    pub metrics: DroneMetricsConfig,
}

/// `[metrics]` of the drone config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DroneMetricsConfig {
    /// `IP:PORT` to serve `GET /metrics` on (OpenMetrics text); unset: not served.
    pub listen: Option<String>,
}

impl DroneMetricsConfig {
    pub fn listen_addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        self.listen
            .as_deref()
            .map(|l| {
                l.parse().map_err(|_| {
                    ConfigError::invalid(
                        "metrics.listen",
                        format!("`{l}` is not an address like 0.0.0.0:9101"),
                    )
                })
            })
            .transpose()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Overrides the orchestrator's `upload_target`.
    pub target: Option<String>,
    /// rsync `--timeout`: a transfer that moves nothing for this long ends itself.
    pub stall_timeout_s: u64,
    /// The upload supervisor kills the whole rsync process group after this long.
    pub total_timeout_s: u64,
    /// ssh options for the rsync transport.
    pub ssh_options: Vec<String>,
    /// ssh private key (`-i`).
    pub ssh_identity: Option<PathBuf>,
    /// Extra rsync arguments.
    pub rsync_options: Vec<String>,
    /// Share one ssh connection among uploads to the same target (an ssh master the drone
    /// owns, its `ControlPath` in `state_dir/ssh/`); uploads fall back to their own
    /// connection whenever the master is not up.
    pub reuse_connections: bool,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            target: None,
            stall_timeout_s: 300,
            total_timeout_s: 600,
            ssh_options: [
                "-o",
                "ConnectTimeout=30",
                "-o",
                "ServerAliveInterval=30",
                "-o",
                "BatchMode=yes",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            ssh_identity: None,
            rsync_options: Vec::new(),
            reuse_connections: REUSE_CONNECTIONS_DEFAULT,
        }
    }
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Default for DroneConfig {
    fn default() -> Self {
        DroneConfig {
            name: host_name(),
            aliases: Vec::new(),
            host: host_name(),
            gateway: None,
            orchestrator: None,
            token: None,
            slots: 1,
            pkgdir: "/var/cache/binpkgs".into(),
            build_command: ["emerge", "--oneshot", "--buildpkg", "--usepkg=n", "={atom}"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            build_timeout_s: 6 * 3600,
            build_idle_timeout_s: 3600,
            restart_command: ["rc-service", "swarm-drone", "restart"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            state_dir: "/var/lib/build-swarm-drone".into(),
            idle_poll_s: 5.0,
            no_work_recheck_s: 60,
            environment_command: vec!["sh".into(), "-c".into(), DEFAULT_ENVIRONMENT_SCRIPT.into()],
            environment_timeout_s: 120,
            environment_check_s: 300,
            capabilities: Vec::new(),
            sync_command: ["emaint", "sync", "--auto"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            sync_timeout_s: 3600,
            upload: UploadConfig::default(),
            log: super::orchestrator::LogConfig::default(),
            metrics: DroneMetricsConfig::default(),
        }
    }
}

/// What the default `environment_command` runs (`sh -c`): Portage's view of the keys
/// that decide a binary package (`portageq envvar`), the profile, and each repository's
/// revision (git HEAD and commit time, else `metadata/timestamp.x` or `.chk`) from the
/// repositories `emerge --info` lists.
pub const DEFAULT_ENVIRONMENT_SCRIPT: &str = r#"set -e
# portageq exits 1 when one of them is unset, but prints them all.
vars=$(portageq envvar -v CHOST CBUILD CFLAGS CXXFLAGS LDFLAGS USE ACCEPT_KEYWORDS FEATURES BINPKG_FORMAT PKGDIR PORTAGE_TMPDIR PORTAGE_CONFIGROOT) || [ -n "$vars" ]
printf '%s
' "$vars"
eval "$vars"
profile=$(realpath "${PORTAGE_CONFIGROOT:-/}/etc/portage/make.profile")
echo "PROFILE=${profile#*/profiles/}"
emerge --info | awk '/^Repositories:/ {r = 1; next} r && /^[^ ]/ && /=/ {exit} r && /^[^ ]/ {name = $1} r && /^    location: / {print name, $2}' |
while read -r repo path; do
  rev=; ts=
  if [ -d "$path/.git" ] && command -v git >/dev/null; then
    rev=$(git -C "$path" rev-parse HEAD 2>/dev/null || true)
    ts=$(git -C "$path" log -1 --format=%ct 2>/dev/null || true)
  elif [ -f "$path/metadata/timestamp.x" ]; then
    ts=$(cut -d' ' -f1 "$path/metadata/timestamp.x"); rev=$ts
  elif [ -f "$path/metadata/timestamp.chk" ]; then
    rev=$(head -n1 "$path/metadata/timestamp.chk"); ts=$(date -u -d "$rev" +%s 2>/dev/null || true)
  fi
  echo "REPO_REVISION/$repo=${rev:-unknown}"
  if [ -n "$ts" ]; then echo "REPO_TIMESTAMP/$repo=$ts"; fi
done
"#;

/// `[upload] reuse_connections` unless configured.
pub const REUSE_CONNECTIONS_DEFAULT: bool = true;

/// Placeholders `build_command` may use.
pub const PLACEHOLDERS: &[&str] = &["{atom}", "{category}", "{name}", "{version}", "{pkgdir}"];

impl DroneConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut cfg: DroneConfig = load_file(path)?;
        cfg.apply_env();
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn apply_env(&mut self) {
        self.token = env_override("BUILD_SWARM_DRONE_TOKEN", self.token.take());
    }

    /// `idle_poll_s` as a duration.
    pub fn idle_poll(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.idle_poll_s.clamp(0.001, 3600.0))
    }

    pub fn token(&self) -> Result<String, ConfigError> {
        self.token.clone().ok_or_else(|| ConfigError::Missing {
            key: "token".into(),
            hint: " (set it or BUILD_SWARM_DRONE_TOKEN)".into(),
        })
    }

    /// Checks an upload target the drone will use (its own, or the one the orchestrator
    /// announced) against the rsync options.
    pub fn check_target(&self, target: &str) -> Result<(), ConfigError> {
        let key = if self.upload.target.is_some() {
            "upload.rsync_options"
        } else {
            "upload.rsync_options (with the orchestrator's upload_target)"
        };
        check_rsync_options(key, &self.upload.rsync_options, target)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::domain::check_drone_name(&self.name)
            .map_err(|e| ConfigError::invalid("name", e.to_string()))?;
        self.metrics.listen_addr()?;
        if self.gateway.is_none() && self.orchestrator.is_none() {
            return Err(ConfigError::Missing {
                key: "orchestrator".into(),
                hint: " (or `gateway`): the drone needs to know where to get work".into(),
            });
        }
        for (key, url) in [
            ("gateway", &self.gateway),
            ("orchestrator", &self.orchestrator),
        ] {
            if let Some(url) = url {
                check_url(key, url)?;
            }
        }
        self.token()?;
        if self.slots == 0 || self.slots > 256 {
            return Err(ConfigError::invalid("slots", "must be 1-256"));
        }
        match self.build_command.first() {
            None => return Err(ConfigError::invalid("build_command", "must not be empty")),
            Some(p) if p.is_empty() => {
                return Err(ConfigError::invalid(
                    "build_command",
                    "the program name is empty",
                ))
            }
            _ => {}
        }
        for arg in &self.build_command {
            let mut rest = arg.as_str();
            while let Some(open) = rest.find('{') {
                let tail = &rest[open..];
                let close = tail.find('}').map(|c| c + 1).unwrap_or(tail.len());
                let ph = &tail[..close];
                if !PLACEHOLDERS.contains(&ph) {
                    return Err(ConfigError::invalid(
                        "build_command",
                        format!(
                            "unknown placeholder `{ph}` in `{arg}`; use {}",
                            PLACEHOLDERS.join(" ")
                        ),
                    ));
                }
                rest = &tail[close..];
            }
        }
        if self.restart_command.is_empty() {
            return Err(ConfigError::invalid("restart_command", "must not be empty"));
        }
        if self.sync_command.first().is_none_or(|p| p.is_empty()) {
            return Err(ConfigError::invalid("sync_command", "must name a program"));
        }
        if self
            .environment_command
            .first()
            .is_some_and(|p| p.is_empty())
        {
            return Err(ConfigError::invalid(
                "environment_command",
                "the program name is empty (use [] to report no environment)",
            ));
        }
        if self.capabilities.len() > crate::domain::environment::MAX_CAPABILITIES {
            return Err(ConfigError::invalid(
                "capabilities",
                format!(
                    "at most {} capabilities",
                    crate::domain::environment::MAX_CAPABILITIES
                ),
            ));
        }
        for c in &self.capabilities {
            crate::domain::environment::check_capability(c)
                .map_err(|e| ConfigError::invalid("capabilities", e.to_string()))?;
        }
        for (key, v) in [
            ("build_timeout_s", self.build_timeout_s),
            ("build_idle_timeout_s", self.build_idle_timeout_s),
            ("upload.stall_timeout_s", self.upload.stall_timeout_s),
            ("upload.total_timeout_s", self.upload.total_timeout_s),
            ("environment_timeout_s", self.environment_timeout_s),
            ("environment_check_s", self.environment_check_s),
            ("sync_timeout_s", self.sync_timeout_s),
        ] {
            if v == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1 second"));
            }
        }
        if !(self.idle_poll_s.is_finite() && (0.001..=3600.0).contains(&self.idle_poll_s)) {
            return Err(ConfigError::invalid(
                "idle_poll_s",
                format!("{} is not between 0.001 and 3600 seconds", self.idle_poll_s),
            ));
        }
        if self.pkgdir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("pkgdir", "must not be empty"));
        }
        for opt in &self.upload.rsync_options {
            // Options that would defeat the one-file, never-half-written upload.
            let name = opt.split('=').next().unwrap_or(opt);
            if [
                "--partial",
                "--inplace",
                "--append",
                "--append-verify",
                "--partial-dir",
                "--delete",
                "-P",
            ]
            .contains(&name)
            {
                return Err(ConfigError::invalid(
                    "upload.rsync_options",
                    format!("`{opt}` is not allowed: a killed transfer must never leave a half file under the final name, and uploads never delete"),
                ));
            }
        }
        if let Some(target) = &self.upload.target {
            if target.trim().is_empty() {
                return Err(ConfigError::invalid(
                    "upload.target",
                    "must not be empty when set",
                ));
            }
            check_rsync_options("upload.rsync_options", &self.upload.rsync_options, target)?;
            if target_kind(target) == TargetKind::Daemon {
                return Err(ConfigError::invalid(
                    "upload.target",
                    "rsync daemon targets are not supported: use a local path or [user@]host:path over ssh",
                ));
            }
        }
        crate::sys::logging::parse_level(&self.log.level).ok_or_else(|| {
            ConfigError::invalid(
                "log.level",
                format!("`{}` is not a log level", self.log.level),
            )
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_toml;

    fn parse(text: &str) -> Result<DroneConfig, ConfigError> {
        let cfg: DroneConfig = parse_toml(text, Path::new("d.toml"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    const BASE: &str = "name = \"d1\"\norchestrator = \"http://o:8080\"\ntoken = \"t\"\n";

    #[test]
    fn defaults() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.upload.stall_timeout_s, 300);
        assert_eq!(c.upload.total_timeout_s, 600);
        assert_eq!(
            c.restart_command,
            vec!["rc-service", "swarm-drone", "restart"]
        );
        assert!(c.upload.ssh_options.contains(&"BatchMode=yes".to_string()));
    }

    #[test]
    fn contimeout_with_an_ssh_target_is_refused() {
        let err = parse(&format!(
            "{BASE}[upload]\ntarget = \"root@orch:/var/cache/build-swarm/staging\"\nrsync_options = [\"--contimeout=30\"]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("--contimeout"), "{err}");
        assert!(err.contains("upload.rsync_options"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = parse(&format!(
            "{BASE}build_command = [\"emerge\", \"={{atm}}\"]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("{atm}"), "{err}");
        let err = parse(&format!(
            "{BASE}[upload]\nrsync_options = [\"--inplace\"]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("--inplace"), "{err}");
        let err = parse("name = \"d1\"\ntoken = \"t\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("orchestrator"), "{err}");
        let err = parse(&format!("{BASE}slots = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("slots"), "{err}");
        let err = parse(&format!("{BASE}capabilities = [\"big mem\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("capabilities") && err.contains("big mem"),
            "{err}"
        );
        let err = parse(&format!("{BASE}environment_timeout_s = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("environment_timeout_s"), "{err}");
        assert!(parse(&format!("{BASE}environment_command = []\n")).is_ok());
    }
}
