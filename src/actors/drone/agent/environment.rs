//! The agent's part of the build environment: collecting it (at start, every
//! `environment_check_s`, after a sync) on its own task, sending it with the next
//! heartbeat when it changed, and running the `sync_command` the orchestrator asks for.

use super::DroneAgent;
use crate::domain::environment::DroneEnvironment;
use crate::drone::environment::{collect, sync, Collect};
use actix::prelude::*;
use slog::{debug, info, warn};
use std::time::Duration;
use tokio::time::Instant;

/// The environment as the agent knows it.
#[derive(Debug, Default)]
pub(super) struct EnvState {
    /// Last collected (None: not yet — the drone does not register before).
    pub(super) current: Option<DroneEnvironment>,
    /// Changed since the orchestrator last acknowledged it.
    pub(super) unsent: bool,
    pub(super) collecting: bool,
    pub(super) next_check: Option<Instant>,
    pub(super) syncing: bool,
    /// A sync ended while a collection ran: collect again as soon as it is done.
    pub(super) recheck: bool,
    /// Checks since the environment was last sent: every [`RESEND_EVERY`]th sends it
    /// again if only the free space moved (a small move is not news each time, but a
    /// package's `min_disk_mb` must not wait for ever on a stale figure).
    pub(super) checks_since_sent: u32,
}

/// See [`EnvState::checks_since_sent`].
const RESEND_EVERY: u32 = 6;

impl DroneAgent {
    /// Collects the environment when it is time (and nothing is collecting or syncing).
    pub(super) fn check_environment(&mut self, ctx: &mut Context<Self>) {
        let env = &mut self.env;
        if env.collecting || env.syncing || env.next_check.is_some_and(|t| Instant::now() < t) {
            return;
        }
        env.collecting = true;
        let spec = Collect::from_config(&self.cfg);
        ctx.spawn(async move { collect(&spec).await }.into_actor(self).map(
            |collected, act, ctx| {
                act.env.collecting = false;
                act.env.checks_since_sent += 1;
                debug!(act.log, "environment checked"; "keys" => collected.fingerprint.len(),
                       "error" => collected.error.clone());
                act.env.next_check = if std::mem::take(&mut act.env.recheck) {
                    None
                } else {
                    Some(Instant::now() + Duration::from_secs(act.cfg.environment_check_s))
                };
                if let Some(e) = &collected.error {
                    warn!(act.log, "environment command failed: the orchestrator will give no work while an environment is expected"; "error" => e);
                }
                let stale = act.env.checks_since_sent >= RESEND_EVERY
                    && act.env.current.as_ref() != Some(&collected);
                if stale
                    || act
                        .env
                        .current
                        .as_ref()
                        .is_none_or(|old| collected.differs_from(old))
                {
                    act.env.checks_since_sent = 0;
                    if act.env.current.is_some() {
                        info!(act.log, "build environment changed: reporting it");
                    }
                    act.env.current = Some(collected);
                    act.env.unsent = true;
                }
                act.tick(ctx);
            },
        ));
    }

    /// What the next heartbeat carries: the environment, when it changed.
    pub(super) fn environment_to_send(&self) -> Option<DroneEnvironment> {
        self.env
            .current
            .as_ref()
            .filter(|_| self.env.unsent)
            .cloned()
    }

    /// The orchestrator says the repositories lag (or the operator asked): run the
    /// `sync_command`, then check the environment again.
    pub(super) fn start_sync(&mut self, ctx: &mut Context<Self>) {
        if self.env.syncing {
            return;
        }
        self.env.syncing = true;
        info!(self.log, "syncing repositories"; "command" => self.cfg.sync_command.join(" "));
        let argv = self.cfg.sync_command.clone();
        let timeout = Duration::from_secs(self.cfg.sync_timeout_s);
        ctx.spawn(
            async move { sync(&argv, timeout).await }
                .into_actor(self)
                .map(|res, act, ctx| {
                    act.env.syncing = false;
                    match res {
                        Ok(()) => info!(act.log, "sync finished: checking the environment again"),
                        Err(e) => warn!(act.log, "sync failed"; "error" => e),
                    }
                    act.env.next_check = None;
                    // A collection under way started before the sync: another one after it.
                    act.env.recheck = act.env.collecting;
                    act.check_environment(ctx);
                }),
        );
    }
}
