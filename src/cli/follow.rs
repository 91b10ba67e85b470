//! `build-swarm log -f ATOM`: a package's build output as it builds, from the drone
//! through the orchestrator (docs/contract.md §6). Long-polls
//! `GET /api/v1/packages/{category}/{pf}/log/live`, prints each line once, in order, and
//! ends when the attempt ends, with its outcome (exit 1 unless it was built).

use super::error::CliError;
use super::output::{state_color, Color, Style};
use super::packages::locate;
use super::swarm::{path_segment, Swarm};
use crate::domain::PackageState;
use crate::wire::orchestrator::LiveLog;
use serde_json::Value;
use std::io::Write;

/// Seconds the orchestrator is asked to wait for new lines (below the client's timeout).
const WAIT_S: u64 = 20;

pub async fn follow(swarm: &Swarm, atom: &str, json: bool) -> Result<(), CliError> {
    let (orch, atom) = locate(swarm, atom).await?;
    let (cat, pf) = atom.split_once('/').unwrap_or(("", &atom));
    let base = format!(
        "/api/v1/packages/{}/{}/log/live?wait={WAIT_S}",
        path_segment(cat),
        path_segment(pf)
    );
    let style = Style::stdout();
    let mut after: Option<u64> = None;
    let mut lease = None;
    let mut said = "";
    loop {
        let path = match after {
            Some(a) => format!("{base}&after={a}"),
            None => base.clone(),
        };
        let (raw, live): (Value, LiveLog) = swarm.get(&orch.client, &path).await?;
        if live.lease.is_some() && lease.is_some() && live.lease != lease {
            // Another attempt: its lines are numbered anew.
            lease = live.lease;
            after = Some(0);
            println!(
                "{}",
                style.paint(
                    &format!(
                        "--- another attempt, on {}",
                        live.drone.as_deref().unwrap_or("?")
                    ),
                    Some(Color::Bold)
                )
            );
            continue;
        }
        lease = lease.or(live.lease);
        if json {
            println!("{raw}");
        } else {
            let mut out = std::io::stdout().lock();
            if live.gap {
                let _ = writeln!(
                    out,
                    "{}",
                    style.paint("[… earlier output not kept]", Some(Color::Yellow))
                );
            }
            for l in &live.lines {
                let _ = writeln!(out, "{l}");
            }
            let _ = out.flush();
        }
        after = Some(live.next);
        let finished = matches!(
            live.state,
            PackageState::Built | PackageState::Failed | PackageState::Blocked
        );
        match live.phase.as_str() {
            "ended" => return outcome(&live, &style, json),
            "none" if finished => return outcome(&live, &style, json),
            "none" if said != "none" && !json => {
                said = "none";
                eprintln!(
                    "build-swarm: {} is {}; waiting for a drone to start it",
                    live.atom, live.state
                );
            }
            "uploading" if said != "uploading" && !json => {
                said = "uploading";
                eprintln!("build-swarm: {} built; uploading", live.atom);
            }
            _ => {}
        }
    }
}

/// The attempt is over: how it went (an error unless the package is built).
fn outcome(live: &LiveLog, style: &Style, json: bool) -> Result<(), CliError> {
    let state = live.state.as_str();
    let mut line = format!(
        "=== {} {}",
        live.atom,
        style.paint(state, state_color(state))
    );
    if let Some(r) = live
        .reason
        .as_deref()
        .filter(|_| live.state != PackageState::Built)
    {
        line.push_str(&format!(": {r}"));
    }
    if !json {
        println!("{}", style.paint(&line, Some(Color::Bold)));
    }
    match live.state {
        PackageState::Built => Ok(()),
        PackageState::Failed | PackageState::Blocked => Err(CliError::Failed(format!(
            "{} {}: {}",
            live.atom,
            state,
            live.reason.as_deref().unwrap_or("no reason given")
        ))),
        _ => Err(CliError::Failed(format!(
            "{}: the attempt ended without a package ({}); it is {state} again",
            live.atom,
            live.reason.as_deref().unwrap_or("no reason given")
        ))),
    }
}
