//! The drone's building blocks that are not actors: filling in the build command, running a
//! build under its timeouts, finding the one artifact it produced, building the rsync
//! command line and reading rsync's exit codes. The drone's actors live in
//! `crate::actors::drone`.

pub mod artifact;
pub mod build;
pub mod leftovers;
pub mod rsync;
