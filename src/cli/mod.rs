//! `build-swarm`, the operator CLI (docs/contract.md §6). The binary only calls [`run`].
//!
//! - [`args`] — the clap definition and the `build-swarm NAME ACTION` shorthand.
//! - [`config`] — where the swarm and the token are found (flags, env, files, defaults).
//! - [`swarm`] — connecting: gateway or orchestrator, and which orchestrator has what.
//! - [`matching`] — which drone a partial name means (pure functions).
//! - [`overview`], [`packages`], [`drone`], [`remote`], [`enroll`], [`binhost`], [`watch`],
//!   [`generate`], [`demo`] — the commands.
//! - [`output`], [`view`] — tables, colour, human units; lenient views of the answers.
//! - [`error`] — one sentence per error and the exit codes.

pub mod args;
pub mod binhost;
pub mod config;
pub mod demo;
pub mod drone;
pub mod enroll;
pub mod error;
pub mod follow;
pub mod generate;
pub mod matching;
pub mod output;
pub mod overview;
pub mod packages;
pub mod plan;
pub mod remote;
pub mod swarm;
pub mod timeline;
pub mod view;
pub mod watch;

use args::{Cli, Command};
use clap::Parser;
use error::CliError;
use std::ffi::OsString;
use swarm::Swarm;

/// `-v`: notes on standard error about what the CLI is doing.
#[derive(Debug, Clone, Copy)]
pub struct Verbose(pub bool);

impl Verbose {
    pub fn note(&self, msg: impl AsRef<str>) {
        if self.0 {
            eprintln!("build-swarm: {}", msg.as_ref());
        }
    }
}

/// Runs the CLI on `args` (program name first) and returns the exit code.
pub async fn run(args: Vec<OsString>) -> i32 {
    let args = args::rewrite_drone_shorthand(args);
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            let _ = e.print();
            return e.exit_code();
        }
    };
    match dispatch(cli).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("build-swarm: {e}");
            e.exit_code()
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), CliError> {
    let g = cli.global;
    match &cli.command {
        Command::Completions { shell } => return generate::completions(*shell),
        Command::Man => return generate::man(),
        Command::Plan {
            portage_python,
            emerge_args,
        } => return plan::run(portage_python.as_deref(), emerge_args).await,
        Command::Demo {
            builder,
            drones,
            slots,
            packages,
            dir,
            build_seconds,
            package_kb,
            keep,
        } => {
            let opts = crate::cli::demo::swarm::DemoOptions {
                builder: *builder,
                drones: *drones,
                slots: *slots,
                packages: packages
                    .clone()
                    .unwrap_or(crate::cli::demo::swarm::PackagesArg::Builtin),
                dir: dir.clone(),
                build_seconds: *build_seconds,
                package_kb: *package_kb,
                keep: *keep,
            };
            return demo::run(&opts, g.json).await;
        }
        _ => {}
    }
    let verbose = Verbose(g.verbose);
    let flags = config::Flags {
        gateway: g.gateway.clone(),
        orchestrator: g.orchestrator.clone(),
        token: g.token.clone(),
        config: g.config.clone(),
    };
    let settings = config::resolve(&flags, &config::Places::from_env())?;
    let swarm = Swarm::connect(&settings, verbose).await?;
    let json = g.json;
    match cli.command {
        Command::Status => overview::status(&swarm, json).await,
        Command::Drones { outdated } => overview::drones(&swarm, outdated, json).await,
        Command::Orchestrators => overview::orchestrators(&swarm, json).await,
        Command::Drone(d) => drone::run(&swarm, &settings, d, json, verbose).await,
        Command::Submit {
            file,
            to,
            portage_python,
            plan,
            priority,
        } => {
            let (label, body) = match (file, plan) {
                (_, Some(args)) => {
                    let python = plan::portage_python(portage_python.as_deref())?;
                    let text = plan::plan(&python, &args).await?;
                    (format!("plan of `{}`", args.join(" ")), text.into_bytes())
                }
                (Some(file), None) => (file.display().to_string(), packages::read_set(&file)?),
                (None, None) => {
                    return Err(CliError::Invalid(
                        "give a FILE or --plan EMERGE ARGS".into(),
                    ))
                }
            };
            packages::submit(&swarm, &label, body, priority, to.as_deref(), json).await
        }
        Command::Bump { atom, to } => packages::bump(&swarm, &atom, to.as_deref(), json).await,
        Command::Packages { state } => packages::list(&swarm, state.as_deref(), json).await,
        Command::Failures => packages::failures(&swarm, json).await,
        Command::Log { atom, follow } if follow => follow::follow(&swarm, &atom, json).await,
        Command::Log { atom, .. } => packages::log(&swarm, &atom, json).await,
        Command::Retry { atoms, failed } => packages::retry(&swarm, &atoms, failed, json).await,
        Command::Watch { interval } => watch::run(&swarm, interval, json).await,
        Command::Timeline { since } => timeline::run(&swarm, since, json).await,
        Command::Enroll { name, host, to } => {
            enroll::enroll(&swarm, &name, host.as_deref(), to.as_deref(), json).await
        }
        Command::Revoke { name, forget, to } => {
            enroll::revoke(&swarm, &name, forget, to.as_deref(), json).await
        }
        Command::Enrollments { to } => enroll::list(&swarm, to.as_deref(), json).await,
        Command::Binhost {
            action: args::BinhostCommand::Verify { fix, to },
        } => binhost::verify(&swarm, fix, to.as_deref(), json).await,
        Command::Binhost { action } => binhost::releases(&swarm, action, json).await,
        Command::Completions { .. }
        | Command::Man
        | Command::Demo { .. }
        | Command::Plan { .. } => Ok(()),
    }
}
