//! build-swarm: a distributed build farm. One orchestrator hands packages to many drones,
//! verifies what they upload and publishes it to a binary package host.
//!
//! - [`domain`] — atoms, package sets, states — no I/O.
//! - [`actors`] — the orchestrator's actor system (see its module doc for who owns what).
//! - [`http`] — the HTTP API, thin handlers over the actors.
//! - [`orchestrator`] — start-up.
//! - [`metrics`] — Prometheus counters and histograms, shared by the actors as atomics.
//! - [`client`] — the HTTP client every other program (drone, CLI, gateway, tests) uses.
//! - [`gateway`] — start-up of `swarm-gateway`; [`gateway_api`] its wire types and
//!   [`gateway_client`] its client (what drones call to pick an orchestrator).
//! - [`cli`] — the `build-swarm` operator CLI.
//! - [`bench`] — `swarm-bench`, benchmarks of a real swarm (see `BENCHMARKS.md`).
//! - [`publish`] — verifying an upload and moving it into the binhost; [`staging`] the
//!   upload directories and their reuse; [`dirfd`] the directory-relative file calls both use.

pub mod actors;
pub mod api;
pub mod bench;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod demo;
pub mod dirfd;
pub mod domain;
pub mod drone;
pub mod gateway;
pub mod gateway_api;
pub mod gateway_client;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod orchestrator;
pub mod process;
pub mod publish;
pub mod staging;
