//! The orchestrator's actors. Each owns its state outright; they talk only through typed
//! messages, so no state is shared behind a lock.
//!
//! | actor | owns | hears from |
//! |---|---|---|
//! | [`queue::PackageQueue`] | package states, dependency graph, ready set, leases | HTTP handlers, sessions, lease deadlines |
//! | [`drone_registry::DroneRegistry`] | the drone sessions by name, their summaries | HTTP handlers, sessions, queue |
//! | [`drone_session::DroneSession`] (one per drone) | heartbeat deadline, pending commands, log ring | HTTP handlers, registry |
//! | [`circuit_breaker::CircuitBreaker`] | failure counts, grounding | queue, sessions, operator |
//! | [`lease_deadlines::LeaseDeadlines`] | every lease's build and upload deadline | queue |
//! | [`publish_hook::PublishHook`] | the `publish_command` runs | queue |
//! | [`binhost_index::BinhostIndex`] | the binhost's `Packages` index and its writes | queue, HTTP handlers, release manager |
//! | [`releases::ReleaseManager`] | snapshots, channels and their retention (`releases_dir`) | HTTP handlers, its gc timer |
//! | [`build_logs::BuildLogs`] | running builds' output (a bounded ring per lease) and its readers | queue, HTTP handlers |
//! | [`drone_healer::DroneHealer`] | each offline drone's self-healing ladder (`[heal]`) | registry |
//! | [`notifier::Notifier`] | the `[[notify]]` outbox: undelivered events, retries, open alerts | queue, breaker, registry, healer |
//! | [`store::Store`] (own thread) | the SQLite database | queue, registry, notifier |
//! | [`gateway_registration::GatewayRegistration`] | this orchestrator's registration with its gateway (re-sent every 30 s) | nobody: its own timers |
//!
//! Messages that cross between the queue, the registry and the sessions (and between the
//! queue and the binhost index) are declared in [`messages`], so no actor imports
//! another's actor type in a circle.
//!
//! Rule against deadlocks: the queue, the breaker, the lease deadlines, the binhost index
//! and the store never await an answer from anyone; they only `do_send`. Everyone else may
//! await them (the release manager awaits the binhost index, the notifier the store).

pub mod binhost_index;
pub mod build_logs;
pub mod circuit_breaker;
pub mod drone_healer;
pub mod drone_registry;
pub mod drone_session;
pub mod gateway_registration;
pub mod lease_deadlines;
pub mod messages;
pub mod notifier;
pub mod publish_hook;
pub mod queue;
pub mod releases;
pub mod store;
