//! **UploadSupervisor** (orchestrator side) — owns the deadline of every active lease:
//! `build_timeout_s` from the claim until the drone says `uploading`, then
//! `upload_timeout_s` until it completes.
//!
//! Receives `Arm` / `Disarm` from the package queue. When a deadline passes it sends
//! `LeaseTimedOut` back to the queue, which reclaims the work. Every arming gets a fresh
//! generation and the timer carries it, so a late timer for a lease that was re-armed or
//! already ended does nothing.

use crate::api::LeaseId;
use actix::prelude::*;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
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
    pub deadline: Deadline,
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
    pub deadline: Deadline,
    pub after: Duration,
}

/// The timer's own message: carries the generation it was armed with.
#[derive(Message)]
#[rtype(result = "()")]
struct Expired {
    lease: LeaseId,
    generation: u64,
}

/// How many deadlines are armed (for status and tests).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ArmedCount;

struct Armed {
    generation: u64,
    epoch: u64,
    deadline: Deadline,
    after: Duration,
    timer: SpawnHandle,
}

pub struct UploadSupervisor {
    queue: Recipient<LeaseTimedOut>,
    armed: HashMap<LeaseId, Armed>,
    next_generation: u64,
}

impl UploadSupervisor {
    pub fn new(queue: Recipient<LeaseTimedOut>) -> Self {
        UploadSupervisor {
            queue,
            armed: HashMap::new(),
            next_generation: 1,
        }
    }
}

impl Actor for UploadSupervisor {
    type Context = Context<Self>;
}

impl Handler<Arm> for UploadSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Arm, ctx: &mut Self::Context) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let timer = ctx.notify_later(
            Expired {
                lease: msg.lease,
                generation,
            },
            msg.after,
        );
        if let Some(old) = self.armed.insert(
            msg.lease,
            Armed {
                generation,
                epoch: msg.epoch,
                deadline: msg.deadline,
                after: msg.after,
                timer,
            },
        ) {
            ctx.cancel_future(old.timer);
        }
    }
}

impl Handler<Disarm> for UploadSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Disarm, ctx: &mut Self::Context) {
        if let Some(old) = self.armed.remove(&msg.lease) {
            ctx.cancel_future(old.timer);
        }
    }
}

impl Handler<Expired> for UploadSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Expired, _: &mut Self::Context) {
        // A late timer (re-armed or disarmed since) is ignored.
        if self.armed.get(&msg.lease).map(|a| a.generation) != Some(msg.generation) {
            return;
        }
        if let Some(a) = self.armed.remove(&msg.lease) {
            self.queue.do_send(LeaseTimedOut {
                lease: msg.lease,
                epoch: a.epoch,
                deadline: a.deadline,
                after: a.after,
            });
        }
    }
}

impl Handler<ArmedCount> for UploadSupervisor {
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
        let sup = UploadSupervisor::new(sink.recipient()).start();
        let arm = |lease, secs| Arm {
            lease,
            epoch: 1,
            deadline: Deadline::Build,
            after: Duration::from_secs(secs),
        };
        sup.send(arm(1, 10)).await.unwrap();
        sup.send(arm(2, 10)).await.unwrap();
        sup.send(arm(3, 10)).await.unwrap();
        // lease 2 moves on to its upload deadline; lease 3 ends.
        sup.send(Arm {
            deadline: Deadline::Upload,
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
        assert_eq!(fired, vec![(1, Deadline::Build), (2, Deadline::Upload)]);
        assert_eq!(sup.send(ArmedCount).await.unwrap(), 0);
    }
}
