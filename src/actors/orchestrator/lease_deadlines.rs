//! **LeaseDeadlines** — owns the deadline of every active lease:
//! `build_timeout_s` from the claim until the drone says `uploading`, then
//! `upload_timeout_s` until it completes.
//!
//! Receives `Arm` / `Disarm` from the package queue. When a deadline passes it sends
//! `LeaseTimedOut` back to the queue, which reclaims the work. Every arming gets a fresh
//! generation and the timer carries it, so a late timer for a lease that was re-armed or
//! already ended does nothing. A deadline that comes due while (or just after) the
//! orchestrator itself stood still moves back by the time it stood still.

use crate::sys::stall::StallWatch;
use crate::wire::orchestrator::LeaseId;
use actix::prelude::*;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A stall of the orchestrator that ended this recently still excuses a deadline.
const STALL_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineKind {
    /// The build must be done (upload started) by then.
    Build,
    /// The upload must be complete by then.
    Upload,
}

/// Starts (or restarts) a lease's deadline.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Arm {
    pub lease: LeaseId,
    pub epoch: u64,
    pub deadline: DeadlineKind,
    pub after: Duration,
}

/// The lease ended; forget its deadline.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disarm {
    pub lease: LeaseId,
}

/// Sent to the package queue when a lease's deadline passed.
#[derive(Message, Debug, Clone, PartialEq)]
#[rtype(result = "()")]
pub struct LeaseTimedOut {
    pub lease: LeaseId,
    pub epoch: u64,
    pub deadline: DeadlineKind,
    pub after: Duration,
}

/// How many leases have a deadline armed (tests).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ArmedCount;

struct Armed {
    generation: u64,
    epoch: u64,
    deadline: DeadlineKind,
    after: Duration,
}

/// A deadline in the heap; stale entries (re-armed or disarmed leases) are skipped when
/// they come up.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: Instant,
    lease: LeaseId,
    generation: u64,
    /// The stall (its start) this deadline was already moved back for.
    excused: Option<u64>,
}

/// One timer for all leases: the deadlines are kept in a heap and a single wake-up is
/// scheduled for the earliest one. (A timer future per lease would sit in this actor's
/// context, and actix polls every one of them on every message: with a thousand active
/// leases that was a measurable share of the orchestrator's CPU.)
pub struct LeaseDeadlines {
    queue: Recipient<LeaseTimedOut>,
    stall: Arc<StallWatch>,
    armed: HashMap<LeaseId, Armed>,
    due: BinaryHeap<Reverse<Due>>,
    /// The scheduled wake-up and when it fires.
    wake: Option<(Instant, SpawnHandle)>,
    next_generation: u64,
}

impl LeaseDeadlines {
    pub fn new(queue: Recipient<LeaseTimedOut>, stall: Arc<StallWatch>) -> Self {
        LeaseDeadlines {
            queue,
            stall,
            armed: HashMap::new(),
            due: BinaryHeap::new(),
            wake: None,
            next_generation: 1,
        }
    }

    /// Makes sure a wake-up is scheduled for the earliest deadline.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        let Some(Reverse(first)) = self.due.peek() else {
            return;
        };
        let at = first.at;
        if let Some((when, handle)) = self.wake {
            if when <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let after = at.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(after, |act, ctx| {
            act.wake = None;
            act.fire(ctx);
        });
        self.wake = Some((at, handle));
    }

    fn fire(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let mut postponed = Vec::new();
        while let Some(Reverse(first)) = self.due.peek() {
            if first.at > now {
                break;
            }
            let Some(Reverse(d)) = self.due.pop() else {
                break;
            };
            if self.armed.get(&d.lease).map(|a| a.generation) != Some(d.generation) {
                continue;
            }
            // Time the orchestrator stood still is not the drone's: the deadline moves
            // back by that long, once per stall.
            let stall = self
                .stall
                .stalled_within(STALL_WINDOW, std::time::Instant::now());
            if let Some(stall) = stall.filter(|s| Some(s.start_ms) != d.excused) {
                postponed.push(Due {
                    at: (d.at + stall.len).max(now + Duration::from_secs(1)),
                    excused: Some(stall.start_ms),
                    ..d
                });
                continue;
            }
            if let Some(a) = self.armed.remove(&d.lease) {
                self.queue.do_send(LeaseTimedOut {
                    lease: d.lease,
                    epoch: a.epoch,
                    deadline: a.deadline,
                    after: a.after,
                });
            }
        }
        self.due.extend(postponed.into_iter().map(Reverse));
        // Stale entries pile up when leases end long before their deadlines.
        if self.due.len() > 2 * self.armed.len() + 1024 {
            let armed = &self.armed;
            self.due.retain(|Reverse(d)| {
                armed.get(&d.lease).map(|a| a.generation) == Some(d.generation)
            });
        }
        self.schedule(ctx);
    }
}

