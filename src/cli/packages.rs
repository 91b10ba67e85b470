//! `submit`, `packages`, `failures`, `log`, `retry`: the package set. Through a gateway,
//! lists cover every orchestrator; `submit` goes to one (`--to` when there are several).

use super::error::CliError;
use super::output::{self, colored, print_json, state_color, Color, Style, Table};
use super::swarm::{path_segment, Orch, Swarm};
use super::view::{PackageListView, PackageView};
use crate::domain::PackageState;
use crate::wire::orchestrator::{PackageLog, RetryRequest, RetryResult, SubmitResult};
use futures_util::future::join_all;
use serde_json::{json, Value};
use std::io::Read;
use std::path::Path;

/// A set file's bytes (`-`: standard input).
pub fn read_set(file: &Path) -> Result<Vec<u8>, CliError> {
    if file == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| CliError::io("cannot read standard input", e))?;
        Ok(buf)
    } else {
        std::fs::read(file).map_err(|e| CliError::io(format!("cannot read {}", file.display()), e))
    }
}

/// Submits a set (`label`: where it came from, for messages).
pub async fn submit(
    swarm: &Swarm,
    label: &str,
    body: Vec<u8>,
    priority: i32,
    to: Option<&str>,
    json: bool,
) -> Result<(), CliError> {
    let orch = swarm.one(to)?;
    let size = body.len() as u64;
    let r: SubmitResult = orch
        .client
        .submit_with_priority(body, priority)
        .await
        .map_err(|e| match swarm.err(e) {
            CliError::Refused(msg) => CliError::Refused(format!("{label} was refused: {msg}")),
            other => other,
        })?;
    if json {
        print_json(&r);
        return Ok(());
    }
    println!(
        "{}: {} new package(s), {} already known, {} skipped, {} dependencies ({} format, {}) → {}",
        label,
        r.added,
        r.existing,
        r.skipped,
        r.dependencies,
        r.format,
        output::size(size),
        orch.name
    );
    if r.dependencies == 0 && r.added > 1 {
        eprintln!(
            "build-swarm: note: this set carries no dependencies ({} has none between its \
             packages), so every package is ready at once and dependents may be built before \
             their dependencies are in the binhost; give the set as JSON with \"deps\" \
             (docs/contract.md §3)",
            if r.format == crate::domain::package_set::SetFormat::Portage {
                "`emerge --pretend` output"
            } else {
                "a plain list"
            }
        );
    }
    Ok(())
}

