//! `swarm-bench`: benchmarks of a real swarm on this machine (see `BENCHMARKS.md`). Each
//! subcommand prints one JSON line of figures; `--smoke` runs it tiny, in seconds (CI).

mod bench;

use bench::{graph, index, releases, scale, schedule, stub, throughput, transfer};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "swarm-bench",
    version,
    about = "build-swarm benchmarks: each subcommand prints one JSON line of figures"
)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Makespan of real drones on a package graph against its lower bound, critical-path
    /// order against FIFO.
    Schedule {
        /// Package graph (JSON package set with deps and estimate_s); generated if absent.
        #[arg(long, value_name = "FILE")]
        graph: Option<PathBuf>,
        /// Size of the generated graph.
        #[arg(long, default_value_t = 1500)]
        packages: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 4)]
        drones: u32,
        #[arg(long, default_value_t = 2)]
        slots: u32,
        /// Wall seconds per estimated second (0.002: 1 s takes 2 ms).
        #[arg(long, default_value_t = 0.01)]
        scale: f64,
        /// Size of each built package, KiB.
        #[arg(long, default_value_t = 16)]
        package_kb: usize,
        /// Zero-time packages run first to measure the per-package overhead.
        #[arg(long, default_value_t = 200)]
        calibration: usize,
        /// Scratch directory root (state, staging, PKGDIRs), e.g. /dev/shm.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        #[arg(long)]
        smoke: bool,
        /// Keep the scratch directory (logs, configs, state).
        #[arg(long)]
        keep: bool,
        /// Run the graph twice without estimates on one orchestrator (learned build
        /// times) instead of comparing critical-path and FIFO order.
        #[arg(long)]
        learn: bool,
    },
    /// Prints a Gentoo-like package graph (JSON package set) on standard output.
    Graph {
        #[arg(long, default_value_t = 1500)]
        packages: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Claim + complete cycles per second through HTTP, against /healthz.
    Throughput {
        #[arg(long, default_value_t = 1000)]
        drones: usize,
        #[arg(long, default_value_t = 100_000)]
        packages: usize,
        /// Length of each measured window.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Staging and binhost under this directory (e.g. /dev/shm) instead of beside the
        /// SQLite state in the temporary directory.
        #[arg(long, value_name = "DIR")]
        files_dir: Option<PathBuf>,
        /// Run it twice, with the binhost index off and on, and report both
        #[arg(long)]
        compare_index: bool,
        /// Run it twice, with signing off and on, and report both
        #[arg(long, conflicts_with = "compare_index")]
        compare_signing: bool,
        #[arg(long)]
        smoke: bool,
        #[arg(long)]
        keep: bool,
    },
    /// Completion acknowledged → the binhost index on disk lists the package: p50/p99 at
    /// 1,000 and at 50,000 published packages.
    Index {
        /// Published packages at which to measure (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = [1000usize, 50000])]
        at: Vec<usize>,
        #[arg(long, default_value_t = 100)]
        samples: usize,
        /// Drones completing packages in the background.
        #[arg(long, default_value_t = 8)]
        background: usize,
        /// The orchestrator's `[binhost] write_interval_ms`.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        #[arg(long)]
        smoke: bool,
        #[arg(long)]
        keep: bool,
    },
    /// Milliseconds to sign a package (the publish path's signer), per payload size.
    Sign {
        /// Payload sizes in bytes (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = [16_384usize, 1_048_576, 104_857_600])]
        sizes: Vec<usize>,
        #[arg(long, default_value_t = 50)]
        samples: usize,
        #[arg(long)]
        smoke: bool,
        #[arg(long)]
        keep: bool,
    },
    /// A snapshot of many published files: seconds, and disk beyond the linked packages.
    Snapshot {
        #[arg(long, default_value_t = 100_000)]
        files: usize,
        /// Scratch directory root (e.g. /dev/shm).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        #[arg(long)]
        smoke: bool,
        #[arg(long)]
        keep: bool,
    },
    /// Memory, claim latency, heartbeat cost and restart time with many packages and drones.
    Scale {
        #[arg(long, default_value_t = 100_000)]
        packages: usize,
        #[arg(long, default_value_t = 5000)]
        drones: usize,
        #[arg(long = "heartbeat-s", default_value_t = 10.0)]
        heartbeat_s: f64,
        /// Length of each phase (heartbeats only; heartbeats and claims).
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
        /// Claims per second in the second phase.
        #[arg(long, default_value_t = 200.0)]
        claim_rate: f64,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Log lines per heartbeat.
        #[arg(long, default_value_t = 2)]
        log_lines: usize,
        /// Staging and binhost under this directory (e.g. /dev/shm).
        #[arg(long, value_name = "DIR")]
        files_dir: Option<PathBuf>,
        #[arg(long)]
        smoke: bool,
        #[arg(long)]
        keep: bool,
    },
    /// Bytes on the wire per upload and upload latency over real ssh (needs root).
    Transfer {
        /// Package sizes, KiB.
        #[arg(long, value_delimiter = ',', default_values_t = vec![64, 1024, 16384])]
        sizes_kb: Vec<usize>,
        /// 1 MiB uploads per variant for the latency figures.
        #[arg(long, default_value_t = 15)]
        repeat: usize,
        #[arg(long)]
        smoke: bool,
        #[arg(long)]
        keep: bool,
    },
    /// The builder the schedule benchmark's drones run (not for direct use).
    #[command(hide = true)]
    BuildStub {
        #[arg(long)]
        estimates: PathBuf,
        #[arg(long)]
        scale: f64,
        #[arg(long, default_value_t = 16)]
        kb: usize,
        atom: String,
        pkgdir: PathBuf,
    },
}

