//! **OrchestratorDirectory** (gateway) — owns the list of known orchestrators (config
//! order, then registration order), each one's health and last polled status. Polls them
//! all every `poll_interval`; a poll result older than one already applied is dropped.
//! `Pick` chooses as docs/design.md ("Gateway") says.
//!
//! Hears `RegisterOrchestrator` from the registration endpoint, `Pick` and `List` from the
//! gateway's HTTP handlers. It never awaits anyone; its polls run as spawned futures.

use crate::client::ApiClient;
use crate::config::gateway::normalize_url;
use crate::wire::gateway::{OrchestratorChoice, OrchestratorEntry};
use crate::wire::orchestrator::Status;
use actix::prelude::*;
use slog::{debug, info, warn, Logger};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct DirectorySettings {
    pub poll_interval: Duration,
    /// Shorter than `poll_interval`.
    pub poll_timeout: Duration,
    pub unhealthy_after: u32,
    /// Registered orchestrators unhealthy and silent this long are dropped; `None` = never.
    pub forget_after: Option<Duration>,
    /// Bearer token sent with every poll.
    pub read_token: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DirectoryError {
    #[error("no healthy orchestrator{0}")]
    NoneHealthy(String),
    #[error("{0}")]
    Invalid(String),
}

/// An orchestrator registers itself (or registers again: then nothing but its name and
/// registration time change, and it is polled at once if it was not healthy).
#[derive(Message)]
#[rtype(result = "Result<Registered, DirectoryError>")]
pub struct RegisterOrchestrator {
    pub url: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub url: String,
    pub new: bool,
}

/// The orchestrator a drone should use now.
#[derive(Message)]
#[rtype(result = "Result<OrchestratorChoice, DirectoryError>")]
pub struct Pick;

/// Every known orchestrator, in order.
#[derive(Message)]
#[rtype(result = "Vec<OrchestratorEntry>")]
pub struct List;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Config,
    Registered,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Registered => "registered",
        }
    }
}

struct Entry {
    url: String,
    source: Source,
    /// The name it registered with, until a poll tells its own.
    registered_name: Option<String>,
    client: ApiClient,
    healthy: bool,
    failed_polls: u32,
    status: Option<Status>,
    error: Option<String>,
    last_poll: Option<u64>,
    last_ok: Option<u64>,
    last_ok_at: Option<Instant>,
    last_registered: Option<Instant>,
    /// Sequence number of the last poll started, and of the last one applied.
    started_seq: u64,
    applied_seq: u64,
}

impl Entry {
    fn name(&self) -> String {
        self.status
            .as_ref()
            .map(|s| s.name.clone())
            .or_else(|| self.registered_name.clone())
            .unwrap_or_else(|| self.url.clone())
    }

    fn queued(&self) -> usize {
        self.status.as_ref().map_or(0, |s| s.counts.queued)
    }

    fn waiting(&self) -> usize {
        self.status.as_ref().map_or(0, |s| s.counts.waiting)
    }

    fn view(&self) -> OrchestratorEntry {
        let counts = self.status.as_ref().map(|s| s.counts.clone());
        let counts = counts.unwrap_or_default();
        OrchestratorEntry {
            name: self.name(),
            url: self.url.clone(),
            healthy: self.healthy,
            queued: counts.queued,
            total: counts.total,
            built: counts.built,
            failed: counts.failed,
            last_poll: self.last_poll,
            error: self.error.clone(),
            source: self.source.as_str().to_string(),
            last_ok: self.last_ok,
            failed_polls: self.failed_polls,
            status: self.status.clone(),
        }
    }
}

pub struct OrchestratorDirectory {
    settings: DirectorySettings,
    entries: Vec<Entry>,
    log: Logger,
}

use crate::sys::clock::unix_now;

impl OrchestratorDirectory {
    /// `configured`: normalized URLs in config order.
    pub fn new(settings: DirectorySettings, configured: Vec<String>, log: Logger) -> Self {
        let mut dir = OrchestratorDirectory {
            settings,
            entries: Vec::new(),
            log,
        };
        for url in configured {
            dir.add(url, Source::Config, None);
        }
        dir
    }

