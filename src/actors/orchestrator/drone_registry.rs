//! **DroneRegistry** — the hub: knows every drone session by name (one `DroneSession`
//! actor per drone) and a summary of each, pushed by the sessions.
//!
//! Hears `Register` (a drone registering again replaces its old session and its old work
//! is reclaimed), `Lookup` and `ClaimFor` (passed on to the session) from HTTP handlers,
//! `SessionChanged` from sessions, `ForDrone` from the queue (commands to deliver at the
//! next heartbeat), `ListDrones`, `GetDrone` and `CountDrones` for reads (it asks the
//! breaker and the queue, which never call back into it), `Restore` once at start-up.
//! Drone records are written through the queue's group commit (`RecordDrone`).
//!
//! Tells the notifier when a drone goes offline and comes back (`Notify`), and the healer
//! (`DroneLiveness`); asks the healer for its ladders (`Healing`) when listing.
//!
//! Owns each drone's environment [`Fit`] (an [`Environments`]): tells a session whether it
//! may claim (`SetFit`), a lagging drone to sync (`PushCommand`), and the queue every
//! drone's slots and environment (`Fleet`) whenever one changes.

use crate::actors::orchestrator::circuit_breaker::{
    CircuitBreaker, FleetSize, HealthReport, HealthView,
};
use crate::actors::orchestrator::drone_healer::{DroneHealer, Healing};
use crate::actors::orchestrator::drone_session::{
    Claim, ClaimError, DroneSession, PushCommand, Replaced, SessionPeers, SetFit,
};
use crate::actors::orchestrator::messages::{
    DroneLiveness, ForDrone, SessionChanged, SessionSummary,
};
use crate::actors::orchestrator::notifier::Notify;
use crate::actors::orchestrator::queue::{
    CurrentByDrone, DroneSeen, Fleet, FleetMember, PackageQueue, ReclaimDrone, RecordDrone,
    SpeedFactors, WithdrawDrone,
};
use crate::actors::orchestrator::store::DroneRow;
use crate::domain::environment::{DroneEnvironment, Fit};
use crate::domain::{check_drone_name, DroneState};
use crate::orchestrator::credentials::{CredentialKind, DroneCredentials};
use crate::orchestrator::environments::Environments;
use crate::orchestrator::notify::{Event, EventKind};
use crate::wire::orchestrator::{
    DroneAction, DroneCommand, DroneCounts, DroneInfo, DroneList, RegisterRequest,
    RegisterResponse, WorkAssignment,
};
use actix::prelude::*;
use slog::{info, warn, Logger};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Invalid(String),
    #[error("no drone named `{0}` is registered")]
    Unknown(String),
    #[error(
        "drone {name} is online, registered with {online} credential; a register with {given} \
         credential is refused (stop the running drone, or wait until it has been offline for \
         the heartbeat TTL)"
    )]
    OnlineWithOtherCredential {
        name: String,
        online: &'static str,
        given: &'static str,
    },
}

/// A drone registers (HTTP handler → registry); `credential`: what its token is.
#[derive(Message)]
#[rtype(result = "Result<RegisterResponse, RegistryError>")]
pub struct Register {
    pub req: RegisterRequest,
    pub credential: CredentialKind,
}

#[derive(Message)]
#[rtype(result = "Result<Addr<DroneSession>, RegistryError>")]
pub struct Lookup {
    pub name: String,
}

/// A drone's claim, passed on to its session: one hop from an HTTP worker to this
/// arbiter instead of a `Lookup` and then a `Claim` (claims are the hottest request).
#[derive(Message)]
#[rtype(result = "Result<Option<WorkAssignment>, ClaimError>")]
pub struct ClaimFor {
    pub drone: String,
}

#[derive(Message)]
#[rtype(result = "DroneList")]
pub struct ListDrones;

#[derive(Message)]
#[rtype(result = "Result<DroneInfo, RegistryError>")]
pub struct GetDrone {
    pub name: String,
}

#[derive(Message)]
#[rtype(result = "DroneCounts")]
pub struct CountDrones;

/// Sessions of drones known from the state database. Drones holding leases get a fresh
/// heartbeat deadline so they can finish their work; the others start offline.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Restore {
    pub drones: Vec<DroneRow>,
    pub with_leases: HashSet<String>,
}