fn main() {
    let args = Args::parse();
    // The schedule benchmark's builder runs once per package: it starts no runtime.
    if let Cmd::BuildStub {
        estimates,
        scale,
        kb,
        atom,
        pkgdir,
    } = &args.command
    {
        if let Err(e) = stub::run(estimates, *scale, *kb, atom, pkgdir) {
            eprintln!("swarm-bench build-stub: {e}");
            std::process::exit(1);
        }
        return;
    }
    run(args);
}

#[actix_web::main]
async fn run(args: Args) {
    let res = match args.command {
        Cmd::Index {
            at,
            samples,
            background,
            interval_ms,
            smoke,
            keep,
        } => {
            let opts = if smoke {
                index::IndexOptions {
                    sizes: vec![50],
                    samples: 5,
                    background: 2,
                    interval_ms: 200,
                    keep,
                }
            } else {
                index::IndexOptions {
                    sizes: at,
                    samples,
                    background,
                    interval_ms,
                    keep,
                }
            };
            index::run(&opts).await
        }
        Cmd::Graph { packages, seed } => {
            println!("{}", graph::generate(packages, seed).to_json());
            return;
        }
        Cmd::BuildStub { .. } => return,
        Cmd::Schedule {
            graph,
            packages,
            seed,
            drones,
            slots,
            scale,
            package_kb,
            calibration,
            dir,
            smoke,
            keep,
            learn,
        } => {
            let opts = schedule::ScheduleOptions {
                graph,
                packages,
                seed,
                drones,
                slots,
                scale,
                package_kb,
                calibration,
                keep,
                dir,
                learn,
            };
            let opts = if smoke {
                schedule::ScheduleOptions {
                    graph: None,
                    packages: 40,
                    drones: 2,
                    slots: 2,
                    scale: 0.0001,
                    package_kb: 4,
                    calibration: 8,
                    ..opts
                }
            } else {
                opts
            };
            schedule::run(&opts).await
        }
        Cmd::Throughput {
            drones,
            packages,
            seconds,
            warmup,
            files_dir,
            compare_index,
            compare_signing,
            smoke,
            keep,
        } => {
            let opts = throughput::ThroughputOptions {
                drones,
                packages,
                seconds,
                warmup,
                keep,
                files_dir,
                index: true,
                signing: false,
            };
            let opts = if smoke {
                throughput::ThroughputOptions {
                    drones: 20,
                    packages: 20_000,
                    seconds: 1.0,
                    warmup: 0.2,
                    ..opts
                }
            } else {
                opts
            };
            if compare_signing {
                throughput::compare_signing(&opts).await
            } else if compare_index {
                throughput::compare_index(&opts).await
            } else {
                throughput::run(&opts).await
            }
        }
        Cmd::Sign {
            sizes,
            samples,
            smoke,
            keep,
        } => {
            if smoke {
                releases::sign(&[16_384, 1_048_576], 3, keep)
            } else {
                releases::sign(&sizes, samples, keep)
            }
        }
        Cmd::Snapshot {
            files,
            dir,
            smoke,
            keep,
        } => releases::snapshot(if smoke { 500 } else { files }, dir.as_deref(), keep),
        Cmd::Scale {
            packages,
            drones,
            heartbeat_s,
            seconds,
            claim_rate,
            connections,
            log_lines,
            files_dir,
            smoke,
            keep,
        } => {
            let opts = scale::ScaleOptions {
                packages,
                drones,
                heartbeat_s,
                seconds,
                claim_rate,
                connections,
                log_lines,
                keep,
                files_dir,
            };
            let opts = if smoke {
                scale::ScaleOptions {
                    packages: 2000,
                    drones: 50,
                    heartbeat_s: 0.5,
                    seconds: 1.0,
                    claim_rate: 50.0,
                    connections: 4,
                    ..opts
                }
            } else {
                opts
            };
            scale::run(&opts).await
        }
        Cmd::Transfer {
            sizes_kb,
            repeat,
            smoke,
            keep,
        } => {
            let opts = transfer::TransferOptions {
                sizes_kb,
                repeat,
                keep,
            };
            let opts = if smoke {
                transfer::TransferOptions {
                    sizes_kb: vec![64],
                    repeat: 1,
                    ..opts
                }
            } else {
                opts
            };
            transfer::run(&opts).await
        }
    };
    match res {
        Ok(line) => bench::print_line(&line),
        Err(e) => {
            eprintln!("swarm-bench: {e}");
            std::process::exit(1);
        }
    }
}
