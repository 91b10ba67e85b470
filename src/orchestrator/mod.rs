//! `swarm-orchestrator`: what only the orchestrator uses beside its actors — its start-up
//! ([`startup`]), verifying and publishing uploads ([`publish`]), the staging directory and
//! its upload directories ([`staging`]), its Prometheus metrics ([`metrics`]), the
//! drones' own credentials ([`credentials`]), which drones' build environments fit
//! ([`environments`]), what operators are told ([`notify`]), the
//! self-healing ladder ([`healing`]), running builds' output ([`live_log`]) and the binhost Portage reads
//! ([`binhost`]: package metadata and the `Packages` index).

pub mod binhost;
pub mod credentials;
pub mod environments;
pub mod healing;
pub mod live_log;
pub mod metrics;
pub mod notify;
pub mod publish;
pub mod staging;
pub mod startup;

pub use startup::{Orchestrator, StartError};
