//! Package and drone states (docs/contract.md §4) and failure kinds.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a package is in its life. Names are fixed by docs/contract.md §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageState {
    /// Some dependency is not built yet.
    Waiting,
    /// Ready to be handed out.
    Queued,
    /// Leased to a drone that is building it.
    Building,
    /// The drone said it is uploading the artifact.
    Uploading,
    /// Verified and published to `binhost_dir`.
    Built,
    /// Given up, with a reason and a log tail.
    Failed,
    /// A dependency failed.
    Blocked,
}

impl PackageState {
    pub const ALL: [PackageState; 7] = [
        PackageState::Waiting,
        PackageState::Queued,
        PackageState::Building,
        PackageState::Uploading,
        PackageState::Built,
        PackageState::Failed,
        PackageState::Blocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PackageState::Waiting => "waiting",
            PackageState::Queued => "queued",
            PackageState::Building => "building",
            PackageState::Uploading => "uploading",
            PackageState::Built => "built",
            PackageState::Failed => "failed",
            PackageState::Blocked => "blocked",
        }
    }

    pub fn parse(s: &str) -> Option<PackageState> {
        PackageState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Index into per-state counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// A package in this state has a drone working on it.
    pub fn is_leased(self) -> bool {
        matches!(self, PackageState::Building | PackageState::Uploading)
    }
}

impl fmt::Display for PackageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a drone is doing, as shown to operators (docs/contract.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DroneState {
    Idle,
    Building,
    Grounded,
    Paused,
    Offline,
    /// Online, but its build environment does not fit the swarm's: it gets no work.
    Mismatched,
}

impl DroneState {
    pub fn as_str(self) -> &'static str {
        match self {
            DroneState::Idle => "idle",
            DroneState::Building => "building",
            DroneState::Grounded => "grounded",
            DroneState::Paused => "paused",
            DroneState::Offline => "offline",
            DroneState::Mismatched => "mismatched",
        }
    }
}

impl fmt::Display for DroneState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an attempt ended without a published artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureKind {
    /// The build command failed or produced no artifact: the package's fault, most likely.
    Build,
    /// Upload failed or timed out, drone lost, checksum mismatch: the plumbing's fault.
    Infra,
    /// Operator or restart: costs nothing.
    Cancelled,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Build => "build",
            FailureKind::Infra => "infra",
            FailureKind::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a lease is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeasePhase {
    Building,
    Uploading,
    /// Over: completed, failed, reclaimed or cancelled.
    Ended,
}

impl LeasePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            LeasePhase::Building => "building",
            LeasePhase::Uploading => "uploading",
            LeasePhase::Ended => "ended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "building" => Some(LeasePhase::Building),
            "uploading" => Some(LeasePhase::Uploading),
            "ended" => Some(LeasePhase::Ended),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_phases_read_back_what_they_write() {
        for p in [
            LeasePhase::Building,
            LeasePhase::Uploading,
            LeasePhase::Ended,
        ] {
            assert_eq!(LeasePhase::parse(p.as_str()), Some(p));
        }
        assert_eq!(LeasePhase::parse("x"), None);
    }
}
