//! **Notifier** — owns the notification outbox ([`Outbox`]): every `[[notify]]` entry's
//! undelivered events, their retries, and the open alerts. An event is saved (store,
//! `SaveOutbox`) before it is sent and deleted once delivered, so a restart loses none;
//! each entry gets its events one at a time, in order, each with the same body and `id`
//! on every attempt (docs/contract.md, "Notifications").
//!
//! Hears `Notify` from the package queue, the circuit breaker, the drone registry and
//! the healer (fire-and-forget: nobody waits for a delivery), `NotifierStatus` for reads.
//! Awaits only the store, which never calls back.

use crate::actors::orchestrator::store::notifications::SaveOutbox;
use crate::actors::orchestrator::store::Store;
use crate::config::notify::NotifyConfig;
use crate::orchestrator::metrics::Metrics;
use crate::orchestrator::notify::deliver::deliver;
use crate::orchestrator::notify::outbox::{AfterFailure, Outbox, OutboxRow};
use crate::orchestrator::notify::tls;
use crate::orchestrator::notify::Event;
use crate::sys::tls::ClientConfig;
use actix::prelude::*;
use slog::{crit, info, warn, Logger};
use std::sync::Arc;

/// Something operators are told of.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Notify(pub Event);

/// How many events wait for delivery (over every entry).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct NotifierStatus;

pub struct Notifier {
    outbox: Outbox,
    /// Each entry's bearer token (after the environment).
    tokens: Vec<Option<String>>,
    /// Each entry's retry timer generation: a timer of an older one is ignored.
    generations: Vec<u64>,
    /// Rows of entries no longer configured, deleted at start.
    orphans: Vec<OutboxRow>,
    store: Addr<Store>,
    /// Each entry's HTTP client (with its TLS configuration for an https webhook).
    http: Vec<awc::Client>,
    clock: crate::sys::clock::SharedClock,
    metrics: Arc<Metrics>,
    log: Logger,
}

impl Notifier {
    /// `outbox`/`alerts`: what the state database kept; `tls`: each https entry's TLS
    /// configuration ([`crate::orchestrator::notify::tls`]), `None` for the others.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sinks: &[NotifyConfig],
        tls: Vec<Option<Arc<ClientConfig>>>,
        orchestrator: &str,
        outbox: Vec<OutboxRow>,
        alerts: Vec<(String, String)>,
        store: Addr<Store>,
        clock: crate::sys::clock::SharedClock,
        metrics: Arc<Metrics>,
        log: Logger,
    ) -> Self {
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let (outbox, orphans) = Outbox::restore(sinks, orchestrator, run, outbox, alerts);
        Notifier {
            tokens: sinks.iter().map(NotifyConfig::token).collect(),
            generations: vec![0; sinks.len()],
            outbox,
            orphans,
            store,
            http: tls.into_iter().map(tls::http_client).collect(),
            clock,
            metrics,
            log: log.new(slog::o!("actor" => "notifier")),
        }
    }

    fn save(&self, msg: SaveOutbox) {
        self.store.do_send(msg);
    }

    /// Sends sink `i`'s next event, if it may send now.
    fn kick(&mut self, i: usize, ctx: &mut Context<Self>) {
        let Some(row) = self.outbox.take_next(i) else {
            return;
        };
        let http = self.http[i].clone();
        let sink = self.outbox.sink(i).clone();
        let token = self.tokens[i].clone();
        let fut = async move {
            let res = deliver(&http, &sink, token.as_deref(), &row.id, &row.body).await;
            (row, res)
        };
        ctx.spawn(fut.into_actor(self).map(move |(row, res), act, ctx| {
            let sink = act.outbox.sink_name(i).to_string();
            match res {
                Ok(()) => {
                    act.metrics.notifications_delivered.inc();
                    info!(act.log, "notification delivered"; "id" => &row.id, "to" => &sink, "attempt" => row.attempts + 1);
                    if let Some(row) = act.outbox.delivered(i, row.seq) {
                        act.save(SaveOutbox {
                            delete: vec![row],
                            ..SaveOutbox::default()
                        });
                    }
                    act.kick(i, ctx);
                }
                Err(e) => {
                    act.metrics.notifications_failed.inc();
                    match act.outbox.failed(i, row.seq) {
                        Some(AfterFailure::Retry(after, row)) => {
                            warn!(act.log, "notification not delivered; retrying"; "id" => &row.id, "to" => &sink,
                                  "attempt" => row.attempts, "retry_in_s" => after.as_secs_f64(), "error" => %e);
                            act.save(SaveOutbox {
                                upsert: vec![row],
                                ..SaveOutbox::default()
                            });
                            act.generations[i] += 1;
                            let generation = act.generations[i];
                            ctx.run_later(after, move |act, ctx| {
                                if act.generations[i] == generation {
                                    act.outbox.retry_due(i);
                                    act.kick(i, ctx);
                                }
                            });
                        }
                        Some(AfterFailure::GiveUp(row)) => {
                            act.metrics.notifications_dropped.inc();
                            crit!(act.log, "notification given up after max_attempts"; "id" => &row.id, "to" => &sink,
                                  "attempts" => row.attempts, "error" => %e, "body" => &row.body);
                            act.save(SaveOutbox {
                                delete: vec![row],
                                ..SaveOutbox::default()
                            });
                            act.kick(i, ctx);
                        }
                        None => act.kick(i, ctx),
                    }
                }
            }
        }));
    }

    fn kick_all(&mut self, ctx: &mut Context<Self>) {
        for i in 0..self.outbox.sink_count() {
            self.kick(i, ctx);
        }
    }
}

