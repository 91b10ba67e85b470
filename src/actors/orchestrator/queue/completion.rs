//! Completions: the checks before any file work, the verification lanes and what a
//! verified (or refused) upload means for the package, answered once committed.

use super::commit::CommitError;
use super::leases::{Lease, LeaseEnd};
use super::publisher::{self, Verification};
use super::{after_commit, answer_after, Complete, PackageQueue, QueueError};
use crate::actors::orchestrator::circuit_breaker::Outcome;
use crate::actors::orchestrator::store::Write;
use crate::domain::{FailureKind, PackageState};
use crate::orchestrator::credentials::Caller;
use crate::orchestrator::publish::{IndexWanted, PublishError, Published};
use crate::wire::orchestrator::{CompleteRequest, CompleteResponse, LeaseId};
use actix::prelude::*;
use slog::{info, warn};
use std::path::PathBuf;
use tokio::sync::oneshot;

/// One upload verified (sent by its lane's thread).
#[derive(Message)]
#[rtype(result = "()")]
struct Verified {
    job: u64,
    outcome: Verification,
}

/// A lane is done; any of its jobs not reported failed with it.
#[derive(Message)]
#[rtype(result = "()")]
struct LaneDone {
    jobs: Vec<u64>,
    failure: Option<String>,
}

/// What the queue keeps of a completion while its upload is verified.
pub(super) struct VerifyMeta {
    pub(super) pkg: u32,
    lease_id: LeaseId,
    upload_dir: String,
    req: CompleteRequest,
    reply: oneshot::Sender<Result<CompleteResponse, QueueError>>,
}

impl PackageQueue {
    // ------------------------------------------------------------ publishing

    fn start_verifying(&mut self, ctx: &mut Context<Self>) {
        let Some(lane) = self.publisher.next_lane() else {
            return;
        };
        let jobs = lane.job_ids();
        let me = ctx.address();
        let lane_me = me.clone();
        let work = actix_web::rt::task::spawn_blocking(move || {
            lane.run(|job, outcome| lane_me.do_send(Verified { job, outcome }));
        });
        // The lane's end comes back as a message (an actor future per lane would sit in
        // this actor's context, which actix polls whole on every message).
        actix_web::rt::spawn(async move {
            let failure = work.await.err().map(|e| e.to_string());
            me.do_send(LaneDone { jobs, failure });
        });
    }

    /// A completion's verification is done: record what it means and answer the drone
    /// once the batch that records it is committed.
    fn verified(&mut self, meta: VerifyMeta, v: Verification, ctx: &mut Context<Self>) {
        let VerifyMeta {
            pkg,
            lease_id,
            upload_dir,
            req,
            reply,
        } = meta;
        self.graph.packages[pkg as usize].publishing = false;
        // Published (now or before): the upload directory is reused if nothing else is
        // left in it, else removed. After a failed verification it is left for the sweep.
        if v.reusable {
            let category = self.graph.get(pkg).atom.category.clone();
            self.publisher.keep(upload_dir, &category);
            self.metrics.upload_dirs_kept(self.publisher.kept());
        } else if v.published.is_ok() {
            self.publisher.remove_later(upload_dir);
        }
        self.clean(ctx);
        if self.reloading {
            // Published on disk but not recorded: the drone's retry finds it there.
            let _ = reply.send(Err(CommitError::Reloading.into()));
            return;
        }
        let drone = self
            .leases
            .get(lease_id)
            .map(|l| l.drone.clone())
            .unwrap_or_default();
        let mut published = false;
        let answer = match v.published {
            Ok((how, entry)) if self.graph.get(pkg).state != PackageState::Built => {
                // The rename is made durable with this batch, before the state that says
                // the package is built.
                if let Some(dir) = self.publisher.dest_dir(&req.path) {
                    self.commit.push(Write::SyncDir(dir));
                }
                self.metrics.completed(lease_id, req.size);
                self.learn(pkg, lease_id, &drone);
                // The completing lease is over; any other one on the package is
                // cancelled: this artifact is the one.
                self.end_lease(lease_id, false, LeaseEnd::Built);
                if let Some(other) = self.graph.get(pkg).lease {
                    if let Some(d) = self.end_lease(other, true, LeaseEnd::Cancelled) {
                        self.verdict(d, Outcome::Neutral);
                    }
                }
                self.mark_built(pkg, &drone, &req, entry);
                info!(self.log, "published"; "atom" => &self.graph.get(pkg).atom_str,
                      "drone" => &drone, "path" => &req.path, "size" => req.size,
                      "how" => if how == Published::Now { "now" } else { "already there" });
                self.verdict(drone, Outcome::Success);
                published = true;
                Ok(CompleteResponse {
                    accepted: true,
                    stale: false,
                })
            }
            Ok(_) => Ok(CompleteResponse {
                accepted: false,
                stale: true,
            }),
            Err(e) => {
                let reason = e.to_string();
                warn!(self.log, "upload did not verify"; "atom" => &self.graph.get(pkg).atom_str,
                      "drone" => &drone, "error" => &reason);
                let current = self.graph.get(pkg).lease == Some(lease_id);
                if self.leases.get(lease_id).is_some_and(Lease::is_active) {
                    self.end_lease(lease_id, false, LeaseEnd::Infra);
                }
                if current {
                    self.attempt_failed(pkg, FailureKind::Infra, &drone, &reason, "", true);
                }
                self.infra_failure(drone, reason);
                Err(QueueError::NotPublished { source: e })
            }
        };
        if published {
            // The hook runs once the batch recording this publish is committed (a retried
            // batch included).
            self.commit.note_publish();
        }
        let rx = self.durable(ctx);
        actix_web::rt::spawn(async move {
            let _ = reply.send(after_commit(rx, answer).await);
        });
    }
}

