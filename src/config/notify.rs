//! `[[notify]]` and `[heal]` of the orchestrator config (docs/contract.md §2, "Notifications"
//! and "Self-healing"): where events go, and what the orchestrator does about a drone that
//! stays offline.

use super::{env_override, ConfigError};
use serde::Deserialize;

/// Every event a `[[notify]]` entry can ask for (docs/contract.md, "Notifications").
pub const EVENTS: &[&str] = &[
    "set_finished",
    "package_failed",
    "drone_grounded",
    "drone_offline",
    "drone_needs_human",
    "central_fault",
    "recovered",
];

/// One `[[notify]]` entry: a webhook (`url`) or a program (`command`, the event's JSON on
/// its standard input).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// POST the event's JSON here.
    pub url: Option<String>,
    /// Or run this argv with the event's JSON on standard input.
    pub command: Vec<String>,
    /// Only these events (empty: every event).
    pub events: Vec<String>,
    /// Sent as `Authorization: Bearer …` with the webhook.
    pub bearer_token: Option<String>,
    /// Read the bearer token from this environment variable (wins over `bearer_token`).
    pub bearer_token_env: Option<String>,
    /// An https webhook trusts only the certificates in this PEM file (a private CA, a
    /// self-signed receiver) instead of the system's trust store.
    pub ca_file: Option<std::path::PathBuf>,
    /// Seconds one delivery may take (the request, or the command's run).
    pub timeout_s: u64,
    /// Delivery attempts of one event before it is dropped (logged and counted).
    pub max_attempts: u32,
    /// Seconds before the first retry; doubles with each failure up to `max_retry_s`.
    pub retry_s: f64,
    pub max_retry_s: f64,
    /// Undelivered events kept for this entry; past it the oldest is dropped.
    pub max_pending: usize,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            url: None,
            command: Vec::new(),
            events: Vec::new(),
            bearer_token: None,
            bearer_token_env: None,
            ca_file: None,
            timeout_s: 10,
            max_attempts: 20,
            retry_s: 2.0,
            max_retry_s: 300.0,
            max_pending: 10_000,
        }
    }
}

impl NotifyConfig {
    /// The bearer token after the environment (`bearer_token_env`).
    pub fn token(&self) -> Option<String> {
        match &self.bearer_token_env {
            Some(var) => env_override(var, self.bearer_token.clone()),
            None => self.bearer_token.clone().filter(|t| !t.trim().is_empty()),
        }
    }

    /// What this entry is called in logs, metrics and the outbox: its URL or its argv.
    pub fn sink_name(&self) -> String {
        match &self.url {
            Some(u) => u.clone(),
            None => self.command.join(" "),
        }
    }

    /// Whether this entry is an https webhook (it needs TLS).
    pub fn is_https(&self) -> bool {
        self.url.as_deref().is_some_and(crate::sys::tls::is_https)
    }

