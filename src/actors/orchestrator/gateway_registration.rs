//! **GatewayRegistration** (orchestrator) — owns this orchestrator's registration with its
//! `gateway`: registers at start, then every `every` (30 s), so a restarted gateway learns
//! it again; a failed attempt is retried after `retry` (5 s), never fatal. It registers
//! `public_url`, or a URL derived from `listen` (docs/design.md, "Gateway").
//!
//! Hears no messages: it runs on its own timers and stops with the actor system.

use crate::client::gateway::GatewayClient;
use crate::wire::gateway::OrchestratorRegistration;
use actix::prelude::*;
use slog::{debug, info, warn, Logger};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How often a registered orchestrator registers again.
pub const REREGISTER_EVERY: Duration = Duration::from_secs(30);
/// How soon a failed registration is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct RegistrationSettings {
    /// The gateway's base URL.
    pub gateway: String,
    /// What the gateway should reach this orchestrator at.
    pub url: String,
    pub name: String,
    /// Sent as the bearer token (the orchestrator's admin token).
    pub token: Option<String>,
    pub every: Duration,
    pub retry: Duration,
}

pub struct GatewayRegistration {
    settings: RegistrationSettings,
    client: GatewayClient,
    /// Whether the last attempt worked (`None` before the first).
    last_ok: Option<bool>,
    log: Logger,
}

impl GatewayRegistration {
    pub fn new(settings: RegistrationSettings, log: Logger) -> Self {
        let client = GatewayClient::with_timeout(
            &settings.gateway,
            settings.token.clone(),
            Duration::from_secs(5),
        );
        GatewayRegistration {
            settings,
            client,
            last_ok: None,
            log,
        }
    }

    fn attempt(&mut self, ctx: &mut Context<Self>) {
        let client = self.client.clone();
        let req = OrchestratorRegistration {
            url: self.settings.url.clone(),
            name: self.settings.name.clone(),
        };
        let fut = async move { client.register(&req).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            let s = &act.settings;
            let next = match res {
                Ok(r) => {
                    if act.last_ok != Some(true) {
                        info!(act.log, "registered with the gateway"; "gateway" => &s.gateway,
                              "url" => &s.url, "new" => r.new);
                    } else {
                        debug!(act.log, "registered with the gateway again"; "gateway" => &s.gateway);
                    }
                    act.last_ok = Some(true);
                    s.every
                }
                Err(e) => {
                    if act.last_ok != Some(false) {
                        warn!(act.log, "cannot register with the gateway (will keep trying)";
                              "gateway" => &s.gateway, "url" => &s.url, "error" => e.to_string());
                    } else {
                        debug!(act.log, "cannot register with the gateway";
                               "gateway" => &s.gateway, "error" => e.to_string());
                    }
                    act.last_ok = Some(false);
                    s.retry
                }
            };
            ctx.run_later(next, |act, ctx| act.attempt(ctx));
        }));
    }
}

impl Actor for GatewayRegistration {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.attempt(ctx);
    }
}

/// The URL an orchestrator listening on `listen` (bound to `port`) registers, and a warning
/// when it had to guess. See the module doc.
pub fn advertised_url(
    public_url: Option<&str>,
    listen: SocketAddr,
    port: u16,
) -> (String, Option<String>) {
    if let Some(url) = public_url.map(crate::config::gateway::normalize_url) {
        return (url, None);
    }
    match listen.ip() {
        ip if ip.is_unspecified() => {
            let host = hostname().unwrap_or_else(|| "localhost".to_string());
            let url = format!("http://{host}:{port}");
            let warning = format!(
                "listen is {listen}, so the gateway is told {url} (this machine's host name); \
                 set public_url if the gateway or the drones cannot resolve it"
            );
            (url, Some(warning))
        }
        IpAddr::V4(ip) => (format!("http://{ip}:{port}"), None),
        IpAddr::V6(ip) => (format!("http://[{ip}]:{port}"), None),
    }
}

/// This machine's host name.
fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `buf.len()` bytes; gethostname writes at most that
    // many and we only read up to the first NUL (or the whole buffer).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast::<libc::c_char>(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registered_url_follows_public_url_then_listen() {
        let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let (url, warn) = advertised_url(Some("http://orch.example:8080/"), any, 8080);
        assert_eq!(url, "http://orch.example:8080");
        assert!(warn.is_none());
        let (url, warn) = advertised_url(None, "127.0.0.1:0".parse().unwrap(), 4242);
        assert_eq!(url, "http://127.0.0.1:4242");
        assert!(warn.is_none());
        let (url, _) = advertised_url(None, "[::1]:8080".parse().unwrap(), 8080);
        assert_eq!(url, "http://[::1]:8080");
        let (url, warn) = advertised_url(None, any, 8080);
        assert!(
            url.starts_with("http://") && url.ends_with(":8080"),
            "{url}"
        );
        assert!(!url.contains("0.0.0.0"), "{url}");
        assert!(warn.unwrap().contains("public_url"));
    }
}
