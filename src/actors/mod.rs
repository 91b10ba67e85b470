//! Every actor, one folder per program that runs them: [`orchestrator`] (the package queue,
//! drone sessions, circuit breaker, lease deadlines, store…), [`drone`] (the agent, its
//! build runner and upload supervisor) and [`gateway`] (the orchestrator directory). Each
//! folder's module comment lists its actors, what each owns and who sends it what.

pub mod drone;
pub mod gateway;
pub mod orchestrator;
