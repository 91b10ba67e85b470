//! `build-swarm binhost verify [--fix]`: the binhost against its index (admin token).

use super::error::CliError;
use super::output::print_json;
use super::swarm::Swarm;

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