    /// Whether this entry wants `event` (a name from [`EVENTS`]).
    pub fn wants(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event)
    }

    pub fn validate(&self, index: usize) -> Result<(), ConfigError> {
        let key = |k: &str| format!("notify[{index}].{k}");
        match (&self.url, self.command.is_empty()) {
            (Some(_), false) => {
                return Err(ConfigError::invalid(
                    &key("url"),
                    "set either `url` (a webhook) or `command` (a program), not both",
                ))
            }
            (None, true) => {
                return Err(ConfigError::Missing {
                    key: key("url"),
                    hint: " (each [[notify]] needs `url` for a webhook or `command` for a program)"
                        .into(),
                })
            }
            (Some(url), true) => super::check_url(&key("url"), url)?,
            (None, false) => {
                if self.command[0].is_empty() {
                    return Err(ConfigError::invalid(
                        &key("command"),
                        "the program name (first element) is empty",
                    ));
                }
            }
        }
        for e in &self.events {
            if !EVENTS.contains(&e.as_str()) {
                return Err(ConfigError::invalid(
                    &key("events"),
                    format!("`{e}` is not an event; events are {}", EVENTS.join(", ")),
                ));
            }
        }
        if self.url.is_none() && (self.bearer_token.is_some() || self.bearer_token_env.is_some()) {
            return Err(ConfigError::invalid(
                &key("bearer_token"),
                "only a webhook (`url`) sends a bearer token",
            ));
        }
        if self.ca_file.is_some() && !self.is_https() {
            return Err(ConfigError::invalid(
                &key("ca_file"),
                "only an https webhook (`url = \"https://…\"`) uses a CA file",
            ));
        }
        if self.timeout_s == 0 {
            return Err(ConfigError::invalid(
                &key("timeout_s"),
                "must be at least 1",
            ));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::invalid(
                &key("max_attempts"),
                "must be at least 1",
            ));
        }
        if !(self.retry_s > 0.0 && self.retry_s.is_finite()) {
            return Err(ConfigError::invalid(&key("retry_s"), "must be above 0"));
        }
        if !(self.max_retry_s >= self.retry_s && self.max_retry_s <= 86_400.0) {
            return Err(ConfigError::invalid(
                &key("max_retry_s"),
                "must be at least retry_s and at most 86400 (a day)",
            ));
        }
        if self.max_pending == 0 {
            return Err(ConfigError::invalid(
                &key("max_pending"),
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// `[heal]`: the self-healing ladder for drones that stay offline (off by default).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealConfig {
    /// Seconds a drone must have been offline before its `restart_command` is run over
    /// ssh; 0 = never (off).
    pub heal_after_s: u64,
    /// Restarts tried before the drone is handed to a human (`drone_needs_human`).
    pub max_restarts: u32,
    /// Seconds between restarts (doubles each time).
    pub backoff_s: u64,
    /// Seconds one restart over ssh may take before it is killed.
    pub timeout_s: u64,
    /// The ssh program and its options (argv); `--`, `[user@]host` and the drone's
    /// `restart_command` follow.
    pub ssh_command: Vec<String>,
    pub ssh_user: Option<String>,
    /// Host to ssh to per drone name (wins over the enrolled and the announced host).
    pub hosts: std::collections::BTreeMap<String, String>,
}

impl Default for HealConfig {
    fn default() -> Self {
        HealConfig {
            heal_after_s: 0,
            max_restarts: 3,
            backoff_s: 60,
            timeout_s: 120,
            ssh_command: vec![
                "ssh".into(),
                "-o".into(),
                "BatchMode=yes".into(),
                "-o".into(),
                "ConnectTimeout=15".into(),
            ],
            ssh_user: None,
            hosts: Default::default(),
        }
    }
}

impl HealConfig {
    pub fn enabled(&self) -> bool {
        self.heal_after_s > 0
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        if self.max_restarts == 0 {
            return Err(ConfigError::invalid(
                "heal.max_restarts",
                "must be at least 1 (or set heal_after_s = 0 to turn healing off)",
            ));
        }
        if self.timeout_s == 0 {
            return Err(ConfigError::invalid("heal.timeout_s", "must be at least 1"));
        }
        if self.ssh_command.first().is_none_or(|p| p.is_empty()) {
            return Err(ConfigError::invalid(
                "heal.ssh_command",
                "the program name (first element) is empty",
            ));
        }
        for (name, host) in &self.hosts {
            crate::sys::ssh::target(self.ssh_user.as_deref(), host)
                .map_err(|e| ConfigError::invalid(&format!("heal.hosts.{name}"), e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook() -> NotifyConfig {
        NotifyConfig {
            url: Some("http://127.0.0.1:9/hook".into()),
            ..NotifyConfig::default()
        }
    }

    #[test]
    fn an_entry_is_a_webhook_or_a_command_never_both_or_neither() {
        assert!(webhook().validate(0).is_ok());
        let both = NotifyConfig {
            command: vec!["true".into()],
            ..webhook()
        };
        assert!(both
            .validate(0)
            .unwrap_err()
            .to_string()
            .contains("not both"));
        let neither = NotifyConfig::default().validate(2).unwrap_err().to_string();
        assert!(neither.contains("notify[2].url"), "{neither}");
    }

    #[test]
    fn an_unknown_event_is_named_with_the_known_ones() {
        let e = NotifyConfig {
            events: vec!["package_failed".into(), "drone_exploded".into()],
            ..webhook()
        }
        .validate(0)
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`drone_exploded`") && e.contains("central_fault"),
            "{e}"
        );
    }

    #[test]
    fn the_token_comes_from_the_environment_when_named() {
        let var = "BUILD_SWARM_TEST_NOTIFY_TOKEN_1";
        let c = NotifyConfig {
            bearer_token: Some("from-file".into()),
            bearer_token_env: Some(var.into()),
            ..webhook()
        };
        assert_eq!(c.token().as_deref(), Some("from-file"));
        std::env::set_var(var, "from-env");
        assert_eq!(c.token().as_deref(), Some("from-env"));
        std::env::remove_var(var);
    }

    #[test]
    fn healing_is_off_by_default_and_checks_its_hosts_when_on() {
        assert!(!HealConfig::default().enabled());
        let mut h = HealConfig {
            heal_after_s: 60,
            ..HealConfig::default()
        };
        assert!(h.validate().is_ok());
        h.hosts.insert("d1".into(), "-oProxyCommand=x".into());
        let e = h.validate().unwrap_err().to_string();
        assert!(e.contains("heal.hosts.d1"), "{e}");
    }
}
