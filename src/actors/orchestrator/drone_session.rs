//! **DroneSession** — one per registered drone. Owns the drone's heartbeat deadline, its
//! paused flag, the control commands waiting for its next heartbeat, and a ring buffer of
//! its recent log lines.
//!
//! Hears `Heartbeat`, `Control` and `GetLogs` from HTTP handlers (after the registry's
//! `Lookup`), `Claim` from the registry, `PushCommand` from the registry (cancels decided by
//! the queue, syncs), `SetFit` from the registry (whether its environment lets it claim),
//! `Replaced` when the drone registers again. Tells the registry
//! `SessionChanged` (through a `Recipient`) and the queue `ReclaimDrone` when the heartbeat
//! deadline passes. The deadline timer carries a generation; a timer from before the latest
//! heartbeat does nothing.

use crate::actors::orchestrator::circuit_breaker::{CircuitBreaker, MayClaim, ProbeUnused};
use crate::actors::orchestrator::messages::{SessionChanged, SessionSummary};
use crate::actors::orchestrator::queue::{
    CheckLeases, ClaimPackage, PackageQueue, QueueError, ReclaimDrone,
};
use crate::wire::orchestrator::{
    ControlAction, DroneAction, DroneCommand, HeartbeatResponse, WorkAssignment,
};
use actix::prelude::*;
use slog::{info, warn, Logger};
use std::collections::VecDeque;
use std::time::Duration;

/// Log lines kept per drone.
pub const LOG_RING: usize = 2000;
/// Memory all drones' log rings may use together (text plus bookkeeping). Each ring may
/// hold this divided by the number of drones (at least `LOG_MIN_BYTES`), up to `LOG_RING`
/// lines: a few drones keep their 2,000 lines, 5,000 drones about 100 lines each. Full
/// 2,000-line rings of 5,000 drones would take about 1.5 GB (BENCHMARKS.md, scale).
pub const LOG_BUDGET_BYTES: usize = 64 * 1024 * 1024;
/// A ring may always hold this much.
pub const LOG_MIN_BYTES: usize = 8 * 1024;
/// What a kept line costs beyond its text (the `String` and the allocator's share).
const LOG_LINE_OVERHEAD: usize = 48;

/// The byte limit of each drone's log ring, for `drones` drones.
pub fn log_ring_bytes(drones: usize) -> usize {
    (LOG_BUDGET_BYTES / drones.max(1)).max(LOG_MIN_BYTES)
}
/// Longest single log line kept.
const LOG_LINE_BYTES: usize = 1024;

#[derive(Message)]
#[rtype(result = "HeartbeatResponse")]
pub struct Heartbeat {
    pub leases: Vec<u64>,
    pub log: Vec<String>,
    /// A new environment report (checked by the handler).
    pub environment: Option<crate::domain::environment::DroneEnvironment>,
}

/// Whether the drone's build environment fits: a drone that does not fit claims nothing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetFit(pub bool);

/// The drone asks for work: unless it is paused or the breaker refuses it, the queue picks.
#[derive(Message)]
#[rtype(result = "Result<Option<WorkAssignment>, ClaimError>")]
pub struct Claim;

/// Why a claim got neither work nor a plain "nothing for you".
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("no drone named `{0}` is registered")]
    UnknownDrone(String),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("the {actor} is not answering: {source}")]
    Unavailable {
        actor: &'static str,
        #[source]
        source: MailboxError,
    },
}

/// An operator's command; `false`: it cannot be sent to this drone (a `sync` to a drone
/// that reports no environment, which would not know it).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Control(pub ControlAction);

#[derive(Message)]
#[rtype(result = "()")]
pub struct PushCommand(pub DroneCommand);

#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct GetLogs {
    pub n: usize,
}

/// The drone registered again: this session ends.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replaced;

#[derive(Message)]
#[rtype(result = "()")]
struct HeartbeatExpired {
    generation: u64,
}

