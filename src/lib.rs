//! build-swarm: a distributed build farm. One orchestrator hands packages to many drones,
//! verifies what they upload and publishes it to a binary package host.
//!
//! - [`domain`] — atoms, package sets, states — no I/O.
//! - [`actors`] — the orchestrator's actor system (see its module doc for who owns what).
//! - [`http`] — the HTTP API, thin handlers over the actors.
//! - [`orchestrator`] — start-up.
//! - [`metrics`] — Prometheus counters and histograms, shared by the actors as atomics.
//! - [`client`] — the HTTP client every other program (drone, CLI, gateway, tests) uses.

pub mod actors;
pub mod api;
pub mod client;
pub mod config;
pub mod domain;
pub mod drone;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod orchestrator;
pub mod process;
pub mod publish;