pub struct RegistrySettings {
    pub heartbeat_ttl: Duration,
    /// Enrolled drones (for the host the operator enrolled each for).
    pub credentials: std::sync::Arc<DroneCredentials>,
    pub upload_target: String,
    /// Shared with the sessions (see [`crate::sys::stall`]).
    pub stall: std::sync::Arc<crate::sys::stall::StallWatch>,
    /// `[environment]`: what drones must have to be given work.
    pub environment: crate::config::orchestrator::EnvironmentConfig,
}

struct Entry {
    addr: Addr<DroneSession>,
    summary: SessionSummary,
    /// How its environment fits the swarm's.
    fit: Fit,
}

pub struct DroneRegistry {
    settings: RegistrySettings,
    sessions: HashMap<String, Entry>,
    /// Each session's log-ring byte limit (shared with the sessions).
    log_cap: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    queue: Addr<PackageQueue>,
    breaker: Addr<CircuitBreaker>,
    environments: Environments,
    /// Told when drones go offline and come back.
    notify: Option<Recipient<Notify>>,
    healer: Option<Addr<DroneHealer>>,
    log: Logger,
}

impl DroneRegistry {
    pub fn new(
        settings: RegistrySettings,
        queue: Addr<PackageQueue>,
        breaker: Addr<CircuitBreaker>,
        log: Logger,
    ) -> Self {
        DroneRegistry {
            environments: Environments::new(&settings.environment),
            settings,
            sessions: HashMap::new(),
            log_cap: std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(
                crate::actors::orchestrator::drone_session::log_ring_bytes(1),
            )),
            queue,
            breaker,
            notify: None,
            healer: None,
            log: log.new(slog::o!("actor" => "drone_registry")),
        }
    }

    /// Who hears of drones going offline and coming back.
    pub fn with_watchers(
        mut self,
        notify: Option<Recipient<Notify>>,
        healer: Option<Addr<DroneHealer>>,
    ) -> Self {
        self.notify = notify;
        self.healer = healer;
        self
    }

    /// A drone went offline (`online == false`) or is back.
    fn liveness_changed(&self, summary: &SessionSummary) {
        if let Some(n) = &self.notify {
            n.do_send(Notify(if summary.online {
                Event::recovered(EventKind::DroneOffline, Some(&summary.name))
            } else {
                Event::drone(
                    EventKind::DroneOffline,
                    &summary.name,
                    Some(match summary.last_seen_unix {
                        Some(t) => format!("no heartbeat since {}", crate::sys::clock::rfc3339(t)),
                        None => "no heartbeat".into(),
                    }),
                )
            }));
        }
        if let Some(h) = &self.healer {
            let host = self
                .settings
                .credentials
                .get(&summary.name)
                .and_then(|e| e.host)
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| summary.host.clone());
            h.do_send(DroneLiveness {
                drone: summary.name.clone(),
                online: summary.online,
                host,
                restart_command: summary.restart_command.clone(),
            });
        }
    }

    fn start_session(&mut self, summary: SessionSummary, ctx: &mut Context<Self>) {
        let peers = SessionPeers {
            queue: self.queue.clone(),
            breaker: self.breaker.clone(),
            registry: ctx.address().recipient(),
            stall: self.settings.stall.clone(),
            log_cap: self.log_cap.clone(),
        };
        let addr = DroneSession::new(
            summary.clone(),
            self.settings.heartbeat_ttl,
            peers,
            self.log.clone(),
        )
        .start();
        self.sessions.insert(
            summary.name.clone(),
            Entry {
                addr,
                summary,
                fit: Fit::Unspecified,
            },
        );
        self.log_cap.store(
            crate::actors::orchestrator::drone_session::log_ring_bytes(self.sessions.len()),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Drone `name` reported an environment (or registered): its fit is decided again —
    /// every drone's when it is the reference.
    fn environment_changed(&mut self, name: &str) {
        if self.environments.is_reference(name) {
            let env = self
                .sessions
                .get(name)
                .and_then(|e| e.summary.environment.clone());
            if self.environments.reference_reported(env) {
                info!(self.log, "the reference drone's environment is the expected one now"; "drone" => name);
                self.refit(None);
                return;
            }
        }
        self.refit(Some(name));
    }

    /// Decides the fit of drone `only` (every drone: `None`) again: a session whose fit
    /// changed is told, a lagging online drone is told to sync, and the queue hears the
    /// fleet.
    fn refit(&mut self, only: Option<&str>) {
        let expected = self.environments.expected();
        let mut refitted = Vec::new();
        for (name, e) in self.sessions.iter_mut() {
            if only.is_some_and(|o| o != name) {
                continue;
            }
            let fit = self
                .environments
                .fit(&expected, name, e.summary.environment.as_deref());
            refitted.push(name.clone());
            if fit != e.fit {
                match fit.describe() {
                    Some(why) => {
                        warn!(self.log, "drone gets no work: its build environment does not fit"; "drone" => name.as_str(), "why" => why)
                    }
                    None => {
                        info!(self.log, "drone's build environment fits"; "drone" => name.as_str())
                    }
                }
                e.addr.do_send(SetFit(fit.may_build()));
                // Keys that differ: what it is building now would not be what the binhost
                // promises. (A drone that only lags, or whose command failed, finishes.)
                if matches!(fit, Fit::Mismatched { .. }) {
                    self.queue.do_send(WithdrawDrone {
                        drone: name.clone(),
                        reason: fit.describe().unwrap_or_default(),
                    });
                }
                e.fit = fit;
            }
        }
        for name in refitted {
            self.sync_if_due(&name);
        }
        self.tell_fleet();
    }

    /// A drone whose repositories lag is told to sync (again after `resync_s` if they
    /// still do); one whose repositories are newer than the expected ones gets the
    /// reference drone told to sync. Only drones that report an environment are sent
    /// `sync` (an older drone would not know it).
    fn sync_if_due(&mut self, name: &str) {
        let now = tokio::time::Instant::now();
        let Some(e) = self.sessions.get(name) else {
            return;
        };
        let fit = e.fit.clone();
        let (target, key) = match &fit {
            Fit::Ahead { repos } => match self.settings.environment.reference.clone() {
                Some(r) => {
                    // Asked on behalf of the drones ahead, under a key of its own.
                    let key = format!("{r}\u{0}ahead");
                    let lag = Fit::Lagging {
                        repos: repos.clone(),
                    };
                    if !self.environments.should_sync(&key, &lag, now) {
                        return;
                    }
                    (r, None)
                }
                None => return,
            },
            _ => (name.to_string(), Some(name.to_string())),
        };
        if let Some(key) = key {
            if !(e.summary.online && self.environments.should_sync(&key, &fit, now)) {
                return;
            }
        }
        let Some(t) = self.sessions.get(&target) else {
            return;
        };
        if !t.summary.online || t.summary.environment.is_none() {
            return;
        }
        info!(self.log, "repositories differ: telling a drone to sync"; "drone" => target.as_str(),
              "because_of" => name, "why" => fit.describe());
        t.addr.do_send(PushCommand(DroneCommand {
            action: DroneAction::Sync,
            lease: None,
        }));
    }

    /// The queue needs every drone's slots and environment (requirements, ETA, speed).
    fn tell_fleet(&self) {
        let fleet = self
            .sessions
            .iter()
            .map(|(name, e)| {
                (
                    name.clone(),
                    FleetMember {
                        slots: e.summary.slots,
                        may_build: e.summary.online && !e.summary.paused && e.fit.may_build(),
                        withdrawn: matches!(e.fit, Fit::Mismatched { .. }),
                        environment: e.summary.environment.clone(),
                    },
                )
            })
            .collect();
        self.queue.do_send(Fleet(fleet));
    }

    /// The breaker's fleet guard needs the number of online drones.
    fn tell_fleet_size(&self) {
        let online = self
            .sessions
            .values()
            .filter(|e| e.summary.online)
            .map(|e| e.summary.name.clone())
            .collect();
        self.breaker.do_send(FleetSize { online });
    }

    fn info(
        summary: &SessionSummary,
        fit: &Fit,
        enrolled: Option<crate::orchestrator::credentials::Enrolled>,
        health: Option<&HealthView>,
        current: Option<&Vec<String>>,
        speed_factor: f64,
        healing: Option<crate::wire::orchestrator::HealingView>,
    ) -> DroneInfo {
        let current = current.cloned().unwrap_or_default();
        let grounded_until = health.and_then(|h| h.grounded_until);
        let state = if !summary.online {
            DroneState::Offline
        } else if summary.paused {
            DroneState::Paused
        } else if !fit.may_build() {
            DroneState::Mismatched
        } else if grounded_until.is_some() {
            DroneState::Grounded
        } else if !current.is_empty() {
            DroneState::Building
        } else {
            DroneState::Idle
        };
        DroneInfo {
            name: summary.name.clone(),
            aliases: summary.aliases.clone(),
            host: summary.host.clone(),
            state,
            slots: summary.slots,
            current,
            failures: health.map(|h| h.failures).unwrap_or(0),
            grounded_until,
            last_seen: summary.last_seen_unix,
            version: summary.version.clone(),
            grounded_reason: health
                .filter(|h| h.grounded_until.is_some())
                .and_then(|h| h.reason.clone()),
            probing: health.is_some_and(|h| h.probing),
            restart_command: summary.restart_command.clone(),
            enrolled: enrolled.is_some(),
            enrolled_host: enrolled.and_then(|e| e.host),
            previous_host: summary.previous_host.clone(),
            credential: summary.credential.map(|c| c.as_str().to_string()),
            outdated: crate::domain::version::older_than(
                &summary.version,
                env!("CARGO_PKG_VERSION"),
            ),
            mismatch: fit.describe(),
            capabilities: summary
                .environment
                .as_ref()
                .map(|e| e.capabilities.clone())
                .unwrap_or_default(),
            resources: summary.environment.as_ref().map(|e| e.resources.clone()),
            speed_factor,
            healing: healing.filter(|_| !summary.online),
        }
    }

    /// Builds the listing: asks the breaker, the queue and the healer (none calls back here).
    fn listing(&self) -> impl std::future::Future<Output = Vec<DroneInfo>> + 'static {
        let mut summaries: Vec<(SessionSummary, Fit)> = self
            .sessions
            .values()
            .map(|e| (e.summary.clone(), e.fit.clone()))
            .collect();
        summaries.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        let breaker = self.breaker.send(HealthReport);
        let queue = self.queue.send(CurrentByDrone);
        let speeds = self.queue.send(SpeedFactors);
        let healing = self.healer.as_ref().map(|h| h.send(Healing));
        let credentials = self.settings.credentials.clone();
        async move {
            let health = breaker.await.unwrap_or_default();
            let current = queue.await.unwrap_or_default();
            let speeds = speeds.await.unwrap_or_default();
            let mut healing = match healing {
                Some(h) => h.await.unwrap_or_default(),
                None => HashMap::new(),
            };
            summaries
                .iter()
                .map(|(s, fit)| {
                    let enrolled = credentials.get(&s.name);
                    let speed = speeds.get(&s.name).copied().unwrap_or(1.0);
                    Self::info(
                        s,
                        fit,
                        enrolled,
                        health.get(&s.name),
                        current.get(&s.name),
                        speed,
                        healing.remove(&s.name),
                    )
                })
                .collect()
        }
    }
}

