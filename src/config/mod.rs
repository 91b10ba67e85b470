//! Configuration files of every program (docs/contract.md §2): TOML, every key defaulted except
//! secrets, unknown keys refused, one clear message naming the key on any error.

pub mod drone;
pub mod gateway;
pub mod notify;
pub mod orchestrator;

pub use drone::DroneConfig;
pub use gateway::GatewayConfig;
pub use orchestrator::OrchestratorConfig;

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Exit code for a refused configuration (docs/contract.md §1).
pub const EXIT_BAD_CONFIG: i32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("config key `{key}` is required but not set{hint}")]
    Missing { key: String, hint: String },
}

impl ConfigError {
    pub fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// Parses TOML text into `T`, turning serde's error into one line that names the file,
/// the line, the `[section] key` and what is wrong.
pub fn parse_toml<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    toml::from_str::<T>(text).map_err(|e| {
        let mut message = e.message().trim().to_string();
        if let Some(span) = e.span() {
            let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
            let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
            let section = text
                .lines()
                .take(line_no)
                .filter(|l| l.trim_start().starts_with('['))
                .last()
                .map(|l| format!("{} ", l.trim()))
                .unwrap_or_default();
            let section = if line.starts_with('[') {
                String::new()
            } else {
                section
            };
            message = format!("line {line_no} (`{section}{line}`): {message}");
        }
        ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        }
    })
}

/// What the orchestrator's and the gateway's configurations share: both daemons run on
/// their defaults (plus the environment) when no file is named.
pub trait DaemonConfig: Default + Sized {
    fn load(path: &Path) -> Result<Self, ConfigError>;
    fn apply_env(&mut self);
    fn validate(&self) -> Result<(), ConfigError>;
    fn log(&self) -> &orchestrator::LogConfig;

    /// The named file, else the defaults with the environment applied, validated.
    fn load_or_defaults(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            Some(path) => Self::load(path),
            None => {
                let mut cfg = Self::default();
                cfg.apply_env();
                cfg.validate()?;
                Ok(cfg)
            }
        }
    }
}

impl DaemonConfig for OrchestratorConfig {
    fn load(path: &Path) -> Result<Self, ConfigError> {
        OrchestratorConfig::load(path)
    }
    fn apply_env(&mut self) {
        OrchestratorConfig::apply_env(self)
    }
    fn validate(&self) -> Result<(), ConfigError> {
        OrchestratorConfig::validate(self)
    }
    fn log(&self) -> &orchestrator::LogConfig {
        &self.log
    }
}

impl DaemonConfig for GatewayConfig {
    fn load(path: &Path) -> Result<Self, ConfigError> {
        GatewayConfig::load(path)
    }
    fn apply_env(&mut self) {
        GatewayConfig::apply_env(self)
    }
    fn validate(&self) -> Result<(), ConfigError> {
        GatewayConfig::validate(self)
    }
    fn log(&self) -> &orchestrator::LogConfig {
        &self.log
    }
}

/// `--config FILE` and `--check`, as the orchestrator and the gateway take them.
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// TOML configuration file (without one: the defaults and the environment).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the configuration and exit.
    #[arg(long)]
    pub check: bool,
}

/// A daemon's start: its configuration (a refused one is one line on stderr and exit
/// 2), `--check` answered (then `None`), and its root logger.
pub fn configure_daemon<C: DaemonConfig>(
    program: &'static str,
    args: &DaemonArgs,
) -> Option<(C, slog::Logger)> {
    let cfg = C::load_or_defaults(args.config.as_deref()).unwrap_or_else(|e| {
        eprintln!("{program}: {e}");
        std::process::exit(EXIT_BAD_CONFIG)
    });
    if args.check {
        println!("configuration is valid");
        return None;
    }
    let log =
        crate::sys::logging::root_logger(&cfg.log().level, cfg.log().file.as_deref(), program)
            .unwrap_or_else(|e| {
                eprintln!("{program}: cannot open log file: {e}");
                std::process::exit(EXIT_BAD_CONFIG)
            });
    Some((cfg, log))
}

/// Reads and parses a config file.
pub fn load_file<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_toml(&text, path)
}

/// A token from the environment wins over the file; empty values count as unset.
pub fn env_override(var: &str, from_file: Option<String>) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
        _ => from_file.filter(|v| !v.trim().is_empty()),
    }
}

/// rsync options that only work when talking to an rsync daemon (`host::module` or
/// `rsync://`); over ssh rsync dies on them (seed bug #2).
pub const DAEMON_ONLY_RSYNC_OPTIONS: &[&str] = &[
    "--contimeout",
    "--port",
    "--password-file",
    "--early-input",
    "--no-motd",
];

/// How an rsync destination is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A plain path on this machine.
    Local,
    /// `[user@]host:path`, through ssh.
    Ssh,
    /// `host::module` or `rsync://host/module`, an rsync daemon.
    Daemon,
}

pub fn target_kind(target: &str) -> TargetKind {
    if target.starts_with("rsync://") || target.contains("::") {
        return TargetKind::Daemon;
    }
    match target.find(':') {
        // A colon before any slash means host:path (rsync's own rule).
        Some(colon) if !target[..colon].contains('/') => TargetKind::Ssh,
        _ => TargetKind::Local,
    }
}

/// Refuses daemon-only rsync options combined with an ssh (or local) target.
pub fn check_rsync_options(key: &str, options: &[String], target: &str) -> Result<(), ConfigError> {
    let kind = target_kind(target);
    if kind == TargetKind::Daemon {
        return Ok(());
    }
    for opt in options {
        let name = opt.split('=').next().unwrap_or(opt);
        if DAEMON_ONLY_RSYNC_OPTIONS.contains(&name) {
            let how = if kind == TargetKind::Ssh {
                "an ssh target"
            } else {
                "a local target"
            };
            return Err(ConfigError::invalid(
                key,
                format!(
                    "`{opt}` only works with an rsync daemon, but the upload target `{target}` is {how}; \
                     use ssh options such as `-o ConnectTimeout=30` in [upload] ssh_options instead"
                ),
            ));
        }
    }
    Ok(())
}

/// An http(s) URL with a host.
pub fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => Err(ConfigError::invalid(
            key,
            format!("`{url}` is not a URL like http://host:8090"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_kinds() {
        assert_eq!(target_kind("/var/cache/staging"), TargetKind::Local);
        assert_eq!(target_kind("./a:b"), TargetKind::Local);
        assert_eq!(target_kind("root@orch:/var/staging"), TargetKind::Ssh);
        assert_eq!(target_kind("orch:staging"), TargetKind::Ssh);
        assert_eq!(target_kind("orch::staging"), TargetKind::Daemon);
        assert_eq!(target_kind("rsync://orch/staging"), TargetKind::Daemon);
    }

    #[test]
    fn contimeout_with_ssh_is_refused() {
        let opts = vec!["--contimeout=30".to_string()];
        let err = check_rsync_options("upload.rsync_options", &opts, "root@orch:/x").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("upload.rsync_options"), "{text}");
        assert!(text.contains("--contimeout=30"), "{text}");
        assert!(check_rsync_options("k", &opts, "orch::mod").is_ok());
        assert!(check_rsync_options("k", &["--bwlimit=1000".into()], "root@o:/x").is_ok());
    }

    #[test]
    fn parse_error_names_section_and_key() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct B {
            max_failures: u32,
        }
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct C {
            breaker: B,
        }
        let err = parse_toml::<C>("[breaker]\nmax_failures = \"five\"\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.toml: line 2"), "{err}");
        assert!(err.contains("[breaker] max_failures"), "{err}");
    }
}
