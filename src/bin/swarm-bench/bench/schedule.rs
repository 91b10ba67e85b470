//! `swarm-bench schedule`: how close the real swarm's makespan comes to the lower bound.
//!
//! The real `swarm-orchestrator` and N real `swarm-drone` processes build a package graph;
//! each build is a real process (`swarm-bench build-stub`) that takes the package's
//! `estimate_s` × `scale` and leaves a small package in PKGDIR, which the drone uploads with
//! real rsync into the orchestrator's staging directory (a local path) and the orchestrator
//! verifies and publishes. The same graph is run twice from scratch: with
//! `[policy] order = "critical_path"` and with `"fifo"`.
//!
//! Before each run a calibration set of packages that take no time at all measures what a
//! package costs beyond its build (claim, process start, rsync, report) with every slot
//! busy; that overhead, divided by the scale, is what it adds to each package in unscaled
//! seconds.
//!
//! With `--learn` the graph runs twice on one orchestrator without any estimates: the
//! first run orders by chain length only, the second — the same package names, new
//! versions — by the build times the first taught it (#18, learned durations).
//!
//! Figures are in unscaled seconds (wall time ÷ scale) unless named `wall`.

use super::graph::{self, Graph};
use super::{io, round, BenchError, OrchProc, Proc, Scratch, DRONE_TOKEN};
use build_swarm::client::ApiClient;
use build_swarm::domain::DroneState;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ScheduleOptions {
    /// The package graph (JSON package set); generated when absent.
    pub graph: Option<PathBuf>,
    /// Size of the generated graph.
    pub packages: usize,
    pub seed: u64,
    pub drones: u32,
    pub slots: u32,
    pub scale: f64,
    /// Size of each built package, KiB.
    pub package_kb: usize,
    /// Zero-time packages of the calibration before each run.
    pub calibration: usize,
    pub keep: bool,
    /// Scratch directory root (default: the temporary directory).
    pub dir: Option<PathBuf>,
    /// Run the graph twice without estimates (learned durations) instead of comparing
    /// critical-path and FIFO order.
    pub learn: bool,
}

struct RunResult {
    /// Per graph submitted, in order.
    makespans_wall_s: Vec<f64>,
    overhead_wall_ms: f64,
    built: usize,
}

pub async fn run(opts: &ScheduleOptions) -> Result<Value, BenchError> {
    let graph = match &opts.graph {
        Some(p) => Graph::parse(
            &std::fs::read_to_string(p).map_err(io(format!("reading {}", p.display())))?,
        )?,
        None => graph::generate(opts.packages, opts.seed),
    };
    if !(opts.scale > 0.0 && opts.scale.is_finite()) {
        return Err(BenchError::Setup(
            "--scale must be a positive number".into(),
        ));
    }
    let total_slots = opts.drones.max(1) * opts.slots.max(1);
    let bound = graph.bound(total_slots)?;
    let scratch = match &opts.dir {
        Some(d) => Scratch::new_in(d, "schedule", opts.keep)?,
        None => Scratch::new("schedule", opts.keep)?,
    };
    let estimates = scratch.path.join("estimates");
    super::stub::write_estimates(&graph, &estimates)?;
    let calib = calibration_set(opts.calibration);
    super::stub::write_estimates(&calib, &estimates)?;
    let wall = Instant::now();
    if opts.learn {
        let second = graph.next_versions();
        super::stub::write_estimates(&second, &estimates)?;
        let phases = [graph.without_estimates(), second.without_estimates()];
        let run = run_once(
            opts,
            &phases,
            bound.lower_bound_s,
            &calib,
            &scratch.path,
            &estimates,
            "critical_path",
        )
        .await?;
        let first_s = run.makespans_wall_s[0] / opts.scale;
        let second_s = run.makespans_wall_s[1] / opts.scale;
        return Ok(figures(
            opts,
            &graph,
            &bound,
            &scratch.path,
            wall,
            json!({
                "bench": "schedule-learn",
                "first_run_makespan_s": round(first_s, 1),
                "first_run_ratio": round(first_s / bound.lower_bound_s, 3),
                "second_run_makespan_s": round(second_s, 1),
                "second_run_ratio": round(second_s / bound.lower_bound_s, 3),
                "built": run.built,
                "estimates_given": false,
            }),
        ));
    }
    let mut runs = Vec::new();
    for order in ["critical_path", "fifo"] {
        let graphs = std::slice::from_ref(&graph);
        runs.push(
            run_once(
                opts,
                graphs,
                bound.lower_bound_s,
                &calib,
                &scratch.path,
                &estimates,
                order,
            )
            .await?,
        );
    }
    let (cp, fifo) = (&runs[0], &runs[1]);
    let scale = opts.scale;
    let makespan_s = cp.makespans_wall_s[0] / scale;
    let fifo_makespan_s = fifo.makespans_wall_s[0] / scale;
    let overhead_ms = (cp.overhead_wall_ms + fifo.overhead_wall_ms) / 2.0;
    let overhead_unscaled = overhead_ms / 1000.0 / scale;
    // What the per-package overhead alone adds to a work-bound schedule.
    let overhead_share =
        overhead_unscaled * graph.packages.len() as f64 / total_slots as f64 / bound.lower_bound_s;
    Ok(figures(
        opts,
        &graph,
        &bound,
        &scratch.path,
        wall,
        json!({
            "bench": "schedule",
            "makespan_s": round(makespan_s, 1),
            "ratio": round(makespan_s / bound.lower_bound_s, 3),
            "fifo_makespan_s": round(fifo_makespan_s, 1),
            "fifo_ratio": round(fifo_makespan_s / bound.lower_bound_s, 3),
            "built": cp.built,
            "fifo_built": fifo.built,
            "overhead_wall_ms_per_package": round(overhead_ms, 2),
            "overhead_s_per_package": round(overhead_unscaled, 2),
            "overhead_share_of_bound": round(overhead_share, 4),
            "idle_poll_s": idle_poll(scale),
            "calibration_packages": opts.calibration,
        }),
    ))
}