    fn add(&mut self, url: String, source: Source, name: Option<String>) -> usize {
        let client = ApiClient::with_timeout(
            &url,
            self.settings.read_token.clone(),
            self.settings.poll_timeout,
        );
        self.entries.push(Entry {
            url,
            source,
            registered_name: name,
            client,
            healthy: false,
            failed_polls: 0,
            status: None,
            error: None,
            last_poll: None,
            last_ok: None,
            last_ok_at: None,
            last_registered: (source == Source::Registered).then(Instant::now),
            started_seq: 0,
            applied_seq: 0,
        });
        self.entries.len() - 1
    }

    /// Starts a poll of the orchestrator at `url`; its result comes back to `apply`.
    fn poll(&mut self, url: &str, ctx: &mut Context<Self>) {
        let Some(e) = self.entries.iter_mut().find(|e| e.url == url) else {
            return;
        };
        e.started_seq += 1;
        let seq = e.started_seq;
        let client = e.client.clone();
        let timeout = self.settings.poll_timeout;
        let url = e.url.clone();
        let for_error = url.clone();
        let fut = async move {
            match tokio::time::timeout(timeout, client.status()).await {
                Ok(res) => res.map_err(|e| e.to_string()),
                Err(_) => Err(format!(
                    "{for_error}: no answer within {} ms",
                    timeout.as_millis()
                )),
            }
        };
        ctx.spawn(
            fut.into_actor(self)
                .map(move |res, act, _| act.apply(&url, seq, res)),
        );
    }

    fn poll_all(&mut self, ctx: &mut Context<Self>) {
        self.forget_silent();
        let urls: Vec<String> = self.entries.iter().map(|e| e.url.clone()).collect();
        for url in urls {
            self.poll(&url, ctx);
        }
    }

    /// Drops registered orchestrators that have been unhealthy, and have not registered
    /// again, for `forget_after`.
    fn forget_silent(&mut self) {
        let Some(after) = self.settings.forget_after else {
            return;
        };
        let log = self.log.clone();
        self.entries.retain(|e| {
            let silent = e.source == Source::Registered
                && !e.healthy
                && e.last_registered.is_none_or(|t| t.elapsed() > after)
                && e.last_ok_at.is_none_or(|t| t.elapsed() > after);
            if silent {
                info!(log, "forgetting a registered orchestrator that went silent";
                      "url" => &e.url, "name" => e.name());
            }
            !silent
        });
    }

    /// Applies the result of poll number `seq` of `url`.
    pub(crate) fn apply(&mut self, url: &str, seq: u64, res: Result<Status, String>) {
        let unhealthy_after = self.settings.unhealthy_after;
        let Some(e) = self.entries.iter_mut().find(|e| e.url == url) else {
            return; // forgotten meanwhile
        };
        if seq <= e.applied_seq {
            debug!(self.log, "late poll result dropped"; "url" => url, "seq" => seq,
                   "applied" => e.applied_seq);
            return;
        }
        e.applied_seq = seq;
        let now = unix_now();
        e.last_poll = Some(now);
        match res {
            Ok(status) => {
                if !e.healthy {
                    info!(self.log, "orchestrator is healthy"; "url" => url,
                          "name" => &status.name, "queued" => status.counts.queued);
                }
                debug!(self.log, "polled"; "url" => url, "queued" => status.counts.queued,
                       "waiting" => status.counts.waiting);
                e.healthy = true;
                e.failed_polls = 0;
                e.error = None;
                e.last_ok = Some(now);
                e.last_ok_at = Some(Instant::now());
                e.status = Some(status);
            }
            Err(error) => {
                e.failed_polls = e.failed_polls.saturating_add(1);
                if e.healthy && e.failed_polls >= unhealthy_after {
                    warn!(self.log, "orchestrator is unhealthy"; "url" => url, "name" => e.name(),
                          "failed_polls" => e.failed_polls, "error" => &error);
                    e.healthy = false;
                } else {
                    debug!(self.log, "poll failed"; "url" => url, "failed_polls" => e.failed_polls,
                           "error" => &error);
                }
                e.error = Some(error);
            }
        }
    }

