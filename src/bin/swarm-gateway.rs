//! `swarm-gateway --config FILE`: knows every orchestrator and sends drones where the work is.

use build_swarm::config::{configure_daemon, DaemonArgs, GatewayConfig, EXIT_BAD_CONFIG};
use build_swarm::gateway::{Gateway, GatewayStartError};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "swarm-gateway",
    version,
    about = "build-swarm gateway: sends each drone to the orchestrator with the most work"
)]
struct Args {
    #[command(flatten)]
    daemon: DaemonArgs,
}

#[actix_web::main]
async fn main() {
    let args = Args::parse();
    let Some((cfg, log)) = configure_daemon::<GatewayConfig>("swarm-gateway", &args.daemon) else {
        return;
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
