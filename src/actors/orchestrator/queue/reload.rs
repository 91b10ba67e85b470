//! Rebuilding the queue's state from the store: at start-up, and after a commit the state
//! database refused (memory must equal disk again; changes answer 503 meanwhile).

use super::commit::CommitError;
use super::graph::PackageGraph;
use super::leases::{Lease, LeaseTable};
use super::{PackageQueue, QueueError, QueueSettings};
use crate::actors::orchestrator::lease_deadlines::{Arm, DeadlineKind};
use crate::actors::orchestrator::store::{Reload, Snapshot};
use crate::domain::LeasePhase;
use crate::sys::random::KeyedIds;
use actix::prelude::*;
use slog::{crit, info, warn, Logger};
use std::time::Duration;
use tokio::time::Instant;

impl PackageQueue {
    /// The graph and the lease table of a stored snapshot.
    pub(super) fn state_from(
        settings: &QueueSettings,
        snap: Snapshot,
        log: &Logger,
    ) -> (PackageGraph, LeaseTable) {
        let (mut graph, problems) =
            PackageGraph::restore(settings.order, snap.packages, snap.deps, !settings.index);
        for p in problems {
            crit!(log, "the state database holds a package row it cannot use"; "problem" => format!("{p:?}"));
        }
        let ids = KeyedIds::with_key(settings.lease_id_key, super::leases::LEASE_ID_BITS);
        let mut leases = LeaseTable::new(snap.next_lease_seq, ids);
        let n = graph.len() as u32;
        for row in snap.leases {
            if row.pkg >= n {
                continue;
            }
            if row.phase != LeasePhase::Ended {
                graph.packages[row.pkg as usize].lease = Some(row.id);
            }
            leases.restore(
                row.id,
                Lease {
                    seq: row.seq,
                    pkg: row.pkg,
                    epoch: row.epoch,
                    drone: row.drone,
                    phase: row.phase,
                    created: Instant::now(),
                    timed: false,
                    built_in: None,
                    created_unix: row.created_unix,
                    ended_unix: row.ended_unix,
                    upload_dir: row.upload_dir,
                    stop: false,
                    uploading_unix: None,
                    slot: 0,
                    end: None,
                },
            );
        }
        for atom in graph.after_restore() {
            warn!(log, "leased package without a lease, requeued"; "atom" => atom);
        }
        info!(log, "queue restored"; "packages" => graph.len(), "active_leases" => leases.total_active());
        (graph, leases)
    }

    /// A commit failed: reads the committed state back (memory equals disk again). Until
    /// then changes are refused with 503.
    pub(super) fn reload(&mut self, ctx: &mut Context<Self>) {
        if self.reloading {
            return;
        }
        self.reloading = true;
        let load = self.peers.store.send(Reload);
        ctx.spawn(load.into_actor(self).map(|res, act, ctx| match res {
            Ok(Ok(snap)) => act.reloaded(snap, ctx),
            other => {
                let why = match other {
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                    Ok(Ok(_)) => String::new(),
                };
                crit!(act.log, "cannot read the committed state back, will retry"; "error" => why);
                ctx.run_later(Duration::from_secs(1), |act, ctx| {
                    act.reloading = false;
                    act.reload(ctx);
                });
            }
        }));
    }

    fn reloaded(&mut self, snap: Snapshot, ctx: &mut Context<Self>) {
        let (graph, leases) = Self::state_from(&self.settings, snap, &self.log);
        self.graph = graph;
        self.apply_fleet();
        self.leases = leases;
        // A `set_finished` told with the failed batch was dropped with it.
        self.finished_told = super::progress::set_finished(&self.graph);
        // Completions still being verified keep their package busy.
        let verifying: Vec<u32> = self.publisher.verifying().map(|m| m.pkg).collect();
        for pkg in verifying {
            if let Some(p) = self.graph.packages.get_mut(pkg as usize) {
                p.publishing = true;
            }
        }
        self.arm_active_leases();
        self.reloading = false;
        warn!(
            self.log,
            "the committed state was read back after a failed commit"
        );
        for msg in std::mem::take(&mut self.deferred_reclaims) {
            self.reclaim_drone(msg, ctx);
        }
        // Built packages wait for the index again: it says which it lists.
        if let Some(relist) = &self.peers.relist {
            let built: Vec<(u32, String)> = (0..self.graph.len() as u32)
                .filter_map(|id| {
                    let p = self.graph.get(id);
                    (p.state == crate::domain::PackageState::Built)
                        .then(|| p.path.clone().map(|path| (id, path)))
                        .flatten()
                })
                .collect();
            relist.do_send(crate::actors::orchestrator::messages::Relist(built));
        }
        self.flush(ctx);
    }

    /// Every active lease gets a fresh deadline (after a restart or a reload).
    pub(super) fn arm_active_leases(&self) {
        for (id, l) in self.leases.iter() {
            let (deadline, after) = match l.phase {
                LeasePhase::Building => (DeadlineKind::Build, self.settings.build_timeout),
                LeasePhase::Uploading => (DeadlineKind::Upload, self.settings.upload_timeout),
                LeasePhase::Ended => continue,
            };
            self.peers.deadlines.do_send(Arm {
                lease: *id,
                epoch: l.epoch,
                deadline,
                after,
            });
        }
    }

    /// The answer to a change asked for while the committed state is being read back.
    pub(super) fn refuse_while_reloading<T: 'static>(
        &self,
    ) -> Option<ResponseFuture<Result<T, QueueError>>> {
        self.reloading
            .then(|| -> ResponseFuture<Result<T, QueueError>> {
                Box::pin(async { Err(CommitError::Reloading.into()) })
            })
    }
}
