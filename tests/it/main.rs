//! Every integration test of build-swarm, in one test binary (one link instead of one per
//! file; helpers in [`common`] are shared without `dead_code` allowances). Each module is
//! one suite: real orchestrators, drones, gateways and CLIs on 127.0.0.1, real rsync,
//! OpenSSH and SQLite; tests that need root or network namespaces skip outside CI and fail
//! in CI.

mod common;

mod bench_smoke;
mod binhost;
mod cli;
mod cli_config_example;
mod config_examples;
mod dashboard;
mod demo;
mod drone_identity;
mod drone_local;
mod drone_multihost;
mod environments;
mod failure_policy;
mod gateway;
mod live_logs;
mod notifications;

mod orchestrator_api;
mod orchestrator_process;
mod portage;
mod portage_environments;
mod portage_releases;
mod portage_signing;
mod priority;
mod prometheus;
mod releases;
mod signing;
mod tls;
