//! The command line (docs/contract.md §6), as clap sees it. `build-swarm NAME ACTION` is rewritten to
//! `build-swarm drone NAME ACTION` before parsing when NAME is not a command (command names
//! win over drone names), so the drone commands appear in help, completions and the man
//! page under `drone`.

use clap::{ArgGroup, Args, CommandFactory, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Drone commands take the drone's name, alias or host name, partially and in any case:
  build-swarm <drone> status|queue|restart|ip|pause|resume|unground
  build-swarm <drone> logs [N] [-f]       last N log lines (default 20), -f follows
  build-swarm <drone> ssh [cmd...]        ssh to the drone, or run a command there
e.g. `build-swarm Titawin-Host logs 20` means drone-Titawin.

Finds the swarm through --gateway/--orchestrator, then BUILD_SWARM_GATEWAY,
BUILD_SWARM_ORCHESTRATOR, then ~/.config/build-swarm/config.toml (or
$XDG_CONFIG_HOME/build-swarm/config.toml), then /etc/build-swarm/cli.toml, then
http://localhost:8090 (gateway) and http://localhost:8080 (orchestrator). -v says where.
Exit codes: 0 ok, 1 error, 2 usage, 3 the drone name matched no drone or several.";

#[derive(Debug, Parser)]
#[command(
    name = "build-swarm",
    version,
    about = "Operator CLI of build-swarm: progress, drones, packages, logs, restarts",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Gateway URL [env: BUILD_SWARM_GATEWAY]
    #[arg(long, global = true, value_name = "URL")]
    pub gateway: Option<String>,
    /// Orchestrator URL; skips gateway discovery [env: BUILD_SWARM_ORCHESTRATOR]
    #[arg(long, global = true, value_name = "URL")]
    pub orchestrator: Option<String>,
    /// Admin token for commands that change things [env: BUILD_SWARM_TOKEN]
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Read this config file instead of the usual places
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Machine-readable output (JSON) for read commands
    #[arg(long, global = true)]
    pub json: bool,
    /// Say where the swarm was found and what is being done
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Overall progress, package counts and drones
    Status,
    /// Every drone with its state and current work
    Drones {
        /// Only drones running a version older than their orchestrator's
        #[arg(long)]
        outdated: bool,
    },
    /// One drone's status, queue, logs, restart, ssh, address (also `build-swarm NAME ACTION`)
    Drone(DroneArgs),
    /// Add a package set: plain atoms, `emerge --pretend` output or JSON (`-` reads stdin)
    Submit {
        #[arg(value_name = "FILE", required_unless_present = "plan")]
        file: Option<PathBuf>,
        /// The orchestrator that gets the set, when a gateway knows several
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
        /// The Python that runs Portage's resolver for --plan (default: the one the
        /// `emerge` on PATH uses)
        #[arg(long, value_name = "PYTHON")]
        portage_python: Option<PathBuf>,
        /// Plan the set with Portage's resolver on this host, then submit it: the rest of
        /// the line is what emerge gets (e.g. --plan --emptytree @world); comes last
        #[arg(long, value_name = "EMERGE ARGS", num_args = 1.., allow_hyphen_values = true,
              conflicts_with = "file")]
        plan: Option<Vec<String>>,
        /// Operator priority of the set: higher sets are handed out first (-1000 to
        /// 1000; default 0); what they need rises with them
        #[arg(long, default_value_t = 0, allow_negative_numbers = true,
              value_parser = clap::value_parser!(i32).range(-1000..=1000))]
        priority: i32,
    },
    /// Move a package and everything it still needs ahead of all other work
    Bump {
        #[arg(value_name = "ATOM")]
        atom: String,
        /// The orchestrator that has it, when a gateway knows several
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
    },
    /// Portage's resolver on this host plans a set (JSON, with every dependency edge):
    /// `build-swarm plan --emptytree @world > world.json`
    Plan {
        /// The Python that runs Portage (default: the one the `emerge` on PATH uses)
        #[arg(long, value_name = "PYTHON")]
        portage_python: Option<PathBuf>,
        /// What emerge would get: atoms, sets and options (--emptytree, --update, --deep, …)
        #[arg(value_name = "EMERGE ARGS", required = true, num_args = 1..,
              trailing_var_arg = true, allow_hyphen_values = true)]
        emerge_args: Vec<String>,
    },
    /// List packages
    Packages {
        /// Only packages in this state
        #[arg(long, value_name = "STATE", value_parser = [
            "waiting", "queued", "building", "uploading", "built", "failed", "blocked",
        ])]
        state: Option<String>,
    },
    /// Failed packages with their reasons
    Failures,
    /// A package's build-log tail; with -f its output live while it builds
    Log {
        /// `category/name-version` (or just `name-version`)
        #[arg(value_name = "ATOM")]
        atom: String,
        /// Follow the running build's output until it ends, then print the outcome
        /// (exit 1 unless it was built)
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Put packages back in the queue
    #[command(group(ArgGroup::new("which").required(true).args(["atoms", "failed"])))]
    Retry {
        #[arg(value_name = "ATOM")]
        atoms: Vec<String>,
        /// Every failed package
        #[arg(long, conflicts_with = "atoms")]
        failed: bool,
    },
    /// Live progress until the set is done; exits non-zero if anything failed or is blocked
    Watch {
        /// Seconds between polls
        #[arg(long, default_value_t = 2, value_name = "SECS",
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        interval: u64,
    },
    /// Where the time went: each drone slot's builds over a window, throughput and ETA
    Timeline {
        /// How far back: `2h`, `30m`, `90s`, `1d` (the orchestrators keep a day)
        #[arg(long, default_value = "2h", value_name = "DURATION",
              value_parser = crate::cli::timeline::parse_since)]
        since: u64,
    },
    /// The orchestrators of the swarm
    Orchestrators,
    /// Give a drone its own token, on every orchestrator (also `build-swarm drone enroll
    /// NAME`); shown once
    Enroll {
        /// The drone's name
        #[arg(value_name = "NAME")]
        name: String,
        /// The host the drone runs on: ssh and restarts go there, whatever host the
        /// drone announces
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Only this orchestrator (name or URL), when a gateway knows several
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
    },
    /// Revoke a drone's own token on every orchestrator: it stops working at once (also
    /// `build-swarm drone revoke NAME`)
    Revoke {
        #[arg(value_name = "NAME")]
        name: String,
        /// Forget the drone altogether: the shared drone token may act for it again
        #[arg(long)]
        forget: bool,
        /// Only this orchestrator (name or URL)
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
    },
    /// The binhost: check it (`verify`), its releases (`snapshot`, `tag`, `rollback`,
    /// `list`, `diff`) and their retention (`gc`)
    Binhost {
        #[command(subcommand)]
        action: BinhostCommand,
    },
    /// Enrolled drones and their hosts (also `build-swarm drone enrollments`)
    Enrollments {
        /// Only this orchestrator (name or URL)
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
    },
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    Man,
    /// A whole swarm on this machine: orchestrator, gateway and drones building a set
    Demo {
        /// What the drones build with: the stand-in builder, or real emerge on the shipped
        /// demo ebuild repository (needs scripts/install-deps portage; ends with a clean
        /// Portage client installing the whole set from the orchestrator's /binhost/)
        #[arg(long, value_enum, default_value_t = crate::cli::demo::swarm::Builder::StandIn)]
        builder: crate::cli::demo::swarm::Builder,
        /// How many drones
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
        drones: u32,
        /// Concurrent builds per drone
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
        slots: u32,
        /// A package set file, or a number of packages to generate (default: the shipped
        /// 261-package set)
        #[arg(long, value_name = "FILE|N")]
        packages: Option<crate::cli::demo::swarm::PackagesArg>,
        /// Where the demo keeps its state, logs and binhost (default: a new directory under
        /// the temporary directory)
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
        /// Seconds each stand-in build takes
        #[arg(long, default_value_t = 2.0, value_name = "SECS")]
        build_seconds: f64,
        /// Size of each stand-in package, KiB
        #[arg(long, default_value_t = 384, value_name = "KIB")]
        package_kb: u32,
        /// Leave the swarm running once the set is done (the dashboard and the CLI keep
        /// working on it) until Ctrl-C, which stops every process
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Debug, Args)]
pub struct DroneArgs {
    /// The drone's name, alias or host name (partial, any case)
    #[arg(value_name = "DRONE")]
    pub name: String,
    #[command(subcommand)]
    pub action: Option<DroneCommand>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum BinhostCommand {
    /// Every index entry's file has its size, MD5 and SHA-1, every package file is
    /// indexed, no temporary file is left; exit 1 naming each difference
    Verify {
        /// Bring the index in line with the files (and remove temporary files)
        #[arg(long)]
        fix: bool,
        /// The orchestrator whose binhost to check, when a gateway knows several
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
    },
    /// Snapshot the binhost as it is now (hard links and its index); NAME defaults to
    /// the time (YYYYMMDD-HHMMSS, UTC)
    Snapshot {
        #[arg(value_name = "NAME")]
        name: Option<String>,
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
    },
    /// Point CHANNEL (served at /binhost/CHANNEL/) at SNAPSHOT, atomically, with an index
    /// newer than any the channel served
    Tag {
        #[arg(value_name = "CHANNEL")]
        channel: String,
        #[arg(value_name = "SNAPSHOT")]
        snapshot: String,
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
    },
    /// Point CHANNEL back at the snapshot it served before its last tag
    Rollback {
        #[arg(value_name = "CHANNEL")]
        channel: String,
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
    },
    /// Snapshots (what keeps each) and channels (what each serves)
    List {
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
    },
    /// Packages added, removed and changed (by CPV and BUILD_ID) from snapshot A to B
    /// (`live`: the binhost now)
    Diff {
        #[arg(value_name = "A")]
        from: String,
        #[arg(value_name = "B")]
        to_snapshot: String,
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
    },
    /// Apply the retention policy ([releases] in the orchestrator's config)
    Gc {
        /// Only say what would be removed
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum DroneCommand {
    /// The drone's details (the default)
    Status,
    /// What it is building and what it would get next
    Queue,
    /// The last N lines of its log
    Logs {
        #[arg(default_value_t = 20, value_name = "N")]
        lines: usize,
        /// Keep printing new lines as they arrive
        #[arg(short, long)]
        follow: bool,
        /// Seconds between polls with --follow
        #[arg(long, default_value_t = 1, value_name = "SECS",
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        interval: u64,
    },
    /// Restart it: through the API, over ssh when it does not pick that up
    Restart {
        /// Restart over ssh straight away
        #[arg(long)]
        via_ssh: bool,
        /// Seconds to wait for the drone to pick up the restart before using ssh
        #[arg(long, default_value_t = 20, value_name = "SECS")]
        wait: u64,
    },
    /// Its address (host name resolved to an IP)
    Ip,
    /// ssh to it, or run a command there
    Ssh {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        command: Vec<String>,
    },
    /// Stop handing it work (it finishes what it has)
    Pause,
    /// Hand it work again
    Resume,
    /// Lift its circuit-breaker grounding now
    Unground,
    /// Run its sync_command (update its repositories), then check its environment again
    Sync,
}

/// Names (and aliases) of the top-level commands, `help` included.
pub fn command_names() -> Vec<String> {
    let cmd = Cli::command();
    let mut names: Vec<String> = cmd
        .get_subcommands()
        .flat_map(|s| {
            std::iter::once(s.get_name().to_string()).chain(s.get_all_aliases().map(str::to_string))
        })
        .collect();
    names.push("help".into());
    names
}

/// `build-swarm [opts] NAME ACTION…` → `build-swarm [opts] drone NAME ACTION…` when NAME
/// is not a command. Options that take a value are skipped with their value.
pub fn rewrite_drone_shorthand(args: Vec<OsString>) -> Vec<OsString> {
    let cmd = Cli::command();
    let mut valued: Vec<String> = Vec::new();
    for a in cmd.get_arguments() {
        if a.get_action().takes_values() {
            valued.extend(a.get_long().map(|l| format!("--{l}")));
            valued.extend(a.get_short().map(|s| format!("-{s}")));
        }
    }
    let names = command_names();
    // `drone enroll|revoke|enrollments …` is spelled as the commands themselves.
    let drone_word = ["enroll", "revoke", "enrollments"];
    let mut i = 1;
    while i < args.len() {
        let Some(arg) = args[i].to_str() else {
            break;
        };
        if arg == "--" {
            break;
        }
        if arg.starts_with('-') && arg.len() > 1 {
            i += if valued.iter().any(|v| v == arg) {
                2
            } else {
                1
            };
            continue;
        }
        if arg == "drone"
            && args
                .get(i + 1)
                .and_then(|a| a.to_str())
                .is_some_and(|a| drone_word.contains(&a))
        {
            let mut out = args;
            out.remove(i);
            return out;
        }
        if !names.iter().any(|n| n == arg) {
            let mut out = args;
            out.insert(i, OsString::from("drone"));
            return out;
        }
        break;
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(args: &[&str]) -> Vec<String> {
        rewrite_drone_shorthand(args.iter().map(OsString::from).collect())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn drone_shorthand_is_rewritten_and_commands_win() {
        assert_eq!(
            rw(&["bs", "drone-Titawin", "logs", "20"]),
            ["bs", "drone", "drone-Titawin", "logs", "20"]
        );
        assert_eq!(
            rw(&["bs", "--token", "status", "-v", "x", "ip"]),
            ["bs", "--token", "status", "-v", "drone", "x", "ip"]
        );
        assert_eq!(rw(&["bs", "status"]), ["bs", "status"]);
        assert_eq!(rw(&["bs", "--json", "drones"]), ["bs", "--json", "drones"]);
        assert_eq!(rw(&["bs", "drone", "x", "ip"]), ["bs", "drone", "x", "ip"]);
        assert_eq!(rw(&["bs", "--version"]), ["bs", "--version"]);
        // `drone enroll|revoke|enrollments` are the commands themselves.
        assert_eq!(
            rw(&["bs", "--json", "drone", "enroll", "d1", "--host", "h"]),
            ["bs", "--json", "enroll", "d1", "--host", "h"]
        );
        assert_eq!(rw(&["bs", "drone", "revoke", "d1"]), ["bs", "revoke", "d1"]);
        assert_eq!(rw(&["bs", "enrollments"]), ["bs", "enrollments"]);
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(rw(&["bs", "masai", "logs", "-f"])).unwrap();
        match cli.command {
            Command::Drone(DroneArgs {
                name,
                action: Some(DroneCommand::Logs { lines, follow, .. }),
            }) => assert_eq!((name.as_str(), lines, follow), ("masai", 20, true)),
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(rw(&["bs", "d", "ssh", "ls", "-la", "/tmp"])).unwrap();
        match cli.command {
            Command::Drone(DroneArgs {
                action: Some(DroneCommand::Ssh { command }),
                ..
            }) => assert_eq!(command, ["ls", "-la", "/tmp"]),
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["bs", "retry"]).is_err());
        assert!(Cli::try_parse_from(["bs", "retry", "a/b-1", "--failed"]).is_err());
    }
}
