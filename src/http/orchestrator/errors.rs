//! How the orchestrator's actors' refusals map to HTTP statuses.

use crate::actors::orchestrator::build_logs::OutputError;
use crate::actors::orchestrator::drone_registry::RegistryError;
use crate::actors::orchestrator::drone_session::ClaimError;
use crate::actors::orchestrator::queue::commit::CommitError;
use crate::actors::orchestrator::queue::graph::boost::BumpError;
use crate::actors::orchestrator::queue::graph::RetryError;
use crate::actors::orchestrator::queue::QueueError;
use crate::http::error::ApiError;

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        let m = e.to_string();
        match e {
            QueueError::UnknownLease(_)
            | QueueError::UnknownPackage(_)
            | QueueError::Retry(RetryError::Unknown(_))
            | QueueError::Bump(BumpError::Unknown(_)) => ApiError::NotFound(m),
            QueueError::Bump(BumpError::Built(_)) => ApiError::Conflict(m),
            QueueError::Forbidden { .. } => ApiError::Forbidden(m),
            QueueError::WrongEpoch { .. }
            | QueueError::PathRefused(_)
            | QueueError::BadChecksum
            | QueueError::NotPublished { .. }
            | QueueError::Retry(RetryError::NothingNamed) => ApiError::BadRequest(m),
            QueueError::Busy(_) => ApiError::Conflict(m),
            QueueError::Commit(
                CommitError::Store(_)
                | CommitError::StoreGone(_)
                | CommitError::QueueStopped
                | CommitError::Reloading,
            ) => ApiError::Unavailable(m),
        }
    }
}

impl From<OutputError> for ApiError {
    fn from(e: OutputError) -> Self {
        let m = e.to_string();
        match e {
            OutputError::UnknownLease(_) => ApiError::NotFound(m),
            OutputError::Forbidden { .. } => ApiError::Forbidden(m),
            OutputError::WrongEpoch { .. } => ApiError::BadRequest(m),
        }
    }
}

impl From<ClaimError> for ApiError {
    fn from(e: ClaimError) -> Self {
        match e {
            ClaimError::UnknownDrone(_) => ApiError::NotFound(e.to_string()),
            ClaimError::Queue(q) => q.into(),
            ClaimError::Unavailable { .. } => ApiError::Unavailable(e.to_string()),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(m) => ApiError::BadRequest(m),
            RegistryError::Unknown(_) => ApiError::NotFound(e.to_string()),
            RegistryError::OnlineWithOtherCredential { .. } => ApiError::Conflict(e.to_string()),
        }
    }
}