impl Actor for LeaseDeadlines {
    type Context = Context<Self>;
}

impl Handler<Arm> for LeaseDeadlines {
    type Result = ();
    fn handle(&mut self, msg: Arm, ctx: &mut Self::Context) {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.armed.insert(
            msg.lease,
            Armed {
                generation,
                epoch: msg.epoch,
                deadline: msg.deadline,
                after: msg.after,
            },
        );
        self.due.push(Reverse(Due {
            at: Instant::now() + msg.after,
            lease: msg.lease,
            generation,
            excused: None,
        }));
        if self.due.len() > 2 * self.armed.len() + 1024 {
            let armed = &self.armed;
            self.due.retain(|Reverse(d)| {
                armed.get(&d.lease).map(|a| a.generation) == Some(d.generation)
            });
        }
        self.schedule(ctx);
    }
}

impl Handler<Disarm> for LeaseDeadlines {
    type Result = ();
    fn handle(&mut self, msg: Disarm, _: &mut Self::Context) {
        // Its heap entry is skipped when it comes up.
        self.armed.remove(&msg.lease);
    }
}

impl Handler<ArmedCount> for LeaseDeadlines {
    type Result = usize;
    fn handle(&mut self, _: ArmedCount, _: &mut Self::Context) -> usize {
        self.armed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::sync::Arc;

    struct Sink(Arc<Mutex<Vec<LeaseTimedOut>>>);
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<LeaseTimedOut> for Sink {
        type Result = ();
        fn handle(&mut self, msg: LeaseTimedOut, _: &mut Self::Context) {
            self.0.lock().push(msg);
        }
    }

    #[actix_web::test]
    async fn fires_once_and_ignores_rearmed_and_disarmed_leases() {
        tokio::time::pause();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(seen.clone()).start();
        let sup = LeaseDeadlines::new(sink.recipient(), Arc::new(StallWatch::unstarted())).start();
        let arm = |lease, secs| Arm {
            lease,
            epoch: 1,
            deadline: DeadlineKind::Build,
            after: Duration::from_secs(secs),
        };
        sup.send(arm(1, 10)).await.unwrap();
        sup.send(arm(2, 10)).await.unwrap();
        sup.send(arm(3, 10)).await.unwrap();
        // lease 2 moves on to its upload deadline; lease 3 ends.
        sup.send(Arm {
            deadline: DeadlineKind::Upload,
            ..arm(2, 30)
        })
        .await
        .unwrap();
        sup.send(Disarm { lease: 3 }).await.unwrap();
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(
            seen.lock().iter().map(|t| t.lease).collect::<Vec<_>>(),
            vec![1]
        );
        tokio::time::sleep(Duration::from_secs(20)).await;
        let fired: Vec<_> = seen.lock().iter().map(|t| (t.lease, t.deadline)).collect();
        assert_eq!(
            fired,
            vec![(1, DeadlineKind::Build), (2, DeadlineKind::Upload)]
        );
        assert_eq!(sup.send(ArmedCount).await.unwrap(), 0);
    }
}
