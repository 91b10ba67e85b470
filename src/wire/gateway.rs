//! Wire types of the gateway's HTTP API (docs/contract.md §5, "Gateway"), shared by the gateway, the
//! drone, the CLI and the tests. Field names here are the contract; add fields, never
//! rename them.

use crate::wire::orchestrator::{DroneCounts, DroneInfo, PackageCounts, Status};
use serde::{Deserialize, Serialize};

/// `GET /api/v1/orchestrator`: the orchestrator a drone should use now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrchestratorChoice {
    pub name: String,
    pub url: String,
    /// Claimable packages there at the last poll.
    pub queued: usize,
}

/// One orchestrator as the gateway knows it (`GET /api/v1/orchestrators`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrchestratorEntry {
    pub name: String,
    pub url: String,
    pub healthy: bool,
    pub queued: usize,
    pub total: usize,
    pub built: usize,
    pub failed: usize,
    /// Unix seconds of the last finished poll (answered or not).
    pub last_poll: Option<u64>,
    /// Why the last poll failed; `null` when it answered.
    pub error: Option<String>,
    /// `config` (listed in the gateway's config) or `registered` (registered itself).
    #[serde(default)]
    pub source: String,
    /// Unix seconds of the last poll that answered.
    #[serde(default)]
    pub last_ok: Option<u64>,
    /// Consecutive failed polls.
    #[serde(default)]
    pub failed_polls: u32,
    /// The whole status of the last poll that answered.
    #[serde(default)]
    pub status: Option<Status>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrchestratorList {
    pub orchestrators: Vec<OrchestratorEntry>,
}

/// `POST /api/v1/orchestrators/register` (admin token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrchestratorRegistration {
    /// Base URL the gateway (and the drones it sends there) reach the orchestrator at.
    pub url: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RegistrationResult {
    pub url: String,
    pub name: String,
    /// False when the orchestrator was already known (config or earlier registration).
    pub new: bool,
    /// Seconds between the gateway's polls.
    pub poll_interval_s: u64,
}

/// One orchestrator's part of the merged status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrchestratorStatus {
    pub url: String,
    /// Answered now; only orchestrators that answered are in the totals.
    pub healthy: bool,
    /// Why it did not answer; its counts are then the last known ones (zero if none).
    pub error: Option<String>,
    #[serde(flatten)]
    pub status: Status,
}

/// `GET /api/v1/status` of the gateway: the orchestrators' statuses summed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MergedStatus {
    /// The gateway's name.
    pub name: String,
    #[serde(flatten)]
    pub counts: PackageCounts,
    pub progress_pct: f64,
    pub drones: DroneCounts,
    /// The first central fault any orchestrator reports (each orchestrator's own is in
    /// `orchestrators`).
    #[serde(default)]
    pub central_fault: Option<crate::wire::orchestrator::CentralFault>,
    /// The longest of the healthy orchestrators' `eta_s` (added).
    #[serde(default)]
    pub eta_s: Option<u64>,
    pub orchestrators: Vec<OrchestratorStatus>,
}

/// A drone as the merged listing shows it: the orchestrator's fields plus where it is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MergedDroneInfo {
    #[serde(flatten)]
    pub drone: DroneInfo,
    /// Name of the orchestrator the drone is registered with.
    pub orchestrator: String,
    #[serde(default)]
    pub orchestrator_url: String,
}

/// An orchestrator that did not answer a merged listing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrchestratorFailure {
    pub orchestrator: String,
    pub url: String,
    pub error: String,
}

/// `GET /api/v1/drones` of the gateway.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MergedDroneList {
    pub drones: Vec<MergedDroneInfo>,
    /// Orchestrators whose drones are missing from the list, and why.
    #[serde(default)]
    pub errors: Vec<OrchestratorFailure>,
}