impl Actor for DroneRegistry {
    type Context = Context<Self>;
}

impl Handler<Register> for DroneRegistry {
    type Result = Result<RegisterResponse, RegistryError>;
    fn handle(&mut self, msg: Register, ctx: &mut Self::Context) -> Self::Result {
        let r = msg.req;
        check_drone_name(&r.name).map_err(|e| RegistryError::Invalid(e.to_string()))?;
        if r.slots == 0 || r.slots > 1024 {
            return Err(RegistryError::Invalid(format!(
                "slots must be 1-1024, not {}",
                r.slots
            )));
        }
        if r.aliases.len() > 32
            || r.aliases.iter().any(|a| a.len() > 128)
            || r.host.len() > 255
            || r.restart_command.len() > 64
            || r.restart_command.iter().any(|a| a.len() > 1024)
        {
            return Err(RegistryError::Invalid(
                "too many or too long aliases or host".into(),
            ));
        }
        if let Some(env) = &r.environment {
            env.check()
                .map_err(|e| RegistryError::Invalid(format!("environment: {e}")))?;
        }
        // One running drone per name: while it is online, a register with another
        // credential is refused — unless it is the drone's own (enrolled) one, which
        // takes over from a session the shared or admin token opened. The same credential
        // is the drone restarting.
        if let Some(old) = self.sessions.get(&r.name) {
            if let Some(online) = old.summary.credential.filter(|c| {
                old.summary.online && *c != msg.credential && msg.credential != CredentialKind::Own
            }) {
                warn!(self.log, "refused a register under an online drone's name"; "drone" => &r.name,
                      "online_host" => &old.summary.host, "online_credential" => online.as_str(),
                      "host" => &r.host, "credential" => msg.credential.as_str());
                return Err(RegistryError::OnlineWithOtherCredential {
                    name: r.name,
                    online: online.as_str(),
                    given: msg.credential.as_str(),
                });
            }
        }
        let enrolled_host = self.settings.credentials.get(&r.name).and_then(|e| e.host);
        if let Some(h) = enrolled_host.filter(|h| *h != r.host) {
            warn!(self.log, "drone announces another host than it was enrolled for"; "drone" => &r.name,
                  "enrolled_host" => h, "host" => &r.host);
        }
        let mut paused = false;
        let mut previous_host = None;
        if let Some(old) = self.sessions.remove(&r.name) {
            old.addr.do_send(Replaced);
            paused = old.summary.paused;
            previous_host = old.summary.previous_host.clone();
            if !old.summary.host.is_empty() && old.summary.host != r.host {
                warn!(self.log, "drone host changed"; "drone" => &r.name,
                      "from" => &old.summary.host, "to" => &r.host);
                previous_host = Some(old.summary.host.clone());
            }
            // Whatever the old session held is lost with the drone's restart.
            self.queue.do_send(ReclaimDrone {
                drone: r.name.clone(),
                reason: "the drone registered again (restarted)".into(),
            });
        }
        info!(self.log, "drone registered"; "drone" => &r.name, "host" => &r.host, "slots" => r.slots, "version" => &r.version, "credential" => msg.credential.as_str());
        let summary = SessionSummary {
            name: r.name.clone(),
            aliases: r.aliases,
            host: r.host,
            slots: r.slots,
            version: r.version,
            restart_command: r.restart_command,
            paused,
            online: true,
            last_seen_unix: Some(crate::sys::clock::unix_now()),
            previous_host,
            credential: Some(msg.credential),
            environment: r.environment.map(Arc::new),
        };
        self.queue.do_send(RecordDrone(summary.row()));
        self.queue.do_send(DroneSeen {
            drone: summary.name.clone(),
        });
        self.liveness_changed(&summary);
        self.start_session(summary, ctx);
        self.tell_fleet_size();
        self.environment_changed(&r.name);
        let ttl = self.settings.heartbeat_ttl.as_secs();
        Ok(RegisterResponse {
            name: r.name,
            heartbeat_s: (ttl / 4).max(1),
            upload_target: self.settings.upload_target.clone(),
        })
    }
}

