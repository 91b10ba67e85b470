//! `swarm-orchestrator --config FILE`: hosts the actor system and serves the HTTP API.

use build_swarm::config::{DaemonConfig, OrchestratorConfig, EXIT_BAD_CONFIG};
use build_swarm::orchestrator::{Orchestrator, StartError};
use build_swarm::sys::logging;
use clap::Parser;
use std::path::PathBuf;

/// jemalloc, not glibc's malloc: less CPU per request and less memory held under load
/// (BENCHMARKS.md §2 and §3 measured both).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "swarm-orchestrator",
    version,
    about = "build-swarm orchestrator: package queue, drone sessions, HTTP API"
)]
struct Args {
    /// TOML configuration file (every key has a default except the tokens).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

#[actix_web::main]
async fn main() {
    let args = Args::parse();
    let cfg = match OrchestratorConfig::load_or_defaults(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("swarm-orchestrator: {e}");
            std::process::exit(EXIT_BAD_CONFIG);
        }
    };
    if args.check {
        println!("configuration is valid");
        return;
    }
    let log = match logging::root_logger(
        &cfg.log.level,
        cfg.log.file.as_deref(),
        "swarm-orchestrator",
    ) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("swarm-orchestrator: cannot open log file: {e}");
            std::process::exit(EXIT_BAD_CONFIG);
        }
    };
    let orch = match Orchestrator::start(cfg, log.clone(), true).await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("swarm-orchestrator: {e}");
            let code = if matches!(e, StartError::Config(_)) {
                EXIT_BAD_CONFIG
            } else {
                1
            };
            std::process::exit(code);
        }
    };
    if let Err(e) = orch.server.await {
        eprintln!("swarm-orchestrator: server error: {e}");
        std::process::exit(1);
    }
    slog::info!(log, "orchestrator stopped");
}
