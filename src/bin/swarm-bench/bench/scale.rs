//! `swarm-bench scale`: the real `swarm-orchestrator` process with many packages and many
//! drones heartbeating.
//!
//! 1. Submit the packages, register the drones.
//! 2. Heartbeats only, for `--seconds`: every drone every `--heartbeat-s` (spread evenly,
//!    over a pool of keep-alive connections), each carrying `--log-lines` log lines as a
//!    busy drone's would: the requests per second sustained and the orchestrator's CPU.
//! 3. Heartbeats and claims at `--claim-rate` per second (each claim followed by a real
//!    upload file and its completion), for `--seconds`: claim latency p50/p99.
//! 4. The orchestrator's resident memory (`VmRSS`, and the peak `VmHWM`).
//! 5. `kill -9`, start again, and the time until the first successful claim.

use super::http::Conn;
use super::{percentile, round, BenchError, OrchProc, Scratch, DRONE_TOKEN};
use build_swarm::wire::orchestrator::WorkAssignment;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ScaleOptions {
    pub packages: usize,
    pub drones: usize,
    pub heartbeat_s: f64,
    pub seconds: f64,
    pub claim_rate: f64,
    /// Keep-alive connections the heartbeats are spread over.
    pub connections: usize,
    /// Log lines each heartbeat carries.
    pub log_lines: usize,
    pub keep: bool,
    /// Put staging and binhost under this directory (e.g. a tmpfs) instead of beside the
    /// state.
    pub files_dir: Option<std::path::PathBuf>,
}

#[derive(Default)]
struct Shared {
    /// 0 heartbeats only, 1 heartbeats and claims, 2 stop.
    phase: Cell<u8>,
    heartbeats: Cell<u64>,
    heartbeat_ms: RefCell<Vec<f64>>,
    claim_ms: RefCell<Vec<f64>>,
    complete_ms: RefCell<Vec<f64>>,
    claims: Cell<u64>,
    no_work: Cell<u64>,
    errors: Cell<u64>,
    first_error: RefCell<Option<String>>,
}

impl Shared {
    fn error(&self, e: impl std::fmt::Display) {
        self.errors.set(self.errors.get() + 1);
        let mut f = self.first_error.borrow_mut();
        if f.is_none() {
            *f = Some(e.to_string());
        }
    }
}

fn log_line(drone: &str, i: u64) -> String {
    format!(
        "Jun 10 12:00:{:02}.{:03} INFO claimed, atom: dev-libs/pkg{i}-1.2.3, lease: {i}, epoch: 1, drone: {drone}, actor: agent",
        i % 60,
        i % 1000
    )
}

/// Heartbeats for `names`, each every `every`, spread evenly, on one connection.
async fn heartbeat_loop(
    s: Rc<Shared>,
    addr: SocketAddr,
    names: Vec<String>,
    every: Duration,
    lines: usize,
) {
    if names.is_empty() {
        return;
    }
    let mut conn = match Conn::connect(addr).await {
        Ok(c) => c,
        Err(e) => return s.error(format!("connect: {e}")),
    };
    let gap = every.div_f64(names.len() as f64);
    let mut next = Instant::now() + gap.mul_f64(fastrand_offset(names.len()));
    let mut k: u64 = 0;
    while s.phase.get() < 2 {
        for name in &names {
            if s.phase.get() >= 2 {
                return;
            }
            tokio::time::sleep_until(next.into()).await;
            next += gap;
            k += 1;
            let log: Vec<String> = (0..lines)
                .map(|j| log_line(name, k * 8 + j as u64))
                .collect();
            let body = json!({"leases": [], "log": log}).to_string();
            let path = format!("/api/v1/drones/{name}/heartbeat");
            let t = Instant::now();
            match conn
                .request("POST", &path, Some(DRONE_TOKEN), body.as_bytes())
                .await
            {
                Ok(r) if r.status == 200 => {
                    s.heartbeats.set(s.heartbeats.get() + 1);
                    s.heartbeat_ms
                        .borrow_mut()
                        .push(t.elapsed().as_secs_f64() * 1000.0);
                }
                Ok(r) => s.error(format!("heartbeat: HTTP {}", r.status)),
                Err(e) => {
                    s.error(format!("heartbeat: {e}"));
                    let _ = conn.reconnect().await;
                }
            }
        }
    }
}

/// A start offset in [0, 1) that differs per connection.
fn fastrand_offset(n: usize) -> f64 {
    ((n as u64).wrapping_mul(0x9e37_79b9) % 1000) as f64 / 1000.0
}

