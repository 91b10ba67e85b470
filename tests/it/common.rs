//! Test helpers: a real orchestrator on a real port (port 0) with a real SQLite file in a
//! temporary directory, and clients for it.

use build_swarm::client::{ApiClient, ClientError};
use build_swarm::config::OrchestratorConfig;
use build_swarm::domain::FailureKind;
use build_swarm::orchestrator::Orchestrator;
use build_swarm::sys::digest::sha256_file;
use build_swarm::sys::logging::Capture;
use build_swarm::wire::orchestrator::{
    Ack, CompleteRequest, CompleteResponse, DroneCommand, FailRequest, HeartbeatRequest, LeaseId,
    RegisterRequest, RegisterResponse, SubmitResult, WorkAssignment,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    // Index writes as often as they come (the default batches them per second).
    cfg.binhost.write_interval_ms = 10;
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
    /// A simulated drone named `name` talking to this orchestrator.
    pub fn sim_drone(&self, name: &str) -> SimDrone {
        SimDrone::new(self.drone(), name, &self.staging())
    }
    /// Registers `name` (host `<name>.example`) with `slots` slots.
    pub async fn register(&self, name: &str, slots: u32) {
        self.register_with(registration(name, slots)).await;
    }
    pub async fn register_with(&self, req: RegisterRequest) {
        self.drone().register(&req).await.expect("register");
    }
    pub async fn submit(&self, set: &str) -> SubmitResult {
        self.admin()
            .submit(set.as_bytes().to_vec())
            .await
            .expect("submit")
    }
    /// `drone`'s claim, which must find work.
    pub async fn claim(&self, drone: &str) -> WorkAssignment {
        self.sim_drone(drone)
            .claim()
            .await
            .expect("claim")
            .expect("work to claim")
    }
    /// Says `uploading`, writes the artifact into the lease's upload directory and
    /// completes: what a drone does after a successful build.
    pub async fn upload_and_complete(&self, work: &WorkAssignment) -> CompleteResponse {
        self.sim_drone("")
            .upload_and_complete(work)
            .await
            .expect("complete")
    }
    pub async fn fail(
        &self,
        work: &WorkAssignment,
        kind: FailureKind,
        reason: &str,
        log_tail: &str,
    ) {
        self.sim_drone("")
            .fail(work, kind, reason, log_tail)
            .await
            .expect("fail");
    }
    /// A heartbeat of `drone` listing `leases`; returns the commands it got.
    pub async fn heartbeat(
        &self,
        drone: &str,
        leases: Vec<LeaseId>,
        log: Vec<String>,
    ) -> Vec<DroneCommand> {
        self.sim_drone(drone)
            .heartbeat(leases, log)
            .await
            .expect("heartbeat")
    }
    /// Drone `d1` registers, builds and publishes every package of `set` (independent
    /// packages, one per line), and the index lists them all.
    pub async fn build_and_index(&self, set: &str) {
        let n = set.lines().filter(|l| !l.trim().is_empty()).count();
        self.register("d1", n as u32).await;
        self.submit(set).await;
        for _ in 0..n {
            let w = self.claim("d1").await;
            assert!(self.upload_and_complete(&w).await.accepted, "{w:?}");
        }
        wait_indexed(self).await;
    }
    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// A registration for a test drone `name` (host `<name>.example`).
pub fn registration(name: &str, slots: u32) -> RegisterRequest {
    RegisterRequest {
        name: name.into(),
        aliases: vec![],
        host: format!("{name}.example"),
        slots,
        version: env!("CARGO_PKG_VERSION").into(),
        restart_command: vec![],
        environment: None,
    }
}

/// A drone simulated by the test: the drone protocol from this side, with uploads written
/// straight into the orchestrator's staging directory. Every suite's simulated drones are
/// built on it.
#[derive(Clone)]
pub struct SimDrone {
    pub name: String,
    pub client: ApiClient,
    pub staging: PathBuf,
}

impl SimDrone {
    pub fn new(client: ApiClient, name: &str, staging: &Path) -> Self {
        SimDrone {
            name: name.into(),
            client,
            staging: staging.to_path_buf(),
        }
    }
    pub async fn register(&self, slots: u32) -> Result<RegisterResponse, ClientError> {
        self.client.register(&registration(&self.name, slots)).await
    }
    pub async fn claim(&self) -> Result<Option<WorkAssignment>, ClientError> {
        self.client.claim(&self.name).await
    }
    pub async fn upload_and_complete(
        &self,
        work: &WorkAssignment,
    ) -> Result<CompleteResponse, ClientError> {
        self.client.uploading(work.lease, work.epoch).await?;
        let req = fake_upload(&self.staging, work, &artifact_bytes(&work.atom));
        self.client.complete(work.lease, &req).await
    }
    pub async fn fail(
        &self,
        work: &WorkAssignment,
        kind: FailureKind,
        reason: &str,
        log_tail: &str,
    ) -> Result<Ack, ClientError> {
        let req = FailRequest {
            epoch: work.epoch,
            kind,
            reason: reason.into(),
            log_tail: log_tail.into(),
        };
        self.client.fail(work.lease, &req).await
    }
    pub async fn heartbeat(
        &self,
        leases: Vec<LeaseId>,
        log: Vec<String>,
    ) -> Result<Vec<DroneCommand>, ClientError> {
        let req = HeartbeatRequest {
            leases,
            log,
            environment: None,
        };
        Ok(self.client.heartbeat(&self.name, &req).await?.commands)
    }
}

/// Writes `dir/orchestrator.toml` for the real binary: `name`, listening on `port`, its
/// directories under `dir`, the test tokens, `heartbeat_ttl_s`, a debug log in
/// `dir/orchestrator.log`, then `extra` (sections).
pub fn write_orchestrator_config(
    dir: &Path,
    port: u16,
    name: &str,
    heartbeat_ttl_s: u64,
    extra: &str,
) -> PathBuf {
    let cfg = format!(
        r#"listen = "127.0.0.1:{port}"
name = "{name}"
state_dir = "{d}/state"
staging_dir = "{d}/staging"
binhost_dir = "{d}/binhost"

[auth]
admin_token = "{ADMIN}"
drone_token = "{DRONE}"

[leases]
heartbeat_ttl_s = {heartbeat_ttl_s}

[log]
level = "debug"
file = "{d}/orchestrator.log"

{extra}"#,
        d = dir.display()
    );
    let path = dir.join("orchestrator.toml");
    std::fs::write(&path, cfg).expect("write config");
    path
}

/// Runs `program --config FILE --check` on `text` with the token variables unset except
/// `admin_token` (as `BUILD_SWARM_ADMIN_TOKEN`); its exit code and standard error.
pub fn check_config(program: &str, text: &str, admin_token: Option<&str>) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("write config");
    let mut cmd = std::process::Command::new(program);
    cmd.arg("--config")
        .arg(&path)
        .arg("--check")
        .env_remove("BUILD_SWARM_DRONE_TOKEN");
    match admin_token {
        Some(t) => cmd.env("BUILD_SWARM_ADMIN_TOKEN", t),
        None => cmd.env_remove("BUILD_SWARM_ADMIN_TOKEN"),
    };
    let out = cmd.output().expect("run the program");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// What a drone would upload: writes the artifact into the lease's upload directory under
/// `staging` and returns the completion request describing it.
pub fn fake_upload(staging: &Path, work: &WorkAssignment, content: &[u8]) -> CompleteRequest {
    let rel = format!("{}/{}-{}.gpkg.tar", work.category, work.name, work.version);
    let path = staging.join(&work.upload_dir).join(&rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, package_bytes(work, content)).expect("write artifact");
    let (sha256, size) = sha256_file(&path).expect("hash");
    CompleteRequest {
        epoch: work.epoch,
        path: rel,
        size,
        sha256,
    }
}

/// The gpkg a test builder makes for `work`'s package with `content` as its payload
/// (what [`fake_upload`] writes).
pub fn package_bytes(work: &WorkAssignment, content: &[u8]) -> Vec<u8> {
    atom_package_bytes(&work.atom, content)
}

/// The same for an atom `category/name-version`.
pub fn atom_package_bytes(atom: &str, content: &[u8]) -> Vec<u8> {
    let (category, pf) = atom.split_once('/').expect("category/pf");
    build_swarm::domain::binpkg::stand_in_gpkg(category, pf, None, content).expect("make a gpkg")
}

/// A `Packages` index on disk: complete (as many entries as its `PACKAGES` says) and the
/// `PATH` of each entry.
pub fn index_paths(binhost: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(binhost.join("Packages")).expect("Packages");
    let parsed = build_swarm::orchestrator::binhost::index::parse(&text);
    let count: usize = parsed.header["PACKAGES"].parse().expect("PACKAGES");
    assert_eq!(parsed.entries.len(), count, "a complete index: {text}");
    assert!(parsed.timestamp().is_some(), "{text}");
    let mut paths: Vec<String> = parsed.entries.iter().map(|e| e["PATH"].clone()).collect();
    paths.sort();
    paths
}

/// Runs the `build-swarm` CLI against `app` with the admin token (its home in the app's
/// directory, so no user config is read).
pub async fn admin_cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_build-swarm"))
        .args(["--orchestrator", &app.url, "--token", ADMIN])
        .args(args)
        .env("HOME", app.dir.path())
        .env("XDG_CONFIG_HOME", app.dir.path())
        .output()
        .await
        .expect("run the CLI")
}

