//! `swarm-bench`: benchmarks of a real swarm on this machine. Each subcommand prints one
//! JSON line of figures (and the machine it ran on); `--smoke` runs it with tiny sizes in a
//! few seconds, which is what CI does. The figures and how to reproduce them are in
//! `BENCHMARKS.md`.
//!
//! - [`graph`] — a Gentoo-like package graph and its lower bound.
//! - [`schedule`] — makespan of the real orchestrator and real drone processes against the
//!   lower bound, critical-path order against FIFO.
//! - [`throughput`] — claim + complete cycles per second through HTTP, against `/healthz`.
//! - [`scale`] — memory, claim latency and heartbeat cost with many packages and drones;
//!   restart recovery time.
//! - [`transfer`] — bytes on the wire per upload, and upload latency over ssh.
//! - [`index`] — completion → the binhost index on disk lists the package.
//! - [`releases`] — signing a package (ms, small and large) and a snapshot of many files.
//! - [`stub`] — the builder the schedule benchmark's drones run.
//! - [`http`] — a minimal keep-alive HTTP/1.1 client for load generation.

pub mod graph;
pub mod http;
pub mod index;
pub mod releases;
pub mod scale;
pub mod schedule;
pub mod stub;
pub mod throughput;
pub mod transfer;

use build_swarm::client::{ApiClient, ClientError};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Tokens of the benchmark swarm (local only).
pub const ADMIN_TOKEN: &str = "bench-admin-token";
pub const DRONE_TOKEN: &str = "bench-drone-token";

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Api(#[from] ClientError),
    #[error("bad package graph: {0}")]
    Graph(String),
}

pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

/// The machine a figure was measured on: cores, CPU model, memory, kernel.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    json!({
        "nproc": nproc,
        "cpu": model,
        "mem_mb": mem_kb / 1024,
        "kernel": kernel,
    })
}

/// The filesystem type and mount options of the mount holding `path` (from
/// `/proc/mounts`), e.g. `ext4 rw,relatime,discard`.
pub fn fs_of(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 || !path.starts_with(f[1]) {
            continue;
        }
        if best.as_ref().is_none_or(|(len, _)| f[1].len() >= *len) {
            best = Some((f[1].len(), format!("{} {} on {}", f[2], f[3], f[1])));
        }
    }
    best.map(|(_, s)| s).unwrap_or_else(|| "unknown".into())
}

/// Seconds since the Unix epoch, for the `date` field.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A program built next to this one (`target/release/swarm-orchestrator` beside
/// `target/release/swarm-bench`).
pub fn sibling_bin(name: &str) -> Result<PathBuf, BenchError> {
    let exe = std::env::current_exe().map_err(io("finding my own executable"))?;
    let p = exe
        .parent()
        .map(|d| d.join(name))
        .unwrap_or_else(|| PathBuf::from(name));
    if p.is_file() {
        Ok(p)
    } else {
        Err(BenchError::Setup(format!(
            "{} is missing: build every program first (cargo build --release --bins)",
            p.display()
        )))
    }
}

/// A scratch directory for one run, removed at the end unless `keep`.
pub struct Scratch {
    pub path: PathBuf,
    keep: bool,
}

impl Scratch {
    pub fn new(name: &str, keep: bool) -> Result<Scratch, BenchError> {
        Self::new_in(&std::env::temp_dir(), name, keep)
    }

    pub fn new_in(root: &Path, name: &str, keep: bool) -> Result<Scratch, BenchError> {
        let path = root.join(format!(
            "swarm-bench-{name}-{}-{}",
            std::process::id(),
            unix_now()
        ));
        std::fs::create_dir_all(&path).map_err(io(format!("creating {}", path.display())))?;
        Ok(Scratch { path, keep })
    }

    /// `<name>-files` under `files_dir` (`--files-dir`: staging and binhost elsewhere than
    /// beside the state), if one is given.
    pub fn files_in(
        files_dir: Option<&Path>,
        name: &str,
        keep: bool,
    ) -> Result<Option<Scratch>, BenchError> {
        files_dir
            .map(|d| Self::new_in(d, &format!("{name}-files"), keep))
            .transpose()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Raises the open-file limit to its hard maximum (a thousand connections need it); the
/// processes this one starts inherit it.
pub fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// A free port on 127.0.0.1.
pub fn free_port() -> Result<u16, BenchError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("finding a free port"))
}

/// CPU time (user + system) of a process so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Some((utime + stime) / hz)
}

/// CPU time of this process so far, in seconds.
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// Resident memory of a process (`VmRSS`), in KiB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The `p`-th percentile (0-100) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Rounds to `digits` decimals for the JSON line.
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// A process of the benchmark swarm; killed when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub stderr_path: PathBuf,
}

