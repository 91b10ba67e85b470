//! The package queue's messages, declared in one place (who sends each: the module
//! comment of [`super`]).

use super::QueueError;
use crate::actors::orchestrator::store::DroneRow;
use crate::domain::{PackageSet, PackageState};
use crate::orchestrator::credentials::Caller;
use crate::wire::orchestrator::BumpResult;
use crate::wire::orchestrator::{
    Ack, CompleteRequest, CompleteResponse, DroneQueue, FailRequest, LeaseId, PackageCounts,
    PackageList, PackageLog, RetryRequest, RetryResult, SubmitResult, WorkAssignment,
};
use actix::prelude::*;
use std::collections::HashMap;

#[derive(Message)]
#[rtype(result = "Result<SubmitResult, QueueError>")]
pub struct Submit {
    pub set: PackageSet,
    /// Operator priority of the set (`submit --priority`; 0 by default).
    pub priority: i32,
}

/// Moves a package and everything it still needs ahead of the rest (`build-swarm bump`).
#[derive(Message)]
#[rtype(result = "Result<BumpResult, QueueError>")]
pub struct Bump {
    pub atom: String,
}

/// A drone asks for work (its session checked it may claim).
#[derive(Message)]
#[rtype(result = "Result<Option<WorkAssignment>, QueueError>")]
pub struct ClaimPackage {
    pub drone: String,
    pub slots: u32,
}

#[derive(Message)]
#[rtype(result = "Result<Ack, QueueError>")]
pub struct MarkUploading {
    pub lease: LeaseId,
    pub epoch: u64,
    /// Who reports it: it must be the lease's drone's credential.
    pub caller: Caller,
}

#[derive(Message)]
#[rtype(result = "Result<CompleteResponse, QueueError>")]
pub struct Complete {
    pub lease: LeaseId,
    pub req: CompleteRequest,
    pub caller: Caller,
}

#[derive(Message)]
#[rtype(result = "Result<Ack, QueueError>")]
pub struct Fail {
    pub lease: LeaseId,
    pub req: FailRequest,
    pub caller: Caller,
}

/// The drone is gone (offline, or registered again): its active leases are reclaimed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReclaimDrone {
    pub drone: String,
    pub reason: String,
}

/// A heartbeat listed these leases. Active leases of the drone it did not list (and that
/// are older than the heartbeat TTL) are reclaimed; the answer lists the leases the drone
/// should stop working on.
#[derive(Message)]
#[rtype(result = "Vec<LeaseId>")]
pub struct CheckLeases {
    pub drone: String,
    pub listed: Vec<LeaseId>,
}

#[derive(Message)]
#[rtype(result = "Result<RetryResult, QueueError>")]
pub struct Retry(pub RetryRequest);

#[derive(Message)]
#[rtype(result = "PackageCounts")]
pub struct GetCounts;

#[derive(Message)]
#[rtype(result = "PackageList")]
pub struct ListPackages {
    pub state: Option<PackageState>,
    pub search: Option<String>,
    pub offset: usize,
    pub limit: Option<usize>,
}

#[derive(Message)]
#[rtype(result = "Result<PackageLog, QueueError>")]
pub struct GetLog {
    pub atom: String,
}

/// The atoms each drone holds a lease on.
#[derive(Message)]
#[rtype(result = "HashMap<String, Vec<String>>")]
pub struct CurrentByDrone;

#[derive(Message)]
#[rtype(result = "DroneQueue")]
pub struct DroneQueueView {
    pub drone: String,
}

/// A drone registered or showed signs of life (it counts as another eligible drone for
/// packages that failed elsewhere).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DroneSeen {
    pub drone: String,
}

/// A drone's record changed (registry): written with the next batch.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordDrone(pub DroneRow);

/// The timeline of the window `from`..`to` (unix seconds), at most `limit` attempts.
#[derive(Message)]
#[rtype(result = "crate::wire::orchestrator::Timeline")]
pub struct GetTimeline {
    pub from: u64,
    pub to: u64,
    pub limit: usize,
    /// Start at the first attempt in the window (the current set).
    pub fit: bool,
}
