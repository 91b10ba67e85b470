//! `swarm-bench throughput`: claim + complete cycles per second through HTTP against the
//! real `swarm-orchestrator` binary (its own process, SQLite state on disk), with simulated
//! drones: no builds, but for every lease a tiny real file is written into the lease's
//! upload directory, so the orchestrator really checks size and SHA-256, publishes it into
//! the binhost and commits the state before it answers.
//!
//! Every simulated drone has its own keep-alive connection and runs claim → write the file
//! → complete in a loop. After the measured window the same connections ask `/healthz` in a
//! loop for as long: the server's own limit with this client at this concurrency. At the
//! end it times `GET /api/v1/timeline` over every lease of the run.

use super::http::Conn;
use super::{round, BenchError, OrchProc, Scratch, DRONE_TOKEN};
use build_swarm::wire::orchestrator::WorkAssignment;
use serde_json::{json, Value};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ThroughputOptions {
    pub drones: usize,
    pub packages: usize,
    /// Length of each measured window (cycles, then `/healthz`).
    pub seconds: f64,
    /// Not counted before each window.
    pub warmup: f64,
    pub keep: bool,
    /// Put staging and binhost under this directory (e.g. a tmpfs) instead of beside the
    /// state.
    pub files_dir: Option<std::path::PathBuf>,
    /// The orchestrator writes the binhost's Packages index (`[binhost] index`).
    pub index: bool,
    /// The orchestrator signs every package (`[signing] key`).
    pub signing: bool,
}

/// The same run with the binhost index off, then on: both figures and their ratio.
/// The same run with signing off, then on: both figures and their ratio.
pub async fn compare_signing(opts: &ThroughputOptions) -> Result<Value, BenchError> {
    let off = run(&ThroughputOptions {
        signing: false,
        ..opts.clone()
    })
    .await?;
    let mut on = run(&ThroughputOptions {
        signing: true,
        ..opts.clone()
    })
    .await?;
    let (a, b) = (
        off["cycles_per_s"].as_f64().unwrap_or(0.0),
        on["cycles_per_s"].as_f64().unwrap_or(0.0),
    );
    on["cycles_per_s_unsigned"] = json!(a);
    on["orchestrator_us_per_cycle_unsigned"] = off["orchestrator_us_per_cycle"].clone();
    on["signed_share"] = json!(round(b / a.max(1e-9), 3));
    Ok(on)
}

pub async fn compare_index(opts: &ThroughputOptions) -> Result<Value, BenchError> {
    let off = run(&ThroughputOptions {
        index: false,
        ..opts.clone()
    })
    .await?;
    let mut on = run(&ThroughputOptions {
        index: true,
        ..opts.clone()
    })
    .await?;
    let (a, b) = (
        off["cycles_per_s"].as_f64().unwrap_or(0.0),
        on["cycles_per_s"].as_f64().unwrap_or(0.0),
    );
    on["cycles_per_s_index_off"] = json!(a);
    on["orchestrator_us_per_cycle_index_off"] = off["orchestrator_us_per_cycle"].clone();
    on["index_on_share"] = json!(round(b / a.max(1e-9), 3));
    Ok(on)
}

#[derive(Default)]
struct Counters {
    /// 0 warm-up cycles, 1 measured cycles, 2 warm-up healthz, 3 measured healthz, 4 stop.
    phase: Cell<u8>,
    cycles: Cell<u64>,
    acknowledged: Cell<u64>,
    healthz: Cell<u64>,
    errors: Cell<u64>,
    exhausted: Cell<bool>,
    first_error: std::cell::RefCell<Option<String>>,
}

impl Counters {
    fn error(&self, e: impl std::fmt::Display) {
        self.errors.set(self.errors.get() + 1);
        let mut first = self.first_error.borrow_mut();
        if first.is_none() {
            *first = Some(e.to_string());
        }
    }
}

