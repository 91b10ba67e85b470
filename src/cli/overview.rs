//! `status`, `drones`, `orchestrators`: the whole swarm at a glance.

use super::error::CliError;
use super::output::{self, colored, fields, print_json, state_color, Color, Style, Table};
use super::swarm::Swarm;
use super::view::{DroneView, StatusView};
use futures_util::future::join_all;
use serde_json::{json, Value};

pub async fn status(swarm: &Swarm, json: bool) -> Result<(), CliError> {
    let (raw, st) = swarm.status().await?;
    if json {
        print_json(&raw);
        return Ok(());
    }
    print!("{}", render_status(&st, Style::stdout()));
    Ok(())
}

pub fn render_status(st: &StatusView, style: Style) -> String {
    let n = |v: u64, c: Color| {
        if v > 0 {
            style.paint(&v.to_string(), Some(c))
        } else {
            v.to_string()
        }
    };
    let d = &st.drones;
    let drones = if d.total > 0 && d.active == d.total {
        format!("all {} active", d.total)
    } else {
        format!(
            "{} total: {} active, {} grounded, {} paused, {} offline{}",
            d.total,
            d.active,
            n(d.grounded, Color::Yellow),
            n(d.paused, Color::Yellow),
            n(d.offline, Color::Red),
            if d.mismatched > 0 {
                format!(
                    ", {} mismatched (environment)",
                    n(d.mismatched, Color::Yellow)
                )
            } else {
                String::new()
            }
        )
    };
    let eta = match st.eta_s {
        Some(s) if !st.is_done() => format!("about {}", output::duration(s)),
        _ if st.is_done() => "done".into(),
        _ => "unknown".into(),
    };
    fields(
        &[
            ("Swarm", st.name.clone()),
            (
                "Progress",
                format!(
                    "{} ({}/{})",
                    output::percent(st.progress_pct),
                    st.done(),
                    st.total
                ),
            ),
            (
                "Done",
                format!(
                    "built {}, failed {}, blocked {}",
                    n(st.built, Color::Green),
                    n(st.failed, Color::Red),
                    n(st.blocked, Color::Yellow)
                ),
            ),
            (
                "Pending",
                format!(
                    "queued {}, building {}, uploading {}, waiting {}",
                    st.queued, st.building, st.uploading, st.waiting
                ),
            ),
            ("ETA", eta),
            ("Drones", drones),
        ],
        style,
    )
}

/// The STATE column: `grounded (1m left)` for a grounded drone.
pub fn drone_state(d: &DroneView, now: u64) -> String {
    match d.grounded_until {
        Some(until) if d.state == "grounded" && until > now => {
            format!("grounded ({} left)", output::duration(until - now))
        }
        _ => match (&d.mismatch, &d.healing) {
            (Some(m), _) if d.state == "mismatched" => format!("mismatched ({m})"),
            (_, Some(h)) if d.state == "offline" => format!("offline ({})", h.describe(now)),
            _ => d.state.clone(),
        },
    }
}

