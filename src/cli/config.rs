//! Where the CLI finds the swarm and its token (docs/contract.md §2, CLI).
//!
//! Four layers, first wins: flags (`--gateway`, `--orchestrator`, `--token`), the
//! environment (`BUILD_SWARM_GATEWAY`, `BUILD_SWARM_ORCHESTRATOR`, `BUILD_SWARM_TOKEN`), the
//! user's file (`$XDG_CONFIG_HOME/build-swarm/config.toml`, else
//! `~/.config/build-swarm/config.toml`), the system file (`/etc/build-swarm/cli.toml`).
//! With none of them naming a swarm: `http://localhost:8090` (gateway), then
//! `http://localhost:8080` (orchestrator).
//!
//! The endpoints come from one layer as a whole: the first layer that names a gateway or an
//! orchestrator decides where the swarm is (so `--orchestrator URL` never goes through a
//! gateway from a config file). Other keys are resolved one by one.

use crate::config::check_url;
use crate::config::{load_file, ConfigError};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

pub const DEFAULT_GATEWAY: &str = "http://localhost:8090";
pub const DEFAULT_ORCHESTRATOR: &str = "http://localhost:8080";
pub const SYSTEM_CONFIG: &str = "/etc/build-swarm/cli.toml";
/// The drone's own default `restart_command` (docs/contract.md §2, drone keys).
pub const DEFAULT_RESTART_COMMAND: [&str; 3] = ["rc-service", "swarm-drone", "restart"];

pub const ENV_GATEWAY: &str = "BUILD_SWARM_GATEWAY";
pub const ENV_ORCHESTRATOR: &str = "BUILD_SWARM_ORCHESTRATOR";
pub const ENV_TOKEN: &str = "BUILD_SWARM_TOKEN";

/// The CLI's config file. Unknown keys are refused, naming the key.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CliConfig {
    /// Gateway URL.
    pub gateway: Option<String>,
    /// Orchestrator URL (used when there is no gateway, or the gateway is down).
    pub orchestrator: Option<String>,
    /// Admin token: needed for submit, retry, restart, pause, …
    pub token: Option<String>,
    /// User for `<drone> ssh` and restarts over ssh (default: ssh's own choice).
    pub ssh_user: Option<String>,
    /// argv run on a drone over ssh to restart it (default: the drone's default).
    pub restart_command: Option<Vec<String>>,
    /// The ssh program and its options, e.g. `["ssh", "-i", "/root/.ssh/swarm"]`.
    pub ssh_command: Option<Vec<String>>,
    /// `[hosts]`: drone name → the host `<drone> ssh` and restarts over ssh go to. Wins
    /// over the host the drone was enrolled for, which wins over the one it announces.
    pub hosts: Option<std::collections::BTreeMap<String, String>>,
}

