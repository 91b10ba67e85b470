//! `swarm-bench transfer`: what an upload costs on the wire and in time, over real ssh.
//!
//! A network namespace holds the "orchestrator host" with a real `sshd`; a veth pair links
//! it to this namespace, the "drone". Uploads go through the drone's own upload code (its
//! `UploadSupervisor` actor with the argv `upload_argv` builds from an `[upload]` config)
//! to `root@<namespace address>:<staging>`:
//!
//! - bytes on the wire per package byte, for several package sizes: rsync's own count
//!   (`--stats`, "Total bytes sent") and the veth's transmit counter (everything: ssh
//!   handshake, encryption, TCP/IP headers);
//! - the latency of a 1 MiB upload through the drone, against a bare `rsync -a -e ssh` of
//!   the same file over the same ssh, and through the drone with `[upload]
//!   reuse_connections` (ssh connection sharing).
//!
//! Needs root (network namespaces), `ip`, `sshd`, `ssh-keygen` and `rsync`; without them it
//! prints a line with `skipped` saying why.

use super::{io, percentile, round, BenchError, Scratch};
use actix::prelude::*;
use build_swarm::actors::drone::upload_supervisor::{
    StartUpload, StopMasters, UploadFinished, UploadOutcome, UploadSupervisor,
};
use build_swarm::config::drone::UploadConfig;
use build_swarm::drone::rsync::{mux_spec, upload_argv};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

#[derive(Debug, Clone)]
pub struct TransferOptions {
    /// Package sizes for the bytes-on-the-wire figures, KiB.
    pub sizes_kb: Vec<usize>,
    /// Uploads of 1 MiB per variant for the latency figures.
    pub repeat: usize,
    pub keep: bool,
}

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<UploadOutcome>>>>;

/// Receives the supervisor's reports and hands each to whoever waits for that lease.
struct Collector(Waiters);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<UploadFinished> for Collector {
    type Result = ();
    fn handle(&mut self, msg: UploadFinished, _: &mut Self::Context) {
        if let Some(tx) = self.0.lock().remove(&msg.lease) {
            let _ = tx.send(msg.outcome);
        }
    }
}

fn missing_tool() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root to create a network namespace for sshd (run as root)".into());
    }
    for tool in ["/usr/sbin/sshd", "ssh", "ssh-keygen", "rsync", "ip"] {
        let found = if tool.starts_with('/') {
            Path::new(tool).is_file()
        } else {
            std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        };
        if !found {
            return Some(format!("needs {tool} (scripts/install-deps installs it)"));
        }
    }
    None
}

fn sh(args: &[&str]) -> Result<(), BenchError> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(io(format!("running {}", args[0])))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BenchError::Setup(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The namespace, its veth and its sshd; all removed when dropped.
struct Lab {
    ns: String,
    host_if: String,
    ip: String,
    sshd: Option<std::process::Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.sshd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(Stdio::null())
            .status();
    }
}