pub async fn drones(swarm: &Swarm, outdated: bool, json: bool) -> Result<(), CliError> {
    let (raw, mut list) = swarm.drones().await?;
    if outdated {
        list.retain(|d| d.outdated);
        if json {
            // The raw entries of the outdated drones, in the shape `drones --json` has.
            let mut raw = raw;
            if let Some(all) = raw.get_mut("drones").and_then(|d| d.as_array_mut()) {
                all.retain(|d| d.get("outdated").and_then(|o| o.as_bool()) == Some(true));
            }
            print_json(&raw);
            return Ok(());
        }
        if list.is_empty() {
            println!("no drone runs a version older than its orchestrator's");
            return Ok(());
        }
    }
    if json {
        print_json(&raw);
        return Ok(());
    }
    if list.is_empty() {
        println!("no drones are registered");
        return Ok(());
    }
    let now = output::now_unix();
    let with_orch = swarm.via_gateway();
    let mut headers = vec![
        "NAME",
        "STATE",
        "SLOTS",
        "WORK",
        "FAILS",
        "LAST SEEN",
        "HOST",
        "VERSION",
    ];
    if with_orch {
        headers.push("ORCHESTRATOR");
    }
    let mut t = Table::new(&headers);
    for d in &list {
        let mut row = vec![
            d.name.clone().into(),
            colored(drone_state(d, now), state_color(&d.state)),
            format!("{}/{}", d.current.len(), d.slots).into(),
            if d.current.is_empty() {
                "-".into()
            } else {
                d.current.join(", ").into()
            },
            colored(
                d.failures.to_string(),
                (d.failures > 0).then_some(Color::Red),
            ),
            d.last_seen
                .map(|t| output::age(t, now))
                .unwrap_or_else(|| "never".into())
                .into(),
            d.host.clone().into(),
            colored(
                if d.version.is_empty() {
                    "unknown".to_string()
                } else {
                    d.version.clone()
                } + if d.outdated { " (outdated)" } else { "" },
                d.outdated.then_some(Color::Yellow),
            ),
        ];
        if with_orch {
            row.push(d.orchestrator.clone().unwrap_or_default().into());
        }
        t.row(row);
    }
    print!("{}", t.render(Style::stdout()));
    Ok(())
}

pub async fn orchestrators(swarm: &Swarm, json: bool) -> Result<(), CliError> {
    let all = swarm.all()?;
    let answers = join_all(
        all.iter()
            .map(|o| async move { swarm.get::<StatusView>(&o.client, "/api/v1/status").await }),
    )
    .await;
    if json {
        let list: Vec<Value> = all
            .iter()
            .zip(&answers)
            .map(|(o, a)| {
                let mut entry = match &o.entry {
                    Some(Value::Object(m)) => Value::Object(m.clone()),
                    _ => json!({}),
                };
                entry["name"] = json!(match a {
                    Ok((_, st)) if o.entry.is_none() => st.name.clone(),
                    _ => o.name.clone(),
                });
                entry["url"] = json!(o.url);
                entry["reachable"] = json!(a.is_ok());
                entry["status"] = a
                    .as_ref()
                    .map(|(raw, _)| raw.clone())
                    .unwrap_or(Value::Null);
                if let Err(e) = a {
                    entry["error"] = json!(e.to_string());
                }
                entry
            })
            .collect();
        print_json(&json!({ "orchestrators": list }));
        return Ok(());
    }
    let mut t = Table::new(&["NAME", "URL", "PROGRESS", "QUEUED", "BUILDING", "DRONES"]);
    for (o, a) in all.iter().zip(&answers) {
        match a {
            Ok((_, st)) => t.row(vec![
                if o.entry.is_none() {
                    st.name.clone()
                } else {
                    o.name.clone()
                }
                .into(),
                o.url.clone().into(),
                format!(
                    "{} ({}/{})",
                    output::percent(st.progress_pct),
                    st.done(),
                    st.total
                )
                .into(),
                st.queued.to_string().into(),
                st.building.to_string().into(),
                format!("{}/{} active", st.drones.active, st.drones.total).into(),
            ]),
            Err(_) => t.row(vec![
                o.name.clone().into(),
                o.url.clone().into(),
                colored("unreachable", Some(Color::Red)),
            ]),
        }
    }
    print!("{}", t.render(Style::stdout()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_like_the_seed() {
        let st: StatusView = serde_json::from_value(json!({
            "name": "orch", "total": 261, "built": 188, "queued": 65, "building": 8,
            "progress_pct": 72.0, "drones": {"total": 4, "active": 4}
        }))
        .unwrap();
        let text = render_status(&st, Style::plain());
        assert!(text.contains("Progress  72% (188/261)"), "{text}");
        assert!(text.contains("queued 65, building 8"), "{text}");
        assert!(text.contains("all 4 active"), "{text}");
    }

    #[test]
    fn grounded_drones_say_for_how_long() {
        let d = DroneView {
            state: "grounded".into(),
            grounded_until: Some(1090),
            ..DroneView::default()
        };
        assert_eq!(drone_state(&d, 1000), "grounded (1m30s left)");
        assert_eq!(drone_state(&d, 2000), "grounded");
    }
}
