//! The real `swarm-orchestrator` process: killed with SIGKILL in the middle of a run and
//! restarted, the run still finishes with every package published exactly once; bad
//! configuration is refused at start-up with one line naming the key and exit code 2.

use crate::common::*;
use build_swarm::client::ApiClient;
use build_swarm::sys::digest::sha256_file;
use build_swarm::wire::orchestrator::{CompleteRequest, WorkAssignment};
use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_swarm-orchestrator");

fn write_config(dir: &Path, port: u16) -> PathBuf {
    write_orchestrator_config(dir, port, "crash-test", 3, "")
}

fn start(config: &Path) -> Child {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn orchestrator")
}

/// The real orchestrator binary on a free port with its state in a temporary directory,
/// up and answering: the directory, its URL and the process.
async fn running_orchestrator() -> (tempfile::TempDir, String, Child) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port);
    let url = format!("http://127.0.0.1:{port}");
    let child = start(&config);
    wait_healthy(&url).await;
    (dir, url, child)
}

async fn wait_healthy(url: &str) {
    let c = ApiClient::with_timeout(url, None, Duration::from_secs(2));
    wait_for(20, "the orchestrator to come up", || async {
        c.healthz().await.is_ok()
    })
    .await;
}

/// A drone that keeps its finished work until the orchestrator acknowledges it.
async fn sim_drone(url: String, staging: PathBuf, name: String, done: Rc<Cell<bool>>) {
    let c = ApiClient::with_timeout(&url, Some(DRONE.into()), Duration::from_secs(3));
    let sim = SimDrone::new(c.clone(), &name, &staging);
    let t0 = Instant::now();
    let mut registered = false;
    let mut held: Vec<(WorkAssignment, Option<CompleteRequest>)> = Vec::new();
    while !done.get() && t0.elapsed() < Duration::from_secs(120) {
        if !registered {
            registered = sim.register(2).await.is_ok();
            if !registered {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let leases = held.iter().map(|(w, _)| w.lease).collect();
        match sim.heartbeat(leases, vec![]).await {
            Ok(commands) => {
                for cmd in commands {
                    held.retain(|(w, _)| Some(w.lease) != cmd.lease);
                }
            }
            Err(e) if e.status() == Some(404) => registered = false,
            Err(_) => {}
        }
        if held.len() < 2 {
            match sim.claim().await {
                Ok(Some(w)) => held.push((w, None)),
                Ok(None) => {}
                Err(_) => {}
            }
        }
        let mut keep = Vec::new();
        for (w, done) in held.drain(..) {
            let req = match done {
                Some(r) => r,
                None => {
                    if c.uploading(w.lease, w.epoch).await.is_err() {
                        keep.push((w, None));
                        continue;
                    }
                    fake_upload(&staging, &w, &artifact_bytes(&w.atom))
                }
            };
            match c.complete(w.lease, &req).await {
                Ok(_) => {}                                                // accepted or stale: done
                Err(e) if e.is_unreachable() => keep.push((w, Some(req))), // try again later
                Err(e) if e.status() == Some(409) => keep.push((w, Some(req))),
                Err(_) => {} // refused: the package went back to the queue
            }
        }
        held = keep;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn sigkill_mid_run_then_restart_publishes_every_package_exactly_once() {
    let (dir, url, mut child) = running_orchestrator().await;

    let n = 80;
    let pkgs: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let deps: Vec<String> = if i > 0 {
                vec![format!("app-misc/p{}-1", i / 2)]
            } else {
                vec![]
            };
            serde_json::json!({"atom": format!("app-misc/p{i}-1"), "deps": deps})
        })
        .collect();
    let admin = ApiClient::new(&url, Some(ADMIN.into()));
    let body = serde_json::json!({ "packages": pkgs }).to_string();
    assert_eq!(admin.submit(body.into_bytes()).await.unwrap().added, n);

    let staging = dir.path().join("staging");
    let done = Rc::new(Cell::new(false));
    let drones: Vec<_> = (0..3)
        .map(|i| {
            sim_drone(
                url.clone(),
                staging.clone(),
                format!("sim{i}"),
                done.clone(),
            )
        })
        .collect();
    let run = futures_util::future::join_all(drones);
    let killer = async {
        // Kill once a good part of the run is done, while drones are mid-protocol.
        let anon = ApiClient::with_timeout(&url, None, Duration::from_secs(2));
        loop {
            if let Ok(s) = anon.status().await {
                if s.counts.built >= n / 3 {
                    assert!(s.counts.built < n, "the kill must land mid-run");
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        // Whatever the kill interrupted, the index on disk is a whole one.
        index_paths(&dir.path().join("binhost"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let child = start(&dir.path().join("orchestrator.toml"));
        wait_healthy(&url).await;
        // Wait for the run to finish.
        let t0 = Instant::now();
        loop {
            if let Ok(s) = anon.status().await {
                if s.counts.built == n && s.counts.unindexed == 0 {
                    break;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(80),
                "run did not finish after the restart"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        done.set(true);
        child
    };
    // Drones keep going until the killer has seen everything built.
    let (mut child, _) = futures_util::future::join(killer, run).await;
    let _ = child.kill();
    let _ = child.wait();

    // Every package is in the binhost with the right bytes, and nothing else is.
    let binhost = dir.path().join("binhost/app-misc");
    let mut files: Vec<String> = std::fs::read_dir(&binhost)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), n, "{files:?}");
    for i in 0..n {
        let atom = format!("app-misc/p{i}-1");
        let f = binhost.join(format!("p{i}-1.gpkg.tar"));
        let expected = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            expected.path(),
            atom_package_bytes(&atom, &artifact_bytes(&atom)),
        )
        .unwrap();
        assert_eq!(
            sha256_file(&f).unwrap(),
            sha256_file(expected.path()).unwrap(),
            "{atom}"
        );
    }
    // The index lists exactly the built packages.
    let expected: Vec<String> = {
        let mut v: Vec<String> = (0..n)
            .map(|i| format!("app-misc/p{i}-1.gpkg.tar"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(index_paths(&dir.path().join("binhost")), expected);
    // Exactly once: each package was moved into the binhost by one completion. (A kill
    // between the move and its commit shows up as a retried completion that finds the
    // very file already there: `how: already there`, never a second move.)
    let log = std::fs::read_to_string(dir.path().join("orchestrator.log")).unwrap();
    let atom_of = |line: &str| {
        line.split("atom: ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .unwrap_or("")
            .to_string()
    };
    let mut moved: HashMap<String, usize> = HashMap::new();
    let mut seen: std::collections::HashSet<String> = Default::default();
    for line in log.lines().filter(|l| l.contains("published")) {
        seen.insert(atom_of(line));
        if line.contains("how: now") {
            *moved.entry(atom_of(line)).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), n, "{seen:?}");
    assert!(
        moved.values().all(|c| *c == 1),
        "moved into the binhost twice: {moved:?}"
    );
    assert!(
        log.contains("queue restored"),
        "the second process restored the state"
    );
}

#[test]
fn bad_config_is_refused_with_one_line_naming_the_key() {
    let tokens = "[auth]\nadmin_token = \"a\"\ndrone_token = \"d\"\n";
    let cases = [
        (
            format!("{tokens}[breaker]\nmax_failures = \"five\"\n"),
            "max_failures",
        ),
        (format!("{tokens}bogus = 1\n"), "bogus"),
        (format!("listen = \"not an address\"\n{tokens}"), "listen"),
        ("name = \"x\"\n".to_string(), "auth.admin_token"),
        (format!("{tokens}gateway = \"ftp://x\"\n"), "gateway"),
        ("this is not toml".to_string(), "line 1"),
    ];
    for (text, key) in cases {
        let (code, err) = check_config(BIN, &text, None);
        assert_eq!(code, 2, "{text}: {err}");
        assert!(err.contains(key), "{key} not named in: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let (code, err) = check_config(
        BIN,
        &format!("missing = 1\n{tokens}").replace("missing = 1\n", ""),
        None,
    );
    assert_eq!(code, 0, "{err}");
    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/o.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/o.toml"));
}

/// The same event is logged once by the real binary (the seed's duplicated log lines).
#[actix_web::test]
async fn the_binary_logs_each_event_once() {
    let (dir, url, mut child) = running_orchestrator().await;
    let admin = ApiClient::new(&url, Some(ADMIN.into()));
    admin.submit(b"app-misc/foo-1.0\n".to_vec()).await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.path().join("orchestrator.log")).unwrap();
    assert_eq!(log.matches("orchestrator listening").count(), 1, "{log}");
    assert_eq!(log.matches("package set added").count(), 1, "{log}");
}

/// An orchestrator stopped (SIGSTOP) for more than three heartbeat TTLs and then continued
/// reclaims nothing and counts no failure: its drones were fine, it was the one away.
#[actix_web::test]
async fn an_orchestrator_that_stood_still_reclaims_nothing_when_it_continues() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port); // heartbeat_ttl_s = 3
    let url = format!("http://127.0.0.1:{port}");
    let mut child = start(&config);
    wait_healthy(&url).await;
    let admin = ApiClient::new(&url, Some(ADMIN.into()));
    admin
        .submit(b"app-misc/a-1\napp-misc/b-1\n".to_vec())
        .await
        .unwrap();
    let client = ApiClient::with_timeout(&url, Some(DRONE.into()), Duration::from_secs(1));
    let sim = SimDrone::new(client, "d1", &dir.path().join("staging"));
    sim.register(2).await.unwrap();
    let w1 = sim.claim().await.unwrap().expect("work");
    let w2 = sim.claim().await.unwrap().expect("work");
    let done = Rc::new(Cell::new(false));
    // The drone heartbeats every 0.75 s throughout (they fail while it stands still).
    let beats = async {
        while !done.get() {
            let _ = sim.heartbeat(vec![w1.lease, w2.lease], vec![]).await;
            tokio::time::sleep(Duration::from_millis(750)).await;
        }
    };
    let pid = child.id() as i32;
    let stall = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        tokio::time::sleep(Duration::from_secs(10)).await;
        unsafe { libc::kill(pid, libc::SIGCONT) };
        // Several TTLs after it continues.
        tokio::time::sleep(Duration::from_secs(7)).await;
        done.set(true);
    };
    futures_util::future::join(beats, stall).await;
    // Completions verify and commit: more than the heartbeats' 1 s on a loaded machine.
    let patient = ApiClient::with_timeout(&url, Some(DRONE.into()), Duration::from_secs(20));
    let sim = SimDrone::new(patient, "d1", &dir.path().join("staging"));
    for w in [&w1, &w2] {
        let r = sim.upload_and_complete(w).await.expect("complete");
        assert!(r.accepted && !r.stale, "{} was taken away: {r:?}", w.atom);
    }
    let metrics = metrics_text(&url).await;
    assert!(
        metrics.contains("build_swarm_lease_reclaims_total{reason=\"drone_lost\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("build_swarm_failures_total{kind=\"infra\"} 0"),
        "{metrics}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// The orchestrator's `/metrics` text.
async fn metrics_text(url: &str) -> String {
    let mut resp = awc::Client::default()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics");
    let body = resp.body().limit(16 << 20).await.expect("body");
    String::from_utf8_lossy(&body).into_owned()
}