impl Handler<Lookup> for DroneRegistry {
    type Result = Result<Addr<DroneSession>, RegistryError>;
    fn handle(&mut self, msg: Lookup, _: &mut Self::Context) -> Self::Result {
        self.sessions
            .get(&msg.name)
            .map(|e| e.addr.clone())
            .ok_or(RegistryError::Unknown(msg.name))
    }
}

impl Handler<ClaimFor> for DroneRegistry {
    type Result = ResponseFuture<Result<Option<WorkAssignment>, ClaimError>>;
    fn handle(&mut self, msg: ClaimFor, _: &mut Self::Context) -> Self::Result {
        let session = self.sessions.get(&msg.drone).map(|e| e.addr.clone());
        // The session answers on its own; this actor goes on with its mailbox meanwhile.
        Box::pin(async move {
            let session = session.ok_or(ClaimError::UnknownDrone(msg.drone))?;
            session
                .send(Claim)
                .await
                .map_err(|source| ClaimError::Unavailable {
                    actor: "drone session",
                    source,
                })?
        })
    }
}

impl Handler<SessionChanged> for DroneRegistry {
    type Result = ();
    fn handle(&mut self, msg: SessionChanged, _: &mut Self::Context) {
        let Some(e) = self.sessions.get_mut(&msg.0.name) else {
            return;
        };
        let online_changed = e.summary.online != msg.0.online;
        let paused_changed = e.summary.paused != msg.0.paused;
        let env_changed = e.summary.environment != msg.0.environment;
        let persist = paused_changed || online_changed || env_changed;
        let name = msg.0.name.clone();
        e.summary = msg.0;
        if persist {
            self.queue.do_send(RecordDrone(e.summary.row()));
        }
        if online_changed {
            self.tell_fleet_size();
            if let Some(summary) = self.sessions.get(&name).map(|e| e.summary.clone()) {
                self.liveness_changed(&summary);
            }
        }
        if env_changed || online_changed {
            self.environment_changed(&name);
        } else {
            if paused_changed {
                self.tell_fleet();
            }
            // Still lagging after a sync: asked again once `resync_s` is over.
            self.sync_if_due(&name);
        }
    }
}