pub struct SessionPeers {
    pub queue: Addr<PackageQueue>,
    pub breaker: Addr<CircuitBreaker>,
    pub registry: Recipient<SessionChanged>,
    /// Tells whether this process stood still lately (then a silence is not the drone's).
    pub stall: std::sync::Arc<crate::sys::stall::StallWatch>,
    /// The byte limit of each log ring, kept up to date by the registry
    /// ([`log_ring_bytes`] of the number of drones).
    pub log_cap: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

pub struct DroneSession {
    summary: SessionSummary,
    ttl: Duration,
    generation: u64,
    deadline: Option<SpawnHandle>,
    /// The orchestrator's stall (its start) this drone was last given a fresh TTL for.
    excused_stall: Option<u64>,
    commands: VecDeque<DroneCommand>,
    /// Its environment fits (the registry decides).
    fits: bool,
    log_lines: VecDeque<String>,
    /// What `log_lines` costs, counted as text plus `LOG_LINE_OVERHEAD` per line.
    log_bytes: usize,
    peers: SessionPeers,
    log: Logger,
}

impl DroneSession {
    /// `summary.online`: whether the drone counts as alive until its first heartbeat
    /// deadline (a restored drone that holds leases does).
    pub fn new(summary: SessionSummary, ttl: Duration, peers: SessionPeers, log: Logger) -> Self {
        let log = log.new(slog::o!("actor" => "drone_session", "drone" => summary.name.clone()));
        DroneSession {
            summary,
            ttl,
            generation: 0,
            deadline: None,
            excused_stall: None,
            commands: VecDeque::new(),
            fits: true,
            log_lines: VecDeque::new(),
            log_bytes: 0,
            peers,
            log,
        }
    }

    fn changed(&self) {
        self.peers
            .registry
            .do_send(SessionChanged(self.summary.clone()));
    }

    /// Any contact from the drone: it is alive until `ttl` from now.
    fn alive(&mut self, ctx: &mut Context<Self>) {
        let was_online = self.summary.online;
        self.summary.online = true;
        self.summary.last_seen_unix = Some(crate::sys::clock::unix_now());
        self.arm_deadline(ctx);
        if !was_online {
            info!(self.log, "drone is back online");
        }
        self.changed();
    }
}

impl DroneSession {
    /// The drone is offline unless it is heard from within the TTL from now.
    fn arm_deadline(&mut self, ctx: &mut Context<Self>) {
        self.generation += 1;
        if let Some(h) = self.deadline.take() {
            ctx.cancel_future(h);
        }
        self.deadline = Some(ctx.notify_later(
            HeartbeatExpired {
                generation: self.generation,
            },
            self.ttl,
        ));
    }
}

impl Actor for DroneSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.summary.online {
            self.alive(ctx);
        } else {
            self.changed();
        }
    }
}

impl Handler<HeartbeatExpired> for DroneSession {
    type Result = ();
    fn handle(&mut self, msg: HeartbeatExpired, ctx: &mut Self::Context) {
        if msg.generation != self.generation || !self.summary.online {
            return;
        }
        // The orchestrator itself stood still: the silence is not the drone's (one fresh
        // TTL per stall).
        let stall = self
            .peers
            .stall
            .stalled_within(self.ttl, std::time::Instant::now());
        if let Some(stall) = stall.filter(|s| Some(s.start_ms) != self.excused_stall) {
            info!(self.log, "the orchestrator stood still; the drone gets a fresh TTL";
                  "stall_s" => stall.len.as_secs());
            self.excused_stall = Some(stall.start_ms);
            self.arm_deadline(ctx);
            return;
        }
        warn!(self.log, "no heartbeat within the TTL, drone is offline"; "ttl_s" => self.ttl.as_secs());
        self.summary.online = false;
        self.changed();
        self.peers.queue.do_send(ReclaimDrone {
            drone: self.summary.name.clone(),
            reason: format!("drone offline: no heartbeat for {} s", self.ttl.as_secs()),
        });
    }
}

impl Handler<Heartbeat> for DroneSession {
    type Result = ResponseActFuture<Self, HeartbeatResponse>;
    fn handle(&mut self, msg: Heartbeat, ctx: &mut Self::Context) -> Self::Result {
        if let Some(env) = msg.environment {
            info!(self.log, "drone reported its build environment"; "error" => env.error.clone());
            self.summary.environment = Some(std::sync::Arc::new(env));
        }
        self.alive(ctx);
        let cap = self
            .peers
            .log_cap
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(LOG_MIN_BYTES);
        for line in msg.log {
            let line = crate::sys::process::tail_str(&line, LOG_LINE_BYTES).to_string();
            self.log_bytes += line.len() + LOG_LINE_OVERHEAD;
            self.log_lines.push_back(line);
            while self.log_lines.len() > LOG_RING
                || (self.log_bytes > cap && self.log_lines.len() > 1)
            {
                match self.log_lines.pop_front() {
                    Some(old) => self.log_bytes -= old.len() + LOG_LINE_OVERHEAD,
                    None => break,
                }
            }
        }
        let check = self.peers.queue.send(CheckLeases {
            drone: self.summary.name.clone(),
            listed: msg.leases,
        });
        Box::pin(check.into_actor(self).map(|stop, act, _| {
            for lease in stop.unwrap_or_default() {
                let cmd = DroneCommand {
                    action: DroneAction::Cancel,
                    lease: Some(lease),
                };
                if !act.commands.contains(&cmd) {
                    act.commands.push_back(cmd);
                }
            }
            HeartbeatResponse {
                commands: act.commands.drain(..).collect(),
            }
        }))
    }
}

