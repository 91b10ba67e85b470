//! `swarm-gateway` on loopback: real orchestrators (in-process, real ports, real SQLite),
//! the gateway in-process or as the real binary, and simulated drones that ask the gateway
//! which orchestrator to use and then speak the drone protocol to it directly.
//!
//! The seed's bug: the gateway sent drones to the orchestrator with the *emptiest* queue, a
//! backup with nothing to do, while the primary sat on 176 waiting packages.

use crate::common::*;
use build_swarm::actors::orchestrator::gateway_registration::{
    GatewayRegistration, RegistrationSettings,
};
use build_swarm::client::gateway::{pick_orchestrator, GatewayClient};
use build_swarm::client::ApiClient;
use build_swarm::config::GatewayConfig;
use build_swarm::gateway::Gateway;
use build_swarm::sys::logging::Capture;
use build_swarm::wire::gateway::{OrchestratorEntry, OrchestratorRegistration};
use build_swarm::wire::orchestrator::WorkAssignment;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::rc::Rc;
use std::time::{Duration, Instant};

const GATEWAY_BIN: &str = env!("CARGO_BIN_EXE_swarm-gateway");

// ---- helpers ----

/// A gateway config for tests: loopback, port 0, 1 s polls, unhealthy after 2 failures.
fn gateway_config(orchestrators: &[&str]) -> GatewayConfig {
    let mut cfg = GatewayConfig {
        listen: "127.0.0.1:0".into(),
        orchestrators: orchestrators.iter().map(|u| u.to_string()).collect(),
        poll_interval_s: 1,
        unhealthy_after: 2,
        ..GatewayConfig::default()
    };
    cfg.auth.admin_token = Some(ADMIN.into());
    cfg
}

struct TestGateway {
    url: String,
    handle: actix_web::dev::ServerHandle,
    logs: Capture,
}

impl TestGateway {
    fn client(&self) -> GatewayClient {
        GatewayClient::with_timeout(&self.url, None, Duration::from_secs(3))
    }
    fn admin(&self) -> GatewayClient {
        GatewayClient::with_timeout(&self.url, Some(ADMIN.into()), Duration::from_secs(3))
    }
}

async fn spawn_gateway(cfg: GatewayConfig) -> TestGateway {
    let logs = Capture::default();
    let gw = Gateway::start(cfg, logs.logger(slog::Level::Debug), false)
        .await
        .expect("gateway starts");
    let url = format!("http://127.0.0.1:{}", gw.port);
    actix_web::rt::spawn(gw.server);
    TestGateway {
        url,
        handle: gw.handle,
        logs,
    }
}

/// Calls `f` every 50 ms until it gives `Some`; fails the test after `limit`.
async fn entry(gw: &GatewayClient, url: &str) -> Option<OrchestratorEntry> {
    gw.orchestrators()
        .await
        .ok()?
        .orchestrators
        .into_iter()
        .find(|e| e.url == url)
}

/// Waits until the gateway has polled every one of `urls` successfully.
async fn wait_all_healthy(gw: &TestGateway, urls: &[&str]) {
    let c = gw.client();
    eventually("every orchestrator polled", Duration::from_secs(10), || {
        let c = c.clone();
        async move {
            let list = c.orchestrators().await.ok()?;
            urls.iter()
                .all(|u| list.orchestrators.iter().any(|e| e.url == *u && e.healthy))
                .then_some(())
        }
    })
    .await;
}

fn set_of(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("app-misc/{prefix}{i}-1.0\n"))
        .collect()
}

async fn built(app_url: &str) -> Option<usize> {
    let c = ApiClient::with_timeout(app_url, None, Duration::from_secs(2));
    c.status().await.ok().map(|s| s.counts.built)
}

fn binhost_files(app: &TestApp) -> usize {
    std::fs::read_dir(app.binhost().join("app-misc"))
        .map(|d| d.count())
        .unwrap_or(0)
}

// ---- simulated drones ----

#[derive(Default)]
struct Trace {
    /// (drone, orchestrator URL) for every pick a drone acted on, in order.
    picks: Vec<(String, String)>,
    /// Accepted completions per orchestrator URL.
    built: HashMap<String, usize>,
}

