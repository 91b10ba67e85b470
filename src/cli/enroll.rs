//! `build-swarm drone enroll|revoke|enrollments`: drones' own credentials (admin token).
//!
//! A drone may be sent to any orchestrator of a swarm (the gateway picks), so without
//! `--to` a drone is enrolled on every orchestrator the CLI knows, with one token the CLI
//! makes, and revoked on every one.

use super::error::CliError;
use super::output::{self, print_json, Style, Table};
use super::swarm::{path_segment, Orch, Swarm};
use crate::wire::orchestrator::Enrollment;
use serde_json::json;

/// The orchestrators `--to` names: one, or all of them.
fn targets<'a>(swarm: &'a Swarm, to: Option<&str>) -> Result<Vec<&'a Orch>, CliError> {
    match to {
        Some(_) => Ok(vec![swarm.one(to)?]),
        None => Ok(swarm.all()?.iter().collect()),
    }
}

pub async fn enroll(
    swarm: &Swarm,
    name: &str,
    host: Option<&str>,
    to: Option<&str>,
    json: bool,
) -> Result<(), CliError> {
    let orchs = targets(swarm, to)?;
    // One orchestrator makes the token itself; several get the same one from here.
    let token = if orchs.len() > 1 {
        Some(
            crate::orchestrator::credentials::new_token()
                .map_err(|e| CliError::io("cannot read the random generator", e))?,
        )
    } else {
        None
    };
    let mut done: Vec<(&Orch, Enrollment)> = Vec::new();
    for orch in &orchs {
        match orch
            .client
            .enroll(&path_segment(name), host, token.as_deref())
            .await
        {
            Ok(e) => done.push((orch, e)),
            Err(e) => {
                let enrolled: Vec<&str> = done.iter().map(|(o, _)| o.name.as_str()).collect();
                let note = if enrolled.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (enrolled on {} already; run the command again, it replaces the token everywhere)",
                        enrolled.join(", ")
                    )
                };
                return Err(match swarm.err(e) {
                    CliError::Refused(m) => CliError::Refused(format!("{}: {m}{note}", orch.name)),
                    other if note.is_empty() => other,
                    other => CliError::Failed(format!("{other}{note}")),
                });
            }
        }
    }
    let Some((_, first)) = done.first() else {
        return Err(CliError::Invalid("no orchestrator to enroll with".into()));
    };
    if json {
        print_json(first);
        return Ok(());
    }
    let names: Vec<&str> = done.iter().map(|(o, _)| o.name.as_str()).collect();
    if done.iter().any(|(_, e)| e.replaced) {
        eprintln!(
            "build-swarm: {} had a token; it no longer works (restart the drone with the new one)",
            first.name
        );
    }
    eprintln!(
        "build-swarm: enrolled {} with {}{}; the token is shown only now — put it in the \
         drone's config (`token = \"…\"` in drone.toml) and restart the drone:",
        first.name,
        names.join(", "),
        first
            .host
            .as_deref()
            .map(|h| format!(" (host {h})"))
            .unwrap_or_default()
    );
    println!("{}", first.token);
    Ok(())
}

pub async fn revoke(
    swarm: &Swarm,
    name: &str,
    forget: bool,
    to: Option<&str>,
    json: bool,
) -> Result<(), CliError> {
    let orchs = targets(swarm, to)?;
    let mut revoked = Vec::new();
    let mut not_enrolled = Vec::new();
    for orch in &orchs {
        match orch.client.revoke(&path_segment(name), forget).await {
            Ok(_) => revoked.push(orch.name.clone()),
            // Not enrolled there: nothing to revoke on that one.
            Err(e) if e.status() == Some(404) && orchs.len() > 1 => {
                not_enrolled.push(orch.name.clone())
            }
            Err(e) => return Err(swarm.err(e)),
        }
    }
    if revoked.is_empty() {
        return Err(CliError::Refused(format!(
            "drone {name} is not enrolled with {}",
            not_enrolled.join(", ")
        )));
    }
    if json {
        print_json(&json!({"name": name, "revoked": revoked, "forgotten": forget}));
    } else {
        println!(
            "{name}'s token is revoked on {}{}",
            revoked.join(", "),
            if forget {
                " (forgotten: the shared token may act for it again)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

pub async fn list(swarm: &Swarm, to: Option<&str>, json: bool) -> Result<(), CliError> {
    let orchs = targets(swarm, to)?;
    let mut rows = Vec::new();
    for orch in &orchs {
        let l = orch.client.enrollments().await.map_err(|e| swarm.err(e))?;
        rows.extend(l.drones.into_iter().map(|d| (orch.name.clone(), d)));
    }
    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|(o, d)| {
                let mut v = serde_json::to_value(d).unwrap_or_default();
                v["orchestrator"] = json!(o);
                v
            })
            .collect();
        print_json(&json!({ "drones": list }));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no drone is enrolled");
        return Ok(());
    }
    let now = output::now_unix();
    let mut t = Table::new(&["DRONE", "HOST", "ENROLLED", "ORCHESTRATOR"]);
    for (o, d) in &rows {
        let when = if d.revoked {
            format!("revoked ({})", output::age(d.enrolled_unix, now))
        } else {
            output::age(d.enrolled_unix, now)
        };
        t.row(vec![
            d.name.clone().into(),
            d.host.clone().unwrap_or_else(|| "-".into()).into(),
            when.into(),
            o.clone().into(),
        ]);
    }
    print!("{}", t.render(Style::stdout()));
    Ok(())
}
