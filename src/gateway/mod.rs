//! `swarm-gateway`: its start-up. Its actor is
//! [`crate::actors::gateway::orchestrator_directory`], its HTTP API [`crate::http::gateway`].

pub mod startup;

pub use startup::{Gateway, GatewayStartError};