impl Actor for Notifier {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if !self.orphans.is_empty() {
            warn!(self.log, "undelivered notifications of [[notify]] entries no longer configured are dropped";
                  "count" => self.orphans.len());
            let delete = std::mem::take(&mut self.orphans);
            self.save(SaveOutbox {
                delete,
                ..SaveOutbox::default()
            });
        }
        let pending = self.outbox.pending();
        if pending > 0 {
            info!(self.log, "delivering notifications kept from before the restart"; "count" => pending);
        }
        self.kick_all(ctx);
    }
}

impl Handler<Notify> for Notifier {
    type Result = ();
    fn handle(&mut self, msg: Notify, ctx: &mut Self::Context) {
        let kind = msg.0.kind;
        let key = msg.0.alert_key();
        let rec = self.outbox.record(msg.0, self.clock.unix());
        if rec.rows.is_empty() && rec.alert.is_none() {
            return;
        }
        if !rec.dropped.is_empty() {
            self.metrics
                .notifications_dropped
                .inc_by(rec.dropped.len() as u64);
            warn!(self.log, "too many undelivered notifications: the oldest are dropped (max_pending)";
                  "dropped" => rec.dropped.len());
        }
        let seq = rec.rows.first().map(|r| r.seq);
        if let Some(r) = rec.rows.first() {
            info!(self.log, "notification"; "event" => kind.as_str(), "about" => &key, "id" => &r.id, "sinks" => rec.rows.len());
        }
        let save = self.store.send(SaveOutbox {
            upsert: rec.rows,
            delete: rec.dropped,
            alert: rec.alert,
        });
        ctx.spawn(save.into_actor(self).map(move |res, act, ctx| {
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    crit!(act.log, "cannot save a notification; it is sent but would not survive a restart"; "error" => %e)
                }
                Err(e) => {
                    crit!(act.log, "cannot save a notification; it is sent but would not survive a restart"; "error" => %e)
                }
            }
            if let Some(seq) = seq {
                act.outbox.saved(seq);
                act.kick_all(ctx);
            }
        }));
    }
}

impl Handler<NotifierStatus> for Notifier {
    type Result = usize;
    fn handle(&mut self, _: NotifierStatus, _: &mut Self::Context) -> usize {
        self.outbox.pending()
    }
}