/// The figures both modes print: the graph, its bound, the machine, and `own`'s.
fn figures(
    opts: &ScheduleOptions,
    graph: &Graph,
    bound: &graph::Bound,
    scratch: &Path,
    wall: Instant,
    own: Value,
) -> Value {
    let mut v = json!({
        "packages": graph.packages.len(),
        "drones": opts.drones,
        "slots": opts.slots,
        "scale": opts.scale,
        "critical_path_s": round(bound.critical_path_s, 1),
        "total_work_s": round(bound.total_work_s, 1),
        "lower_bound_s": round(bound.lower_bound_s, 1),
        "wall_s": round(wall.elapsed().as_secs_f64(), 1),
        "orchestrator": "real binary",
        "scratch_fs": super::fs_of(scratch),
        "machine": super::machine(),
        "date": super::unix_now(),
    });
    if let (Some(all), Value::Object(own)) = (v.as_object_mut(), own) {
        all.extend(own);
    }
    v
}

/// The drones poll for work every 5 s in real life; scaled like the builds.
fn idle_poll(scale: f64) -> f64 {
    round((5.0 * scale).max(0.005), 4)
}

fn calibration_set(n: usize) -> Graph {
    Graph {
        packages: (0..n)
            .map(|i| graph::GraphPackage {
                atom: format!("bench-calib/zero{i}-1.0"),
                deps: Vec::new(),
                estimate_s: Some(0.0),
            })
            .collect(),
    }
}

