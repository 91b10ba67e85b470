//! Which drones' build environments fit the swarm's (docs/design.md, "Environments"):
//! the expected environment from `[environment] expected` and a reference drone, each
//! drone's [`Fit`], and when a lagging drone is asked to sync. Plain data; the drone
//! registry owns one.

use crate::config::orchestrator::EnvironmentConfig;
use crate::domain::environment::{
    expected_from, fit, DroneEnvironment, Expected, Fit, RepoRevision, REPO_REVISION,
};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

pub struct Environments {
    fixed: Expected,
    reference: Option<String>,
    keys: Vec<String>,
    resync: Duration,
    /// What the reference drone last reported (None: nothing yet, or it failed).
    reference_env: Option<std::sync::Arc<DroneEnvironment>>,
    /// When each lagging drone was last asked to sync.
    asked: HashMap<String, Instant>,
}

impl Environments {
    pub fn new(cfg: &EnvironmentConfig) -> Self {
        let mut fixed = Expected::default();
        for (k, v) in &cfg.expected {
            match k.strip_prefix(REPO_REVISION) {
                Some(repo) => {
                    fixed.repos.insert(
                        repo.to_string(),
                        RepoRevision {
                            revision: v.clone(),
                            timestamp: None,
                        },
                    );
                }
                None => {
                    fixed.keys.insert(k.clone(), v.clone());
                }
            }
        }
        Environments {
            fixed,
            reference: cfg.reference.clone(),
            keys: cfg.keys.clone(),
            resync: Duration::from_secs(cfg.resync_s),
            reference_env: None,
            asked: HashMap::new(),
        }
    }

    /// Whether `name` is the reference drone.
    pub fn is_reference(&self, name: &str) -> bool {
        self.reference.as_deref() == Some(name)
    }

    /// The reference drone reported `env`: the expectation follows it. Returns whether it
    /// changed (then every drone's fit is decided again).
    pub fn reference_reported(&mut self, env: Option<std::sync::Arc<DroneEnvironment>>) -> bool {
        // A failed report keeps the last good one as the reference.
        let env = env.filter(|e| e.error.is_none() && !e.fingerprint.is_empty());
        if env.is_none() || env == self.reference_env {
            return false;
        }
        self.reference_env = env;
        true
    }

    /// What drones are expected to have now: the fixed values over the reference drone's.
    pub fn expected(&self) -> Expected {
        let mut e = match &self.reference_env {
            Some(r) => expected_from(r, &self.keys),
            None => Expected::default(),
        };
        e.keys
            .extend(self.fixed.keys.iter().map(|(k, v)| (k.clone(), v.clone())));
        e.repos
            .extend(self.fixed.repos.iter().map(|(k, v)| (k.clone(), v.clone())));
        e
    }

    /// How drone `name` fits `expected` (the reference drone always fits, unless its
    /// command failed).
    pub fn fit(&self, expected: &Expected, name: &str, env: Option<&DroneEnvironment>) -> Fit {
        if self.is_reference(name) && self.fixed.is_empty() {
            return match env.and_then(|e| e.error.clone()) {
                Some(reason) => Fit::Broken { reason },
                None => Fit::Matched,
            };
        }
        fit(expected, env)
    }

    /// Should drone `name`, whose fit is `f`, be told to sync now? Yes when it lags and
    /// was not asked within `resync_s`; a drone that fits again is forgotten.
    pub fn should_sync(&mut self, name: &str, f: &Fit, now: Instant) -> bool {
        if !matches!(f, Fit::Lagging { .. }) {
            self.asked.remove(name);
            return false;
        }
        match self.asked.get(name) {
            Some(t) if now.duration_since(*t) < self.resync => false,
            _ => {
                self.asked.insert(name.to_string(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn env(pairs: &[(&str, &str)]) -> Arc<DroneEnvironment> {
        Arc::new(DroneEnvironment {
            fingerprint: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..DroneEnvironment::default()
        })
    }

    #[test]
    fn the_reference_drone_sets_what_others_must_have_fixed_values_win() {
        let cfg = EnvironmentConfig {
            reference: Some("ref".into()),
            ..EnvironmentConfig::default()
        };
        let mut envs = Environments::new(&cfg);
        // Nothing reported yet: nothing expected.
        assert!(envs.expected().is_empty());
        assert!(envs.reference_reported(Some(env(&[("CFLAGS", "-O2"), ("X", "y")]))));
        assert!(!envs.reference_reported(Some(env(&[("CFLAGS", "-O2"), ("X", "y")]))));
        let want = envs.expected();
        // Only the configured keys are taken from it.
        assert_eq!(want.keys.keys().collect::<Vec<_>>(), ["CFLAGS"]);
        let odd = env(&[("CFLAGS", "-O3")]);
        assert_eq!(
            envs.fit(&want, "other", Some(&odd)),
            Fit::Mismatched {
                keys: vec!["CFLAGS".into()]
            }
        );
        assert_eq!(envs.fit(&want, "ref", Some(&odd)), Fit::Matched);
        // A failed report does not replace the reference.
        let failed = Arc::new(DroneEnvironment {
            error: Some("timed out".into()),
            ..DroneEnvironment::default()
        });
        assert!(!envs.reference_reported(Some(failed)));
        assert_eq!(envs.expected(), want);

        let mut cfg = cfg.clone();
        cfg.expected.insert("CFLAGS".into(), "-O3".into());
        let mut envs = Environments::new(&cfg);
        envs.reference_reported(Some(env(&[("CFLAGS", "-O2")])));
        assert_eq!(envs.expected().keys["CFLAGS"], "-O3");
    }

    #[test]
    fn a_lagging_drone_is_asked_to_sync_once_per_resync_period() {
        let envs_cfg = EnvironmentConfig::default();
        let mut envs = Environments::new(&envs_cfg);
        let lag = Fit::Lagging {
            repos: vec!["gentoo".into()],
        };
        let t0 = Instant::now();
        assert!(envs.should_sync("a", &lag, t0));
        assert!(!envs.should_sync("a", &lag, t0 + Duration::from_secs(60)));
        assert!(envs.should_sync("a", &lag, t0 + Duration::from_secs(3601)));
        // Matched again, then lagging again: asked at once.
        assert!(!envs.should_sync("a", &Fit::Matched, t0 + Duration::from_secs(3602)));
        assert!(envs.should_sync("a", &lag, t0 + Duration::from_secs(3603)));
    }
}