/// Waits until the index on disk lists every built package.
pub async fn wait_indexed(app: &TestApp) {
    eventually("everything indexed", Duration::from_secs(10), || async {
        let s = app.anon().status().await.ok()?;
        (s.counts.unindexed == 0).then_some(())
    })
    .await;
}

/// The test signing key (an unprotected Ed25519 key, for tests only).
pub fn test_signing_key() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/signing/test-key.asc")
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

/// Polls `f` every 50 ms until it gives a value, or fails the test after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let t0 = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `cond` until it holds, or fails the test after `secs` seconds.
pub async fn wait_for<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually(what, Duration::from_secs(secs), || {
        let c = cond();
        async move { c.await.then_some(()) }
    })
    .await
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

/// How long ago process `pid` started (from its start time in /proc, to 10 ms), so a
/// test that polls for a process is not misled by how late its poll saw it.
pub fn process_age(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let after = &stat[stat.rfind(')')? + 2..];
    let start_ticks: f64 = after.split(' ').nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(Duration::from_secs_f64(
        (uptime - start_ticks / ticks).max(0.0),
    ))
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

/// rsync is installed by scripts/install-deps; without it the tests that need it skip
/// (saying so), and fail in CI.
pub fn require_rsync() -> bool {
    require_program("rsync", "--version")
}

/// Whether `program` runs (`program arg` exits 0). It is installed by
/// scripts/install-deps: without it a test skips (saying so), and fails in CI.
pub fn require_program(program: &str, arg: &str) -> bool {
    let have = std::process::Command::new(program)
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if have {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "{program} is missing in CI: scripts/install-deps must install it"
    );
    eprintln!("SKIPPED: {program} is not installed (run scripts/install-deps)");
    false
}