/// Packages of every orchestrator, each with the orchestrator's name.
async fn fetch(
    swarm: &Swarm,
    query: &str,
) -> Result<(Vec<(Orch, Value)>, Vec<(String, PackageView)>), CliError> {
    let all = swarm.all()?;
    let answers = join_all(all.iter().map(|o| async move {
        swarm
            .get::<PackageListView>(&o.client, &format!("/api/v1/packages{query}"))
            .await
    }))
    .await;
    let mut raws = Vec::new();
    let mut rows = Vec::new();
    let mut lost = None;
    for (o, a) in all.iter().zip(answers) {
        let (raw, list) = match a {
            Ok(answer) => answer,
            // Through a gateway, one orchestrator down should not hide the others.
            Err(e @ CliError::Lost { .. }) if all.len() > 1 => {
                eprintln!("build-swarm: skipping orchestrator {}: {e}", o.name);
                lost = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        rows.extend(list.packages.into_iter().map(|p| (o.name.clone(), p)));
        raws.push((o.clone(), raw));
    }
    match lost {
        Some(e) if raws.is_empty() => Err(e),
        _ => Ok((raws, rows)),
    }
}

/// The server's JSON as it is with one orchestrator; merged, each package naming its
/// orchestrator, through a gateway.
fn merged_json(swarm: &Swarm, raws: Vec<(Orch, Value)>) -> Value {
    if !swarm.via_gateway() {
        return raws
            .into_iter()
            .next()
            .map(|(_, v)| v)
            .unwrap_or(Value::Null);
    }
    let mut packages = Vec::new();
    for (o, raw) in raws {
        if let Some(Value::Array(list)) = raw.get("packages") {
            for p in list {
                let mut p = p.clone();
                p["orchestrator"] = json!(o.name);
                packages.push(p);
            }
        }
    }
    json!({ "total": packages.len(), "packages": packages })
}

pub async fn list(swarm: &Swarm, state: Option<&str>, json: bool) -> Result<(), CliError> {
    let query = state.map(|s| format!("?state={s}")).unwrap_or_default();
    let (raws, rows) = fetch(swarm, &query).await?;
    if json {
        print_json(&merged_json(swarm, raws));
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "no packages{}",
            state.map(|s| format!(" are {s}")).unwrap_or_default()
        );
        return Ok(());
    }
    let with_orch = swarm.via_gateway();
    let mut headers = vec!["ATOM", "STATE", "DRONE", "ATTEMPTS", "REASON"];
    if with_orch {
        headers.insert(0, "ORCHESTRATOR");
    }
    let mut t = Table::new(&headers);
    for (orch, p) in &rows {
        let mut row = vec![
            p.atom.clone().into(),
            colored(p.state.clone(), state_color(&p.state)),
            p.drone.clone().unwrap_or_else(|| "-".into()).into(),
            p.attempts.to_string().into(),
            p.reason.clone().unwrap_or_default().into(),
        ];
        if with_orch {
            row.insert(0, orch.clone().into());
        }
        t.row(row);
    }
    print!("{}", t.render(Style::stdout()));
    println!("{} package(s)", rows.len());
    Ok(())
}

pub async fn failures(swarm: &Swarm, json: bool) -> Result<(), CliError> {
    let (raws, rows) = fetch(swarm, "?state=failed").await?;
    if json {
        print_json(&merged_json(swarm, raws));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no failed packages");
        return Ok(());
    }
    let mut t = Table::new(&["ATOM", "ATTEMPTS", "REASON"]);
    for (_, p) in &rows {
        t.row(vec![
            colored(p.atom.clone(), Some(Color::Red)),
            p.attempts.to_string().into(),
            p.reason.clone().unwrap_or_else(|| "-".into()).into(),
        ]);
    }
    print!("{}", t.render(Style::stdout()));
    println!(
        "{} failed; `build-swarm log ATOM` shows a build log, `build-swarm retry --failed` tries them again",
        rows.len()
    );
    Ok(())
}

/// `cat/name-ver` (a leading `=` dropped), or an error naming what is wrong.
pub fn check_atom(atom: &str) -> Result<String, CliError> {
    let a = atom.trim().trim_start_matches('=');
    let ok_part = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c))
    };
    match a.split_once('/') {
        Some((cat, pf)) if ok_part(cat) && ok_part(pf) => Ok(a.to_string()),
        _ => Err(CliError::Invalid(format!(
            "`{atom}` is not an atom like app-misc/foo-1.0"
        ))),
    }
}

