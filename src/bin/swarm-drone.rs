//! `swarm-drone --config FILE`: the build agent on a build host.

use build_swarm::actors::drone::agent::{DroneAgent, GetStatus, Shutdown};
use build_swarm::config::{DroneConfig, EXIT_BAD_CONFIG};
use build_swarm::sys::logging::{self, LogTap};
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "swarm-drone",
    version,
    about = "build-swarm drone: claims work, builds, uploads the one artifact, reports"
)]
struct Args {
    /// TOML configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

#[actix_web::main]
async fn main() {
    let args = Args::parse();
    let cfg = match DroneConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("swarm-drone: {e}");
            std::process::exit(EXIT_BAD_CONFIG);
        }
    };
    if args.check {
        println!("configuration is valid");
        return;
    }
    let token = match cfg.token() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("swarm-drone: {e}");
            std::process::exit(EXIT_BAD_CONFIG);
        }
    };
    let tap = LogTap::default();
    let log = match logging::tapped_logger(
        &cfg.log.level,
        cfg.log.file.as_deref(),
        "swarm-drone",
        tap.clone(),
    ) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("swarm-drone: cannot open log file: {e}");
            std::process::exit(EXIT_BAD_CONFIG);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&cfg.state_dir) {
        eprintln!(
            "swarm-drone: cannot create state_dir {}: {e}",
            cfg.state_dir.display()
        );
        std::process::exit(EXIT_BAD_CONFIG);
    }
    slog::info!(log, "drone starting"; "name" => &cfg.name, "slots" => cfg.slots,
                "pkgdir" => cfg.pkgdir.display().to_string());
    let agent = DroneAgent::start(cfg, token, tap, log.clone());
    // Run until SIGTERM or SIGINT; then cancel everything (killing every build's and
    // upload's process group) and wait a moment for that before exiting.
    build_swarm::sys::process::stop_signal().await;
    let _ = agent.send(Shutdown).await;
    // Wait (a bounded time) for the builds and uploads to be killed and for their
    // cancellations to reach the orchestrator, so a stop costs no package and no drone a
    // failure. What is still unsent stays in state_dir/pending for the next start.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        match agent.send(GetStatus).await {
            Ok(s) if s.busy > 0 || s.pending_reports > 0 => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            _ => break,
        }
    }
    slog::info!(log, "drone stopped");
}