/// Claims at `rate` per second (open loop) with the drones `names`, each claim followed by
/// the upload file and the completion.
async fn claim_loop(
    s: Rc<Shared>,
    addr: SocketAddr,
    staging: PathBuf,
    names: Vec<String>,
    rate: f64,
) {
    if names.is_empty() || rate <= 0.0 {
        return;
    }
    while s.phase.get() < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Connected only now: the server closes connections idle for long (HTTP 408).
    let mut conn = match Conn::connect(addr).await {
        Ok(c) => c,
        Err(e) => return s.error(format!("connect: {e}")),
    };
    let gap = Duration::from_secs_f64(1.0 / rate);
    let mut next = Instant::now();
    let mut i = 0usize;
    while s.phase.get() == 1 {
        tokio::time::sleep_until(next.into()).await;
        next += gap;
        let name = &names[i % names.len()];
        i += 1;
        let t = Instant::now();
        let body = format!("{{\"drone\":\"{name}\"}}");
        let r = match conn
            .request(
                "POST",
                "/api/v1/work/claim",
                Some(DRONE_TOKEN),
                body.as_bytes(),
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                s.error(format!("claim: {e}"));
                let _ = conn.reconnect().await;
                continue;
            }
        };
        s.claim_ms
            .borrow_mut()
            .push(t.elapsed().as_secs_f64() * 1000.0);
        if r.status == 204 {
            s.no_work.set(s.no_work.get() + 1);
            continue;
        }
        if r.status != 200 {
            s.error(format!("claim: HTTP {}", r.status));
            continue;
        }
        s.claims.set(s.claims.get() + 1);
        let Ok(work) = serde_json::from_slice::<WorkAssignment>(&r.body) else {
            s.error("claim: unreadable answer");
            continue;
        };
        let body = match super::simulated_upload(&staging, &work) {
            Ok(b) => b,
            Err(e) => {
                s.error(e);
                continue;
            }
        };
        let t = Instant::now();
        let path = format!("/api/v1/work/{}/complete", work.lease);
        match conn
            .request("POST", &path, Some(DRONE_TOKEN), body.as_bytes())
            .await
        {
            Ok(r) if r.status == 200 => s
                .complete_ms
                .borrow_mut()
                .push(t.elapsed().as_secs_f64() * 1000.0),
            Ok(r) => s.error(format!("complete: HTTP {}", r.status)),
            Err(e) => {
                s.error(format!("complete: {e}"));
                let _ = conn.reconnect().await;
            }
        }
    }
}

