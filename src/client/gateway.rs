//! HTTP client for the gateway's API (docs/contract.md §5, "Gateway"), used by the drone, the CLI, the
//! orchestrator's registration and the tests. Built on [`ApiClient`], so errors are the
//! same [`ClientError`]s; must run inside an actix system.
//!
//! For a drone: ask [`pick_orchestrator`] at start, when its orchestrator has had no work
//! for it for a while, and when its orchestrator stops answering. When the gateway itself
//! does not answer, keep the orchestrator you have: nothing after the pick goes through
//! the gateway.

use crate::client::{ApiClient, ClientError};
use crate::wire::gateway::*;
use std::time::Duration;

#[derive(Clone)]
pub struct GatewayClient {
    api: ApiClient,
}

impl GatewayClient {
    /// `token`: the read token for the listings when the gateway has one, or the admin
    /// token (needed to register an orchestrator).
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self::with_timeout(base, token, Duration::from_secs(10))
    }

    pub fn with_timeout(base: &str, token: Option<String>, timeout: Duration) -> Self {
        GatewayClient {
            api: ApiClient::with_timeout(base, token, timeout),
        }
    }

    pub fn base(&self) -> &str {
        self.api.base()
    }

    /// The orchestrator a drone should use now. A 503 (`is_unreachable()` is true for it)
    /// means the gateway knows no healthy orchestrator at the moment.
    pub async fn pick(&self) -> Result<OrchestratorChoice, ClientError> {
        self.api.get("/api/v1/orchestrator").await
    }

    pub async fn orchestrators(&self) -> Result<OrchestratorList, ClientError> {
        self.api.get("/api/v1/orchestrators").await
    }

    pub async fn status(&self) -> Result<MergedStatus, ClientError> {
        self.api.get("/api/v1/status").await
    }

    pub async fn drones(&self) -> Result<MergedDroneList, ClientError> {
        self.api.get("/api/v1/drones").await
    }

    pub async fn register(
        &self,
        req: &OrchestratorRegistration,
    ) -> Result<RegistrationResult, ClientError> {
        self.api.post("/api/v1/orchestrators/register", req).await
    }
}

/// Asks the gateway at `gateway_url` which orchestrator to use now (no token needed).
pub async fn pick_orchestrator(gateway_url: &str) -> Result<OrchestratorChoice, ClientError> {
    GatewayClient::new(gateway_url, None).pick().await
}
