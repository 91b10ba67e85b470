//! The example configs in `config/` are what operators copy: they must load as they are.

use build_swarm::config::{load_file, OrchestratorConfig};
use std::path::Path;

#[test]
fn orchestrator_example_loads_and_validates() {
    let cfg: OrchestratorConfig = load_file(Path::new("config/orchestrator.toml")).expect("parses");
    cfg.validate().expect("valid");
    assert_eq!(cfg.breaker.max_failures, 5);
    assert_eq!(cfg.breaker.cooloff_s, 120);
}

#[test]
fn gateway_example_loads_and_validates() {
    let cfg: build_swarm::config::GatewayConfig =
        load_file(Path::new("config/gateway.toml")).expect("parses");
    cfg.validate().expect("valid");
    assert_eq!(cfg.listen, "0.0.0.0:8090");
    assert_eq!(cfg.orchestrators.len(), 2);
    assert!(cfg.registrations_possible());
    assert!(cfg.poll_timeout() < cfg.poll_interval());
}
