//! `swarm-bench index`: how long after a completion is acknowledged an index on disk
//! lists the package (what a dependent waits for), with 1,000 and with 50,000 packages
//! published, against the real `swarm-orchestrator` binary.
//!
//! Background drones keep completing packages (so the index is written every
//! `write_interval_ms`, as in a busy farm) while a probe drone completes one package at a
//! time, at a random moment, and watches `binhost_dir/Packages` (its mtime every
//! millisecond; the file when it changed) until it lists the probe's package.

use super::{percentile, round, BenchError, OrchProc, Scratch};
use build_swarm::client::ApiClient;
use build_swarm::wire::orchestrator::{CompleteRequest, RegisterRequest};
use serde_json::{json, Value};
use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Published packages at which latencies are measured.
    pub sizes: Vec<usize>,
    pub samples: usize,
    /// Drones completing packages in the background.
    pub background: usize,
    pub interval_ms: u64,
    pub keep: bool,
}

async fn register(drone: &ApiClient, name: &str) -> Result<(), BenchError> {
    drone
        .register(&RegisterRequest {
            name: name.into(),
            aliases: vec![],
            host: "localhost".into(),
            slots: 1,
            version: "bench".into(),
            restart_command: vec![],
            environment: None,
        })
        .await?;
    Ok(())
}

/// One claim + upload + complete; the published path, once acknowledged.
async fn cycle(
    drone: &ApiClient,
    staging: &Path,
    name: &str,
) -> Result<Option<String>, BenchError> {
    let Some(w) = drone.claim(name).await? else {
        return Ok(None);
    };
    let body = super::simulated_upload(staging, &w)?;
    let req: CompleteRequest =
        serde_json::from_str(&body).map_err(|e| BenchError::Failed(e.to_string()))?;
    drone.uploading(w.lease, w.epoch).await?;
    let done = drone.complete(w.lease, &req).await?;
    Ok(done.accepted.then_some(req.path))
}

/// Waits until `binhost/Packages` lists `path`; the time it took.
async fn until_listed(binhost: &Path, path: &str, limit: Duration) -> Result<Duration, BenchError> {
    let t0 = Instant::now();
    let file = binhost.join("Packages");
    let needle = format!("\nPATH: {path}\n");
    let mut seen = None;
    loop {
        let mtime = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
        if mtime.is_some() && mtime != seen {
            seen = mtime;
            if std::fs::read_to_string(&file)
                .map(|t| t.contains(&needle))
                .unwrap_or(false)
            {
                return Ok(t0.elapsed());
            }
        }
        if t0.elapsed() > limit {
            return Err(BenchError::Failed(format!(
                "{path} not in the index after {limit:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

pub async fn run(opts: &IndexOptions) -> Result<Value, BenchError> {
    super::raise_nofile();
    let scratch = Scratch::new("index", opts.keep)?;
    let orch = OrchProc::start(
        &scratch.path,
        None,
        "",
        &format!(
            "[leases]\nheartbeat_ttl_s = 3600\n\n[binhost]\nwrite_interval_ms = {}\n",
            opts.interval_ms
        ),
    )
    .await?;
    let largest = opts.sizes.iter().copied().max().unwrap_or(0);
    let total = largest + (opts.samples + 2000) * (opts.sizes.len() + 1);
    orch.admin()
        .submit(super::flat_set(total, "ix").into_bytes())
        .await?;
    let drone = orch.drone();
    let staging = orch.staging();
    let binhost = orch.files.join("binhost");
    register(&drone, "probe").await?;
    for i in 0..opts.background {
        register(&drone, &format!("bg{i}")).await?;
    }
    let published = Rc::new(Cell::new(0usize));
    let target = Rc::new(Cell::new(0usize));
    let stop = Rc::new(Cell::new(false));
    let errors = Rc::new(Cell::new(0usize));
    // Background drones: as fast as they can up to `target`, then a few a second.
    let mut tasks = Vec::new();
    for i in 0..opts.background {
        let (drone, staging) = (drone.clone(), staging.clone());
        let (published, target, stop, errors) = (
            published.clone(),
            target.clone(),
            stop.clone(),
            errors.clone(),
        );
        tasks.push(actix_web::rt::spawn(async move {
            let name = format!("bg{i}");
            while !stop.get() {
                match cycle(&drone, &staging, &name).await {
                    Ok(Some(_)) => published.set(published.get() + 1),
                    Ok(None) => break,
                    Err(_) => errors.set(errors.get() + 1),
                }
                if published.get() >= target.get() {
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                }
            }
        }));
    }
    let mut at = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for &size in &opts.sizes {
        target.set(size);
        let t = Instant::now();
        while published.get() < size {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if t.elapsed() > Duration::from_secs(1800) {
                return Err(BenchError::Failed(format!(
                    "could not publish {size} packages"
                )));
            }
        }
        let mut lat = Vec::with_capacity(opts.samples);
        for _ in 0..opts.samples {
            // A random moment relative to the index writes.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            tokio::time::sleep(Duration::from_millis(seed % (opts.interval_ms.max(10) + 1))).await;
            let Some(path) = cycle(&drone, &staging, "probe").await? else {
                return Err(BenchError::Failed("the set ran out".into()));
            };
            published.set(published.get() + 1);
            let d = until_listed(&binhost, &path, Duration::from_secs(120)).await?;
            lat.push(d.as_secs_f64() * 1000.0);
        }
        lat.sort_by(|a, b| a.total_cmp(b));
        let index_bytes = std::fs::metadata(binhost.join("Packages"))
            .map(|m| m.len())
            .unwrap_or(0);
        at.push(json!({
            "published": published.get(),
            "samples": lat.len(),
            "p50_ms": round(percentile(&lat, 50.0), 1),
            "p99_ms": round(percentile(&lat, 99.0), 1),
            "max_ms": round(lat.last().copied().unwrap_or(0.0), 1),
            "index_bytes": index_bytes,
        }));
    }
    stop.set(true);
    for t in tasks {
        let _ = t.await;
    }
    let mut orch = orch;
    orch.proc_.stop(Duration::from_secs(5)).await;
    Ok(json!({
        "bench": "index",
        "write_interval_ms": opts.interval_ms,
        "background_drones": opts.background,
        "at": at,
        "errors": errors.get(),
        "measured": "completion acknowledged → binhost_dir/Packages on disk lists the package (probe polls its mtime every 1 ms)",
        "orchestrator": "real binary (swarm-orchestrator process, SQLite state)",
        "fs": super::fs_of(&scratch.path),
        "machine": super::machine(),
        "date": super::unix_now(),
    }))
}
