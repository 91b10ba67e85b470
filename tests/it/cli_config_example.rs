//! `config/cli.toml`, the CLI's example config, is what operators copy: it must load as it
//! is (same idea as `config_examples.rs`).

use build_swarm::cli::config::{CliConfig, DEFAULT_RESTART_COMMAND};
use std::path::Path;

#[test]
fn cli_example_loads_and_validates() {
    let cfg = CliConfig::load(Path::new("config/cli.toml")).expect("parses and validates");
    assert_eq!(cfg.gateway.as_deref(), Some("http://gateway.example:8090"));
    assert_eq!(
        cfg.orchestrator.as_deref(),
        Some("http://orch.example:8080")
    );
    assert!(cfg.token.is_some());
    assert_eq!(cfg.ssh_user.as_deref(), Some("root"));
    // The commented restart_command is the drone's default, which applies when unset.
    assert_eq!(cfg.restart_command, None);
    let text = std::fs::read_to_string("config/cli.toml").expect("read");
    // Debug of a string array is TOML's array syntax.
    let shown = format!("{DEFAULT_RESTART_COMMAND:?}");
    assert!(
        text.contains(&format!("# restart_command = {shown}")),
        "the example shows the default"
    );
}