impl CliConfig {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<CliConfig, ConfigError> {
        let cfg: CliConfig = load_file(path)?;
        cfg.validate().map_err(|e| match e {
            ConfigError::Invalid { key, message } => ConfigError::Parse {
                path: path.to_path_buf(),
                message: format!("key `{key}`: {message}"),
            },
            other => other,
        })?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, url) in [
            ("gateway", &self.gateway),
            ("orchestrator", &self.orchestrator),
        ] {
            if let Some(url) = url {
                check_url(key, url)?;
            }
        }
        if let Some(user) = &self.ssh_user {
            if user.is_empty()
                || user.starts_with('-')
                || user.contains(|c: char| c == '@' || c.is_whitespace() || c.is_control())
            {
                return Err(ConfigError::invalid(
                    "ssh_user",
                    format!("`{user}` is not a user name"),
                ));
            }
        }
        for (name, host) in self.hosts.iter().flatten() {
            if crate::sys::ssh::target(None, host).is_err() {
                return Err(ConfigError::invalid(
                    &format!("hosts.{name}"),
                    format!("`{host}` is not a host name"),
                ));
            }
        }
        for (key, argv) in [
            ("restart_command", &self.restart_command),
            ("ssh_command", &self.ssh_command),
        ] {
            if let Some(argv) = argv {
                if argv.first().is_none_or(|p| p.trim().is_empty()) {
                    return Err(ConfigError::invalid(
                        key,
                        "must name a program (the first element)",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Where a setting came from, for `-v`.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Flag(&'static str),
    Env(&'static str),
    File(PathBuf),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(name) => write!(f, "{name}"),
            Source::Env(var) => write!(f, "${var}"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Default => f.write_str("the defaults"),
        }
    }
}

/// What the command line says (the flags that bear on discovery).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub gateway: Option<String>,
    pub orchestrator: Option<String>,
    pub token: Option<String>,
    /// Read only this config file instead of the usual places.
    pub config: Option<PathBuf>,
}

/// Where discovery looks, taken from the environment in `main` and made up in tests.
#[derive(Debug, Clone, Default)]
pub struct Places {
    pub home: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    pub system: PathBuf,
    pub env_gateway: Option<String>,
    pub env_orchestrator: Option<String>,
    pub env_token: Option<String>,
}

impl Places {
    pub fn from_env() -> Places {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Places {
            home: var("HOME").map(PathBuf::from),
            xdg_config_home: var("XDG_CONFIG_HOME").map(PathBuf::from),
            system: PathBuf::from(SYSTEM_CONFIG),
            env_gateway: var(ENV_GATEWAY),
            env_orchestrator: var(ENV_ORCHESTRATOR),
            env_token: var(ENV_TOKEN),
        }
    }

    /// `$XDG_CONFIG_HOME/build-swarm/config.toml`, else `~/.config/build-swarm/config.toml`.
    pub fn user_file(&self) -> Option<PathBuf> {
        match (&self.xdg_config_home, &self.home) {
            (Some(xdg), _) => Some(xdg.join("build-swarm/config.toml")),
            (None, Some(home)) => Some(home.join(".config/build-swarm/config.toml")),
            (None, None) => None,
        }
    }
}

/// The endpoints to try, in order, and where they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoints {
    pub gateway: Option<String>,
    pub orchestrator: Option<String>,
    pub source: Source,
}

/// Everything the CLI takes from flags, environment and files.
#[derive(Debug, Clone)]
pub struct Settings {
    pub endpoints: Endpoints,
    pub token: Option<String>,
    pub token_source: Option<Source>,
    pub ssh_user: Option<String>,
    pub restart_command: Vec<String>,
    pub ssh_command: Vec<String>,
    /// `[hosts]` of every file (first file wins per drone).
    pub hosts: std::collections::BTreeMap<String, String>,
    /// Config files that were read, first wins.
    pub files: Vec<PathBuf>,
}

struct Layer {
    source: Source,
    gateway_source: Source,
    gateway: Option<String>,
    orchestrator: Option<String>,
    token: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Resolves the settings from flags, environment and config files.
pub fn resolve(flags: &Flags, places: &Places) -> Result<Settings, ConfigError> {
    let mut files: Vec<(PathBuf, CliConfig)> = Vec::new();
    match &flags.config {
        Some(path) => files.push((path.clone(), CliConfig::load(path)?)),
        None => {
            for path in places
                .user_file()
                .into_iter()
                .chain([places.system.clone()])
            {
                if path.is_file() {
                    let cfg = CliConfig::load(&path)?;
                    files.push((path, cfg));
                }
            }
        }
    }
    for (key, url) in [
        ("--gateway", &flags.gateway),
        ("--orchestrator", &flags.orchestrator),
        (ENV_GATEWAY, &places.env_gateway),
        (ENV_ORCHESTRATOR, &places.env_orchestrator),
    ] {
        if let Some(url) = nonempty(url) {
            check_url(key, &url)?;
        }
    }

    let mut layers = vec![
        Layer {
            source: Source::Flag(if flags.gateway.is_some() {
                "--gateway"
            } else {
                "--orchestrator"
            }),
            gateway_source: Source::Flag("--gateway"),
            gateway: nonempty(&flags.gateway),
            orchestrator: nonempty(&flags.orchestrator),
            token: nonempty(&flags.token),
        },
        Layer {
            source: Source::Env(if places.env_gateway.is_some() {
                ENV_GATEWAY
            } else {
                ENV_ORCHESTRATOR
            }),
            gateway_source: Source::Env(ENV_GATEWAY),
            gateway: nonempty(&places.env_gateway),
            orchestrator: nonempty(&places.env_orchestrator),
            token: nonempty(&places.env_token),
        },
    ];
    for (path, cfg) in &files {
        layers.push(Layer {
            source: Source::File(path.clone()),
            gateway_source: Source::File(path.clone()),
            gateway: nonempty(&cfg.gateway),
            orchestrator: nonempty(&cfg.orchestrator),
            token: nonempty(&cfg.token),
        });
    }

    let endpoints = layers
        .iter()
        .find(|l| l.gateway.is_some() || l.orchestrator.is_some())
        .map(|l| Endpoints {
            gateway: l.gateway.clone(),
            orchestrator: l.orchestrator.clone(),
            source: if l.gateway.is_some() {
                l.gateway_source.clone()
            } else {
                l.source.clone()
            },
        })
        .unwrap_or_else(|| Endpoints {
            gateway: Some(DEFAULT_GATEWAY.into()),
            orchestrator: Some(DEFAULT_ORCHESTRATOR.into()),
            source: Source::Default,
        });
    let (token, token_source) = layers
        .iter()
        .find_map(|l| l.token.clone().map(|t| (t, l.source.clone())))
        .map(|(t, s)| (Some(t), Some(s)))
        .unwrap_or((None, None));
    let token_source = token_source.map(|s| match s {
        Source::Flag(_) => Source::Flag("--token"),
        Source::Env(_) => Source::Env(ENV_TOKEN),
        other => other,
    });
    let from_files = |pick: fn(&CliConfig) -> Option<Vec<String>>| -> Option<Vec<String>> {
        files.iter().find_map(|(_, c)| pick(c))
    };
    Ok(Settings {
        endpoints,
        token,
        token_source,
        ssh_user: files.iter().find_map(|(_, c)| nonempty(&c.ssh_user)),
        restart_command: from_files(|c| c.restart_command.clone()).unwrap_or_else(|| {
            DEFAULT_RESTART_COMMAND
                .iter()
                .map(|s| s.to_string())
                .collect()
        }),
        ssh_command: from_files(|c| c.ssh_command.clone()).unwrap_or_else(|| vec!["ssh".into()]),
        hosts: {
            let mut hosts = std::collections::BTreeMap::new();
            for (_, c) in files.iter().rev() {
                hosts.extend(c.hosts.clone().into_iter().flatten());
            }
            hosts
        },
        files: files.into_iter().map(|(p, _)| p).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(dir: &Path) -> Places {
        Places {
            home: Some(dir.join("home")),
            xdg_config_home: None,
            system: dir.join("etc/cli.toml"),
            ..Places::default()
        }
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn nothing_configured_tries_the_local_gateway_then_the_orchestrator() {
        let dir = tempfile::tempdir().unwrap();
        let s = resolve(&Flags::default(), &places(dir.path())).unwrap();
        assert_eq!(s.endpoints.gateway.as_deref(), Some(DEFAULT_GATEWAY));
        assert_eq!(
            s.endpoints.orchestrator.as_deref(),
            Some(DEFAULT_ORCHESTRATOR)
        );
        assert_eq!(s.endpoints.source, Source::Default);
        assert_eq!(s.token, None);
        assert_eq!(s.restart_command, DEFAULT_RESTART_COMMAND);
        assert_eq!(s.ssh_command, ["ssh"]);
    }

    #[test]
    fn flags_beat_env_beat_user_file_beat_system_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = places(dir.path());
        write(
            &p.system,
            "gateway = \"http://sys:8090\"\ntoken = \"sys\"\nssh_user = \"root\"\n",
        );
        let s = resolve(&Flags::default(), &p).unwrap();
        assert_eq!(s.endpoints.gateway.as_deref(), Some("http://sys:8090"));
        assert_eq!(s.endpoints.orchestrator, None);
        assert_eq!(s.token.as_deref(), Some("sys"));

        let user = p.user_file().unwrap();
        assert!(user.ends_with(".config/build-swarm/config.toml"));
        write(
            &user,
            "orchestrator = \"http://user:8080\"\nrestart_command = [\"systemctl\", \"restart\", \"swarm-drone\"]\n",
        );
        let s = resolve(&Flags::default(), &p).unwrap();
        assert_eq!(s.endpoints.gateway, None, "the user file names the swarm");
        assert_eq!(
            s.endpoints.orchestrator.as_deref(),
            Some("http://user:8080")
        );
        assert_eq!(s.endpoints.source, Source::File(user.clone()));
        assert_eq!(s.token.as_deref(), Some("sys"), "keys resolve one by one");
        assert_eq!(s.ssh_user.as_deref(), Some("root"));
        assert_eq!(s.restart_command[0], "systemctl");

        p.env_gateway = Some("http://env:8090".into());
        p.env_token = Some("env".into());
        let s = resolve(&Flags::default(), &p).unwrap();
        assert_eq!(s.endpoints.gateway.as_deref(), Some("http://env:8090"));
        assert_eq!(s.endpoints.orchestrator, None);
        assert_eq!(s.token_source, Some(Source::Env(ENV_TOKEN)));

        let flags = Flags {
            orchestrator: Some("http://flag:8080".into()),
            token: Some("flag".into()),
            ..Flags::default()
        };
        let s = resolve(&flags, &p).unwrap();
        assert_eq!(s.endpoints.gateway, None, "--orchestrator skips gateways");
        assert_eq!(
            s.endpoints.orchestrator.as_deref(),
            Some("http://flag:8080")
        );
        assert_eq!(s.endpoints.source, Source::Flag("--orchestrator"));
        assert_eq!(s.token.as_deref(), Some("flag"));
        assert_eq!(s.files.len(), 2);
    }

    #[test]
    fn xdg_config_home_replaces_dot_config() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = places(dir.path());
        p.xdg_config_home = Some(dir.path().join("xdg"));
        write(
            &dir.path().join("xdg/build-swarm/config.toml"),
            "gateway = \"http://xdg:8090\"\n",
        );
        write(
            &dir.path().join("home/.config/build-swarm/config.toml"),
            "gateway = \"http://home:8090\"\n",
        );
        let s = resolve(&Flags::default(), &p).unwrap();
        assert_eq!(s.endpoints.gateway.as_deref(), Some("http://xdg:8090"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = places(dir.path());
        write(
            &p.system,
            "gateway = \"http://g:8090\"\nsshuser = \"root\"\n",
        );
        let err = resolve(&Flags::default(), &p).unwrap_err().to_string();
        assert!(err.contains("sshuser"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        write(&p.system, "orchestrator = \"localhost:8080\"\n");
        let err = resolve(&Flags::default(), &p).unwrap_err().to_string();
        assert!(err.contains("`orchestrator`"), "{err}");
        assert!(err.contains("cli.toml"), "{err}");
        write(&p.system, "restart_command = []\n");
        let err = resolve(&Flags::default(), &p).unwrap_err().to_string();
        assert!(err.contains("restart_command"), "{err}");
        let flags = Flags {
            gateway: Some("nope".into()),
            ..Flags::default()
        };
        std::fs::remove_file(&p.system).unwrap();
        let err = resolve(&flags, &p).unwrap_err().to_string();
        assert!(err.contains("--gateway"), "{err}");
    }

    #[test]
    fn an_explicit_config_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let flags = Flags {
            config: Some(dir.path().join("missing.toml")),
            ..Flags::default()
        };
        let err = resolve(&flags, &places(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.toml"), "{err}");
    }
}
