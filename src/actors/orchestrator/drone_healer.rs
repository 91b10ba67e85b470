//! **DroneHealer** — owns the self-healing ladder of every offline drone (`[heal]`,
//! [`Ladder`]): `heal_after_s` after a drone went offline it runs the drone's
//! `restart_command` over ssh, up to `max_restarts` times with a doubling wait; if the
//! drone is still offline after the last one, it tells the notifier `drone_needs_human`
//! and leaves the drone alone until it is back. Started only when healing is on.
//!
//! Hears `DroneLiveness` from the registry, `Healing` from the registry's listings; tells
//! the notifier `Notify`. Awaits nobody.

use crate::actors::orchestrator::messages::DroneLiveness;
use crate::actors::orchestrator::notifier::Notify;
use crate::config::notify::HealConfig;
use crate::orchestrator::healing::{Ladder, Step};
use crate::orchestrator::notify::{Event, EventKind};
use crate::sys::clock::unix_now;
use crate::sys::process::run_with_timeout;
use crate::wire::orchestrator::HealingView;
use actix::prelude::*;
use slog::{info, warn, Logger};
use std::collections::HashMap;
use std::time::Duration;

/// Every ladder, by drone.
#[derive(Message)]
#[rtype(result = "HashMap<String, HealingView>")]
pub struct Healing;

struct Patient {
    ladder: Ladder,
    host: String,
    restart_command: Vec<String>,
    offline_since: u64,
}

pub struct DroneHealer {
    cfg: HealConfig,
    patients: HashMap<String, Patient>,
    /// Ladders started so far (each one's generations are its own).
    started: u64,
    notify: Option<Recipient<Notify>>,
    log: Logger,
}

impl DroneHealer {
    pub fn new(cfg: HealConfig, notify: Option<Recipient<Notify>>, log: Logger) -> Self {
        DroneHealer {
            cfg,
            patients: HashMap::new(),
            started: 0,
            notify,
            log: log.new(slog::o!("actor" => "drone_healer")),
        }
    }

    fn tell(&self, e: Event) {
        if let Some(n) = &self.notify {
            n.do_send(Notify(e));
        }
    }

    /// Runs `step` for `drone` after `wait`, unless its ladder moved on meanwhile.
    fn step_after(&self, drone: String, generation: u64, wait: Duration, ctx: &mut Context<Self>) {
        ctx.run_later(wait, move |act, ctx| {
            if act
                .patients
                .get(&drone)
                .is_some_and(|p| p.ladder.generation == generation)
            {
                act.step(&drone, ctx);
            }
        });
    }

    /// The wait is over and the drone is still offline: the next rung.
    fn step(&mut self, drone: &str, ctx: &mut Context<Self>) {
        let cfg = self.cfg.clone();
        let Some(p) = self.patients.get_mut(drone) else {
            return;
        };
        let host = cfg
            .hosts
            .get(drone)
            .cloned()
            .unwrap_or_else(|| p.host.clone());
        let argv = if p.restart_command.is_empty() {
            Err("the drone reported no restart_command".to_string())
        } else {
            crate::sys::ssh::argv(
                &cfg.ssh_command,
                cfg.ssh_user.as_deref(),
                &host,
                &p.restart_command,
            )
            .map_err(|e| e.to_string())
        };
        let argv = match argv {
            Ok(a) if p.ladder.may_restart(&cfg) => a,
            Ok(_) => return self.give_up(drone, None),
            Err(why) => return self.give_up(drone, Some(why)),
        };
        p.ladder.restarting();
        let (restarts, generation) = (p.ladder.restarts, p.ladder.generation);
        info!(self.log, "drone still offline: restarting it over ssh"; "drone" => drone,
              "restart" => restarts, "of" => cfg.max_restarts, "command" => argv.join(" "));
        let timeout = Duration::from_secs(cfg.timeout_s);
        let drone = drone.to_string();
        let fut = async move { run_with_timeout(&argv, timeout).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let result = match &res {
                Ok(f) if f.status.success() => "the restart command succeeded".to_string(),
                Ok(f) => format!(
                    "the restart command failed ({}): {}",
                    f.status,
                    crate::sys::process::tail_str(f.output_tail.trim(), 300)
                ),
                Err(e) => e.to_string(),
            };
            let cfg = act.cfg.clone();
            let Some(p) = act
                .patients
                .get_mut(&drone)
                .filter(|p| p.ladder.generation == generation)
            else {
                // Back while the restart ran.
                return;
            };
            let wait = p.ladder.restarted(&cfg, result.clone(), unix_now());
            let generation = p.ladder.generation;
            info!(act.log, "restart over ssh ended; waiting for the drone"; "drone" => &drone,
                  "restart" => restarts, "result" => &result, "wait_s" => wait.as_secs());
            act.step_after(drone, generation, wait, ctx);
        }));
    }

    fn give_up(&mut self, drone: &str, why: Option<String>) {
        let Some(p) = self.patients.get_mut(drone) else {
            return;
        };
        p.ladder.give_up();
        let offline_s = unix_now().saturating_sub(p.offline_since);
        let reason = match why {
            Some(why) => format!("offline for {offline_s} s and cannot be restarted: {why}"),
            None => format!(
                "offline for {offline_s} s; {} restart(s) over ssh did not bring it back (last: {})",
                p.ladder.restarts,
                p.ladder.last_result.as_deref().unwrap_or("none")
            ),
        };
        warn!(self.log, "drone needs a human"; "drone" => drone, "reason" => &reason);
        self.tell(Event::drone(
            EventKind::DroneNeedsHuman,
            drone,
            Some(reason),
        ));
    }
}

impl Actor for DroneHealer {
    type Context = Context<Self>;
}

impl Handler<DroneLiveness> for DroneHealer {
    type Result = ();
    fn handle(&mut self, msg: DroneLiveness, ctx: &mut Self::Context) {
        if msg.online {
            if let Some(p) = self.patients.remove(&msg.drone) {
                if p.ladder.restarts > 0 || p.ladder.step == Step::NeedsHuman {
                    info!(self.log, "drone is back"; "drone" => &msg.drone, "restarts" => p.ladder.restarts);
                }
                if p.ladder.step == Step::NeedsHuman {
                    self.tell(Event::recovered(
                        EventKind::DroneNeedsHuman,
                        Some(&msg.drone),
                    ));
                }
            }
            return;
        }
        let now = unix_now();
        let ladder = Ladder::start(&self.cfg, now, self.started);
        self.started += 1;
        info!(self.log, "drone offline: the self-healing ladder starts"; "drone" => &msg.drone,
              "first_restart_in_s" => self.cfg.heal_after_s);
        let generation = ladder.generation;
        self.patients.insert(
            msg.drone.clone(),
            Patient {
                ladder,
                host: msg.host,
                restart_command: msg.restart_command,
                offline_since: now,
            },
        );
        let wait = Duration::from_secs(self.cfg.heal_after_s);
        self.step_after(msg.drone, generation, wait, ctx);
    }
}

impl Handler<Healing> for DroneHealer {
    type Result = MessageResult<Healing>;
    fn handle(&mut self, _: Healing, _: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.patients
                .iter()
                .map(|(d, p)| (d.clone(), p.ladder.view(&self.cfg)))
                .collect(),
        )
    }
}
