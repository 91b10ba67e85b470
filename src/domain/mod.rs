//! The domain of build-swarm, free of actors and HTTP: atoms, package sets, states.

pub mod atom;
pub mod package_set;
pub mod state;

pub use atom::{Atom, AtomError};
pub use package_set::{
    parse_package_set, parse_package_set_bytes, PackageSet, PackageSpec, SetError,
};
pub use state::{DroneState, FailureKind, LeasePhase, PackageState};
