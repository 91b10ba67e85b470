//! `swarm-drone --config FILE`: the build agent on a build host.

use build_swarm::config::{DroneConfig, EXIT_BAD_CONFIG};
use build_swarm::drone::startup::{Drone, DroneStartError};
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

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("swarm-drone: {e}");
    std::process::exit(EXIT_BAD_CONFIG);
}

#[actix_web::main]
async fn main() {
    let args = Args::parse();
    let cfg = DroneConfig::load(&args.config).unwrap_or_else(|e| fail(e));
    if args.check {
        println!("configuration is valid");
        return;
    }
    let tap = LogTap::default();
    let log = logging::tapped_logger(
        &cfg.log.level,
        cfg.log.file.as_deref(),
        "swarm-drone",
        tap.clone(),
    )
    .unwrap_or_else(|e| fail(format_args!("cannot open log file: {e}")));
    let drone = Drone::start(cfg, tap, log).unwrap_or_else(|e: DroneStartError| fail(e));
    // Run until SIGTERM or SIGINT.
    build_swarm::sys::process::stop_signal().await;
    drone.stop().await;
}
