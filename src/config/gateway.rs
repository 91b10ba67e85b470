//! `swarm-gateway --config FILE` (docs/contract.md §2, gateway keys).
//!
//! How the gateway learns orchestrators: from `orchestrators` (polled in that order), and
//! from orchestrators that register themselves (their `gateway` key). A registration must
//! carry the gateway's admin token, so registrations are possible only when
//! `accept_registrations` is true (the default) *and* an admin token is configured (the
//! file's `[auth] admin_token` or `BUILD_SWARM_ADMIN_TOKEN`) — an open registration
//! endpoint would let anyone who can reach the gateway send the drones, and their uploads,
//! to a host of their choosing. A gateway with no orchestrators and no way to learn any
//! is refused at start-up; an empty list with registrations possible is fine (the gateway
//! logs a warning and waits for registrations).

use super::check_url;
use super::orchestrator::LogConfig;
use super::{env_override, load_file, ConfigError};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// Shown in the merged status.
    pub name: String,
    /// Orchestrator base URLs, e.g. `http://orch.example:8080`. Order matters: ties go to
    /// the one listed first.
    pub orchestrators: Vec<String>,
    /// Seconds between two polls of every orchestrator's status.
    pub poll_interval_s: u64,
    /// Consecutive failed polls after which an orchestrator counts as unhealthy.
    pub unhealthy_after: u32,
    /// Whether orchestrators may register themselves (needs `[auth] admin_token`).
    pub accept_registrations: bool,
    /// A registered orchestrator that has been unhealthy and has not registered again for
    /// this many seconds is forgotten (0 = never). Configured ones are never forgotten.
    pub forget_after_s: u64,
    pub auth: GatewayAuthConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayAuthConfig {
    /// Needed to register an orchestrator (orchestrators send their own admin token, so use
    /// the same one). `BUILD_SWARM_ADMIN_TOKEN` overrides it.
    pub admin_token: Option<String>,
    /// Sent to orchestrators when reading them (needed when they set their `read_token`).
    /// When set, the gateway's merged status, drone and orchestrator listings need it too
    /// (or the admin token); `/healthz` and `/api/v1/orchestrator` stay open for drones.
    pub read_token: Option<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: "0.0.0.0:8090".into(),
            name: "gateway".into(),
            orchestrators: Vec::new(),
            poll_interval_s: 5,
            unhealthy_after: 2,
            accept_registrations: true,
            forget_after_s: 600,
            auth: GatewayAuthConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// The base URL as the gateway stores and compares it (no trailing slash).
pub fn normalize_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

impl GatewayConfig {
    /// Reads, applies the environment and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut cfg: GatewayConfig = load_file(path)?;
        cfg.apply_env();
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn apply_env(&mut self) {
        self.auth.admin_token =
            env_override("BUILD_SWARM_ADMIN_TOKEN", self.auth.admin_token.take());
        self.auth.read_token = self.auth.read_token.take().filter(|t| !t.trim().is_empty());
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            ConfigError::invalid(
                "listen",
                format!("`{}` is not an address like 0.0.0.0:8090", self.listen),
            )
        })
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_interval_s.max(1))
    }

    /// A poll gives up after three quarters of the interval (at most 10 s), so one round
    /// is over before the next begins.
    pub fn poll_timeout(&self) -> Duration {
        (self.poll_interval() * 3 / 4).min(Duration::from_secs(10))
    }

    /// Whether orchestrators can register themselves with this configuration.
    pub fn registrations_possible(&self) -> bool {
        self.accept_registrations && self.auth.admin_token.is_some()
    }

    /// The configured orchestrator URLs, normalized, in config order.
    pub fn orchestrator_urls(&self) -> Vec<String> {
        self.orchestrators
            .iter()
            .map(|u| normalize_url(u))
            .collect()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if self.name.trim().is_empty() {
            return Err(ConfigError::invalid("name", "must not be empty"));
        }
        let mut seen: Vec<String> = Vec::new();
        for (i, url) in self.orchestrators.iter().enumerate() {
            let key = format!("orchestrators[{i}]");
            check_url(&key, url.trim())?;
            let norm = normalize_url(url);
            if let Some(j) = seen.iter().position(|u| *u == norm) {
                return Err(ConfigError::invalid(
                    &key,
                    format!("`{url}` is listed twice (also orchestrators[{j}])"),
                ));
            }
            seen.push(norm);
        }
        if self.poll_interval_s == 0 {
            return Err(ConfigError::invalid(
                "poll_interval_s",
                "must be at least 1 second",
            ));
        }
        if self.unhealthy_after == 0 {
            return Err(ConfigError::invalid(
                "unhealthy_after",
                "must be at least 1 (failed polls before an orchestrator is unhealthy)",
            ));
        }
        if self.orchestrators.is_empty() {
            if !self.accept_registrations {
                return Err(ConfigError::invalid(
                    "orchestrators",
                    "is empty and accept_registrations = false: the gateway could never know an orchestrator",
                ));
            }
            if self.auth.admin_token.is_none() {
                return Err(ConfigError::Missing {
                    key: "auth.admin_token".into(),
                    hint: " (orchestrators is empty, so orchestrators must register themselves, \
                           and registrations need the admin token: set it in [auth] or \
                           BUILD_SWARM_ADMIN_TOKEN, or list orchestrators)"
                        .into(),
                });
            }
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_toml;

    fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
        let cfg: GatewayConfig = parse_toml(text, Path::new("g.toml"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    #[test]
    fn defaults_follow_the_spec() {
        let cfg = parse("orchestrators = [\"http://a:8080/\"]\n").unwrap();
        assert_eq!(cfg.listen, "0.0.0.0:8090");
        assert_eq!(cfg.poll_interval_s, 5);
        assert_eq!(cfg.unhealthy_after, 2);
        assert!(cfg.accept_registrations);
        assert_eq!(cfg.orchestrator_urls(), vec!["http://a:8080".to_string()]);
        assert!(!cfg.registrations_possible());
        assert!(cfg.poll_timeout() < cfg.poll_interval());
    }

    #[test]
    fn bad_urls_name_the_index() {
        let err = parse("orchestrators = [\"http://a:8080\", \"a:8080\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("orchestrators[1]"), "{err}");
        assert!(err.contains("a:8080"), "{err}");
        let err = parse("orchestrators = [\"http://a:8080\", \"http://a:8080/\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("orchestrators[1]") && err.contains("twice"),
            "{err}"
        );
    }

    #[test]
    fn no_orchestrators_needs_a_way_to_learn_some() {
        let err = parse("accept_registrations = false\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`orchestrators`"), "{err}");
        let err = parse("").unwrap_err().to_string();
        assert!(err.contains("auth.admin_token"), "{err}");
        let cfg = parse("[auth]\nadmin_token = \"t\"\n").unwrap();
        assert!(cfg.registrations_possible());
    }

    #[test]
    fn impossible_values_are_named() {
        let ok = "orchestrators = [\"http://a\"]\n";
        for (text, key) in [
            (format!("{ok}poll_interval_s = 0\n"), "poll_interval_s"),
            (format!("{ok}unhealthy_after = 0\n"), "unhealthy_after"),
            (format!("{ok}listen = \"x\"\n"), "listen"),
            (format!("{ok}[log]\nlevel = \"loud\"\n"), "log.level"),
            (format!("{ok}pol_interval_s = 1\n"), "pol_interval_s"),
        ] {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
