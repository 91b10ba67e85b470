//! The domain of build-swarm, free of actors and HTTP: atoms, package sets, states,
//! drone names, versions, build environments and requirements, and the minimal binary package a stand-in builder makes.

pub mod atom;
pub mod binpkg;
pub mod drone_name;
pub mod environment;
pub mod package_set;
pub mod state;
pub mod version;

pub use atom::{Atom, AtomError};
pub use drone_name::{check_drone_name, BadDroneName};
pub use package_set::{
    parse_package_set, parse_package_set_bytes, PackageSet, PackageSpec, SetError,
};
pub use state::{DroneState, FailureKind, LeasePhase, PackageState};
