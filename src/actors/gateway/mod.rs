//! The gateway's actor (`swarm-gateway`).
//!
//! | actor | owns | hears from |
//! |---|---|---|
//! | [`orchestrator_directory::OrchestratorDirectory`] | known orchestrators, their health and last polled status; polls them | gateway HTTP handlers (register, pick, list) |

pub mod orchestrator_directory;
