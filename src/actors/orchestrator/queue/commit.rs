//! Group commit: every change marks what it touched; one batch at a time is written by the
//! store; whatever changes while a batch is in flight goes into the next; an answer waits
//! for the batch holding its change (docs/design.md, "Durability"). A failed batch keeps
//! its changes for the next try and tells its waiters.

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
}

/// Resolves when everything changed before it was asked for is committed.
pub type Durable = oneshot::Receiver<Result<(), CommitError>>;
type Waiter = oneshot::Sender<Result<(), CommitError>>;

/// What one batch writes, and who waits for it.
pub struct Batch {
    pub pkgs: Vec<u32>,
    pub leases: Vec<LeaseId>,
    /// Writes other than package and lease rows (edges, prunes, directory syncs).
    pub extra: Vec<Write>,
    waiters: Vec<Waiter>,
    /// It records a publish: the publish hook runs once it is committed.
    publishes: bool,
}

#[derive(Default)]
pub struct CommitBatch {
    extra: Vec<Write>,
    waiters: Vec<Waiter>,
    in_flight: bool,
    publishes: bool,
}

impl CommitBatch {
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
        if clean && self.extra.is_empty() && !self.in_flight {
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
    ) -> Option<Batch> {
        if self.in_flight {
            return None;
        }
        if pkgs.is_empty()
            && leases.is_empty()
            && self.extra.is_empty()
            && !other_work
            && !self.publishes
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
        })
    }

    /// The batch is on disk: its waiters hear so. Returns whether it recorded a publish.
    pub fn succeeded(&mut self, batch: Batch) -> bool {
        self.in_flight = false;
        for w in batch.waiters {
            let _ = w.send(Ok(()));
        }
        batch.publishes
    }

    /// The batch failed: its waiters hear why; its rows are handed back to be marked dirty
    /// again (so the next batch writes them) and its other writes go into the next batch,
    /// ahead of anything newer.
    pub fn failed(&mut self, batch: Batch, error: CommitError) -> (Vec<u32>, Vec<LeaseId>) {
        self.in_flight = false;
        self.publishes |= batch.publishes;
        for w in batch.waiters {
            let _ = w.send(Err(error.clone()));
        }
        let newer = std::mem::replace(&mut self.extra, batch.extra);
        self.extra.extend(newer);
        (batch.pkgs, batch.leases)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(rx: &mut Durable) -> Option<Result<(), CommitError>> {
        rx.try_recv().ok()
    }

    #[test]
    fn nothing_pending_answers_at_once() {
        let mut c = CommitBatch::default();
        let (mut rx, flush) = c.wait(true);
        assert!(!flush);
        assert!(matches!(ready(&mut rx), Some(Ok(()))));
    }

    #[test]
    fn changes_during_a_batch_wait_for_the_next_one() {
        let mut c = CommitBatch::default();
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
    fn a_failed_batch_tells_its_waiters_and_keeps_its_writes() {
        let mut c = CommitBatch::default();
        c.push(Write::Deps(vec![(1, 0)]));
        let (mut rx, _) = c.wait(false);
        let batch = c.begin(vec![1], vec![7], false).unwrap();
        c.push(Write::Deps(vec![(2, 0)]));
        let (pkgs, leases) = c.failed(batch, CommitError::QueueStopped);
        assert_eq!((pkgs, leases), (vec![1], vec![7]));
        assert!(matches!(
            ready(&mut rx),
            Some(Err(CommitError::QueueStopped))
        ));
        let batch = c.begin(vec![1], vec![7], false).unwrap();
        assert_eq!(batch.extra.len(), 2);
        assert!(matches!(batch.extra[0], Write::Deps(ref d) if d == &[(1, 0)]));
    }

    #[test]
    fn a_publish_is_announced_by_the_batch_that_commits_it_even_after_a_failure() {
        let mut c = CommitBatch::default();
        c.note_publish();
        let batch = c.begin(vec![1], vec![], false).unwrap();
        c.failed(batch, CommitError::QueueStopped);
        let batch = c.begin(vec![1], vec![], false).unwrap();
        assert!(c.succeeded(batch), "the retry carries the publish");
        let batch = c.begin(vec![2], vec![], false).unwrap();
        assert!(!c.succeeded(batch));
    }

    #[test]
    fn an_empty_batch_answers_its_waiters_without_writing() {
        let mut c = CommitBatch::default();
        let (mut rx, _) = c.wait(false);
        assert!(c.begin(vec![], vec![], false).is_none());
        assert!(matches!(ready(&mut rx), Some(Ok(()))));
        assert!(
            c.begin(vec![], vec![], true).is_some(),
            "other work still makes a batch"
        );
    }
}
