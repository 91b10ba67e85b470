//! `swarm-drone`: its start-up ([`startup`]) and the building blocks that are not actors:
//! filling in the build command and running a build under its timeouts ([`build`]),
//! finding the one artifact it produced ([`artifact`]), the rsync command line and exit
//! codes ([`rsync`]), reaping what a killed drone left running ([`leftovers`]), the link to
//! the orchestrator as a state machine ([`connection`]) and the results kept on disk until
//! acknowledged ([`pending`]), its Prometheus metrics ([`metrics`]), a build's output sent live
//! ([`live_output`]). The
//! drone's actors live in [`crate::actors::drone`].

pub mod artifact;
pub mod build;
pub mod connection;
pub mod environment;
pub mod leftovers;
pub mod live_output;
pub mod metrics;
pub mod pending;
pub mod rsync;
pub mod startup;
