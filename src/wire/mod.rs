//! The JSON types on the wire, shared by every program that speaks an API
//! (docs/contract.md §5): [`orchestrator`] for the orchestrator's API, [`gateway`] for the
//! gateway's.

pub mod gateway;
pub mod orchestrator;
