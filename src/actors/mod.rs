//! The orchestrator's actors. Each owns its state outright; they talk only through the
//! typed messages declared beside them, so no state is shared behind a lock.
//!
//! | actor | owns | hears from |
//! |---|---|---|
//! | [`package_queue::PackageQueue`] | package states, dependency graph, ready set, leases | HTTP handlers, sessions, supervisor |
//! | [`drone_registry::DroneRegistry`] | the drone sessions by name, their summaries | HTTP handlers, sessions, queue |
//! | [`drone_session::DroneSession`] (one per drone) | heartbeat deadline, pending commands, log ring | HTTP handlers, registry |
//! | [`circuit_breaker::CircuitBreaker`] | failure counts, grounding | queue, sessions, operator |
//! | [`upload_supervisor::UploadSupervisor`] | every lease's build and upload deadline | queue |
//! | [`publish_hook::PublishHook`] | the `publish_command` runs | queue |
//! | [`store::Store`] (own thread) | the SQLite database | queue, registry |
//! | [`gateway_registration::GatewayRegistration`] | this orchestrator's registration with its gateway (re-sent every 30 s) | nobody: its own timers |
//!
//! The gateway's actor:
//!
//! | actor | owns | hears from |
//! |---|---|---|
//! | [`orchestrator_directory::OrchestratorDirectory`] | known orchestrators, their health and last polled status; polls them | gateway HTTP handlers (register, pick, list) |
//!
//! The drone's own actors are in [`drone`].
//!
//! Rule against deadlocks: the queue, the breaker, the supervisor and the store never await
//! an answer from anyone; they only `do_send`. Everyone else may await them.

pub mod circuit_breaker;
pub mod drone;
pub mod drone_registry;
pub mod drone_session;
pub mod gateway_registration;
pub mod orchestrator_directory;
pub mod package_queue;
pub mod publish_hook;
pub mod store;
pub mod upload_supervisor;
