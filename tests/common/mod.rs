//! Test helpers: a real orchestrator on a real port (port 0) with a real SQLite file in a
//! temporary directory, and clients for it.
#![allow(dead_code)]

use build_swarm::api::{CompleteRequest, RegisterRequest, WorkAssignment};
use build_swarm::client::ApiClient;
use build_swarm::config::OrchestratorConfig;
use build_swarm::logging::Capture;
use build_swarm::orchestrator::Orchestrator;
use build_swarm::publish::sha256_file;
use std::path::{Path, PathBuf};

pub const ADMIN: &str = "admin-secret";
pub const DRONE: &str = "drone-secret";

pub struct TestApp {
    pub handle: actix_web::dev::ServerHandle,
    pub queue: actix::Addr<build_swarm::actors::package_queue::PackageQueue>,
    pub hook: actix::Addr<build_swarm::actors::publish_hook::PublishHook>,
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
    cfg.validate().expect("valid test config");
    let logs = Capture::default();
    let orch = Orchestrator::start(cfg.clone(), logs.logger(slog::Level::Debug), false)
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
