//! `<drone> ssh [cmd…]` and `<drone> restart`: reaching the drone's host. The remote
//! command is quoted argument by argument ([`crate::sys::ssh`]). The host is the operator's when there is one (`[hosts]` in
//! the CLI config, then the host the drone was enrolled for) over the one the drone
//! announced; one that could pass for an ssh option is refused.
//!
//! A restart goes through the API first (the drone gets it with its next heartbeat); if
//! the drone does not pick it up within `--wait` seconds, or is offline, the CLI runs the
//! drone's `restart_command` over ssh. `--via-ssh` goes straight to ssh. The argv is
//! built by [`crate::sys::ssh`] (shared with the orchestrator's self-healing ladder).

use super::config::Settings;
use super::error::CliError;
use super::output;
use super::swarm::{path_segment, Orch, Swarm};
use super::view::DroneView;
use crate::wire::orchestrator::ControlAction;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// How often a restart is checked on.
const POLL: Duration = Duration::from_millis(500);

/// Where a drone's host came from, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostSource {
    /// The CLI config's `[hosts]`.
    Configured,
    /// `build-swarm drone enroll NAME --host HOST`.
    Enrolled,
    /// What the drone announced when it registered.
    Announced,
}

impl HostSource {
    fn as_str(self) -> &'static str {
        match self {
            HostSource::Configured => "configured in [hosts]",
            HostSource::Enrolled => "enrolled",
            HostSource::Announced => "announced by the drone",
        }
    }
}

/// The host ssh goes to: the operator's (`[hosts]`, then the enrolled one) over the one a
/// drone announced, since any holder of a drone credential can announce anything.
pub fn ssh_host<'a>(settings: &'a Settings, drone: &'a DroneView) -> (&'a str, HostSource) {
    if let Some(h) = settings.hosts.get(&drone.name) {
        return (h, HostSource::Configured);
    }
    if let Some(h) = drone.enrolled_host.as_deref().filter(|h| !h.is_empty()) {
        return (h, HostSource::Enrolled);
    }
    (&drone.host, HostSource::Announced)
}

/// [`ssh_host`], saying on standard error which one it took, and the others, when they
/// differ.
fn chosen_host<'a>(settings: &'a Settings, drone: &'a DroneView) -> &'a str {
    let (host, source) = ssh_host(settings, drone);
    let mut others = Vec::new();
    if let Some(h) = drone.enrolled_host.as_deref() {
        if source == HostSource::Configured && !h.is_empty() && h != host {
            others.push(format!("is enrolled for {h}"));
        }
    }
    if source != HostSource::Announced && !drone.host.is_empty() && drone.host != host {
        others.push(format!("announces host {}", drone.host));
    }
    if !others.is_empty() {
        eprintln!(
            "build-swarm: {} {}; using {host} ({})",
            drone.name,
            others.join(", "),
            source.as_str()
        );
    }
    host
}

/// Replaces this process with ssh (interactive shell or one command).
pub fn ssh(settings: &Settings, drone: &DroneView, cmd: &[String]) -> Result<(), CliError> {
    let argv = crate::sys::ssh::argv(
        &settings.ssh_command,
        settings.ssh_user.as_deref(),
        chosen_host(settings, drone),
        cmd,
    )?;
    let err = Command::new(&argv[0]).args(&argv[1..]).exec();
    Err(CliError::io(format!("cannot run {}", argv[0]), err))
}

fn restart_over_ssh(settings: &Settings, drone: &DroneView) -> Result<(), CliError> {
    // The drone's own restart_command (it knows its init system) wins over the CLI's.
    let command = if drone.restart_command.is_empty() {
        &settings.restart_command
    } else {
        &drone.restart_command
    };
    let argv = crate::sys::ssh::argv(
        &settings.ssh_command,
        settings.ssh_user.as_deref(),
        chosen_host(settings, drone),
        command,
    )?;
    eprintln!("build-swarm: running {}", argv.join(" "));
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .status()
        .map_err(|e| CliError::io(format!("cannot run {}", argv[0]), e))?;
    if !status.success() {
        return Err(CliError::Failed(format!(
            "restarting {} over ssh failed: `{}` {status}",
            drone.name,
            argv.join(" ")
        )));
    }
    println!("{} restarted over ssh", drone.name);
    Ok(())
}

fn seen(d: &DroneView) -> String {
    d.last_seen
        .map(|t| format!("last seen {}", output::age(t, output::now_unix())))
        .unwrap_or_else(|| "never seen".into())
}

pub async fn restart(
    swarm: &Swarm,
    settings: &Settings,
    orch: &Orch,
    drone: &DroneView,
    via_ssh: bool,
    wait: u64,
) -> Result<(), CliError> {
    if via_ssh {
        return restart_over_ssh(settings, drone);
    }
    let path = format!("/api/v1/drones/{}", path_segment(&drone.name));
    let (_, before): (_, DroneView) = swarm.get(&orch.client, &path).await?;
    orch.client
        .control(&path_segment(&drone.name), ControlAction::Restart)
        .await
        .map_err(|e| swarm.err(e))?;
    if before.state == "offline" {
        eprintln!(
            "build-swarm: {} is offline ({}); restarting it over ssh",
            drone.name,
            seen(&before)
        );
        return restart_over_ssh(settings, drone);
    }
    eprintln!(
        "build-swarm: asked {} to restart; waiting up to {wait}s for its next heartbeat",
        drone.name
    );
    let deadline = Instant::now() + Duration::from_secs(wait);
    let mut now = before.clone();
    while Instant::now() < deadline {
        actix_web::rt::time::sleep(POLL).await;
        now = swarm.get::<DroneView>(&orch.client, &path).await?.1;
        // Every heartbeat takes all pending commands: a heartbeat after the request
        // carried the restart.
        if now.last_seen > before.last_seen {
            println!(
                "{} picked up the restart with its heartbeat ({})",
                drone.name,
                seen(&now)
            );
            return Ok(());
        }
    }
    eprintln!(
        "build-swarm: {} did not pick up the restart within {wait}s (state {}, {}); restarting it over ssh",
        drone.name,
        now.state,
        seen(&now)
    );
    restart_over_ssh(settings, drone)
}
