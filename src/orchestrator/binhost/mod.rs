//! The binhost Portage reads (docs/design.md, "The binhost index"): a package's metadata
//! ([`metadata`]), the `Packages` format ([`index`]), the index the orchestrator keeps
//! ([`live`]), its file on disk ([`index_file`]) and checking files against it
//! ([`verify`]). The binhost-index actor
//! (`actors::orchestrator::binhost_index`) owns the live index; publishing reads the
//! metadata while it verifies an upload.

pub mod index;
pub mod index_file;
pub mod live;
pub mod metadata;
pub mod releases;
pub mod signing;
pub mod verify;