fn sorted(v: &RefCell<Vec<f64>>) -> Vec<f64> {
    let mut v = v.borrow().clone();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

pub async fn run(opts: &ScaleOptions) -> Result<Value, BenchError> {
    super::raise_nofile();
    let scratch = Scratch::new("scale", opts.keep)?;
    let files_scratch = Scratch::files_in(opts.files_dir.as_deref(), "scale", opts.keep)?;
    let files = files_scratch.as_ref().map(|s| s.path.clone());
    // Drones are told to heartbeat every TTL / 4.
    let ttl = (opts.heartbeat_s * 4.0).round().max(4.0) as u64;
    let mut orch = OrchProc::start(
        &scratch.path,
        files.as_deref(),
        "",
        &format!("[leases]\nheartbeat_ttl_s = {ttl}\n"),
    )
    .await?;
    let pid = orch.proc_.pid();
    let t = Instant::now();
    orch.admin()
        .submit(super::flat_set(opts.packages, "sc").into_bytes())
        .await?;
    let submit_s = t.elapsed().as_secs_f64();
    let drone = orch.drone();
    let names: Vec<String> = (0..opts.drones).map(|i| format!("s{i}")).collect();
    let t = Instant::now();
    for chunk in names.chunks(200) {
        let reqs: Vec<build_swarm::wire::orchestrator::RegisterRequest> = chunk
            .iter()
            .map(|n| build_swarm::wire::orchestrator::RegisterRequest {
                name: n.clone(),
                aliases: vec![],
                host: "localhost".into(),
                slots: 2,
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
    let register_s = t.elapsed().as_secs_f64();
    let rss_idle = super::rss_kb(pid).unwrap_or(0);

    let shared = Rc::new(Shared::default());
    let conns = opts.connections.clamp(1, opts.drones.max(1));
    let every = Duration::from_secs_f64(opts.heartbeat_s.max(0.01));
    let mut tasks = Vec::new();
    for k in 0..conns {
        let mine: Vec<String> = names.iter().skip(k).step_by(conns).cloned().collect();
        tasks.push(actix_web::rt::spawn(heartbeat_loop(
            shared.clone(),
            orch.addr(),
            mine,
            every,
            opts.log_lines,
        )));
    }
    let claimers = 8usize.min(opts.drones.max(1));
    for k in 0..claimers {
        let mine: Vec<String> = names.iter().skip(k).step_by(claimers).cloned().collect();
        tasks.push(actix_web::rt::spawn(claim_loop(
            shared.clone(),
            orch.addr(),
            orch.staging(),
            mine,
            opts.claim_rate / claimers as f64,
        )));
    }
    // Phase A: heartbeats only (after one heartbeat period to settle in).
    let settle = every.min(Duration::from_secs_f64(opts.seconds.max(0.5)));
    tokio::time::sleep(settle).await;
    let (cpu0, hb0, t0) = (
        super::cpu_seconds(pid).unwrap_or(0.0),
        shared.heartbeats.get(),
        Instant::now(),
    );
    shared.heartbeat_ms.borrow_mut().clear();
    tokio::time::sleep(Duration::from_secs_f64(opts.seconds)).await;
    let wall_a = t0.elapsed().as_secs_f64();
    let cpu_a = super::cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    let hb_a = shared.heartbeats.get() - hb0;
    let hb_lat = sorted(&shared.heartbeat_ms);
    // Phase B: heartbeats and claims.
    let (cpu1, t1) = (super::cpu_seconds(pid).unwrap_or(0.0), Instant::now());
    shared.phase.set(1);
    tokio::time::sleep(Duration::from_secs_f64(opts.seconds)).await;
    shared.phase.set(2);
    let wall_b = t1.elapsed().as_secs_f64();
    let cpu_b = super::cpu_seconds(pid).unwrap_or(0.0) - cpu1;
    for t in tasks {
        let _ = t.await;
    }
    let rss = super::rss_kb(pid).unwrap_or(0);
    let hwm = vm_hwm_kb(pid).unwrap_or(0);
    let claim_lat = sorted(&shared.claim_ms);
    let complete_lat = sorted(&shared.complete_ms);

    // Restart: kill -9, start again, time to the first successful claim.
    orch.proc_.kill9().await;
    let t = Instant::now();
    orch.respawn()?;
    let claim = format!(
        "{{\"drone\":\"{}\"}}",
        names.first().cloned().unwrap_or_default()
    );
    let recovery = loop {
        if t.elapsed() > Duration::from_secs(120) {
            return Err(BenchError::Failed(
                "no claim succeeded within 120 s of the restart".into(),
            ));
        }
        if let Some(why) = orch.proc_.exited() {
            return Err(BenchError::Failed(why));
        }
        if let Ok(mut c) = Conn::connect(orch.addr()).await {
            if let Ok(r) = c
                .request(
                    "POST",
                    "/api/v1/work/claim",
                    Some(DRONE_TOKEN),
                    claim.as_bytes(),
                )
                .await
            {
                if r.status == 200 {
                    break t.elapsed().as_secs_f64();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let new_pid = orch.proc_.pid();
    let rss_restarted = super::rss_kb(new_pid).unwrap_or(0);
    orch.proc_.stop(Duration::from_secs(5)).await;
    let mb = |kb: u64| round(kb as f64 / 1024.0, 1);
    Ok(json!({
        "bench": "scale",
        "packages": opts.packages,
        "drones": opts.drones,
        "heartbeat_s": opts.heartbeat_s,
        "seconds": opts.seconds,
        "rss_mb": mb(rss),
        "rss_peak_mb": mb(hwm),
        "rss_after_setup_mb": mb(rss_idle),
        "rss_after_restart_mb": mb(rss_restarted),
        "heartbeats_per_s": round(hb_a as f64 / wall_a, 1),
        "heartbeats_expected_per_s": round(opts.drones as f64 / opts.heartbeat_s, 1),
        "heartbeat_cpu_share": round(cpu_a / wall_a, 4),
        "heartbeat_cpu_us_each": round(cpu_a * 1e6 / hb_a.max(1) as f64, 1),
        "heartbeat_p50_ms": round(percentile(&hb_lat, 50.0), 2),
        "heartbeat_p99_ms": round(percentile(&hb_lat, 99.0), 2),
        "log_lines_per_heartbeat": opts.log_lines,
        "claim_rate": opts.claim_rate,
        "claims_per_s": round(shared.claims.get() as f64 / wall_b, 1),
        "claim_p50_ms": round(percentile(&claim_lat, 50.0), 2),
        "claim_p99_ms": round(percentile(&claim_lat, 99.0), 2),
        "complete_p50_ms": round(percentile(&complete_lat, 50.0), 2),
        "complete_p99_ms": round(percentile(&complete_lat, 99.0), 2),
        "cpu_share_with_claims": round(cpu_b / wall_b, 4),
        "no_work": shared.no_work.get(),
        "errors": shared.errors.get(),
        "first_error": shared.first_error.borrow().clone(),
        "restart_to_first_claim_s": round(recovery, 3),
        "submit_s": round(submit_s, 2),
        "register_s": round(register_s, 2),
        "orchestrator": "real binary (swarm-orchestrator process, SQLite state)",
        "state_dir_fs": super::fs_of(&scratch.path),
        "staging_fs": super::fs_of(files.as_deref().unwrap_or(&scratch.path)),
        "machine": super::machine(),
        "date": super::unix_now(),
    }))
}