    /// See the module doc.
    pub(crate) fn pick(&self) -> Result<OrchestratorChoice, DirectoryError> {
        let best = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.healthy)
            .min_by_key(|(i, e)| {
                (
                    e.failed_polls > 0,
                    std::cmp::Reverse(e.queued()),
                    std::cmp::Reverse(e.waiting()),
                    *i,
                )
            });
        match best {
            Some((_, e)) => Ok(OrchestratorChoice {
                name: e.name(),
                url: e.url.clone(),
                queued: e.queued(),
            }),
            None if self.entries.is_empty() => Err(DirectoryError::NoneHealthy(
                ": none is configured and none has registered yet".into(),
            )),
            None => {
                let why: Vec<String> = self
                    .entries
                    .iter()
                    .map(|e| {
                        let why = e.error.as_deref().unwrap_or("not polled yet");
                        format!("{} ({}): {why}", e.name(), e.url)
                    })
                    .collect();
                Err(DirectoryError::NoneHealthy(format!(
                    " among {}: {}",
                    self.entries.len(),
                    why.join("; ")
                )))
            }
        }
    }

    pub(crate) fn register(&mut self, url: &str, name: &str) -> (Registered, bool) {
        let url = normalize_url(url);
        let name = name.trim().to_string();
        if let Some(e) = self.entries.iter_mut().find(|e| e.url == url) {
            e.registered_name = Some(name);
            e.last_registered = Some(Instant::now());
            let poll_now = !e.healthy;
            debug!(self.log, "orchestrator registered again"; "url" => &url);
            return (Registered { url, new: false }, poll_now);
        }
        info!(self.log, "orchestrator registered"; "url" => &url, "name" => &name);
        self.add(url.clone(), Source::Registered, Some(name));
        (Registered { url, new: true }, true)
    }
}

impl Actor for OrchestratorDirectory {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.poll_all(ctx);
        ctx.run_interval(self.settings.poll_interval, |act, ctx| act.poll_all(ctx));
    }
}

impl Handler<RegisterOrchestrator> for OrchestratorDirectory {
    type Result = Result<Registered, DirectoryError>;

    fn handle(&mut self, msg: RegisterOrchestrator, ctx: &mut Context<Self>) -> Self::Result {
        if crate::config::check_url("url", msg.url.trim()).is_err() {
            return Err(DirectoryError::Invalid(format!(
                "`url`: `{}` is not a URL like http://orch.example:8080",
                msg.url
            )));
        }
        if msg.name.trim().is_empty() {
            return Err(DirectoryError::Invalid("`name` must not be empty".into()));
        }
        let (registered, poll_now) = self.register(&msg.url, &msg.name);
        if poll_now {
            self.poll(&registered.url, ctx);
        }
        Ok(registered)
    }
}

impl Handler<Pick> for OrchestratorDirectory {
    type Result = Result<OrchestratorChoice, DirectoryError>;

    fn handle(&mut self, _: Pick, _: &mut Context<Self>) -> Self::Result {
        self.pick()
    }
}

impl Handler<List> for OrchestratorDirectory {
    type Result = MessageResult<List>;

