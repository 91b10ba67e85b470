//! `swarm-gateway --config FILE`: knows every orchestrator and sends drones where the work is.

use build_swarm::config::{DaemonConfig, GatewayConfig, EXIT_BAD_CONFIG};
use build_swarm::gateway::{Gateway, GatewayStartError};
use build_swarm::sys::logging;
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "swarm-gateway",
    version,
    about = "build-swarm gateway: sends each drone to the orchestrator with the most work"
)]
struct Args {
    /// TOML configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

#[actix_web::main]
async fn main() {
    let args = Args::parse();
    let cfg = match GatewayConfig::load_or_defaults(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("swarm-gateway: {e}");
            std::process::exit(EXIT_BAD_CONFIG);
        }
    };
    if args.check {
        println!("configuration is valid");
        return;
    }
    let log = match logging::root_logger(&cfg.log.level, cfg.log.file.as_deref(), "swarm-gateway") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("swarm-gateway: cannot open log file: {e}");
            std::process::exit(EXIT_BAD_CONFIG);
        }
    };
    let gateway = match Gateway::start(cfg, log.clone(), true).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("swarm-gateway: {e}");
            let code = if matches!(e, GatewayStartError::Config(_)) {
                EXIT_BAD_CONFIG
            } else {
                1
            };
            std::process::exit(code);
        }
    };
    if let Err(e) = gateway.server.await {
        eprintln!("swarm-gateway: server error: {e}");
        std::process::exit(1);
    }
    slog::info!(log, "gateway stopped");
}
