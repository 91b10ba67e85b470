//! build-swarm: a distributed build farm. One orchestrator hands packages to many drones,
//! verifies what they upload and publishes it to a binary package host.
//!
//! The layout follows the programs (docs/design.md says who owns what):
//!
//! - [`orchestrator`], [`drone`], [`gateway`], [`cli`] — what only that program uses:
//!   its start-up and its plain (non-actor) logic.
//! - [`actors`] — every actor, one folder per program that runs them.
//! - [`http`] — the HTTP servers (orchestrator and gateway), thin handlers over the actors.
//! - Shared by several programs: [`domain`] (atoms, package sets, states — no I/O),
//!   [`wire`] (the JSON types of both APIs), [`client`] (HTTP clients of both APIs),
//!   [`config`] (every program's configuration file), [`sys`] (processes, directory-relative
//!   file calls, logging, clocks).

pub mod actors;
pub mod cli;
pub mod client;
pub mod config;
pub mod domain;
pub mod drone;
pub mod gateway;
pub mod http;
pub mod orchestrator;
pub mod sys;
pub mod wire;