fn drone_config(
    dir: &Path,
    name: &str,
    url: &str,
    opts: &ScheduleOptions,
    estimates: &Path,
) -> Result<PathBuf, BenchError> {
    let exe = std::env::current_exe().map_err(io("finding my own executable"))?;
    let home = dir.join(name);
    std::fs::create_dir_all(home.join("pkgdir"))
        .map_err(io(format!("creating {}", home.display())))?;
    let text = format!(
        "name = \"{name}\"\nhost = \"localhost\"\norchestrator = \"{url}\"\ntoken = \"{DRONE_TOKEN}\"\nslots = {slots}\n\
         pkgdir = \"{h}/pkgdir\"\nstate_dir = \"{h}/state\"\n\
         build_command = [\"{exe}\", \"build-stub\", \"--estimates\", \"{est}\", \"--scale\", \"{scale}\", \"--kb\", \"{kb}\", \"{{atom}}\", \"{{pkgdir}}\"]\n\
         build_timeout_s = 36000\nbuild_idle_timeout_s = 36000\nidle_poll_s = {poll}\n\n\
         [upload]\nstall_timeout_s = 60\ntotal_timeout_s = 120\n\n[log]\nlevel = \"warning\"\nfile = \"{h}/drone.log\"\n",
        slots = opts.slots,
        h = home.display(),
        exe = exe.display(),
        est = estimates.display(),
        scale = opts.scale,
        kb = opts.package_kb,
        poll = idle_poll(opts.scale),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
    Ok(path)
}

/// Waits until `want` packages are in an end state; fails on a failed package.
async fn wait_done(
    anon: &ApiClient,
    want: usize,
    limit: Duration,
    orch: &mut OrchProc,
) -> Result<usize, BenchError> {
    let t0 = Instant::now();
    loop {
        let s = anon.status().await?;
        let c = &s.counts;
        if c.failed > 0 || c.blocked > 0 {
            return Err(BenchError::Failed(format!(
                "{} packages failed and {} are blocked; see the logs (run with --keep)",
                c.failed, c.blocked
            )));
        }
        if c.built >= want {
            return Ok(c.built);
        }
        if let Some(why) = orch.proc_.exited() {
            return Err(BenchError::Failed(why));
        }
        if t0.elapsed() > limit {
            return Err(BenchError::Failed(format!(
                "only {} of {want} packages built within {} s",
                c.built,
                limit.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One orchestrator and its drones build the calibration set, then each of `graphs` in
/// turn (each submitted once the one before is built); `bound_s`: the lower bound of each
/// with its real build times (the graphs may carry no estimates), for the time limit.
async fn run_once(
    opts: &ScheduleOptions,
    graphs: &[Graph],
    bound_s: f64,
    calib: &Graph,
    root: &Path,
    estimates: &Path,
    order: &str,
) -> Result<RunResult, BenchError> {
    let dir = root.join(order);
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let mut orch = OrchProc::start(
        &dir,
        None,
        "",
        // Index writes as often as they come: builds are scaled down 10,000-fold here,
        // the index's per-second batching is not.
        &format!(
            "[policy]\norder = \"{order}\"\n\n[leases]\nheartbeat_ttl_s = 60\n\n\
             [binhost]\nwrite_interval_ms = 0\n"
        ),
    )
    .await?;
    let drone_bin = super::sibling_bin("swarm-drone")?;
    let mut drones: Vec<Proc> = Vec::new();
    for i in 1..=opts.drones {
        let name = format!("d{i}");
        let cfg = drone_config(&dir, &name, &orch.url, opts, estimates)?;
        drones.push(Proc::spawn(&dir, &name, &drone_bin, &cfg)?);
    }
    let anon = ApiClient::with_timeout(&orch.url, None, Duration::from_secs(30));
    let t0 = Instant::now();
    loop {
        let online = anon
            .drones()
            .await?
            .drones
            .iter()
            .filter(|d| d.state != DroneState::Offline)
            .count();
        if online >= opts.drones as usize {
            break;
        }
        for d in &mut drones {
            if let Some(why) = d.exited() {
                return Err(BenchError::Setup(why));
            }
        }
        if t0.elapsed() > Duration::from_secs(30) {
            return Err(BenchError::Setup(format!(
                "only {online} of {} drones registered within 30 s",
                opts.drones
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let admin = orch.admin();
    let slots = (opts.drones * opts.slots).max(1) as f64;
    let mut overhead_wall_ms = 0.0;
    if !calib.packages.is_empty() {
        let t = Instant::now();
        admin.submit(calib.to_json().into_bytes()).await?;
        wait_done(
            &anon,
            calib.packages.len(),
            Duration::from_secs(300),
            &mut orch,
        )
        .await?;
        overhead_wall_ms = t.elapsed().as_secs_f64() * 1000.0 * slots / calib.packages.len() as f64;
    }
    let mut want = calib.packages.len();
    let mut makespans_wall_s = Vec::new();
    let mut built = want;
    for graph in graphs {
        let limit = Duration::from_secs_f64(bound_s * opts.scale * 5.0 + 120.0);
        want += graph.packages.len();
        let body = graph.to_json().into_bytes();
        let t = Instant::now();
        admin.submit(body).await?;
        built = wait_done(&anon, want, limit, &mut orch).await?;
        makespans_wall_s.push(t.elapsed().as_secs_f64());
    }
    for d in &mut drones {
        d.stop(Duration::from_secs(5)).await;
    }
    orch.proc_.stop(Duration::from_secs(5)).await;
    Ok(RunResult {
        makespans_wall_s,
        overhead_wall_ms,
        built: built - calib.packages.len(),
    })
}
