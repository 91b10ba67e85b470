//! `build-swarm drone enroll|revoke|enrollments`: drones' own credentials (admin token).

use super::error::CliError;
use super::output::{self, print_json, Style, Table};
use super::swarm::{path_segment, Swarm};

pub async fn enroll(
    swarm: &Swarm,
    name: &str,
    host: Option<&str>,
    to: Option<&str>,
    json: bool,
) -> Result<(), CliError> {
    let orch = swarm.one(to)?;
    let e = orch
        .client
        .enroll(&path_segment(name), host)
        .await
        .map_err(|e| swarm.err(e))?;
    if json {
        print_json(&e);
        return Ok(());
    }
    if e.replaced {
        eprintln!(
            "build-swarm: {} had a token; it no longer works (restart the drone with the new one)",
            e.name
        );
    }
    eprintln!(
        "build-swarm: enrolled {} with {}{}; the token is shown only now — put it in the \
         drone's config (`token = \"…\"` in drone.toml) and restart the drone:",
        e.name,
        orch.name,
        e.host
            .as_deref()
            .map(|h| format!(" (host {h})"))
            .unwrap_or_default()
    );
    println!("{}", e.token);
    Ok(())
}

pub async fn revoke(
    swarm: &Swarm,
    name: &str,
    to: Option<&str>,
    json: bool,
) -> Result<(), CliError> {
    let orch = swarm.one(to)?;
    let r = orch
        .client
        .revoke(&path_segment(name))
        .await
        .map_err(|e| swarm.err(e))?;
    if json {
        print_json(&r);
    } else {
        println!("{}'s token is revoked on {}", r.name, orch.name);
    }
    Ok(())
}

pub async fn list(swarm: &Swarm, to: Option<&str>, json: bool) -> Result<(), CliError> {
    let orch = swarm.one(to)?;
    let l = orch.client.enrollments().await.map_err(|e| swarm.err(e))?;
    if json {
        print_json(&l);
        return Ok(());
    }
    if l.drones.is_empty() {
        println!("no drone is enrolled with {}", orch.name);
        return Ok(());
    }
    let now = output::now_unix();
    let mut t = Table::new(&["DRONE", "HOST", "ENROLLED"]);
    for d in &l.drones {
        t.row(vec![
            d.name.clone().into(),
            d.host.clone().unwrap_or_else(|| "-".into()).into(),
            output::age(d.enrolled_unix, now).into(),
        ]);
    }
    print!("{}", t.render(Style::stdout()));
    Ok(())
}
