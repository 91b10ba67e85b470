//! `build-swarm`, the operator CLI (SPEC §6).
//!
//! - [`config`] — where the swarm and the token are found (flags, env, files, defaults).
//! - [`matching`] — which drone a partial name means (pure functions).
//! - [`output`], [`view`] — tables, colour, human units; lenient views of the answers.
//! - [`error`] — one sentence per error and the exit codes.

pub mod config;
pub mod error;
pub mod matching;
pub mod output;
pub mod view;