impl Handler<Claim> for DroneSession {
    type Result = ResponseActFuture<Self, Result<Option<WorkAssignment>, ClaimError>>;
    fn handle(&mut self, _: Claim, ctx: &mut Self::Context) -> Self::Result {
        if !self.summary.online {
            self.alive(ctx);
        }
        if self.summary.paused || !self.fits {
            return Box::pin(fut::ready(Ok(None)));
        }
        let drone = self.summary.name.clone();
        let slots = self.summary.slots;
        let breaker = self.peers.breaker.clone();
        let queue = self.peers.queue.clone();
        Box::pin(
            async move {
                let admission = match breaker
                    .send(MayClaim {
                        drone: drone.clone(),
                    })
                    .await
                {
                    Ok(Ok(a)) => a,
                    Ok(Err(_refused)) => return Ok(None),
                    Err(source) => {
                        return Err(ClaimError::Unavailable {
                            actor: "circuit breaker",
                            source,
                        })
                    }
                };
                let claimed = queue
                    .send(ClaimPackage {
                        drone: drone.clone(),
                        slots,
                    })
                    .await
                    .map_err(|source| ClaimError::Unavailable {
                        actor: "package queue",
                        source,
                    })?;
                if admission.probe && !matches!(claimed, Ok(Some(_))) {
                    breaker.do_send(ProbeUnused { drone });
                }
                Ok(claimed?)
            }
            .into_actor(self),
        )
    }
}

impl Handler<Control> for DroneSession {
    type Result = bool;
    fn handle(&mut self, msg: Control, _: &mut Self::Context) -> bool {
        info!(self.log, "operator control"; "action" => format!("{:?}", msg.0));
        let action = match msg.0 {
            ControlAction::Pause => {
                self.summary.paused = true;
                self.changed();
                DroneAction::Pause
            }
            ControlAction::Resume => {
                self.summary.paused = false;
                self.changed();
                DroneAction::Resume
            }
            ControlAction::Restart => DroneAction::Restart,
            ControlAction::Unground => return true,
            // An older drone does not know `sync`: only a drone that reports an
            // environment is sent one.
            ControlAction::Sync if self.summary.environment.is_none() => {
                warn!(
                    self.log,
                    "sync asked of a drone that reports no environment: not sent"
                );
                return false;
            }
            ControlAction::Sync => DroneAction::Sync,
        };
        self.commands.push_back(DroneCommand {
            action,
            lease: None,
        });
        true
    }
}

impl Handler<SetFit> for DroneSession {
    type Result = ();
    fn handle(&mut self, msg: SetFit, _: &mut Self::Context) {
        self.fits = msg.0;
    }
}

impl Handler<PushCommand> for DroneSession {
    type Result = ();
    fn handle(&mut self, msg: PushCommand, _: &mut Self::Context) {
        if !self.commands.contains(&msg.0) {
            self.commands.push_back(msg.0);
        }
    }
}

impl Handler<GetLogs> for DroneSession {
    type Result = MessageResult<GetLogs>;
    fn handle(&mut self, msg: GetLogs, _: &mut Self::Context) -> Self::Result {
        let skip = self.log_lines.len().saturating_sub(msg.n);
        MessageResult(self.log_lines.iter().skip(skip).cloned().collect())
    }
}

impl Handler<Replaced> for DroneSession {
    type Result = ();
    fn handle(&mut self, _: Replaced, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_rings_share_one_budget() {
        // A small fleet keeps its 2,000 lines of ordinary length.
        assert!(log_ring_bytes(4) > LOG_RING * (200 + LOG_LINE_OVERHEAD));
        // 5,000 drones: about 100 lines of ~110 bytes each, 64 MiB together.
        let each = log_ring_bytes(5000);
        assert!((12_000..14_000).contains(&each), "{each}");
        assert!(each * 5000 <= LOG_BUDGET_BYTES);
        // Never less than the floor.
        assert_eq!(log_ring_bytes(1_000_000), LOG_MIN_BYTES);
    }
}
