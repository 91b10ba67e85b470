//! `build-swarm binhost verify [--fix]`: the binhost against its index; `snapshot`, `tag`,
//! `rollback`, `list`, `diff`, `gc`: its releases (admin token to change them).

use super::args::BinhostCommand;
use super::error::CliError;
use super::output::{age, print_json, Cell, Style, Table};
use super::swarm::Swarm;
use crate::wire::orchestrator::{ChannelInfo, DiffPackage, GcItem};

pub async fn verify(
    swarm: &Swarm,
    fix: bool,
    to: Option<&str>,
    json: bool,
) -> Result<(), CliError> {
    let orch = swarm.one(to)?;
    let report = orch
        .client
        .verify_binhost(fix)
        .await
        .map_err(|e| swarm.err(e))?;
    if json {
        print_json(&report);
    } else {
        for p in &report.problems {
            println!("{}: {}: {}", p.path, p.kind, p.detail);
        }
        if report.ok {
            println!(
                "the binhost of {} matches its index ({} packages)",
                orch.name, report.entries
            );
        } else if report.fixed {
            println!(
                "{} difference(s) fixed: the index of {} now lists what the files hold ({} packages)",
                report.problems.len(),
                orch.name,
                report.entries
            );
        }
    }
    if report.ok || report.fixed {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "the binhost of {} differs from its index in {} place(s) (build-swarm binhost verify --fix rewrites the index from the files)",
            orch.name,
            report.problems.len()
        )))
    }
}

/// The release commands (everything but `verify`).
pub async fn releases(swarm: &Swarm, action: BinhostCommand, json: bool) -> Result<(), CliError> {
    let now = crate::sys::clock::unix_now();
    match action {
        BinhostCommand::Verify { fix, to } => verify(swarm, fix, to.as_deref(), json).await,
        BinhostCommand::Snapshot { name, to } => {
            let orch = swarm.one(to.as_deref())?;
            let s = orch
                .client
                .snapshot(name.as_deref())
                .await
                .map_err(|e| swarm.err(e))?;
            if json {
                print_json(&s);
            } else {
                println!(
                    "snapshot {} of {}: {} packages (index TIMESTAMP {})",
                    s.name, orch.name, s.packages, s.timestamp
                );
            }
            Ok(())
        }
        BinhostCommand::Tag {
            channel,
            snapshot,
            to,
        } => {
            let orch = swarm.one(to.as_deref())?;
            let c = orch
                .client
                .tag(&channel, &snapshot)
                .await
                .map_err(|e| swarm.err(e))?;
            print_channel(&c, "now serves", json);
            Ok(())
        }
        BinhostCommand::Rollback { channel, to } => {
            let orch = swarm.one(to.as_deref())?;
            let c = orch
                .client
                .rollback(&channel)
                .await
                .map_err(|e| swarm.err(e))?;
            print_channel(&c, "rolled back to", json);
            Ok(())
        }
        BinhostCommand::List { to } => {
            let orch = swarm.one(to.as_deref())?;
            let list = orch.client.releases().await.map_err(|e| swarm.err(e))?;
            if json {
                print_json(&list);
                return Ok(());
            }
            let style = Style::stdout();
            let mut t = Table::new(&["CHANNEL", "SNAPSHOT", "TAGGED", "TIMESTAMP", "ROLLBACK TO"]);
            for c in &list.channels {
                t.row(vec![
                    Cell::from(c.path.as_str()),
                    Cell::from(c.snapshot.as_str()),
                    Cell::from(age(c.tagged_at, now)),
                    Cell::from(c.timestamp.to_string()),
                    Cell::from(c.previous.as_deref().unwrap_or("-")),
                ]);
            }
            if t.is_empty() {
                println!("no channels (build-swarm binhost tag CHANNEL SNAPSHOT makes one)");
            } else {
                print!("{}", t.render(style));
            }
            let mut t = Table::new(&[
                "SNAPSHOT",
                "CREATED",
                "PACKAGES",
                "SERVED BY",
                "KEPT BECAUSE",
            ]);
            for s in &list.snapshots {
                t.row(vec![
                    Cell::from(s.name.as_str()),
                    Cell::from(age(s.created, now)),
                    Cell::from(s.packages.to_string()),
                    Cell::from(s.channels.join(", ")),
                    Cell::from(if s.kept_because.is_empty() {
                        "nothing: the next gc removes it".to_string()
                    } else {
                        s.kept_because.join("; ")
                    }),
                ]);
            }
            if t.is_empty() {
                println!("no snapshots (build-swarm binhost snapshot takes one)");
            } else {
                println!();
                print!("{}", t.render(style));
            }
            Ok(())
        }
        BinhostCommand::Diff {
            from,
            to_snapshot,
            to,
        } => {
            let orch = swarm.one(to.as_deref())?;
            let d = orch
                .client
                .diff(&from, &to_snapshot)
                .await
                .map_err(|e| swarm.err(e))?;
            if json {
                print_json(&d);
                return Ok(());
            }
            let line = |mark: &str, p: &DiffPackage| match &p.build_id {
                Some(b) => println!("{mark} {} (build {b})", p.cpv),
                None => println!("{mark} {}", p.cpv),
            };
            d.added.iter().for_each(|p| line("+", p));
            d.removed.iter().for_each(|p| line("-", p));
            d.changed.iter().for_each(|p| line("~", p));
            println!(
                "{} → {}: {} added, {} removed, {} changed",
                d.from,
                d.to,
                d.added.len(),
                d.removed.len(),
                d.changed.len()
            );
            Ok(())
        }
        BinhostCommand::Gc { dry_run, to } => {
            let orch = swarm.one(to.as_deref())?;
            let r = orch.client.gc(dry_run).await.map_err(|e| swarm.err(e))?;
            if json {
                print_json(&r);
                return Ok(());
            }
            let verb = if dry_run { "would remove" } else { "removed" };
            let show = |i: &GcItem| format!("{} {}: {}", i.kind, i.name, i.detail);
            for i in &r.removed {
                println!("{verb} {}", show(i));
            }
            for i in &r.waiting {
                let when = i.at.map_or(String::new(), |at| {
                    format!(
                        " (from {})",
                        super::output::duration(at.saturating_sub(now))
                    )
                });
                println!("waiting{when}: {}", show(i));
            }
            println!(
                "{} {verb}, {} waiting for the grace period",
                r.removed.len(),
                r.waiting.len()
            );
            Ok(())
        }
    }
}

fn print_channel(c: &ChannelInfo, what: &str, json: bool) {
    if json {
        print_json(c);
    } else {
        println!(
            "channel {} ({}) {what} {} (index TIMESTAMP {})",
            c.name, c.path, c.snapshot, c.timestamp
        );
    }
}