struct DroneEnv {
    gateway: String,
    /// Orchestrator URL → its staging directory (where "rsync" puts uploads).
    stagings: HashMap<String, PathBuf>,
    build_time: Duration,
    done: Cell<bool>,
    trace: RefCell<Trace>,
}

impl DroneEnv {
    fn new(gateway: &str, apps: &[&TestApp], build_time: Duration) -> Rc<DroneEnv> {
        Rc::new(DroneEnv {
            gateway: gateway.to_string(),
            stagings: apps.iter().map(|a| (a.url.clone(), a.staging())).collect(),
            build_time,
            done: Cell::new(false),
            trace: RefCell::new(Trace::default()),
        })
    }
    fn built_on(&self, url: &str) -> usize {
        self.trace.borrow().built.get(url).copied().unwrap_or(0)
    }
}

/// The simulated drone `name` talking to the orchestrator behind `c`.
fn sim(env: &DroneEnv, c: &ApiClient, name: &str) -> SimDrone {
    let Some(staging) = env.stagings.get(c.base()) else {
        panic!("no staging for {}", c.base());
    };
    SimDrone::new(c.clone(), name, staging)
}

async fn build_one(env: &DroneEnv, c: &ApiClient, w: &WorkAssignment) -> bool {
    tokio::time::sleep(env.build_time).await;
    matches!(sim(env, c, "").upload_and_complete(w).await, Ok(r) if r.accepted)
}

