//! The example configs in `config/` are what operators copy: they must load as they are.

use build_swarm::config::{load_file, OrchestratorConfig};
use std::path::Path;

#[test]
fn orchestrator_example_loads_and_validates() {
    let cfg: OrchestratorConfig = load_file(Path::new("config/orchestrator.toml")).expect("parses");
    cfg.validate().expect("valid");
    assert!(
        !cfg.auth.shared_drone_token,
        "the example uses per-drone credentials"
    );
    assert_eq!(cfg.breaker.max_failures, 5);
    assert_eq!(cfg.breaker.cooloff_s, 120);
    assert!(
        cfg.heal.enabled(),
        "the example turns the healing ladder on"
    );
}

/// The commented `[[notify]]` examples are valid once uncommented.
#[test]
fn the_orchestrator_examples_notify_entries_are_valid_when_uncommented() {
    let text = std::fs::read_to_string("config/orchestrator.toml").expect("read");
    let start = text.find("# [[notify]]").expect("a [[notify]] example");
    let uncommented: String = text[start..]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
        .collect::<Vec<_>>()
        .join("\n");
    let mut full = text[..start].to_string();
    full.push_str(&uncommented);
    let cfg: OrchestratorConfig =
        build_swarm::config::parse_toml(&full, Path::new("uncommented.toml")).expect("parses");
    cfg.validate().expect("valid");
    assert_eq!(cfg.notify.len(), 2);
    assert!(cfg.notify[0].is_https() && cfg.notify[0].ca_file.is_some());
    assert_eq!(cfg.notify[1].command[0], "logger");
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

#[test]
fn drone_example_loads_and_validates() {
    let cfg: build_swarm::config::DroneConfig =
        load_file(Path::new("config/drone.toml")).expect("parses");
    cfg.validate().expect("valid");
    assert_eq!(cfg.upload.stall_timeout_s, 300);
    assert_eq!(cfg.upload.total_timeout_s, 600);
    assert!(!cfg
        .upload
        .rsync_options
        .iter()
        .any(|o| o.contains("contimeout")));
}

/// The service files start the programs with the example configs' paths and check them
/// first.
#[test]
fn service_files_check_the_config_before_starting() {
    for prog in ["orchestrator", "gateway", "drone"] {
        let unit = std::fs::read_to_string(format!("config/systemd/swarm-{prog}.service")).unwrap();
        assert!(
            unit.contains(&format!(
                "swarm-{prog} --config /etc/build-swarm/{prog}.toml --check"
            )),
            "{prog}"
        );
        let rc = std::fs::read_to_string(format!("config/openrc/swarm-{prog}")).unwrap();
        assert!(rc.contains("supervisor=supervise-daemon"), "{prog}");
        assert!(
            rc.contains(&format!("/etc/build-swarm/{prog}.toml")),
            "{prog}"
        );
    }
}
