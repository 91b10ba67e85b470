//! **BuildLogs** — owns the output of every running build attempt (one bounded
//! [`Ring`] per lease, numbered lines) and who waits for more of it (docs/design.md,
//! "Live build logs").
//!
//! Hears `LeaseLog` from the package queue (a lease started, started uploading, ended),
//! `AppendOutput` from the drones' HTTP handler, `FollowLog` from readers (the CLI's
//! `log -f`, the dashboard). Awaits nobody; a reader waits for new lines on a oneshot,
//! never the drone: a slow or absent reader costs the build nothing.

use crate::orchestrator::credentials::{Caller, Forbidden};
use crate::orchestrator::live_log::{Read, Ring};
use crate::wire::orchestrator::{LeaseId, OutputAck, OutputChunk};
use actix::prelude::*;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::sync::oneshot;

/// Ended attempts' output is kept this long (a reader that comes late still sees it).
const KEEP_ENDED: Duration = Duration::from_secs(600);
/// … and at most this many of them.
const MAX_ENDED: usize = 256;
/// Lines one read answers with at most.
const MAX_READ: usize = 2_000;

/// A lease's life, as the queue tells it.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum LeaseLog {
    Started {
        lease: LeaseId,
        atom: String,
        drone: String,
        epoch: u64,
    },
    Uploading {
        lease: LeaseId,
    },
    Ended {
        lease: LeaseId,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("lease {0} is not building here (unknown or long over)")]
    UnknownLease(LeaseId),
    #[error("lease {lease} belongs to another drone")]
    Forbidden {
        lease: LeaseId,
        #[source]
        source: Forbidden,
    },
    #[error("lease {lease} is at epoch {current}, not {given}")]
    WrongEpoch {
        lease: LeaseId,
        current: u64,
        given: u64,
    },
}

/// A drone's next lines of a lease's output.
#[derive(Message)]
#[rtype(result = "Result<OutputAck, OutputError>")]
pub struct AppendOutput {
    pub lease: LeaseId,
    pub caller: Caller,
    pub chunk: OutputChunk,
}

/// The output of `atom`'s latest attempt after line `after` (None: all that is kept),
/// waiting up to `wait` while there is nothing new and it still runs.
#[derive(Message)]
#[rtype(result = "Option<Followed>")]
pub struct FollowLog {
    pub atom: String,
    pub after: Option<u64>,
    pub wait: Duration,
}

/// What a reader gets (None from `FollowLog`: no attempt of the atom is known).
#[derive(Debug)]
pub struct Followed {
    pub lease: LeaseId,
    pub drone: String,
    pub phase: &'static str,
    pub read: Read,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Building,
    Uploading,
    Ended,
}

struct Attempt {
    atom: String,
    drone: String,
    epoch: u64,
    phase: Phase,
    ring: Ring,
    waiters: Vec<oneshot::Sender<()>>,
}