async fn drone_loop(
    c: Rc<Counters>,
    addr: std::net::SocketAddr,
    staging: std::path::PathBuf,
    name: String,
) {
    let mut conn = match Conn::connect(addr).await {
        Ok(c) => c,
        Err(e) => {
            c.error(format!("connect: {e}"));
            return;
        }
    };
    let token = Some(DRONE_TOKEN);
    let claim_body = format!("{{\"drone\":\"{name}\"}}");
    while c.phase.get() <= 1 {
        let r = match conn
            .request("POST", "/api/v1/work/claim", token, claim_body.as_bytes())
            .await
        {
            Ok(r) => r,
            Err(e) => {
                c.error(format!("claim: {e}"));
                let _ = conn.reconnect().await;
                continue;
            }
        };
        if r.status == 204 {
            c.exhausted.set(true);
            break;
        }
        if r.status != 200 {
            c.error(format!(
                "claim: HTTP {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
            continue;
        }
        let work: WorkAssignment = match serde_json::from_slice(&r.body) {
            Ok(w) => w,
            Err(e) => {
                c.error(format!("claim answer: {e}"));
                continue;
            }
        };
        let body = match super::simulated_upload(&staging, &work) {
            Ok(b) => b,
            Err(e) => {
                c.error(e);
                continue;
            }
        };
        let path = format!("/api/v1/work/{}/complete", work.lease);
        match conn.request("POST", &path, token, body.as_bytes()).await {
            Ok(r) if r.status == 200 && r.body.starts_with(b"{\"accepted\":true") => {
                c.acknowledged.set(c.acknowledged.get() + 1);
                if c.phase.get() == 1 {
                    c.cycles.set(c.cycles.get() + 1);
                }
            }
            Ok(r) => c.error(format!(
                "complete: HTTP {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )),
            Err(e) => {
                c.error(format!("complete: {e}"));
                let _ = conn.reconnect().await;
            }
        }
    }
    while c.phase.get() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    while c.phase.get() <= 3 {
        match conn.request("GET", "/healthz", None, b"").await {
            Ok(r) if r.status == 200 => {
                if c.phase.get() == 3 {
                    c.healthz.set(c.healthz.get() + 1);
                }
            }
            Ok(r) => c.error(format!("healthz: HTTP {}", r.status)),
            Err(e) => {
                c.error(format!("healthz: {e}"));
                let _ = conn.reconnect().await;
            }
        }
    }
}

pub async fn run(opts: &ThroughputOptions) -> Result<Value, BenchError> {
    super::raise_nofile();
    let scratch = Scratch::new("throughput", opts.keep)?;
    let files_scratch = Scratch::files_in(opts.files_dir.as_deref(), "throughput", opts.keep)?;
    let files = files_scratch.as_ref().map(|s| s.path.clone());
    let signing = if opts.signing {
        let key = super::releases::key_file(&scratch.path)?;
        format!("\n[signing]\nkey = {:?}\n", key.display().to_string())
    } else {
        String::new()
    };
    let orch = OrchProc::start(
        &scratch.path,
        files.as_deref(),
        "",
        &format!(
            "[leases]\nheartbeat_ttl_s = 3600\n\n[binhost]\nindex = {}\n{signing}",
            opts.index
        ),
    )
    .await?;
    let admin = orch.admin();
    let t = Instant::now();
    admin
        .submit(super::flat_set(opts.packages, "tp").into_bytes())
        .await?;
    let submit_s = t.elapsed().as_secs_f64();
    let drone = orch.drone();
    for chunk in (0..opts.drones).collect::<Vec<_>>().chunks(100) {
        let reqs: Vec<build_swarm::wire::orchestrator::RegisterRequest> = chunk
            .iter()
            .map(|i| build_swarm::wire::orchestrator::RegisterRequest {
                name: format!("t{i}"),
                aliases: vec![],
                host: "localhost".into(),
                slots: 1,
                version: "bench".into(),
                restart_command: vec![],
                environment: None,
            })
            .collect();
        let regs = reqs.iter().map(|r| drone.register(r));
        for r in futures_util::future::join_all(regs).await {
            r?;
        }
    }
    let counters = Rc::new(Counters::default());
    let mut tasks = Vec::new();
    for i in 0..opts.drones {
        tasks.push(actix_web::rt::spawn(drone_loop(
            counters.clone(),
            orch.addr(),
            orch.staging(),
            format!("t{i}"),
        )));
    }
    let pid = orch.proc_.pid();
    let window = |secs: f64| Duration::from_secs_f64(secs.max(0.0));
    tokio::time::sleep(window(opts.warmup)).await;
    let (o0, c0, t0) = (
        super::cpu_seconds(pid).unwrap_or(0.0),
        super::own_cpu_seconds(),
        Instant::now(),
    );
    counters.phase.set(1);
    tokio::time::sleep(window(opts.seconds)).await;
    counters.phase.set(2);
    let cycle_wall = t0.elapsed().as_secs_f64();
    let cycles = counters.cycles.get();
    let cycle_orch_cpu = super::cpu_seconds(pid).unwrap_or(0.0) - o0;
    let cycle_client_cpu = super::own_cpu_seconds() - c0;
    tokio::time::sleep(window(opts.warmup)).await;
    let (o1, c1, t1) = (
        super::cpu_seconds(pid).unwrap_or(0.0),
        super::own_cpu_seconds(),
        Instant::now(),
    );
    counters.phase.set(3);
    tokio::time::sleep(window(opts.seconds)).await;
    counters.phase.set(4);
    let health_wall = t1.elapsed().as_secs_f64();
    let healthz = counters.healthz.get();
    let health_orch_cpu = super::cpu_seconds(pid).unwrap_or(0.0) - o1;
    let health_client_cpu = super::own_cpu_seconds() - c1;
    for t in tasks {
        let _ = t.await;
    }
    // Every acknowledged completion must be in the state: count what was built.
    let reader = build_swarm::client::ApiClient::new(&orch.url, None);
    let status = reader.status().await?;
    // The timeline over every lease of the run (all in the default window): how long
    // an answer takes and how big it is, however many leases there are.
    let mut timeline_ms = Vec::new();
    let mut timeline_bars = 0;
    let mut timeline_bytes = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let tl = reader.timeline().await?;
        timeline_ms.push(t.elapsed().as_secs_f64() * 1e3);
        timeline_bars = tl.rows.iter().map(|r| r.bars.len()).sum::<usize>();
        timeline_bytes = serde_json::to_vec(&tl).map(|v| v.len()).unwrap_or(0);
    }
    timeline_ms.sort_by(f64::total_cmp);
    let rss = super::rss_kb(pid).unwrap_or(0);
    let mut orch = orch;
    orch.proc_.stop(Duration::from_secs(5)).await;
    if counters.exhausted.get() {
        return Err(BenchError::Failed(format!(
            "the {} packages ran out during the measurement: give more --packages",
            opts.packages
        )));
    }
    let cycles_per_s = cycles as f64 / cycle_wall;
    let healthz_per_s = healthz as f64 / health_wall;
    Ok(json!({
        "bench": "throughput",
        "index": opts.index,
        "signing": opts.signing,
        "drones": opts.drones,
        "packages": opts.packages,
        "seconds": opts.seconds,
        "cycles": cycles,
        "cycles_per_s": round(cycles_per_s, 1),
        "healthz_per_s": round(healthz_per_s, 1),
        "ratio": round(cycles_per_s / healthz_per_s.max(1e-9), 4),
        "requests_per_cycle": 2,
        "orchestrator_cpu_cores_cycles": round(cycle_orch_cpu / cycle_wall, 3),
        "client_cpu_cores_cycles": round(cycle_client_cpu / cycle_wall, 3),
        "orchestrator_cpu_cores_healthz": round(health_orch_cpu / health_wall, 3),
        "client_cpu_cores_healthz": round(health_client_cpu / health_wall, 3),
        "orchestrator_us_per_cycle": round(cycle_orch_cpu * 1e6 / (cycles.max(1) as f64), 1),
        "acknowledged": counters.acknowledged.get(),
        "built": status.counts.built,
        "errors": counters.errors.get(),
        "first_error": counters.first_error.borrow().clone(),
        "submit_s": round(submit_s, 2),
        "timeline_leases": status.counts.built + status.counts.building + status.counts.uploading,
        "timeline_ms_median": round(timeline_ms[timeline_ms.len() / 2], 1),
        "timeline_ms_max": round(timeline_ms.last().copied().unwrap_or(0.0), 1),
        "timeline_bars": timeline_bars,
        "timeline_kb": round(timeline_bytes as f64 / 1024.0, 1),
        "orchestrator_rss_mb": round(rss as f64 / 1024.0, 1),
        "orchestrator": "real binary (swarm-orchestrator process, SQLite state)",
        "client": "swarm-bench, one thread, one keep-alive HTTP/1.1 connection per drone",
        "state_dir_fs": super::fs_of(&scratch.path),
        "staging_fs": super::fs_of(files.as_deref().unwrap_or(&scratch.path)),
        "machine": super::machine(),
        "date": super::unix_now(),
    }))
}
