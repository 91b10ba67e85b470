//! The swarm as the CLI sees it: a gateway with the orchestrators it knows, or one
//! orchestrator on its own. `connect` tries the configured endpoints in order and says
//! (with `-v`) where it found the swarm.
//!
//! Through a gateway, `status` and `drones` use its merged views; a drone's commands go to
//! the orchestrator that has the drone; package commands go to every orchestrator.

use super::config::Settings;
use super::error::CliError;
use super::view::{orchestrator_entries, DroneListView, DroneView, OrchestratorEntry, StatusView};
use super::Verbose;
use crate::client::{ApiClient, ClientError};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One orchestrator and a client for it.
#[derive(Clone)]
pub struct Orch {
    pub name: String,
    pub url: String,
    pub client: ApiClient,
    /// The gateway's entry for it (`None` without a gateway).
    pub entry: Option<Value>,
}

pub struct Swarm {
    /// The gateway, when the swarm was found through one.
    pub gateway: Option<ApiClient>,
    pub orchestrators: Vec<Orch>,
    have_token: bool,
}

/// A short reason for the "tried" list of an unreachable swarm.
fn reason(e: &ClientError) -> String {
    match e {
        ClientError::Unreachable { message, .. } => {
            let m = message.trim_start_matches("Failed to connect to host: ");
            if m.starts_with("Connection refused") {
                "connection refused".into()
            } else {
                m.to_string()
            }
        }
        ClientError::Status {
            status, message, ..
        } => format!("HTTP {status}: {message}"),
        ClientError::Unauthorized { .. } => "token refused".into(),
        ClientError::Decode { message, .. } => format!("not build-swarm: {message}"),
    }
}

impl Swarm {
    /// Finds the swarm: the gateway first (if any), then the orchestrator.
    pub async fn connect(settings: &Settings, verbose: Verbose) -> Result<Swarm, CliError> {
        let ep = &settings.endpoints;
        let token = settings.token.clone();
        let have_token = token.is_some();
        for file in &settings.files {
            verbose.note(format!("read {}", file.display()));
        }
        if let Some(source) = &settings.token_source {
            verbose.note(format!("token from {source}"));
        }
        let mut tried = Vec::new();
        if let Some(gw) = &ep.gateway {
            let client = ApiClient::new(gw, token.clone());
            match client.get::<Value>("/api/v1/orchestrators").await {
                Ok(list) => {
                    let orchestrators: Vec<Orch> = orchestrator_entries(&list)
                        .into_iter()
                        .map(|e: OrchestratorEntry| Orch {
                            client: ApiClient::new(&e.url, token.clone()),
                            name: e.name,
                            url: e.url,
                            entry: Some(e.raw),
                        })
                        .collect();
                    verbose.note(format!(
                        "found the swarm at gateway {} (from {}); it knows {} orchestrator(s){}",
                        client.base(),
                        ep.source,
                        orchestrators.len(),
                        orchestrators
                            .iter()
                            .map(|o| format!(" {} {}", o.name, o.url))
                            .collect::<Vec<_>>()
                            .join(",")
                    ));
                    return Ok(Swarm {
                        gateway: Some(client),
                        orchestrators,
                        have_token,
                    });
                }
                Err(ClientError::Unauthorized { url }) => {
                    return Err(CliError::from_client(
                        ClientError::Unauthorized { url },
                        have_token,
                    ))
                }
                Err(ClientError::Status { status: 404, .. }) => {
                    // Something answers, but it has no orchestrator list: an orchestrator
                    // configured as the gateway. Use it as what it is.
                    if client.healthz().await.is_ok() {
                        verbose.note(format!(
                            "{gw} (from {}) is not a gateway but answers like an orchestrator; using it as one",
                            ep.source
                        ));
                        return Ok(Swarm::direct(client, gw, have_token));
                    }
                    tried.push(format!("gateway {gw} (not a build-swarm gateway)"));
                }
                Err(e) => {
                    verbose.note(format!("no gateway at {gw}: {}", reason(&e)));
                    tried.push(format!("gateway {gw} ({})", reason(&e)));
                }
            }
        }
        if let Some(url) = &ep.orchestrator {
            let client = ApiClient::new(url, token.clone());
            match client.healthz().await {
                Ok(_) => {
                    verbose.note(format!(
                        "found the swarm at orchestrator {} (from {})",
                        client.base(),
                        ep.source
                    ));
                    return Ok(Swarm::direct(client, url, have_token));
                }
                Err(e) => tried.push(format!("orchestrator {url} ({})", reason(&e))),
            }
        }
        Err(CliError::Unreachable { tried })
    }