impl Proc {
    /// Starts `bin --config config`, stderr into `dir/<name>.stderr`.
    pub fn spawn(dir: &Path, name: &str, bin: &Path, config: &Path) -> Result<Proc, BenchError> {
        let stderr_path = dir.join(format!("{name}.stderr"));
        let err = std::fs::File::create(&stderr_path)
            .map_err(io(format!("creating {}", stderr_path.display())))?;
        let child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("starting {}", bin.display())))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            stderr_path,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Whether it exited, with its standard error for the message.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                let err = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
                Some(format!("{} exited ({status}): {}", self.name, err.trim()))
            }
            _ => None,
        }
    }

    /// SIGTERM, a grace period, then SIGKILL.
    pub async fn stop(&mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return;
            }
        }
        let _ = self.child.kill().await;
    }

    /// SIGKILL now (a crash) and reap it.
    pub async fn kill9(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// Writes an orchestrator config into `dir` listening on `port`; `extra` is appended at
/// the top level (before the tables) and `tables` after them.
pub fn orchestrator_config(
    dir: &Path,
    files: &Path,
    port: u16,
    extra: &str,
    tables: &str,
) -> Result<PathBuf, BenchError> {
    let d = dir.display();
    let f = files.display();
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\nname = \"bench\"\nstate_dir = \"{d}/state\"\nstaging_dir = \"{f}/staging\"\n\
         binhost_dir = \"{f}/binhost\"\n{extra}\n[auth]\nadmin_token = \"{ADMIN_TOKEN}\"\ndrone_token = \"{DRONE_TOKEN}\"\n\n\
         [log]\nlevel = \"warning\"\nfile = \"{d}/orchestrator.log\"\n\n{tables}\n"
    );
    let path = dir.join("orchestrator.toml");
    std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
    Ok(path)
}

/// Waits until `url` answers `/healthz`, or the process exits, or `limit` passes.
pub async fn wait_healthy(proc_: &mut Proc, url: &str, limit: Duration) -> Result<(), BenchError> {
    let c = ApiClient::with_timeout(url, None, Duration::from_secs(2));
    let t0 = Instant::now();
    loop {
        if c.healthz().await.is_ok() {
            return Ok(());
        }
        if let Some(why) = proc_.exited() {
            return Err(BenchError::Setup(why));
        }
        if t0.elapsed() > limit {
            return Err(BenchError::Setup(format!(
                "{} did not answer at {url} within {} s",
                proc_.name,
                limit.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The orchestrator of a benchmark, as a real process.
pub struct OrchProc {
    pub proc_: Proc,
    pub url: String,
    pub port: u16,
    pub config: PathBuf,
    pub bin: PathBuf,
    pub dir: PathBuf,
    /// Where staging and binhost are.
    pub files: PathBuf,
}

impl OrchProc {
    /// Writes a config into `dir` and starts `swarm-orchestrator` with it; its state lives
    /// in `dir`, staging and binhost in `files` (or `dir`).
    pub async fn start(
        dir: &Path,
        files: Option<&Path>,
        extra: &str,
        tables: &str,
    ) -> Result<OrchProc, BenchError> {
        let bin = sibling_bin("swarm-orchestrator")?;
        let port = free_port()?;
        let files = files.unwrap_or(dir).to_path_buf();
        let config = orchestrator_config(dir, &files, port, extra, tables)?;
        let mut proc_ = Proc::spawn(dir, "orchestrator", &bin, &config)?;
        let url = format!("http://127.0.0.1:{port}");
        wait_healthy(&mut proc_, &url, Duration::from_secs(60)).await?;
        Ok(OrchProc {
            proc_,
            url,
            port,
            config,
            bin,
            dir: dir.to_path_buf(),
            files,
        })
    }

    /// Starts the same orchestrator again (after a crash) without waiting for it.
    pub fn respawn(&mut self) -> Result<(), BenchError> {
        self.proc_ = Proc::spawn(&self.dir, "orchestrator", &self.bin, &self.config)?;
        Ok(())
    }

    pub fn admin(&self) -> ApiClient {
        ApiClient::with_timeout(
            &self.url,
            Some(ADMIN_TOKEN.into()),
            Duration::from_secs(300),
        )
    }

    pub fn drone(&self) -> ApiClient {
        ApiClient::new(&self.url, Some(DRONE_TOKEN.into()))
    }

    pub fn staging(&self) -> PathBuf {
        self.files.join("staging")
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// A flat package set (no dependencies) of `n` packages over 64 categories, as JSON.
pub fn flat_set(n: usize, prefix: &str) -> String {
    let mut out = String::with_capacity(n * 64 + 32);
    out.push_str("{\"packages\":[");
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"atom\":\"bench-{prefix}{:02}/pkg{i}-1.0\"}}",
            i % 64
        ));
    }
    out.push_str("]}");
    out
}

/// What a simulated drone uploads for a lease: a tiny real gpkg (its metadata names the
/// package, so the orchestrator's index takes it) in the lease's upload directory under
/// `staging`. Returns the completion body.
pub fn simulated_upload(
    staging: &Path,
    work: &build_swarm::wire::orchestrator::WorkAssignment,
) -> Result<String, BenchError> {
    use sha2::{Digest, Sha256};
    let (category, upload_dir) = (&work.category, &work.upload_dir);
    let pf = format!("{}-{}", work.name, work.version);
    let rel = format!("{category}/{pf}.gpkg.tar");
    let path = staging.join(upload_dir).join(&rel);
    let payload = format!("simulated build of {category}/{pf} for {upload_dir}\n");
    let content =
        build_swarm::domain::binpkg::stand_in_gpkg(category, &pf, None, payload.as_bytes())
            .map_err(io("making a gpkg"))?;
    // A reused upload directory has its category directory already (as rsync's receiver
    // finds it with a stat): make directories only when the file cannot be created.
    let mut written = std::fs::write(&path, &content);
    if matches!(&written, Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        written = std::fs::write(&path, &content);
    }
    written.map_err(io(format!("writing {}", path.display())))?;
    let sha = build_swarm::sys::digest::hex(&Sha256::digest(&content));
    Ok(format!(
        "{{\"epoch\":{},\"path\":\"{rel}\",\"size\":{},\"sha256\":\"{sha}\"}}",
        work.epoch,
        content.len()
    ))
}

/// Prints the one JSON line of a benchmark.
pub fn print_line(v: &Value) {
    println!("{v}");
}