/// Finds which orchestrator has `atom`; a bare `name-version` is looked up by its
/// package-version part.
pub(super) async fn locate(swarm: &Swarm, atom: &str) -> Result<(Orch, String), CliError> {
    let all = swarm.all()?;
    if !atom.contains('/') {
        let pf = atom.trim().trim_start_matches('=');
        check_atom(&format!("x/{pf}"))?;
        let (_, rows) = fetch(swarm, &format!("?q={}", path_segment(pf))).await?;
        let hits: Vec<&(String, PackageView)> = rows
            .iter()
            .filter(|(_, p)| p.atom.rsplit_once('/').is_some_and(|(_, x)| x == pf))
            .collect();
        return match hits.as_slice() {
            [(orch, p)] => {
                let o = all.iter().find(|o| &o.name == orch).unwrap_or(&all[0]);
                Ok((o.clone(), p.atom.clone()))
            }
            [] => Err(CliError::Refused(format!(
                "no package `{pf}` in the swarm's package set"
            ))),
            many => Err(CliError::Invalid(format!(
                "`{pf}` is in several categories: {}",
                many.iter()
                    .map(|(_, p)| p.atom.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        };
    }
    let atom = check_atom(atom)?;
    if all.len() == 1 {
        return Ok((all[0].clone(), atom));
    }
    let (_, rows) = fetch(swarm, &format!("?q={}", path_segment(&atom))).await?;
    match rows.iter().find(|(_, p)| p.atom == atom) {
        Some((orch, _)) => {
            let o = all.iter().find(|o| &o.name == orch).unwrap_or(&all[0]);
            Ok((o.clone(), atom))
        }
        None => Err(CliError::Refused(format!(
            "`{atom}` is not in the package set of any orchestrator"
        ))),
    }
}

pub async fn log(swarm: &Swarm, atom: &str, json: bool) -> Result<(), CliError> {
    let (orch, atom) = locate(swarm, atom).await?;
    let (cat, pf) = atom.split_once('/').unwrap_or(("", &atom));
    let path = format!(
        "/api/v1/packages/{}/{}/log",
        path_segment(cat),
        path_segment(pf)
    );
    let (raw, log): (Value, PackageLog) = swarm.get(&orch.client, &path).await?;
    if json {
        print_json(&raw);
        return Ok(());
    }
    let style = Style::stdout();
    let state = log.state.as_str();
    let mut head = format!("{} {}", log.atom, style.paint(state, state_color(state)));
    if let Some(r) = &log.reason {
        head.push_str(&format!(": {r}"));
    }
    println!("{}", style.paint(&head, Some(Color::Bold)));
    if log.log_tail.trim().is_empty() {
        println!("(no build log stored)");
    } else {
        print!("{}", log.log_tail);
        if !log.log_tail.ends_with('\n') {
            println!();
        }
    }
    Ok(())
}

pub async fn retry(
    swarm: &Swarm,
    atoms: &[String],
    failed: bool,
    json: bool,
) -> Result<(), CliError> {
    let mut total = RetryResult {
        retried: 0,
        unblocked: 0,
    };
    if failed {
        for o in swarm.all()? {
            let r = o
                .client
                .retry(&RetryRequest {
                    atoms: vec![],
                    state: Some(PackageState::Failed),
                })
                .await
                .map_err(|e| swarm.err(e))?;
            total.retried += r.retried;
            total.unblocked += r.unblocked;
        }
    } else {
        // Group the atoms by the orchestrator that has them.
        let mut groups: Vec<(Orch, Vec<String>)> = Vec::new();
        for a in atoms {
            let (o, atom) = if swarm.all()?.len() == 1 {
                (swarm.all()?[0].clone(), check_atom(a)?)
            } else {
                locate(swarm, a).await?
            };
            match groups.iter_mut().find(|(g, _)| g.url == o.url) {
                Some((_, list)) => list.push(atom),
                None => groups.push((o, vec![atom])),
            }
        }
        for (o, atoms) in groups {
            let r = o
                .client
                .retry(&RetryRequest { atoms, state: None })
                .await
                .map_err(|e| swarm.err(e))?;
            total.retried += r.retried;
            total.unblocked += r.unblocked;
        }
    }
    if json {
        print_json(&total);
    } else {
        println!(
            "retried {} package(s); {} blocked dependent(s) are waiting again",
            total.retried, total.unblocked
        );
    }
    Ok(())
}

/// `build-swarm bump ATOM`.
pub async fn bump(swarm: &Swarm, atom: &str, to: Option<&str>, json: bool) -> Result<(), CliError> {
    let orch = swarm.one(to)?;
    let r = orch.client.bump(atom).await.map_err(|e| swarm.err(e))?;
    if json {
        print_json(&r);
    } else {
        println!(
            "{} and what it still needs ({} package(s)) now go ahead of everything else (priority {})",
            r.atom, r.moved, r.priority
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoms_are_checked_before_they_reach_a_url() {
        assert_eq!(check_atom("=app-misc/foo-1.0").unwrap(), "app-misc/foo-1.0");
        assert_eq!(
            check_atom("dev-libs/bar-2.1-r1").unwrap(),
            "dev-libs/bar-2.1-r1"
        );
        for bad in [
            "foo", "a/b/c", "../x", "a/..", "a/b c", "a/b;rm", "/x", "a/",
        ] {
            let err = check_atom(bad).unwrap_err().to_string();
            assert!(err.contains("is not an atom"), "{bad}: {err}");
        }
    }
}
