//! The agent's results: kept on disk before they are sent, sent with backoff until the
//! orchestrator answers, and forgotten once it did.

use super::{DroneAgent, Outgoing, Phase};
use crate::client::{ApiClient, ClientError};
use crate::drone::connection::backoff;
use crate::drone::pending::{PendingResult, Report};
use crate::wire::orchestrator::LeaseId;
use actix::prelude::*;
use slog::{debug, info, warn};
use tokio::time::Instant;

impl DroneAgent {
    /// A job ended: its result is kept on disk (on a blocking thread), then sent.
    pub(super) fn report(&mut self, lease: LeaseId, report: Report, ctx: &mut Context<Self>) {
        let Some(job) = self.jobs.get_mut(&lease) else {
            return;
        };
        job.phase = Phase::Reporting;
        let result = PendingResult {
            orchestrator: job.orch.base().to_string(),
            lease,
            atom: job.work.atom.clone(),
            report,
        };
        let (store, keep) = (self.store.clone(), result.clone());
        let save = actix_web::rt::task::spawn_blocking(move || store.save(&keep));
        ctx.spawn(save.into_actor(self).map(move |res, act, ctx| {
            let err = match res {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(e) = err {
                // Still sent: kept in memory it is reported unless the drone stops first.
                warn!(act.log, "cannot keep the result on disk (kept in memory)"; "lease" => lease, "error" => e);
            }
            if let Some(r) = act.reports.get_mut(&lease) {
                r.saved = true;
            }
            act.tick(ctx);
        }));
        self.reports.insert(
            lease,
            Outgoing {
                result,
                saved: false,
                attempts: 0,
                in_flight: false,
                next_at: Instant::now(),
            },
        );
    }

    pub(super) fn send_reports(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let due: Vec<LeaseId> = self
            .reports
            .values()
            .filter(|r| r.saved && !r.in_flight && r.next_at <= now)
            .map(|r| r.result.lease)
            .collect();
        for lease in due {
            let Some(r) = self.reports.get_mut(&lease) else {
                continue;
            };
            r.in_flight = true;
            let client = match self.jobs.get(&lease) {
                Some(j) => j.orch.clone(),
                None => ApiClient::new(&r.result.orchestrator, Some(self.token.clone())),
            };
            let report = r.result.report.clone();
            let fut = async move {
                match &report {
                    Report::Complete(req) => client
                        .complete(lease, req)
                        .await
                        .map(|c| (c.accepted, c.stale)),
                    Report::Fail(req) => client.fail(lease, req).await.map(|a| (true, a.stale)),
                }
            };
            ctx.spawn(
                fut.into_actor(self)
                    .map(move |res, act, ctx| act.reported(lease, res, ctx)),
            );
        }
    }

    fn reported(
        &mut self,
        lease: LeaseId,
        res: Result<(bool, bool), ClientError>,
        ctx: &mut Context<Self>,
    ) {
        let Some(r) = self.reports.get_mut(&lease) else {
            return;
        };
        r.in_flight = false;
        let atom = r.result.atom.clone();
        let done = match &res {
            Ok((accepted, stale)) => {
                match (&r.result.report, accepted, stale) {
                    (Report::Complete(c), true, _) => {
                        info!(self.log, "reported: published"; "atom" => &atom, "lease" => lease, "path" => &c.path)
                    }
                    (_, _, true) => {
                        debug!(self.log, "result no longer needed (stale), dropped"; "atom" => &atom, "lease" => lease)
                    }
                    (Report::Fail(f), _, _) => {
                        info!(self.log, "reported failure"; "atom" => &atom, "lease" => lease, "kind" => f.kind.as_str())
                    }
                    _ => {}
                }
                true
            }
            Err(e)
                // Keep the result through outages, busy answers, server errors and token
                // trouble (a rotated token is fixed by the operator, the work is still good).
                if e.is_unreachable()
                    || matches!(e.status(), Some(401) | Some(403) | Some(409))
                    || e.status().is_some_and(|s| s >= 500) =>
            {
                r.attempts += 1;
                r.next_at = Instant::now() + backoff(r.attempts);
                warn!(self.log, "cannot report yet, keeping the result"; "atom" => &atom, "lease" => lease,
                      "error" => e.to_string(), "retry_in_s" => backoff(r.attempts).as_secs());
                false
            }
            Err(e) => {
                warn!(self.log, "result refused by the orchestrator"; "atom" => &atom, "lease" => lease, "error" => e.to_string());
                true
            }
        };
        if done {
            let orchestrator = r.result.orchestrator.clone();
            self.reports.remove(&lease);
            self.jobs.remove(&lease);
            let store = self.store.clone();
            let log = self.log.clone();
            actix_web::rt::task::spawn_blocking(move || {
                if let Err(e) = store.remove(lease, &orchestrator) {
                    warn!(log, "cannot remove a reported result from disk (it will be reported again, as stale)"; "lease" => lease, "error" => e.to_string());
                }
            });
            self.next_claim = Instant::now();
            self.tick(ctx);
        }
    }
}