    fn handle(&mut self, _: List, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.entries.iter().map(Entry::view).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::orchestrator::{DroneCounts, PackageCounts};

    fn dir(urls: &[&str]) -> OrchestratorDirectory {
        let settings = DirectorySettings {
            poll_interval: Duration::from_secs(1),
            poll_timeout: Duration::from_millis(750),
            unhealthy_after: 2,
            forget_after: None,
            read_token: None,
        };
        let log = Logger::root(slog::Discard, slog::o!());
        OrchestratorDirectory::new(settings, urls.iter().map(|u| u.to_string()).collect(), log)
    }

    fn status(name: &str, queued: usize, waiting: usize) -> Status {
        let counts = PackageCounts {
            total: queued + waiting,
            queued,
            waiting,
            ..PackageCounts::default()
        };
        Status {
            name: name.into(),
            progress_pct: counts.progress_pct(),
            counts,
            drones: DroneCounts::default(),
            central_fault: None,
            eta_s: None,
        }
    }

    fn answer(d: &mut OrchestratorDirectory, url: &str, st: Status) {
        let seq = d.entries.iter().find(|e| e.url == url).unwrap().applied_seq + 1;
        d.apply(url, seq, Ok(st));
    }

    fn fail(d: &mut OrchestratorDirectory, url: &str) {
        let seq = d.entries.iter().find(|e| e.url == url).unwrap().applied_seq + 1;
        d.apply(url, seq, Err("connection refused".into()));
    }

    #[test]
    fn the_empty_backup_is_never_picked_over_work() {
        // The backup is listed first: picking by order, or by the emptiest queue (the
        // seed's bug), would both send drones there.
        let mut d = dir(&["http://backup", "http://primary"]);
        answer(&mut d, "http://backup", status("backup", 0, 0));
        answer(&mut d, "http://primary", status("primary", 176, 85));
        assert_eq!(d.pick().unwrap().name, "primary");
        // Nothing claimable right now, but more coming: still the primary.
        answer(&mut d, "http://primary", status("primary", 0, 85));
        assert_eq!(d.pick().unwrap().name, "primary");
        // Nothing anywhere: the first healthy one, in config order.
        answer(&mut d, "http://primary", status("primary", 0, 0));
        assert_eq!(d.pick().unwrap().name, "backup");
        // Ties on queued go to config order.
        answer(&mut d, "http://backup", status("backup", 3, 0));
        answer(&mut d, "http://primary", status("primary", 3, 0));
        assert_eq!(d.pick().unwrap().name, "backup");
    }

    #[test]
    fn health_follows_polls() {
        let mut d = dir(&["http://a", "http://b"]);
        assert!(matches!(d.pick(), Err(DirectoryError::NoneHealthy(_))));
        answer(&mut d, "http://a", status("a", 10, 0));
        answer(&mut d, "http://b", status("b", 5, 0));
        assert_eq!(d.pick().unwrap().name, "a");
        // One failed poll: still healthy, but the one that answered is preferred.
        fail(&mut d, "http://a");
        assert!(d.entries[0].healthy);
        assert_eq!(d.pick().unwrap().name, "b");
        fail(&mut d, "http://a");
        assert!(!d.entries[0].healthy);
        fail(&mut d, "http://b");
        fail(&mut d, "http://b");
        let err = d.pick().unwrap_err().to_string();
        assert!(
            err.contains("connection refused") && err.contains("http://b"),
            "{err}"
        );
        // Healthy again on the first answer.
        answer(&mut d, "http://b", status("b", 1, 0));
        assert_eq!(d.pick().unwrap().name, "b");
    }

    #[test]
    fn a_late_poll_result_does_not_overwrite_a_newer_one() {
        let mut d = dir(&["http://a"]);
        d.apply("http://a", 2, Ok(status("a", 7, 0)));
        d.apply("http://a", 1, Err("timed out".into()));
        d.apply("http://a", 1, Ok(status("a", 99, 0)));
        let v = d.entries[0].view();
        assert_eq!((v.queued, v.healthy, v.error), (7, true, None));
    }

    #[test]
    fn registration_keeps_order_and_deduplicates() {
        let mut d = dir(&["http://a"]);
        let (r, poll) = d.register("http://c/", "c");
        assert!(r.new && poll);
        assert_eq!(r.url, "http://c");
        let (r, _) = d.register("http://a", "a-registered");
        assert!(!r.new);
        let names: Vec<String> = d.entries.iter().map(Entry::name).collect();
        assert_eq!(names, vec!["a-registered", "c"]);
        assert_eq!(d.entries[0].source, Source::Config);
        // The name an orchestrator reports wins over the registered one.
        answer(&mut d, "http://c", status("c-real", 0, 0));
        assert_eq!(d.entries[1].name(), "c-real");
    }
}