impl Lab {
    fn new(dir: &Path) -> Result<Lab, BenchError> {
        let tag = std::process::id() % 100_000;
        let net = std::process::id() % 250;
        let mut lab = Lab {
            ns: format!("swb{tag}"),
            host_if: format!("swbh{tag}"),
            ip: format!("10.254.{net}.1"),
            sshd: None,
        };
        let peer = format!("swbn{tag}");
        sh(&["ip", "netns", "add", &lab.ns])?;
        sh(&[
            "ip", "netns", "exec", &lab.ns, "ip", "link", "set", "lo", "up",
        ])?;
        sh(&[
            "ip",
            "link",
            "add",
            &lab.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ])?;
        sh(&["ip", "link", "set", &peer, "netns", &lab.ns])?;
        sh(&[
            "ip",
            "netns",
            "exec",
            &lab.ns,
            "ip",
            "addr",
            "add",
            &format!("{}/30", lab.ip),
            "dev",
            &peer,
        ])?;
        sh(&[
            "ip", "netns", "exec", &lab.ns, "ip", "link", "set", &peer, "up",
        ])?;
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("10.254.{net}.2/30"),
            "dev",
            &lab.host_if,
        ])?;
        sh(&["ip", "link", "set", &lab.host_if, "up"])?;
        std::fs::create_dir_all("/run/sshd").map_err(io("creating /run/sshd"))?;
        let d = dir.display();
        for key in ["host_key", "id_drone"] {
            let path = dir.join(key).display().to_string();
            sh(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", &path])?;
        }
        std::fs::copy(dir.join("id_drone.pub"), dir.join("authorized_keys"))
            .map_err(io("writing authorized_keys"))?;
        let cfg = format!(
            "Port 22\nListenAddress 0.0.0.0\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        );
        std::fs::write(dir.join("sshd_config"), cfg).map_err(io("writing sshd_config"))?;
        let err = std::fs::File::create(dir.join("sshd.stderr")).map_err(io("sshd log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.ns, "/usr/sbin/sshd", "-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .map_err(io("starting sshd"))?;
        lab.sshd = Some(child);
        let addr: std::net::SocketAddr = format!("{}:22", lab.ip)
            .parse()
            .map_err(|e| BenchError::Setup(format!("address: {e}")))?;
        let t0 = Instant::now();
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if t0.elapsed() > Duration::from_secs(10) {
                return Err(BenchError::Setup("sshd did not listen within 10 s".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(lab)
    }

    fn tx_bytes(&self) -> u64 {
        std::fs::read_to_string(format!(
            "/sys/class/net/{}/statistics/tx_bytes",
            self.host_if
        ))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
    }
}

fn ssh_options() -> Vec<String> {
    let mut o = UploadConfig::default().ssh_options;
    for extra in [
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "LogLevel=ERROR",
    ] {
        o.push("-o".into());
        o.push(extra.into());
    }
    o
}

fn write_package(pkgdir: &Path, rel: &str, kb: usize) -> Result<u64, BenchError> {
    use std::io::Read;
    let path = pkgdir.join(rel);
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(io(format!("creating {}", p.display())))?;
    }
    let mut data = vec![0u8; kb * 1024];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut data))
        .map_err(io("reading /dev/urandom"))?;
    std::fs::write(&path, &data).map_err(io(format!("writing {}", path.display())))?;
    Ok(data.len() as u64)
}

struct Uploader {
    addr: Addr<UploadSupervisor>,
    waiters: Waiters,
    next_lease: u64,
}

impl Uploader {
    /// `first_lease`: each uploader uploads into its own lease directories, so no upload
    /// finds its file already there.
    fn start(first_lease: u64) -> Uploader {
        let waiters: Waiters = Arc::default();
        let collector = Collector(waiters.clone()).start();
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let addr = UploadSupervisor::new(collector.recipient(), Default::default(), log).start();
        Uploader {
            addr,
            waiters,
            next_lease: first_lease,
        }
    }

    /// One upload through the drone's supervisor; its outcome and wall time.
    async fn upload(
        &mut self,
        cfg: &UploadConfig,
        state_dir: &Path,
        target: &str,
        pkgdir: &Path,
        rel: &str,
    ) -> Result<(UploadOutcome, f64), BenchError> {
        let lease = self.next_lease;
        self.next_lease += 1;
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().insert(lease, tx);
        let t = Instant::now();
        self.addr.do_send(StartUpload {
            lease,
            atom: rel.to_string(),
            argv: upload_argv(cfg, target, &format!("lease-{lease}"), rel),
            cwd: pkgdir.to_path_buf(),
            total_timeout: Duration::from_secs(cfg.total_timeout_s),
            mux: mux_spec(cfg, state_dir, target),
            record: None,
        });
        let outcome = rx
            .await
            .map_err(|_| BenchError::Failed("the upload supervisor stopped".into()))?;
        let secs = t.elapsed().as_secs_f64();
        if let UploadOutcome::Failed { reason } = &outcome {
            return Err(BenchError::Failed(format!(
                "upload of {rel} failed: {reason}"
            )));
        }
        Ok((outcome, secs))
    }
}

async fn bare_rsync(key: &Path, pkgdir: &Path, rel: &str, dest: &str) -> Result<f64, BenchError> {
    let mut ssh = vec!["ssh".to_string(), "-i".into(), key.display().to_string()];
    ssh.extend(ssh_options());
    let t = Instant::now();
    let out = tokio::process::Command::new("rsync")
        .args(["-a", "-e", &ssh.join(" "), &format!("./{rel}"), dest])
        .current_dir(pkgdir)
        .output()
        .await
        .map_err(io("running rsync"))?;
    if !out.status.success() {
        return Err(BenchError::Failed(format!(
            "bare rsync failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(t.elapsed().as_secs_f64())
}

pub async fn run(opts: &TransferOptions) -> Result<Value, BenchError> {
    if let Some(why) = missing_tool() {
        return Ok(json!({
            "bench": "transfer",
            "skipped": why,
            "machine": super::machine(),
            "date": super::unix_now(),
        }));
    }
    let scratch = Scratch::new("transfer", opts.keep)?;
    let dir = &scratch.path;
    let lab = Lab::new(dir)?;
    let staging = dir.join("staging");
    let pkgdir = dir.join("pkgdir");
    let state_dir = dir.join("drone-state");
    for d in [&staging, &pkgdir, &state_dir] {
        std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
    }
    let target = format!("root@{}:{}", lab.ip, staging.display());
    let key = dir.join("id_drone");
    let cfg = UploadConfig {
        ssh_options: ssh_options(),
        ssh_identity: Some(key.clone()),
        reuse_connections: false,
        ..UploadConfig::default()
    };
    let mut up = Uploader::start(1);

    // Bytes on the wire per package byte.
    let mut sizes = Vec::new();
    for &kb in &opts.sizes_kb {
        let rel = format!("bench-xfer/size{kb}-1.0.gpkg.tar");
        let size = write_package(&pkgdir, &rel, kb)?;
        let tx0 = lab.tx_bytes();
        let (outcome, secs) = up.upload(&cfg, &state_dir, &target, &pkgdir, &rel).await?;
        let wire = lab.tx_bytes().saturating_sub(tx0);
        let sent = match outcome {
            UploadOutcome::Done { bytes_sent, .. } => bytes_sent.unwrap_or(0),
            _ => 0,
        };
        sizes.push(json!({
            "size_bytes": size,
            "rsync_bytes_sent": sent,
            "rsync_ratio": round(sent as f64 / size as f64, 4),
            "wire_bytes": wire,
            "wire_ratio": round(wire as f64 / size as f64, 4),
            "seconds": round(secs, 4),
        }));
    }

    // Latency of 1 MiB: through the drone, bare rsync, through the drone reusing ssh.
    let rel = "bench-xfer/latency-1.0.gpkg.tar";
    write_package(&pkgdir, rel, 1024)?;
    let reuse_cfg = UploadConfig {
        reuse_connections: true,
        ..cfg.clone()
    };
    let mut reuse_up = Uploader::start(1_000_000);
    let (mut drone_s, mut bare_s, mut reuse_s) = (Vec::new(), Vec::new(), Vec::new());
    let mut reuse_wire = Vec::new();
    // The first reused upload starts the master connection; let it come up first, as it
    // would on a drone that has uploaded before.
    reuse_up
        .upload(&reuse_cfg, &state_dir, &target, &pkgdir, rel)
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..opts.repeat.max(1) {
        drone_s.push(up.upload(&cfg, &state_dir, &target, &pkgdir, rel).await?.1);
        let dest = format!("{target}/bare-{i}/");
        bare_s.push(bare_rsync(&key, &pkgdir, rel, &dest).await?);
        let tx0 = lab.tx_bytes();
        reuse_s.push(
            reuse_up
                .upload(&reuse_cfg, &state_dir, &target, &pkgdir, rel)
                .await?
                .1,
        );
        reuse_wire.push(lab.tx_bytes().saturating_sub(tx0) as f64 / (1024.0 * 1024.0));
    }
    reuse_up.addr.do_send(StopMasters);
    for v in [&mut drone_s, &mut bare_s, &mut reuse_s, &mut reuse_wire] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    let ms = |v: &[f64], p: f64| round(percentile(v, p) * 1000.0, 1);
    let result = json!({
        "bench": "transfer",
        "transport": "rsync over ssh (OpenSSH) across a veth pair into a network namespace",
        "sizes": sizes,
        "latency_1mib_repeat": opts.repeat.max(1),
        "drone_ms_p50": ms(&drone_s, 50.0),
        "bare_rsync_ms_p50": ms(&bare_s, 50.0),
        "drone_reuse_ms_p50": ms(&reuse_s, 50.0),
        "drone_ms_max": ms(&drone_s, 100.0),
        "bare_rsync_ms_max": ms(&bare_s, 100.0),
        "drone_reuse_ms_max": ms(&reuse_s, 100.0),
        "drone_over_bare": round(percentile(&drone_s, 50.0) / percentile(&bare_s, 50.0).max(1e-9), 3),
        "drone_reuse_over_bare": round(percentile(&reuse_s, 50.0) / percentile(&bare_s, 50.0).max(1e-9), 3),
        "reuse_wire_ratio_p50": round(percentile(&reuse_wire, 50.0), 4),
        "machine": super::machine(),
        "date": super::unix_now(),
    });
    // Give the supervisor a moment to kill the master before the namespace goes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(lab);
    Ok(result)
}