impl Attempt {
    fn wake(&mut self) {
        for w in self.waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

#[derive(Default)]
pub struct BuildLogs {
    attempts: HashMap<LeaseId, Attempt>,
    /// Each atom's latest attempt.
    latest: HashMap<String, LeaseId>,
    /// Readers of atoms with no attempt yet.
    waiting_for_start: HashMap<String, Vec<oneshot::Sender<()>>>,
    /// Ended attempts, oldest first, with when they ended.
    ended: VecDeque<(LeaseId, tokio::time::Instant)>,
}

impl BuildLogs {
    fn answer(&self, atom: &str, after: Option<u64>) -> Option<Followed> {
        let lease = *self.latest.get(atom)?;
        let a = self.attempts.get(&lease)?;
        let mut read = a.ring.read(after, MAX_READ);
        read.gap |= a.ring.gap && after.is_none();
        Some(Followed {
            lease,
            drone: a.drone.clone(),
            phase: match a.phase {
                Phase::Building => "building",
                Phase::Uploading => "uploading",
                Phase::Ended => "ended",
            },
            read,
        })
    }

    fn forget_old(&mut self) {
        let now = tokio::time::Instant::now();
        while let Some((lease, at)) = self.ended.front().copied() {
            if self.ended.len() <= MAX_ENDED && now.duration_since(at) < KEEP_ENDED {
                break;
            }
            self.ended.pop_front();
            if let Some(a) = self.attempts.remove(&lease) {
                if self.latest.get(&a.atom) == Some(&lease) {
                    self.latest.remove(&a.atom);
                }
            }
        }
    }
}

impl Actor for BuildLogs {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(Duration::from_secs(60), |act, _| act.forget_old());
    }
}

impl Handler<LeaseLog> for BuildLogs {
    type Result = ();
    fn handle(&mut self, msg: LeaseLog, _: &mut Self::Context) {
        match msg {
            LeaseLog::Started {
                lease,
                atom,
                drone,
                epoch,
            } => {
                for w in self.waiting_for_start.remove(&atom).unwrap_or_default() {
                    let _ = w.send(());
                }
                self.latest.insert(atom.clone(), lease);
                self.attempts.insert(
                    lease,
                    Attempt {
                        atom,
                        drone,
                        epoch,
                        phase: Phase::Building,
                        ring: Ring::default(),
                        waiters: Vec::new(),
                    },
                );
            }
            LeaseLog::Uploading { lease } => {
                if let Some(a) = self.attempts.get_mut(&lease) {
                    a.phase = Phase::Uploading;
                    a.wake();
                }
            }
            LeaseLog::Ended { lease } => {
                if let Some(a) = self.attempts.get_mut(&lease) {
                    if a.phase != Phase::Ended {
                        a.phase = Phase::Ended;
                        a.wake();
                        self.ended.push_back((lease, tokio::time::Instant::now()));
                        self.forget_old();
                    }
                }
            }
        }
    }
}

impl Handler<AppendOutput> for BuildLogs {
    type Result = Result<OutputAck, OutputError>;
    fn handle(&mut self, msg: AppendOutput, _: &mut Self::Context) -> Self::Result {
        let lease = msg.lease;
        let a = self
            .attempts
            .get_mut(&lease)
            .ok_or(OutputError::UnknownLease(lease))?;
        msg.caller
            .may_act_for(&a.drone)
            .map_err(|source| OutputError::Forbidden { lease, source })?;
        if a.epoch != msg.chunk.epoch {
            return Err(OutputError::WrongEpoch {
                lease,
                current: a.epoch,
                given: msg.chunk.epoch,
            });
        }
        let next = a.ring.append(msg.chunk.first, msg.chunk.lines);
        a.wake();
        Ok(OutputAck { next })
    }
}

impl Handler<FollowLog> for BuildLogs {
    type Result = ResponseActFuture<Self, Option<Followed>>;
    fn handle(&mut self, msg: FollowLog, _: &mut Self::Context) -> Self::Result {
        let now = self.answer(&msg.atom, msg.after);
        let (tx, rx) = oneshot::channel();
        match &now {
            // Something to say, or nothing more will come: answer now.
            Some(f) if !f.read.lines.is_empty() || f.phase == "ended" || msg.wait.is_zero() => {
                return Box::pin(fut::ready(now));
            }
            Some(f) => {
                if let Some(a) = self.attempts.get_mut(&f.lease) {
                    a.waiters.push(tx);
                }
            }
            None if msg.wait.is_zero() => return Box::pin(fut::ready(None)),
            None => self
                .waiting_for_start
                .entry(msg.atom.clone())
                .or_default()
                .push(tx),
        }
        let (atom, after, wait) = (msg.atom, msg.after, msg.wait);
        Box::pin(
            async move {
                let _ = tokio::time::timeout(wait, rx).await;
            }
            .into_actor(self)
            .map(move |_, act, _| {
                // Readers that gave up leave closed senders behind: drop them.
                act.waiting_for_start.retain(|_, v| {
                    v.retain(|w| !w.is_closed());
                    !v.is_empty()
                });
                if let Some(a) = act.latest.get(&atom).and_then(|l| act.attempts.get_mut(l)) {
                    a.waiters.retain(|w| !w.is_closed());
                }
                act.answer(&atom, after)
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(lease: LeaseId) -> LeaseLog {
        LeaseLog::Started {
            lease,
            atom: "a/b-1".into(),
            drone: "d1".into(),
            epoch: 1,
        }
    }

    fn chunk(first: u64, n: u64) -> OutputChunk {
        OutputChunk {
            epoch: 1,
            first,
            lines: (first..first + n).map(|i| format!("l{i}")).collect(),
        }
    }

    #[actix_web::test]
    async fn a_waiting_reader_gets_the_next_lines_and_the_end() {
        let logs = BuildLogs::default().start();
        logs.send(started(7)).await.unwrap();
        let follow = |after| {
            logs.send(FollowLog {
                atom: "a/b-1".into(),
                after,
                wait: Duration::from_secs(5),
            })
        };
        let waiting = follow(Some(0));
        let ack = logs
            .send(AppendOutput {
                lease: 7,
                caller: Caller::Admin,
                chunk: chunk(0, 3),
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ack.next, 3);
        let got = waiting.await.unwrap().unwrap();
        assert_eq!(
            (got.read.first, got.read.next, got.phase),
            (0, 3, "building")
        );
        let end = follow(Some(3));
        logs.send(LeaseLog::Ended { lease: 7 }).await.unwrap();
        let got = end.await.unwrap().unwrap();
        assert_eq!((got.phase, got.read.lines.len()), ("ended", 0));
        let wrong = logs
            .send(AppendOutput {
                lease: 7,
                caller: Caller::Admin,
                chunk: OutputChunk {
                    epoch: 2,
                    ..chunk(3, 1)
                },
            })
            .await
            .unwrap();
        assert!(matches!(wrong, Err(OutputError::WrongEpoch { .. })));
    }

    #[actix_web::test]
    async fn a_reader_of_a_package_not_started_waits_for_its_start() {
        let logs = BuildLogs::default().start();
        let waiting = logs.send(FollowLog {
            atom: "a/b-1".into(),
            after: None,
            wait: Duration::from_secs(5),
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        logs.send(started(9)).await.unwrap();
        let got = waiting.await.unwrap().expect("the attempt");
        assert_eq!((got.lease, got.phase), (9, "building"));
    }
}
