//! The drone's actors (`swarm-drone`), on the same actix runtime as the orchestrator's.
//!
//! | actor | owns | hears from |
//! |---|---|---|
//! | [`agent::DroneAgent`] | registration, heartbeats, claims, every job's state, unsent results | its timers, the two below |
//! | [`build_runner::BuildRunner`] | running builds (process groups, build and idle timeouts) | the agent |
//! | [`upload_supervisor::UploadSupervisor`] | every rsync child and its total-timeout timer | the agent |
//!
//! The runner and the supervisor report back with `BuildFinished` / `UploadFinished`
//! (fire-and-forget), and never await the agent.

pub mod agent;
pub mod build_runner;
pub mod upload_supervisor;
