//! **PublishHook** — runs the operator's `publish_command` (e.g. `emaint binhost --fix`)
//! after packages are published. Runs are coalesced: while one runs, any number of new
//! publications cause exactly one more run afterwards, so a busy swarm does not start one
//! index rebuild per package. Each run has a timeout and is killed by process group.
//!
//! Hears `PackagesPublished` from the package queue (fire-and-forget) once the batch that
//! records a publish is committed.

use crate::sys::process::run_with_timeout;
use actix::prelude::*;
use slog::{info, warn, Logger};
use std::time::Duration;

#[derive(Message)]
#[rtype(result = "()")]
pub struct PackagesPublished;

/// How many runs finished (for tests and status).
#[derive(Message)]
#[rtype(result = "u64")]
pub struct RunsFinished;

pub struct PublishHook {
    argv: Vec<String>,
    timeout: Duration,
    running: bool,
    again: bool,
    finished: u64,
    log: Logger,
}

impl PublishHook {
    pub fn new(argv: Vec<String>, timeout: Duration, log: Logger) -> Self {
        PublishHook {
            argv,
            timeout,
            running: false,
            again: false,
            finished: 0,
            log: log.new(slog::o!("actor" => "publish_hook")),
        }
    }

    fn run(&mut self, ctx: &mut Context<Self>) {
        self.running = true;
        let argv = self.argv.clone();
        let timeout = self.timeout;
        let fut = async move { run_with_timeout(&argv, timeout).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            match res {
                Ok(f) if f.status.success() => {
                    info!(act.log, "publish_command finished"; "command" => act.argv.join(" "))
                }
                Ok(f) => warn!(act.log, "publish_command failed";
                    "command" => act.argv.join(" "), "status" => f.status.to_string(), "output" => f.output_tail),
                Err(e) => warn!(act.log, "publish_command failed"; "error" => e.to_string()),
            }
            act.finished += 1;
            act.running = false;
            if act.again {
                act.again = false;
                act.run(ctx);
            }
        }));
    }
}

impl Actor for PublishHook {
    type Context = Context<Self>;
}

impl Handler<PackagesPublished> for PublishHook {
    type Result = ();
    fn handle(&mut self, _: PackagesPublished, ctx: &mut Self::Context) {
        if self.argv.is_empty() {
            return;
        }
        if self.running {
            self.again = true;
        } else {
            self.run(ctx);
        }
    }
}

impl Handler<RunsFinished> for PublishHook {
    type Result = u64;
    fn handle(&mut self, _: RunsFinished, _: &mut Self::Context) -> u64 {
        self.finished
    }
}
