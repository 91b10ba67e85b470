//! The domain of build-swarm, free of actors and HTTP: atoms, package sets, states,
//! drone names.

pub mod atom;
pub mod drone_name;
pub mod package_set;
pub mod state;

pub use atom::{Atom, AtomError};
pub use drone_name::{check_drone_name, BadDroneName};
pub use package_set::{
    parse_package_set, parse_package_set_bytes, PackageSet, PackageSpec, SetError,
};
pub use state::{DroneState, FailureKind, LeasePhase, PackageState};
