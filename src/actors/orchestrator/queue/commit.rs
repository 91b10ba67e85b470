//! Group commit: every change marks what it touched; one batch at a time is written by the
//! store; whatever changes while a batch is in flight goes into the next; an answer waits
//! for the batch holding its change (docs/design.md, "Durability"). What other actors must
//! hear of a change (`A`: breaker outcomes, cancels, the publish hook) is told only once
//! its batch is committed. A failed batch answers its waiters with the error and is
//! dropped, with everything changed after it: the queue then reads the committed state
//! back, so memory equals disk.

use crate::actors::orchestrator::store::{StoreError, Write};
use crate::wire::orchestrator::LeaseId;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Why a change could not be made durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    #[error("the state database could not be written: {0}")]
    Store(#[source] Arc<StoreError>),
    #[error("the state database could not be written: the store is gone: {0}")]
    StoreGone(#[source] actix::MailboxError),
    #[error("the package queue stopped")]
    QueueStopped,
    #[error("the state database could not be written a moment ago; the committed state is being read back, try again shortly")]
    Reloading,
}

/// Resolves when everything changed before it was asked for is committed.
pub type Durable = oneshot::Receiver<Result<(), CommitError>>;
type Waiter = oneshot::Sender<Result<(), CommitError>>;

/// What one batch writes, who waits for it, and what others hear once it is committed.
pub struct Batch<A> {
    pub pkgs: Vec<u32>,
    pub leases: Vec<LeaseId>,
    /// Writes other than package and lease rows (edges, prunes, directory syncs).
    pub extra: Vec<Write>,
    waiters: Vec<Waiter>,
    /// It records a publish: the publish hook runs once it is committed.
    publishes: bool,
    after: Vec<A>,
}

/// What a committed batch leaves to be told.
pub struct Committed<A> {
    pub publishes: bool,
    pub after: Vec<A>,
}

pub struct CommitBatch<A> {
    extra: Vec<Write>,
    waiters: Vec<Waiter>,
    in_flight: bool,
    publishes: bool,
    after: Vec<A>,
}

impl<A> Default for CommitBatch<A> {
    fn default() -> Self {
        CommitBatch {
            extra: Vec::new(),
            waiters: Vec::new(),
            in_flight: false,
            publishes: false,
            after: Vec::new(),
        }
    }
}

impl<A> CommitBatch<A> {
    /// To be told once the next batch is committed (dropped if it fails).
    pub fn after(&mut self, a: A) {
        self.after.push(a);
    }

    /// A write to go with the next batch.
    pub fn push(&mut self, w: Write) {
        self.extra.push(w);
    }

    /// The next batch records a publish.
    pub fn note_publish(&mut self) {
        self.publishes = true;
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// A receiver for the next batch. `clean`: nothing is dirty outside this batcher.
    /// Returns it already resolved when nothing is pending at all; otherwise the caller
    /// must start a batch (`begin`) if none is in flight.
    pub fn wait(&mut self, clean: bool) -> (Durable, bool) {
        let (tx, rx) = oneshot::channel();
        if clean && self.extra.is_empty() && self.after.is_empty() && !self.in_flight {
            let _ = tx.send(Ok(()));
            return (rx, false);
        }
        self.waiters.push(tx);
        (rx, true)
    }

    /// Starts a batch of `pkgs` and `leases` (taken from their owners). None when one is in
    /// flight, or when there is nothing to write and `other_work` is false (its waiters are
    /// then answered at once).
    pub fn begin(
        &mut self,
        pkgs: Vec<u32>,
        leases: Vec<LeaseId>,
        other_work: bool,
    ) -> Option<Batch<A>> {
        if self.in_flight {
            return None;
        }
        if pkgs.is_empty()
            && leases.is_empty()
            && self.extra.is_empty()
            && !other_work
            && !self.publishes
            && self.after.is_empty()
        {
            for w in self.waiters.drain(..) {
                let _ = w.send(Ok(()));
            }
            return None;
        }
        self.in_flight = true;
        Some(Batch {
            pkgs,
            leases,
            extra: std::mem::take(&mut self.extra),
            waiters: std::mem::take(&mut self.waiters),
            publishes: std::mem::take(&mut self.publishes),
            after: std::mem::take(&mut self.after),
        })
    }

    /// The batch is on disk: its waiters hear so; what it leaves to be told is returned.
    pub fn succeeded(&mut self, batch: Batch<A>) -> Committed<A> {
        self.in_flight = false;
        for w in batch.waiters {
            let _ = w.send(Ok(()));
        }
        Committed {
            publishes: batch.publishes,
            after: batch.after,
        }
    }

    /// The batch failed, and so does everything changed after it (it was changed on top
    /// of it): every waiter hears `error`, nothing is told, and only the writes that do not
    /// depend on the queue's state (drone records, directory syncs) are kept for the next
    /// batch. The caller reads the committed state back.
    pub fn failed(&mut self, batch: Batch<A>, error: CommitError) {
        self.in_flight = false;
        for w in batch.waiters.into_iter().chain(self.waiters.drain(..)) {
            let _ = w.send(Err(error.clone()));
        }
        let keep = |w: &Write| matches!(w, Write::Drone(_) | Write::SyncDir(_));
        let mut kept: Vec<Write> = batch.extra.into_iter().filter(keep).collect();
        kept.extend(std::mem::take(&mut self.extra).into_iter().filter(keep));
        self.extra = kept;
        self.after.clear();
        self.publishes = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(rx: &mut Durable) -> Option<Result<(), CommitError>> {
        rx.try_recv().ok()
    }

    type Batcher = CommitBatch<&'static str>;

    #[test]
    fn nothing_pending_answers_at_once() {
        let mut c = Batcher::default();
        let (mut rx, flush) = c.wait(true);
        assert!(!flush);
        assert!(matches!(ready(&mut rx), Some(Ok(()))));
    }

    #[test]
    fn changes_during_a_batch_wait_for_the_next_one() {
        let mut c = Batcher::default();
        let (mut first, flush) = c.wait(false);
        assert!(flush);
        let batch = c.begin(vec![1], vec![], false).unwrap();
        // In flight: another change waits, and no second batch starts.
        let (mut second, _) = c.wait(false);
        assert!(c.begin(vec![2], vec![], false).is_none());
        c.succeeded(batch);
        assert!(matches!(ready(&mut first), Some(Ok(()))));
        assert!(
            ready(&mut second).is_none(),
            "its change is not written yet"
        );
        let batch = c.begin(vec![2], vec![], false).unwrap();
        assert_eq!(batch.pkgs, vec![2]);
        c.succeeded(batch);
        assert!(matches!(ready(&mut second), Some(Ok(()))));
    }

    #[test]
    fn what_others_hear_waits_for_the_commit() {
        let mut c = Batcher::default();
        c.after("grounded d1");
        c.note_publish();
        let (_rx, flush) = c.wait(true);
        assert!(flush, "something to tell is something to commit");
        let batch = c.begin(vec![], vec![], false).unwrap();
        let done = c.succeeded(batch);
        assert!(done.publishes);
        assert_eq!(done.after, vec!["grounded d1"]);
    }

    #[test]
    fn a_failed_batch_fails_everything_after_it_and_tells_nothing() {
        let mut c = Batcher::default();
        c.push(Write::Deps(vec![(1, 0)]));
        c.after("outcome");
        c.note_publish();
        let (mut first, _) = c.wait(false);
        let batch = c.begin(vec![1], vec![7], false).unwrap();
        // Changed while the batch was being written: on top of it.
        c.push(Write::Deps(vec![(2, 0)]));
        c.push(Write::SyncDir("/b/cat".into()));
        c.after("later outcome");
        let (mut second, _) = c.wait(false);
        c.failed(batch, CommitError::QueueStopped);
        assert!(matches!(
            ready(&mut first),
            Some(Err(CommitError::QueueStopped))
        ));
        assert!(matches!(
            ready(&mut second),
            Some(Err(CommitError::QueueStopped))
        ));
        // Only the state-independent write is left; nothing to tell, no publish.
        let batch = c.begin(vec![], vec![], false).unwrap();
        assert_eq!(batch.extra.len(), 1);
        assert!(matches!(batch.extra[0], Write::SyncDir(_)));
        let done = c.succeeded(batch);
        assert!(!done.publishes && done.after.is_empty());
    }

    #[test]
    fn an_empty_batch_answers_its_waiters_without_writing() {
        let mut c = Batcher::default();
        let (mut rx, _) = c.wait(false);
        assert!(c.begin(vec![], vec![], false).is_none());
        assert!(matches!(ready(&mut rx), Some(Ok(()))));
        assert!(
            c.begin(vec![], vec![], true).is_some(),
            "other work still makes a batch"
        );
    }
}
