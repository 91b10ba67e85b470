//! Test helpers: a real orchestrator on a real port (port 0) with a real SQLite file in a
//! temporary directory, and clients for it.
#![allow(dead_code)]

use build_swarm::client::ApiClient;
use build_swarm::config::OrchestratorConfig;
use build_swarm::orchestrator::Orchestrator;
use build_swarm::sys::digest::sha256_file;
use build_swarm::sys::logging::Capture;
use build_swarm::wire::orchestrator::{CompleteRequest, RegisterRequest, WorkAssignment};
use std::path::{Path, PathBuf};

pub const ADMIN: &str = "admin-secret";
pub const DRONE: &str = "drone-secret";

pub struct TestApp {
    pub handle: actix_web::dev::ServerHandle,
    pub queue: actix::Addr<build_swarm::actors::orchestrator::queue::PackageQueue>,
    pub hook: actix::Addr<build_swarm::actors::orchestrator::publish_hook::PublishHook>,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub cfg: OrchestratorConfig,
    pub logs: Capture,
}

pub fn test_config(dir: &Path) -> OrchestratorConfig {
    let mut cfg = OrchestratorConfig {
        listen: "127.0.0.1:0".into(),
        name: "test-orch".into(),
        state_dir: dir.join("state"),
        staging_dir: dir.join("staging"),
        binhost_dir: dir.join("binhost"),
        ..OrchestratorConfig::default()
    };
    cfg.auth.admin_token = Some(ADMIN.into());
    cfg.auth.drone_token = Some(DRONE.into());
    cfg
}

/// Starts an orchestrator in this test's actix system.
pub async fn spawn_app(tweak: impl FnOnce(&mut OrchestratorConfig)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    tweak(&mut cfg);
    spawn_app_in(dir, cfg).await
}

pub async fn spawn_app_in(dir: tempfile::TempDir, cfg: OrchestratorConfig) -> TestApp {
    spawn_app_with_clock(dir, cfg, build_swarm::sys::clock::real()).await
}

/// With a clock the test moves forward by hand (breaker cool-offs, retry backoff).
pub async fn spawn_app_with_clock(
    dir: tempfile::TempDir,
    cfg: OrchestratorConfig,
    clock: build_swarm::sys::clock::SharedClock,
) -> TestApp {
    cfg.validate().expect("valid test config");
    let logs = Capture::default();
    let orch =
        Orchestrator::start_with_clock(cfg.clone(), logs.logger(slog::Level::Debug), false, clock)
            .await
            .expect("orchestrator starts");
    let url = format!("http://127.0.0.1:{}", orch.port);
    actix_web::rt::spawn(orch.server);
    TestApp {
        handle: orch.handle,
        queue: orch.queue,
        hook: orch.hook,
        url,
        dir,
        cfg,
        logs,
    }
}

impl TestApp {
    pub fn admin(&self) -> ApiClient {
        ApiClient::new(&self.url, Some(ADMIN.into()))
    }
    pub fn drone(&self) -> ApiClient {
        ApiClient::new(&self.url, Some(DRONE.into()))
    }
    pub fn anon(&self) -> ApiClient {
        ApiClient::new(&self.url, None)
    }
    pub fn staging(&self) -> PathBuf {
        self.cfg.staging_dir.clone()
    }
    pub fn binhost(&self) -> PathBuf {
        self.cfg.binhost_dir.clone()
    }
    pub async fn register(&self, name: &str, slots: u32) {
        self.drone()
            .register(&RegisterRequest {
                name: name.into(),
                aliases: vec![],
                host: format!("{name}.example"),
                slots,
                version: "test".into(),
                restart_command: vec![],
            })
            .await
            .expect("register");
    }
    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// What a drone would upload: writes the artifact into the lease's upload directory under
/// `staging` and returns the completion request describing it.
pub fn fake_upload(staging: &Path, work: &WorkAssignment, content: &[u8]) -> CompleteRequest {
    let rel = format!("{}/{}-{}.gpkg.tar", work.category, work.name, work.version);
    let path = staging.join(&work.upload_dir).join(&rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, content).expect("write artifact");
    let (sha256, size) = sha256_file(&path).expect("hash");
    CompleteRequest {
        epoch: work.epoch,
        path: rel,
        size,
        sha256,
    }
}

/// The bytes a test builder "builds" for an atom.
pub fn artifact_bytes(atom: &str) -> Vec<u8> {
    format!("gpkg of {atom}\n").repeat(64).into_bytes()
}

pub fn chain_set(n: usize) -> String {
    (0..n).map(|i| format!("app-misc/pkg{i}-1.0\n")).collect()
}

pub const DRONE_BIN: &str = env!("CARGO_BIN_EXE_swarm-drone");
pub const ORCH_BIN: &str = env!("CARGO_BIN_EXE_swarm-orchestrator");

/// The stand-in builder shipped for the demo.
pub fn stand_in_builder() -> String {
    format!("{}/scripts/stand-in-builder", env!("CARGO_MANIFEST_DIR"))
}

/// Writes a drone config under `dir/<name>/` and returns its path. `extra` is appended
/// (TOML: top-level keys first, then sections).
pub fn drone_config(
    dir: &Path,
    name: &str,
    orchestrator: &str,
    extra_top: &str,
    extra_sections: &str,
) -> PathBuf {
    let home = dir.join(name);
    std::fs::create_dir_all(home.join("pkgdir")).expect("mkdir");
    let text = format!(
        r#"name = "{name}"
aliases = ["{name}-alias"]
host = "{name}.example"
orchestrator = "{orchestrator}"
token = "{DRONE}"
slots = 2
pkgdir = "{home}/pkgdir"
state_dir = "{home}/state"
build_command = ["{builder}", "{{atom}}", "{{pkgdir}}"]
build_timeout_s = 120
build_idle_timeout_s = 30
idle_poll_s = 1
{extra_top}

[log]
level = "debug"
file = "{home}/drone.log"

{extra_sections}
"#,
        home = home.display(),
        builder = stand_in_builder(),
    );
    let path = home.join("drone.toml");
    std::fs::write(&path, text).expect("write drone config");
    path
}

/// Starts a drone process (killed when dropped).
pub fn spawn_drone(config: &Path, env: &[(&str, &str)]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(DRONE_BIN);
    cmd.arg("--config").arg(config).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn swarm-drone")
}

/// Polls `cond` every 100 ms until it holds or `secs` pass.
pub async fn wait_for<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = std::time::Instant::now();
    while !cond().await {
        assert!(
            t0.elapsed().as_secs() < secs,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Processes whose command line contains `needle` (from /proc).
pub fn processes_matching(needle: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let zombie = std::fs::read_to_string(e.path().join("stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(false);
        if cmd.contains(needle) && !zombie && pid != std::process::id() {
            out.push((pid, cmd));
        }
    }
    out
}

/// The value of an unlabelled metric in the orchestrator's `/metrics`.
pub async fn metric(app: &TestApp, name: &str) -> Option<f64> {
    let mut resp = awc::Client::default()
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .ok()?;
    let body = resp.body().limit(16 << 20).await.ok()?;
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