/// What a completion's checks found before any file work.
enum Precheck {
    /// Verify and publish the upload.
    Verify { pkg: u32, upload_dir: String },
    /// The package is built already (by this lease, answered before, or by another).
    AlreadyBuilt { upload_dir: String },
}

impl PackageQueue {
    fn precheck(
        &self,
        lease: LeaseId,
        req: &CompleteRequest,
        caller: &Caller,
    ) -> Result<Precheck, QueueError> {
        let l = self.lookup_lease(lease, req.epoch, caller)?;
        let (pkg, upload_dir) = (l.pkg, l.upload_dir.clone());
        let p = self.graph.get(pkg);
        if p.state == PackageState::Built {
            return Ok(Precheck::AlreadyBuilt { upload_dir });
        }
        publisher::check_artifact_path(&p.atom, &req.path)?;
        if req.sha256.len() != 64 || !req.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(QueueError::BadChecksum);
        }
        if p.publishing {
            return Err(QueueError::Busy(p.atom_str.clone()));
        }
        Ok(Precheck::Verify { pkg, upload_dir })
    }
}

impl Handler<Complete> for PackageQueue {
    type Result = ResponseFuture<Result<CompleteResponse, QueueError>>;
    fn handle(&mut self, msg: Complete, ctx: &mut Self::Context) -> Self::Result {
        if let Some(refused) = self.refuse_while_reloading() {
            return refused;
        }
        let lease_id = msg.lease;
        // Built where the environment no longer fits: not what the binhost promises.
        if let Some(l) = self.leases.get(lease_id) {
            if self.withdrawn(&l.drone) && msg.caller.may_act_for(&l.drone).is_ok() {
                warn!(self.log, "completion from a drone whose build environment no longer fits: not published";
                      "drone" => &l.drone, "lease" => lease_id);
                let pkg = l.pkg;
                if let Some(drone) = self.end_lease(lease_id, false, LeaseEnd::Cancelled) {
                    let why = "its build environment no longer fits";
                    self.attempt_failed(pkg, FailureKind::Cancelled, &drone, why, "", false);
                    self.verdict(drone, Outcome::Neutral);
                }
                let rx = self.durable(ctx);
                return answer_after(rx, Ok(CompleteResponse::stale()));
            }
        }
        let (pkg, upload_dir) = match self.precheck(lease_id, &msg.req, &msg.caller) {
            Err(e) => return Box::pin(async move { Err(e) }),
            Ok(Precheck::AlreadyBuilt { upload_dir }) => {
                // Nothing changes; this lease (if still active) is over.
                if let Some(drone) = self.end_lease(lease_id, false, LeaseEnd::Cancelled) {
                    self.verdict(drone, Outcome::Neutral);
                }
                // A retry after a lost answer may have uploaded again into a directory
                // that was kept for reuse: it is no longer clean. If a later lease was
                // given it by now (active or not), that lease owns it: its own check
                // after a publish finds the stray, or the sweep removes it.
                if self.publisher.forget(&upload_dir) {
                    self.metrics.upload_dirs_kept(self.publisher.kept());
                }
                if !self.leases.upload_dir_given_since(&upload_dir, lease_id) {
                    self.publisher.remove_later(upload_dir);
                    self.clean(ctx);
                }
                let rx = self.durable(ctx);
                return answer_after(rx, Ok(CompleteResponse::stale()));
            }
            Ok(Precheck::Verify { pkg, upload_dir }) => (pkg, upload_dir),
        };
        let req = msg.req;
        let index = self.settings.index.then(|| {
            let atom = &self.graph.get(pkg).atom;
            IndexWanted {
                category: atom.category.clone(),
                pf: format!("{}-{}", atom.name, atom.version),
                rel_path: req.path.clone(),
            }
        });
        let Some(job) = self
            .publisher
            .job(&upload_dir, &req.path, req.size, &req.sha256, index)
        else {
            // check_artifact_path refuses every path that could leave a directory.
            let e = QueueError::NotPublished {
                source: PublishError::Missing(PathBuf::from(&req.path)),
            };
            return Box::pin(async move { Err(e) });
        };
        self.graph.packages[pkg as usize].publishing = true;
        let (reply, answer) = oneshot::channel();
        let category = self.graph.get(pkg).atom.category.clone();
        self.publisher.enqueue(
            job,
            category,
            VerifyMeta {
                pkg,
                lease_id,
                upload_dir,
                req,
                reply,
            },
        );
        self.start_verifying(ctx);
        Box::pin(async move {
            answer
                .await
                .unwrap_or_else(|_| Err(CommitError::QueueStopped.into()))
        })
    }
}

impl Handler<Verified> for PackageQueue {
    type Result = ();
    fn handle(&mut self, msg: Verified, ctx: &mut Self::Context) {
        if let Some(meta) = self.publisher.reported(msg.job) {
            self.verified(meta, msg.outcome, ctx);
        }
    }
}

impl Handler<LaneDone> for PackageQueue {
    type Result = ();
    fn handle(&mut self, msg: LaneDone, ctx: &mut Self::Context) {
        // The lane queued each `Verified` before it ended, so they were handled before
        // this: anything still unreported failed with the lane.
        let why = msg.failure.unwrap_or_else(|| "not reported".into());
        for meta in self.publisher.lane_done(msg.jobs) {
            let outcome = Verification {
                published: Err(PublishError::Io {
                    path: PathBuf::from(&meta.req.path),
                    source: std::io::Error::other(format!("verification lane failed: {why}")),
                }),
                reusable: false,
            };
            self.verified(meta, outcome, ctx);
        }
        self.start_verifying(ctx);
    }
}
