//! `swarm-orchestrator --config FILE`: hosts the actor system and serves the HTTP API.

use build_swarm::config::{configure_daemon, DaemonArgs, OrchestratorConfig, EXIT_BAD_CONFIG};
use build_swarm::orchestrator::{Orchestrator, StartError};
use clap::Parser;

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
    #[command(flatten)]
    daemon: DaemonArgs,
}

#[actix_web::main]
async fn main() {
    let args = Args::parse();
    let Some((cfg, log)) =
        configure_daemon::<OrchestratorConfig>("swarm-orchestrator", &args.daemon)
    else {
        return;
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
    let served = orch.server.await;
    // Build times learned since the last periodic save.
    if let Err(e) = orch
        .queue
        .send(build_swarm::actors::orchestrator::queue::SaveLearned)
        .await
    {
        slog::warn!(log, "learned build times not saved"; "error" => e.to_string());
    }
    if let Err(e) = served {
        eprintln!("swarm-orchestrator: server error: {e}");
        std::process::exit(1);
    }
    slog::info!(log, "orchestrator stopped");
}
