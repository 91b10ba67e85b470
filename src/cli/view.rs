//! Lenient views of what the orchestrator and the gateway answer. The gateway merges
//! several orchestrators and may add fields (a drone's `orchestrator`) or leave some out;
//! every field has a default so the CLI still shows what it got. `--json` prints the
//! server's own JSON, not these.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DroneCountsView {
    pub total: u64,
    pub active: u64,
    pub grounded: u64,
    pub offline: u64,
    pub paused: u64,
    pub mismatched: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StatusView {
    pub name: String,
    pub total: u64,
    pub waiting: u64,
    pub queued: u64,
    pub building: u64,
    pub uploading: u64,
    pub built: u64,
    pub failed: u64,
    pub blocked: u64,
    pub progress_pct: f64,
    pub drones: DroneCountsView,
    /// Seconds until done (declared and learned build times).
    pub eta_s: Option<u64>,
}

impl StatusView {
    /// Packages in an end state: built, failed or blocked.
    pub fn done(&self) -> u64 {
        self.built + self.failed + self.blocked
    }
    /// The set is finished (docs/contract.md §4 end states cover every package).
    pub fn is_done(&self) -> bool {
        self.done() >= self.total
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DroneView {
    pub name: String,
    pub aliases: Vec<String>,
    pub host: String,
    pub state: String,
    pub slots: u32,
    pub current: Vec<String>,
    pub failures: u32,
    pub grounded_until: Option<u64>,
    pub grounded_reason: Option<String>,
    pub last_seen: Option<u64>,
    pub version: String,
    /// Set by the gateway: the name or URL of the orchestrator that has this drone.
    pub orchestrator: Option<String>,
    /// The drone's own `restart_command`, when it reported one.
    pub restart_command: Vec<String>,
    pub enrolled: bool,
    /// The host the operator enrolled it for.
    pub enrolled_host: Option<String>,
    /// The host it announced before its last register from another one.
    pub previous_host: Option<String>,
    /// `own`, `shared` or `admin`: the credential it registered with.
    pub credential: Option<String>,
    /// Older than its orchestrator (`drones --outdated`).
    pub outdated: bool,
    /// How its build environment differs (state `mismatched`).
    pub mismatch: Option<String>,
    pub capabilities: Vec<String>,
    pub resources: Option<ResourcesView>,
    /// Its build times ÷ the swarm's (0 when the server did not say: shown as unknown).
    pub speed_factor: f64,
    /// The self-healing ladder, while it is offline and being healed.
    pub healing: Option<HealingView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HealingView {
    pub step: String,
    pub restarts: u32,
    pub max_restarts: u32,
    pub next_unix: Option<u64>,
    pub last_result: Option<String>,
}

impl HealingView {
    /// `restarting (1/3)`, `waiting (restart 2/3 in 40s)`, `needs a human (3/3 restarts)`.
    pub fn describe(&self, now: u64) -> String {
        let (n, max) = (self.restarts, self.max_restarts);
        match self.step.as_str() {
            "restarting" => format!("restarting over ssh ({n}/{max})"),
            "needs_human" => format!("needs a human ({n}/{max} restarts)"),
            _ => match self.next_unix {
                Some(t) if n < max => format!(
                    "restart {}/{max} in {}",
                    n + 1,
                    super::output::duration(t.saturating_sub(now))
                ),
                _ => format!("waiting for it ({n}/{max} restarts)"),
            },
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ResourcesView {
    pub cores: u32,
    pub memory_mb: u64,
    pub pkgdir_free_mb: u64,
    pub tmpdir_free_mb: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DroneListView {
    pub drones: Vec<DroneView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PackageView {
    pub atom: String,
    pub state: String,
    pub drone: Option<String>,
    pub attempts: u32,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PackageListView {
    pub packages: Vec<PackageView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LeaseView {
    pub lease: u64,
    pub atom: String,
    pub state: String,
    pub age_s: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct QueueView {
    pub drone: String,
    pub current: Vec<LeaseView>,
    pub next: Vec<String>,
}

/// One orchestrator the gateway knows: at least a name and a URL.
#[derive(Debug, Clone)]
pub struct OrchestratorEntry {
    pub name: String,
    pub url: String,
    /// The gateway's whole entry, for `--json`.
    pub raw: Value,
}

/// Reads the gateway's orchestrator list: `{"orchestrators":[…]}` or a bare array; an
/// entry is an object with `url` (and `name`) or a bare URL string. Entries without a URL
/// are skipped.
pub fn orchestrator_entries(v: &Value) -> Vec<OrchestratorEntry> {
    let list = match v {
        Value::Array(a) => a.as_slice(),
        Value::Object(o) => match o.get("orchestrators") {
            Some(Value::Array(a)) => a.as_slice(),
            _ => &[],
        },
        _ => &[],
    };
    list.iter()
        .filter_map(|e| {
            let (url, name) = match e {
                Value::String(url) => (url.clone(), None),
                Value::Object(o) => (
                    o.get("url")?.as_str()?.to_string(),
                    o.get("name").and_then(Value::as_str).map(str::to_string),
                ),
                _ => return None,
            };
            let url = url.trim_end_matches('/').to_string();
            Some(OrchestratorEntry {
                name: name
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| url.clone()),
                url,
                raw: e.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gateway_shapes_are_read_leniently() {
        let v = json!({"orchestrators": [
            {"name": "main", "url": "http://o1:8080/", "queued": 3},
            {"url": "http://o2:8080"},
            {"name": "no-url"},
            "http://o3:8080"
        ]});
        let e = orchestrator_entries(&v);
        let got: Vec<(&str, &str)> = e
            .iter()
            .map(|o| (o.name.as_str(), o.url.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("main", "http://o1:8080"),
                ("http://o2:8080", "http://o2:8080"),
                ("http://o3:8080", "http://o3:8080")
            ]
        );
        assert_eq!(
            orchestrator_entries(&json!([{"name":"a","url":"http://a"}])).len(),
            1
        );
        assert!(orchestrator_entries(&json!({"ok": true})).is_empty());

        let d: DroneListView = serde_json::from_value(json!({"drones": [
            {"name": "d1", "state": "idle", "orchestrator": "main"},
            {"name": "d2", "aliases": ["x"], "host": "h", "state": "building", "slots": 2,
             "current": ["a/b-1"], "failures": 0, "grounded_until": null, "last_seen": 5}
        ]}))
        .unwrap();
        assert_eq!(d.drones[0].orchestrator.as_deref(), Some("main"));
        assert_eq!(d.drones[1].current, ["a/b-1"]);
        let s: StatusView = serde_json::from_value(json!({"name": "gw", "total": 2, "built": 1,
            "failed": 1, "progress_pct": 100.0, "drones": {"total": 1}}))
        .unwrap();
        assert!(s.is_done());
    }
}