/// A drone as docs/contract.md §1 describes it: asks the gateway at start, when its
/// orchestrator has had no work for it for a second, and when its orchestrator stops
/// answering; when the gateway does not answer, it keeps the orchestrator it has. After
/// the pick it talks to the orchestrator directly.
async fn sim_drone(env: Rc<DroneEnv>, name: String) {
    let gw = GatewayClient::with_timeout(&env.gateway, None, Duration::from_secs(2));
    let mut current: Option<ApiClient> = None;
    let mut ask_gateway = true;
    let mut idle_since: Option<Instant> = None;
    let t0 = Instant::now();
    while !env.done.get() && t0.elapsed() < Duration::from_secs(90) {
        if ask_gateway {
            match gw.pick().await {
                Ok(choice) => {
                    let c = ApiClient::with_timeout(
                        &choice.url,
                        Some(DRONE.into()),
                        Duration::from_secs(2),
                    );
                    if sim(&env, &c, &name).register(1).await.is_ok() {
                        env.trace
                            .borrow_mut()
                            .picks
                            .push((name.clone(), choice.url.clone()));
                        current = Some(c);
                        ask_gateway = false;
                        idle_since = None;
                    } else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                // The gateway is down or knows no healthy orchestrator: keep ours, if any.
                Err(_) if current.is_some() => {
                    ask_gateway = false;
                    idle_since = None;
                }
                Err(_) => {}
            }
        }
        let Some(c) = current.clone() else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        match c.claim(&name).await {
            Ok(Some(w)) => {
                idle_since = None;
                if build_one(&env, &c, &w).await {
                    *env.trace
                        .borrow_mut()
                        .built
                        .entry(c.base().to_string())
                        .or_default() += 1;
                }
            }
            Ok(None) => {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(1) {
                    ask_gateway = true;
                }
            }
            Err(e) if e.status() == Some(404) => {
                let _ = sim(&env, &c, &name).register(1).await;
            }
            Err(_) => ask_gateway = true,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn fleet(env: &Rc<DroneEnv>, n: usize) -> impl Future<Output = Vec<()>> {
    futures_util::future::join_all((0..n).map(|i| sim_drone(env.clone(), format!("sim{i}"))))
}

// ---- the seed's bug ----

#[actix_web::test]
async fn the_empty_backup_is_never_picked_and_every_package_is_built_on_the_primary() {
    let backup = spawn_app(|c| c.name = "backup".into()).await;
    let primary = spawn_app(|c| c.name = "primary".into()).await;
    let n = 40;
    assert!(primary.submit(&set_of("p", n)).await.added > 0);
    // The backup is listed first: "first in the list" and "emptiest queue" both pick it.
    let gw = spawn_gateway(gateway_config(&[&backup.url, &primary.url])).await;
    wait_all_healthy(&gw, &[&backup.url, &primary.url]).await;

    let choice = gw.client().pick().await.unwrap();
    assert_eq!(
        (choice.name.as_str(), choice.url.as_str(), choice.queued),
        ("primary", primary.url.as_str(), n)
    );
    // The helper drones use says the same.
    assert_eq!(pick_orchestrator(&gw.url).await.unwrap(), choice);

    let env = DroneEnv::new(&gw.url, &[&backup, &primary], Duration::from_millis(5));
    let watcher = async {
        eventually(
            "every package built on the primary",
            Duration::from_secs(60),
            || async { (built(&primary.url).await? == n).then_some(()) },
        )
        .await;
        env.done.set(true);
    };
    futures_util::future::join(watcher, fleet(&env, 3)).await;

    assert_eq!(env.built_on(&primary.url), n);
    assert_eq!(binhost_files(&primary), n);
    let picks = env.trace.borrow().picks.clone();
    assert!(picks.len() >= 3, "{picks:?}");
    assert!(
        picks.iter().all(|(_, url)| *url == primary.url),
        "a drone was sent to the empty backup: {picks:?}"
    );
    // No drone ever even registered with the backup.
    let at_backup = backup.anon().drones().await.unwrap().drones;
    assert!(at_backup.is_empty(), "{at_backup:?}");
}

// ---- failover ----

#[actix_web::test]
async fn the_primary_stopped_mid_run_sends_the_drones_to_the_backup_which_finishes_its_set() {
    let backup = spawn_app(|c| c.name = "backup".into()).await;
    let primary = spawn_app(|c| c.name = "primary".into()).await;
    let (np, nb) = (60, 20);
    assert!(primary.submit(&set_of("p", np)).await.added > 0);
    assert!(backup.submit(&set_of("b", nb)).await.added > 0);
    let gw = spawn_gateway(gateway_config(&[&backup.url, &primary.url])).await;
    wait_all_healthy(&gw, &[&backup.url, &primary.url]).await;
    assert_eq!(gw.client().pick().await.unwrap().url, primary.url);

    let env = DroneEnv::new(&gw.url, &[&backup, &primary], Duration::from_millis(30));
    let primary_url = primary.url.clone();
    let backup_url = backup.url.clone();
    let handle = primary.handle.clone();
    let director = async {
        let stopped_at = eventually(
            "a third of the primary built",
            Duration::from_secs(60),
            || {
                let url = primary_url.clone();
                async move {
                    let b = built(&url).await?;
                    (b >= np / 3).then_some(b)
                }
            },
        )
        .await;
        assert!(stopped_at < np, "the stop must land mid-run");
        assert_eq!(
            env.built_on(&backup_url),
            0,
            "nobody worked on the backup before"
        );
        handle.stop(false).await;
        let t0 = Instant::now();
        let c = gw.client();
        eventually(
            "the gateway answers the backup",
            Duration::from_secs(5),
            || {
                let c = c.clone();
                let backup_url = backup_url.clone();
                async move { (c.pick().await.ok()?.url == backup_url).then_some(()) }
            },
        )
        .await;
        let took = t0.elapsed();
        // One poll interval (1 s) plus the poll's own timeout (0.75 s), and some slack.
        assert!(took < Duration::from_millis(2500), "took {took:?}");
        eventually(
            "the backup's set built",
            Duration::from_secs(60),
            || async { (built(&backup_url).await? == nb).then_some(()) },
        )
        .await;
        env.done.set(true);
        took
    };
    let (took, _) = futures_util::future::join(director, fleet(&env, 3)).await;
    println!("the gateway answered the backup {took:?} after the primary stopped");
    assert_eq!(env.built_on(&backup.url), nb);
    assert_eq!(binhost_files(&backup), nb);
    let moved: Vec<String> = env
        .trace
        .borrow()
        .picks
        .iter()
        .filter(|(_, u)| *u == backup.url)
        .map(|(d, _)| d.clone())
        .collect();
    assert!(
        moved.len() >= 3,
        "every drone moved to the backup: {moved:?}"
    );
    assert!(binhost_files(&primary) < np);
}

// ---- the gateway killed mid-run (the real binary) ----

fn write_gateway_config(dir: &Path, port: u16, orchestrators: &[&str]) -> PathBuf {
    let list: Vec<String> = orchestrators.iter().map(|u| format!("\"{u}\"")).collect();
    let text = format!(
        r#"listen = "127.0.0.1:{port}"
orchestrators = [{}]
poll_interval_s = 1

[auth]
admin_token = "{ADMIN}"

[log]
level = "debug"
file = "{}/gateway.log"
"#,
        list.join(", "),
        dir.display()
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).expect("write gateway config");
    path
}

#[actix_web::test]
async fn the_gateway_killed_mid_run_does_not_stop_the_drones() {
    let orch = spawn_app(|c| c.name = "only".into()).await;
    let n = 40;
    assert!(orch.submit(&set_of("p", n)).await.added > 0);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_gateway_config(dir.path(), port, &[&orch.url]);
    let mut child = tokio::process::Command::new(GATEWAY_BIN)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn swarm-gateway");
    let gw_url = format!("http://127.0.0.1:{port}");
    let gw = GatewayClient::with_timeout(&gw_url, None, Duration::from_secs(2));
    eventually(
        "the gateway picks the orchestrator",
        Duration::from_secs(20),
        || {
            let gw = gw.clone();
            async move { gw.pick().await.ok() }
        },
    )
    .await;

    let env = DroneEnv::new(&gw_url, &[&orch], Duration::from_millis(30));
    let orch_url = orch.url.clone();
    let killer = async {
        eventually("a quarter built", Duration::from_secs(60), || async {
            (built(&orch_url).await? >= n / 4).then_some(())
        })
        .await;
        assert!(
            built(&orch_url).await.unwrap() < n,
            "the kill must land mid-run"
        );
        child.kill().await.expect("kill the gateway");
        assert!(gw.pick().await.is_err(), "the gateway is gone");
        eventually("every package built", Duration::from_secs(60), || async {
            (built(&orch_url).await? == n).then_some(())
        })
        .await;
        env.done.set(true);
    };
    futures_util::future::join(killer, fleet(&env, 3)).await;
    assert_eq!(env.built_on(&orch.url), n);
    assert_eq!(binhost_files(&orch), n);
    let log = std::fs::read_to_string(dir.path().join("gateway.log")).unwrap();
    assert_eq!(log.matches("gateway listening").count(), 1, "{log}");
}

// ---- registration ----

#[actix_web::test]
async fn an_orchestrator_with_gateway_set_registers_itself_and_shows_up() {
    let mut cfg = gateway_config(&[]);
    cfg.accept_registrations = true;
    let gw = spawn_gateway(cfg).await;
    assert!(gw.logs.text().contains("no orchestrators configured"));
    let c = gw.client();
    assert_eq!(c.pick().await.unwrap_err().status(), Some(503));

    let gw_url = gw.url.clone();
    let orch = spawn_app(move |c| {
        c.name = "self-registered".into();
        c.gateway = Some(gw_url);
    })
    .await;
    assert!(orch.submit(&set_of("p", 3)).await.added > 0);
    let e = eventually(
        "the orchestrator listed, healthy",
        Duration::from_secs(10),
        || {
            let c = c.clone();
            let url = orch.url.clone();
            async move { entry(&c, &url).await.filter(|e| e.healthy && e.queued == 3) }
        },
    )
    .await;
    assert_eq!(e.name, "self-registered");
    assert_eq!(e.source, "registered");
    assert_eq!(
        (e.total, e.built, e.failed, e.error.clone()),
        (3, 0, 0, None)
    );
    assert!(e.last_poll.is_some());
    let choice = c.pick().await.unwrap();
    assert_eq!((choice.url, choice.queued), (orch.url.clone(), 3));
    assert!(orch.logs.text().contains("registered with the gateway"));
}

#[actix_web::test]
async fn registration_needs_the_admin_token_and_a_valid_url() {
    let orch = spawn_app(|c| c.name = "o".into()).await;
    let gw = spawn_gateway(gateway_config(&[])).await;
    let req = OrchestratorRegistration {
        url: orch.url.clone(),
        name: "o".into(),
    };
    let wrong = GatewayClient::new(&gw.url, Some("wrong".into()));
    assert_eq!(wrong.register(&req).await.unwrap_err().status(), Some(401));
    assert_eq!(
        gw.client().register(&req).await.unwrap_err().status(),
        Some(401)
    );
    let bad = OrchestratorRegistration {
        url: "orch:8080".into(),
        name: "o".into(),
    };
    let err = gw.admin().register(&bad).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("orch:8080"), "{err}");
    assert!(gw
        .client()
        .orchestrators()
        .await
        .unwrap()
        .orchestrators
        .is_empty());
    let r = gw.admin().register(&req).await.unwrap();
    assert!(r.new);
    assert!(!gw.admin().register(&req).await.unwrap().new);
    assert_eq!(
        gw.client()
            .orchestrators()
            .await
            .unwrap()
            .orchestrators
            .len(),
        1
    );

    // A gateway without an admin token takes no registrations at all.
    let mut cfg = gateway_config(&[&orch.url]);
    cfg.auth.admin_token = None;
    let open = spawn_gateway(cfg).await;
    assert!(open.logs.text().contains("registrations are refused"));
    let other = OrchestratorRegistration {
        url: "http://127.0.0.1:9".into(),
        name: "rogue".into(),
    };
    let err = open.client().register(&other).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    let mut cfg = gateway_config(&[&orch.url]);
    cfg.accept_registrations = false;
    let closed = spawn_gateway(cfg).await;
    let err = closed.admin().register(&other).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(err.to_string().contains("accept_registrations"), "{err}");
    for g in [&open, &closed] {
        let list = g.client().orchestrators().await.unwrap().orchestrators;
        assert_eq!(list.len(), 1, "{list:?}");
    }
}

#[actix_web::test]
async fn registration_is_repeated_so_a_restarted_gateway_learns_the_orchestrator_again() {
    let orch = spawn_app(|c| c.name = "steady".into()).await;
    let first = spawn_gateway(gateway_config(&[])).await;
    let port: u16 = first.url.rsplit(':').next().unwrap().parse().unwrap();
    let settings = RegistrationSettings {
        gateway: first.url.clone(),
        url: orch.url.clone(),
        name: "steady".into(),
        token: Some(ADMIN.into()),
        every: Duration::from_millis(300),
        retry: Duration::from_millis(100),
    };
    let logs = Capture::default();
    let _reg = actix::Actor::start(GatewayRegistration::new(
        settings,
        logs.logger(slog::Level::Debug),
    ));
    let c = first.client();
    let url = orch.url.clone();
    eventually(
        "registered with the first gateway",
        Duration::from_secs(5),
        || {
            let c = c.clone();
            let url = url.clone();
            async move { entry(&c, &url).await }
        },
    )
    .await;
    first.handle.stop(false).await;
    // While no gateway runs, registering fails (logged, not fatal).
    eventually(
        "a failed registration logged",
        Duration::from_secs(5),
        || async {
            logs.text()
                .contains("cannot register with the gateway")
                .then_some(())
        },
    )
    .await;
    let mut cfg = gateway_config(&[]);
    cfg.listen = format!("127.0.0.1:{port}");
    let second = spawn_gateway(cfg).await;
    let c = second.client();
    let e = eventually("the new gateway learned it", Duration::from_secs(5), || {
        let c = c.clone();
        let url = url.clone();
        async move { entry(&c, &url).await.filter(|e| e.healthy) }
    })
    .await;
    assert_eq!(e.name, "steady");
}

// ---- health ----

#[actix_web::test]
async fn an_orchestrator_is_unhealthy_after_failed_polls_and_healthy_again_when_it_answers() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let gw = spawn_gateway(gateway_config(&[&url])).await;
    let c = gw.client();
    let e = eventually("a failed poll", Duration::from_secs(5), || {
        let c = c.clone();
        let url = url.clone();
        async move { entry(&c, &url).await.filter(|e| e.error.is_some()) }
    })
    .await;
    assert!(!e.healthy);
    let err = c.pick().await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert!(err.to_string().contains(&url), "{err}");
    // The 503 is a JSON error body.
    let raw = awc::Client::new()
        .get(format!("{}/api/v1/orchestrator", gw.url))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert!(raw["error"]
        .as_str()
        .unwrap()
        .contains("no healthy orchestrator"));

    // It comes up: healthy at the next poll.
    let orch = spawn_app(|c| {
        c.name = "late".into();
        c.listen = format!("127.0.0.1:{port}");
    })
    .await;
    let t0 = Instant::now();
    let choice = eventually("the orchestrator picked", Duration::from_secs(5), || {
        let c = c.clone();
        async move { c.pick().await.ok() }
    })
    .await;
    assert_eq!(choice.name, "late");
    assert!(
        t0.elapsed() < Duration::from_millis(2000),
        "{:?}",
        t0.elapsed()
    );

    // It goes away: still healthy after one failed poll, unhealthy after the second.
    orch.handle.stop(false).await;
    let seen: RefCell<Vec<(u32, bool)>> = RefCell::new(Vec::new());
    eventually("unhealthy", Duration::from_secs(6), || {
        let c = c.clone();
        let url = url.clone();
        let seen = &seen;
        async move {
            let e = entry(&c, &url).await?;
            seen.borrow_mut().push((e.failed_polls, e.healthy));
            (!e.healthy).then_some(())
        }
    })
    .await;
    let seen = seen.into_inner();
    assert!(
        seen.iter().all(|(f, h)| (*f < 2) == *h),
        "health must follow unhealthy_after = 2: {seen:?}"
    );
    assert!(seen.iter().any(|(f, _)| *f == 2), "{seen:?}");
    assert_eq!(c.pick().await.unwrap_err().status(), Some(503));
}

// ---- merged listings ----

#[actix_web::test]
async fn merged_status_and_drones_sum_over_orchestrators_and_name_them() {
    let a = spawn_app(|c| c.name = "alpha".into()).await;
    let b = spawn_app(|c| c.name = "beta".into()).await;
    assert!(a.submit(&set_of("a", 5)).await.added > 0);
    assert!(b.submit(&set_of("b", 3)).await.added > 0);
    a.register("da1", 2).await;
    a.register("da2", 1).await;
    b.register("db1", 1).await;
    // alpha: one building; beta: one built.
    let building = a.drone().claim("da1").await.unwrap().unwrap();
    let w = b.drone().claim("db1").await.unwrap().unwrap();
    b.drone().uploading(w.lease, w.epoch).await.unwrap();
    let req = fake_upload(&b.staging(), &w, &artifact_bytes(&w.atom));
    assert!(b.drone().complete(w.lease, &req).await.unwrap().accepted);

    let gw = spawn_gateway(gateway_config(&[&a.url, &b.url])).await;
    wait_all_healthy(&gw, &[&a.url, &b.url]).await;
    let c = gw.client();
    let s = c.status().await.unwrap();
    assert_eq!(s.name, "gateway");
    assert_eq!(
        (
            s.counts.total,
            s.counts.queued,
            s.counts.building,
            s.counts.built
        ),
        (8, 6, 1, 1)
    );
    assert_eq!(s.progress_pct, 12.5);
    assert_eq!(s.drones.total, 3);
    let per: Vec<(String, String, usize, bool)> = s
        .orchestrators
        .iter()
        .map(|o| {
            (
                o.status.name.clone(),
                o.url.clone(),
                o.status.counts.total,
                o.healthy,
            )
        })
        .collect();
    assert_eq!(
        per,
        vec![
            ("alpha".into(), a.url.clone(), 5, true),
            ("beta".into(), b.url.clone(), 3, true)
        ]
    );

    let d = c.drones().await.unwrap();
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    let mut where_: Vec<(String, String, String)> = d
        .drones
        .iter()
        .map(|x| {
            (
                x.drone.name.clone(),
                x.orchestrator.clone(),
                x.orchestrator_url.clone(),
            )
        })
        .collect();
    where_.sort();
    assert_eq!(
        where_,
        vec![
            ("da1".into(), "alpha".into(), a.url.clone()),
            ("da2".into(), "alpha".into(), a.url.clone()),
            ("db1".into(), "beta".into(), b.url.clone()),
        ]
    );
    let da1 = d.drones.iter().find(|x| x.drone.name == "da1").unwrap();
    assert_eq!(da1.drone.current, vec![building.atom.clone()]);
    assert_eq!(da1.drone.slots, 2);
    // The orchestrator's own field names are kept, every one of them.
    let raw: serde_json::Value = ApiClient::new(&gw.url, None)
        .get("/api/v1/drones")
        .await
        .unwrap();
    let direct: serde_json::Value = a.anon().get("/api/v1/drones").await.unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let mut expected = keys(&direct["drones"][0]);
    expected.extend(["orchestrator".to_string(), "orchestrator_url".to_string()]);
    expected.sort();
    assert_eq!(keys(&raw["drones"][0]), expected);

    let list = c.orchestrators().await.unwrap().orchestrators;
    let counts: Vec<(usize, usize, usize, usize)> = list
        .iter()
        .map(|e| (e.queued, e.total, e.built, e.failed))
        .collect();
    assert_eq!(counts, vec![(4, 5, 0, 0), (2, 3, 1, 0)]);

    // beta goes away: it is named as not answering and left out of the sums.
    b.handle.stop(false).await;
    let s = eventually("beta unhealthy", Duration::from_secs(6), || {
        let c = c.clone();
        async move {
            c.status()
                .await
                .ok()
                .filter(|s| !s.orchestrators[1].healthy)
        }
    })
    .await;
    assert_eq!((s.counts.total, s.drones.total), (5, 2));
    assert!(s.orchestrators[1].error.is_some());
    assert_eq!(s.orchestrators[1].status.name, "beta");
    let d = c.drones().await.unwrap();
    assert_eq!(d.drones.len(), 2);
    assert_eq!(d.errors.len(), 1);
    assert_eq!(d.errors[0].orchestrator, "beta");
}

#[actix_web::test]
async fn a_read_token_is_sent_to_orchestrators_and_guards_the_listings_but_not_the_pick() {
    let orch = spawn_app(|c| c.auth.read_token = Some("reader".into())).await;
    assert!(orch.submit(&set_of("p", 2)).await.added > 0);
    let mut cfg = gateway_config(&[&orch.url]);
    cfg.auth.read_token = Some("reader".into());
    let gw = spawn_gateway(cfg).await;
    let reader = GatewayClient::new(&gw.url, Some("reader".into()));
    eventually("polled with the read token", Duration::from_secs(5), || {
        let reader = reader.clone();
        let url = orch.url.clone();
        async move { entry(&reader, &url).await.filter(|e| e.healthy) }
    })
    .await;
    assert_eq!(gw.client().pick().await.unwrap().queued, 2);
    assert_eq!(gw.client().status().await.unwrap_err().status(), Some(401));
    assert_eq!(gw.client().drones().await.unwrap_err().status(), Some(401));
    assert_eq!(
        gw.client().orchestrators().await.unwrap_err().status(),
        Some(401)
    );
    assert_eq!(reader.status().await.unwrap().counts.total, 2);
    assert_eq!(gw.admin().drones().await.unwrap().errors.len(), 0);
}

// ---- configuration ----

#[test]
fn bad_config_is_refused_with_one_line_naming_the_key() {
    let ok = "orchestrators = [\"http://orch-a:8080\", \"http://orch-b:8080\"]\n";
    let cases = [
        (
            "orchestrators = [\"http://orch-a:8080\", \"orch-b:8080\"]\n".to_string(),
            "orchestrators[1]",
        ),
        (
            "orchestrators = [\"http://a:8080\", \"http://a:8080/\"]\n".to_string(),
            "orchestrators[1]",
        ),
        (
            "orchestrators = \"http://a:8080\"\n".to_string(),
            "orchestrators",
        ),
        (
            "accept_registrations = false\n".to_string(),
            "orchestrators",
        ),
        (String::new(), "auth.admin_token"),
        (format!("{ok}poll_interval_s = 0\n"), "poll_interval_s"),
        (format!("{ok}unhealthy_after = 0\n"), "unhealthy_after"),
        (format!("{ok}listen = \"anywhere\"\n"), "listen"),
        (format!("{ok}[auth]\nadmin_tokn = \"x\"\n"), "admin_tokn"),
        ("this is not toml".to_string(), "line 1"),
    ];
    for (text, key) in cases {
        let (code, err) = check_config(GATEWAY_BIN, &text, None);
        assert_eq!(code, 2, "{text}: {err}");
        assert!(err.contains(key), "{key} not named in: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert_eq!(check_config(GATEWAY_BIN, ok, None).0, 0);
    // No orchestrators but the token from the environment: registrations can teach it.
    let (code, err) = check_config(GATEWAY_BIN, "", Some("from-env"));
    assert_eq!(code, 0, "{err}");
    let out = std::process::Command::new(GATEWAY_BIN)
        .args(["--config", "/nonexistent/g.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/g.toml"));
}