    fn direct(client: ApiClient, url: &str, have_token: bool) -> Swarm {
        Swarm {
            gateway: None,
            orchestrators: vec![Orch {
                name: url.trim_end_matches('/').to_string(),
                url: url.trim_end_matches('/').to_string(),
                client,
                entry: None,
            }],
            have_token,
        }
    }

    pub fn err(&self, e: ClientError) -> CliError {
        CliError::from_client(e, self.have_token)
    }

    /// The client for merged read views: the gateway, or the one orchestrator.
    fn reader(&self) -> Result<&ApiClient, CliError> {
        match &self.gateway {
            Some(g) => Ok(g),
            None => self
                .orchestrators
                .first()
                .map(|o| &o.client)
                .ok_or_else(|| CliError::Invalid("no orchestrator to ask".into())),
        }
    }

    /// GET as raw JSON (printed as it is for `--json`) and as a lenient view.
    pub async fn get<T: DeserializeOwned>(
        &self,
        client: &ApiClient,
        path: &str,
    ) -> Result<(Value, T), CliError> {
        let raw: Value = client.get(path).await.map_err(|e| self.err(e))?;
        let view = serde_json::from_value(raw.clone()).map_err(|e| CliError::Decode {
            url: format!("{}{path}", client.base()),
            message: e.to_string(),
        })?;
        Ok((raw, view))
    }

    pub async fn status(&self) -> Result<(Value, StatusView), CliError> {
        self.get(self.reader()?, "/api/v1/status").await
    }

    pub async fn drones(&self) -> Result<(Value, Vec<DroneView>), CliError> {
        let (raw, list): (Value, DroneListView) =
            self.get(self.reader()?, "/api/v1/drones").await?;
        Ok((raw, list.drones))
    }

    /// Every orchestrator; an error when a gateway knows none.
    pub fn all(&self) -> Result<&[Orch], CliError> {
        if self.orchestrators.is_empty() {
            return Err(CliError::Invalid(
                "the gateway knows no orchestrators yet".into(),
            ));
        }
        Ok(&self.orchestrators)
    }

    /// The orchestrator a command for one orchestrator goes to: the only one, or the one
    /// named by `to` (name or URL).
    pub fn one(&self, to: Option<&str>) -> Result<&Orch, CliError> {
        let all = self.all()?;
        let names = || {
            all.iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match to {
            Some(want) => all
                .iter()
                .find(|o| o.name == want || o.url == want.trim_end_matches('/'))
                .ok_or_else(|| {
                    CliError::Invalid(format!(
                        "no orchestrator named `{want}`; the gateway knows {}",
                        names()
                    ))
                }),
            None if all.len() == 1 => Ok(&all[0]),
            None => Err(CliError::Invalid(format!(
                "the gateway knows {} orchestrators ({}); say which one with --to NAME",
                all.len(),
                names()
            ))),
        }
    }

    /// Whether the swarm was reached through a gateway (tables then name orchestrators).
    pub fn via_gateway(&self) -> bool {
        self.gateway.is_some()
    }

    /// The orchestrator that has `drone`: the one the gateway names, else the only one,
    /// else the first that knows the drone.
    pub async fn orchestrator_of(&self, drone: &DroneView) -> Result<&Orch, CliError> {
        let all = self.all()?;
        if let Some(o) = drone.orchestrator.as_deref() {
            let o = o.trim_end_matches('/');
            if let Some(found) = all.iter().find(|x| x.name == o || x.url == o) {
                return Ok(found);
            }
        }
        if all.len() == 1 {
            return Ok(&all[0]);
        }
        let path = format!("/api/v1/drones/{}", path_segment(&drone.name));
        for o in all {
            if o.client.get::<Value>(&path).await.is_ok() {
                return Ok(o);
            }
        }
        Err(CliError::Invalid(format!(
            "none of the gateway's orchestrators has drone `{}` any more",
            drone.name
        )))
    }
}

/// Percent-encodes everything but unreserved characters, for one path segment.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(path_segment("drone-Tau_Ceti.1"), "drone-Tau_Ceti.1");
        assert_eq!(path_segment("a b/c?"), "a%20b%2Fc%3F");
    }
}
