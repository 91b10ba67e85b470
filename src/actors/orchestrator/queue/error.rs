//! What the package queue answers when it refuses or cannot do what was asked.

use super::commit::CommitError;
use super::graph::RetryError;
use super::publisher::PathRefused;
use crate::orchestrator::credentials::Forbidden;
use crate::orchestrator::publish::PublishError;
use crate::wire::orchestrator::LeaseId;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("unknown lease {0}")]
    UnknownLease(LeaseId),
    #[error("lease {lease}: {source}")]
    Forbidden {
        lease: LeaseId,
        #[source]
        source: Forbidden,
    },
    #[error("`{0}` is not in this orchestrator's package set")]
    UnknownPackage(String),
    #[error("lease {lease} has epoch {current}, not {given}")]
    WrongEpoch {
        lease: LeaseId,
        current: u64,
        given: u64,
    },
    #[error(transparent)]
    PathRefused(#[from] PathRefused),
    #[error("sha256 must be 64 hexadecimal digits")]
    BadChecksum,
    #[error("another upload of `{0}` is being verified; try again shortly")]
    Busy(String),
    /// The upload did not verify (size, checksum, missing, not a regular file, I/O).
    #[error("{source}; the package goes back to the queue")]
    NotPublished {
        #[source]
        source: PublishError,
    },
    #[error(transparent)]
    Retry(#[from] RetryError),
    #[error(transparent)]
    Bump(#[from] super::graph::boost::BumpError),
    #[error(transparent)]
    Commit(#[from] CommitError),
}
