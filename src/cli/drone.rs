//! `build-swarm <drone> …`: find the drone the operator means, then show its status,
//! queue, logs or address, or pause/resume/unground it. Restart and ssh are in
//! [`super::remote`].

use super::args::{command_names, DroneArgs, DroneCommand};
use super::config::Settings;
use super::error::CliError;
use super::matching::{closest, match_drone, Candidate, MatchError};
use super::output::{self, colored, fields, print_json, state_color, Style, Table};
use super::overview::drone_state;
use super::remote;
use super::swarm::{path_segment, Orch, Swarm};
use super::view::{DroneView, QueueView};
use super::Verbose;
use crate::wire::orchestrator::{ControlAction, DroneLogs};
use serde_json::{json, Value};
use std::net::{IpAddr, ToSocketAddrs};
use std::time::Duration;

/// Lines asked for on each poll of `logs -f`.
const FOLLOW_WINDOW: usize = 500;

/// The drone `query` means and the orchestrator that has it.
pub async fn resolve(
    swarm: &Swarm,
    query: &str,
    verbose: Verbose,
) -> Result<(DroneView, Orch), CliError> {
    let (_, drones) = swarm.drones().await?;
    let cands: Vec<Candidate<'_>> = drones
        .iter()
        .map(|d| Candidate {
            name: &d.name,
            aliases: &d.aliases,
            host: &d.host,
        })
        .collect();
    let i = match match_drone(query, &cands) {
        Ok(i) => i,
        Err(MatchError::NoMatch {
            query,
            known,
            suggestion: None,
        }) => {
            // A mistyped command reads as a drone name: say so.
            let names = command_names();
            let suggestion = closest(&query, names.iter().map(String::as_str))
                .map(|c| format!("the command `{c}`"));
            return Err(MatchError::NoMatch {
                query,
                known,
                suggestion,
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    let drone = drones[i].clone();
    if drone.name != query {
        verbose.note(format!("`{query}` is drone {}", drone.name));
    }
    let orch = swarm.orchestrator_of(&drone).await?.clone();
    if swarm.via_gateway() {
        verbose.note(format!(
            "{} is on orchestrator {} ({})",
            drone.name, orch.name, orch.url
        ));
    }
    Ok((drone, orch))
}

pub async fn run(
    swarm: &Swarm,
    settings: &Settings,
    args: DroneArgs,
    json: bool,
    verbose: Verbose,
) -> Result<(), CliError> {
    let (drone, orch) = resolve(swarm, &args.name, verbose).await?;
    let name = path_segment(&drone.name);
    match args.action.unwrap_or(DroneCommand::Status) {
        DroneCommand::Status => {
            let (raw, d): (Value, DroneView) = swarm
                .get(&orch.client, &format!("/api/v1/drones/{name}"))
                .await?;
            if json {
                print_json(&raw);
            } else {
                print!("{}", render_drone(&d, swarm.via_gateway().then_some(&orch)));
            }
            Ok(())
        }
        DroneCommand::Queue => {
            let (raw, q): (Value, QueueView) = swarm
                .get(&orch.client, &format!("/api/v1/drones/{name}/queue"))
                .await?;
            if json {
                print_json(&raw);
            } else {
                print!("{}", render_queue(&q));
            }
            Ok(())
        }
        DroneCommand::Logs {
            lines,
            follow,
            interval,
        } => logs(swarm, &orch, &drone.name, lines, follow, interval, json).await,
        DroneCommand::Ip => {
            let ip = address(&drone.host).ok_or_else(|| {
                CliError::Invalid(format!("drone {} has no host address", drone.name))
            })?;
            if json {
                print_json(&json!({"drone": drone.name, "host": drone.host, "ip": ip}));
            } else {
                println!("{ip}");
            }
            Ok(())
        }
        DroneCommand::Pause => control(swarm, &orch, &drone, ControlAction::Pause).await,
        DroneCommand::Resume => control(swarm, &orch, &drone, ControlAction::Resume).await,
        DroneCommand::Unground => control(swarm, &orch, &drone, ControlAction::Unground).await,
        DroneCommand::Sync => control(swarm, &orch, &drone, ControlAction::Sync).await,
        DroneCommand::Restart { via_ssh, wait } => {
            remote::restart(swarm, settings, &orch, &drone, via_ssh, wait).await
        }
        DroneCommand::Ssh { command } => remote::ssh(settings, &drone, &command),
    }
}

async fn control(
    swarm: &Swarm,
    orch: &Orch,
    drone: &DroneView,
    action: ControlAction,
) -> Result<(), CliError> {
    orch.client
        .control(&path_segment(&drone.name), action)
        .await
        .map_err(|e| swarm.err(e))?;
    let what = match action {
        ControlAction::Pause => "paused: it gets no new work and finishes what it has",
        ControlAction::Resume => "resumed: it gets work again",
        ControlAction::Unground => "ungrounded: it may claim work now",
        ControlAction::Sync => "told to sync its repositories (with its next heartbeat); its environment is checked again after",
        ControlAction::Restart => "asked to restart at its next heartbeat",
    };
    println!("{} {what}", drone.name);
    Ok(())
}

pub fn render_drone(d: &DroneView, orch: Option<&Orch>) -> String {
    let now = output::now_unix();
    let style = Style::stdout();
    let mut f = vec![
        ("name", d.name.clone()),
        (
            "aliases",
            if d.aliases.is_empty() {
                "-".into()
            } else {
                d.aliases.join(", ")
            },
        ),
        ("host", host_line(d)),
        (
            "state",
            style.paint(&drone_state(d, now), state_color(&d.state)),
        ),
        ("slots", format!("{} busy of {}", d.current.len(), d.slots)),
        (
            "building",
            if d.current.is_empty() {
                "-".into()
            } else {
                d.current.join(", ")
            },
        ),
        ("failures", d.failures.to_string()),
        (
            "last seen",
            d.last_seen
                .map(|t| output::age(t, now))
                .unwrap_or_else(|| "never".into()),
        ),
    ];
    if let Some(r) = &d.grounded_reason {
        f.push(("grounded for", r.clone()));
    }
    if let Some(h) = &d.healing {
        f.push(("healing", h.describe(now)));
        if let Some(r) = &h.last_result {
            f.push(("last restart", r.clone()));
        }
    }
    if let Some(m) = &d.mismatch {
        f.push((
            "environment",
            style.paint(m, Some(super::output::Color::Yellow)),
        ));
    }
    if !d.capabilities.is_empty() {
        f.push(("capabilities", d.capabilities.join(", ")));
    }
    if let Some(r) = &d.resources {
        f.push((
            "resources",
            format!(
                "{} cores, {} MB memory, {} MB free in PKGDIR, {} MB in PORTAGE_TMPDIR",
                r.cores, r.memory_mb, r.pkgdir_free_mb, r.tmpdir_free_mb
            ),
        ));
    }
    if d.speed_factor > 0.0 && (d.speed_factor - 1.0).abs() > 0.005 {
        f.push((
            "speed",
            format!(
                "{:.2} × the swarm's build times ({})",
                d.speed_factor,
                if d.speed_factor < 1.0 {
                    "faster"
                } else {
                    "slower"
                }
            ),
        ));
    }
    if !d.version.is_empty() {
        f.push(("version", d.version.clone()));
    }
    if let Some(c) = &d.credential {
        let what = match c.as_str() {
            "own" => "its own token (enrolled)",
            "shared" => "the shared drone token",
            "admin" => "the admin token",
            other => other,
        };
        f.push(("credential", what.to_string()));
    } else if d.enrolled {
        f.push((
            "credential",
            "enrolled; not registered since the restart".into(),
        ));
    }
    if let Some(o) = orch {
        f.push(("orchestrator", format!("{} ({})", o.name, o.url)));
    }
    fields(&f, style)
}

/// The announced host, with the enrolled one and the one before when they differ.
fn host_line(d: &DroneView) -> String {
    let mut line = d.host.clone();
    let mut notes = Vec::new();
    if let Some(h) = d.enrolled_host.as_deref().filter(|h| *h != d.host) {
        notes.push(format!("enrolled for {h}"));
    }
    if let Some(h) = d.previous_host.as_deref().filter(|h| *h != d.host) {
        notes.push(format!("was {h}"));
    }
    if !notes.is_empty() {
        line.push_str(&format!(" ({})", notes.join("; ")));
    }
    line
}

pub fn render_queue(q: &QueueView) -> String {
    let mut out = String::new();
    if q.current.is_empty() {
        out.push_str("building nothing\n");
    } else {
        let mut t = Table::new(&["LEASE", "ATOM", "STATE", "FOR"]);
        for l in &q.current {
            t.row(vec![
                l.lease.to_string().into(),
                l.atom.clone().into(),
                colored(l.state.clone(), state_color(&l.state)),
                output::duration(l.age_s).into(),
            ]);
        }
        out.push_str(&t.render(Style::stdout()));
    }
    if q.next.is_empty() {
        out.push_str("next: nothing ready for it\n");
    } else {
        out.push_str(&format!("next: {}\n", q.next.join(", ")));
    }
    out
}

async fn fetch_logs(
    swarm: &Swarm,
    orch: &Orch,
    name: &str,
    n: usize,
) -> Result<(Value, DroneLogs), CliError> {
    swarm
        .get(
            &orch.client,
            &format!("/api/v1/drones/{}/logs?n={n}", path_segment(name)),
        )
        .await
}

async fn logs(
    swarm: &Swarm,
    orch: &Orch,
    name: &str,
    n: usize,
    follow: bool,
    interval: u64,
    json: bool,
) -> Result<(), CliError> {
    if !follow {
        let (raw, logs) = fetch_logs(swarm, orch, name, n).await?;
        if json {
            print_json(&raw);
        } else {
            for line in &logs.lines {
                println!("{line}");
            }
        }
        return Ok(());
    }
    let emit = |lines: &[String]| {
        if json {
            if !lines.is_empty() {
                println!("{}", json!({"drone": name, "lines": lines}));
            }
        } else {
            for line in lines {
                println!("{line}");
            }
        }
    };
    let (_, first) = fetch_logs(swarm, orch, name, n.max(FOLLOW_WINDOW)).await?;
    let mut prev = first.lines;
    emit(&prev[prev.len().saturating_sub(n)..]);
    loop {
        actix_web::rt::time::sleep(Duration::from_secs(interval)).await;
        let (_, cur) = fetch_logs(swarm, orch, name, FOLLOW_WINDOW).await?;
        emit(new_lines(&prev, &cur.lines));
        prev = cur.lines;
    }
}

/// The lines of `cur` that were not in `prev`, both being the tail of the same log: the
/// longest suffix of `prev` that starts `cur` is what they share.
pub fn new_lines<'a>(prev: &[String], cur: &'a [String]) -> &'a [String] {
    for skip in 0..=prev.len() {
        let overlap = &prev[skip..];
        if overlap.len() <= cur.len() && cur[..overlap.len()] == *overlap {
            return &cur[overlap.len()..];
        }
    }
    cur
}

/// The drone's address: `host` as an IP (resolved if it is a name; IPv4 preferred), or
/// `host` as it is when it does not resolve. `None` when the drone has no host.
pub fn address(host: &str) -> Option<String> {
    let host = host.trim();
    if host.is_empty() {
        return None;
    }
    if let Ok(ip) = host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
    {
        return Some(ip.to_string());
    }
    let addrs: Vec<IpAddr> = match (host, 22).to_socket_addrs() {
        Ok(a) => a.map(|s| s.ip()).collect(),
        Err(_) => Vec::new(),
    };
    let best = addrs
        .iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| addrs.first());
    Some(best.map_or_else(|| host.to_string(), IpAddr::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn following_prints_only_what_is_new() {
        assert_eq!(new_lines(&v(&["a", "b"]), &v(&["a", "b", "c"])), v(&["c"]));
        assert_eq!(
            new_lines(&v(&["a", "b", "c"]), &v(&["b", "c", "d"])),
            v(&["d"])
        );
        assert_eq!(new_lines(&v(&["a", "b"]), &v(&["a", "b"])), v(&[]));
        assert_eq!(new_lines(&v(&[]), &v(&["x"])), v(&["x"]));
        assert_eq!(new_lines(&v(&["a"]), &v(&["x", "y"])), v(&["x", "y"]));
        assert_eq!(new_lines(&v(&["t", "t"]), &v(&["t", "t", "t"])), v(&["t"]));
    }

    #[test]
    fn addresses() {
        assert_eq!(address("100.64.0.18").as_deref(), Some("100.64.0.18"));
        assert_eq!(address("::1").as_deref(), Some("::1"));
        assert_eq!(address("localhost").as_deref(), Some("127.0.0.1"));
        assert_eq!(address(" ").as_deref(), None);
    }
}