impl Handler<ForDrone> for DroneRegistry {
    type Result = ();
    fn handle(&mut self, msg: ForDrone, _: &mut Self::Context) {
        if let Some(e) = self.sessions.get(&msg.drone) {
            e.addr.do_send(PushCommand(msg.command));
        }
    }
}

impl Handler<ListDrones> for DroneRegistry {
    type Result = ResponseFuture<DroneList>;
    fn handle(&mut self, _: ListDrones, _: &mut Self::Context) -> Self::Result {
        let listing = self.listing();
        Box::pin(async move {
            DroneList {
                drones: listing.await,
            }
        })
    }
}

impl Handler<GetDrone> for DroneRegistry {
    type Result = ResponseFuture<Result<DroneInfo, RegistryError>>;
    fn handle(&mut self, msg: GetDrone, _: &mut Self::Context) -> Self::Result {
        let listing = self.listing();
        Box::pin(async move {
            listing
                .await
                .into_iter()
                .find(|d| d.name == msg.name)
                .ok_or(RegistryError::Unknown(msg.name))
        })
    }
}

impl Handler<CountDrones> for DroneRegistry {
    type Result = ResponseFuture<DroneCounts>;
    fn handle(&mut self, _: CountDrones, _: &mut Self::Context) -> Self::Result {
        let listing = self.listing();
        Box::pin(async move {
            let drones = listing.await;
            let mut c = DroneCounts {
                total: drones.len(),
                ..DroneCounts::default()
            };
            for d in &drones {
                match d.state {
                    DroneState::Offline => c.offline += 1,
                    DroneState::Grounded => c.grounded += 1,
                    DroneState::Paused => c.paused += 1,
                    DroneState::Mismatched => c.mismatched += 1,
                    DroneState::Idle | DroneState::Building => c.active += 1,
                }
            }
            c
        })
    }
}

impl Handler<Restore> for DroneRegistry {
    type Result = ();
    fn handle(&mut self, msg: Restore, ctx: &mut Self::Context) {
        for row in msg.drones {
            let online = msg.with_leases.contains(&row.name);
            let environment = row.environment.as_deref().and_then(|json| {
                match serde_json::from_str::<DroneEnvironment>(json) {
                    Ok(e) => Some(Arc::new(e)),
                    Err(e) => {
                        warn!(self.log, "stored environment of a drone is unreadable, ignored"; "drone" => &row.name, "error" => e.to_string());
                        None
                    }
                }
            });
            let summary = SessionSummary {
                name: row.name,
                aliases: row.aliases,
                host: row.host,
                slots: row.slots,
                version: row.version,
                restart_command: row.restart_command,
                paused: row.paused,
                online,
                last_seen_unix: row.last_seen_unix,
                previous_host: None,
                credential: None,
                environment,
            };
            self.start_session(summary, ctx);
        }
        self.tell_fleet_size();
        if let Some(reference) = self.settings.environment.reference.clone() {
            let env = self
                .sessions
                .get(&reference)
                .and_then(|e| e.summary.environment.clone());
            self.environments.reference_reported(env);
        }
        self.refit(None);
    }
}
