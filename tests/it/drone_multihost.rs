//! Multi-host: the orchestrator and two drones on separate hosts (network namespaces
//! joined by veth pairs), drones uploading over ssh to a real OpenSSH server on the
//! orchestrator's host with real rsync. Needs root (CI runs as root); outside root these
//! tests say they were skipped, and with CI=true a skip is a failure.

use crate::common::*;
use build_swarm::client::ApiClient;
use build_swarm::domain::DroneState;
use build_swarm::sys::digest::sha256_file;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs a command that must succeed (setup steps).
fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn can_run() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    let tools = Path::new("/usr/sbin/sshd").exists()
        && Command::new("ip")
            .arg("-V")
            .stdout(Stdio::null())
            .status()
            .is_ok()
        && Command::new("rsync")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok()
        && Command::new("ssh-keygen")
            .arg("-?")
            .stderr(Stdio::null())
            .status()
            .is_ok();
    if root && tools {
        return true;
    }
    let why = if !root {
        "needs root (network namespaces)"
    } else {
        "needs ip, sshd, ssh-keygen and rsync (scripts/install-deps)"
    };
    assert!(
        std::env::var("CI").is_err(),
        "multi-host test cannot run in CI: {why}"
    );
    eprintln!("SKIPPED: multi-host drone test {why}");
    false
}

/// Three hosts: `orch` (orchestrator + sshd), `d1`, `d2`; plus a link from the test's own
/// namespace to `orch`.
struct Lab {
    ns: [String; 3],
    /// Addresses are 10.<net>.<base + link>.<host>: unique per test process and test.
    net: u8,
    base: u8,
    dir: tempfile::TempDir,
    children: Vec<tokio::process::Child>,
    /// Index of the running orchestrator in `children`.
    orchestrator: Option<usize>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.start_kill();
        }
        // The stopped `rsync --server` of the stall test, and anything else left in the lab.
        for (pid, _) in processes_matching(&self.dir.path().display().to_string()) {
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
        for ns in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

impl Lab {
    fn new(test_no: u8) -> Lab {
        let tag = format!("{}{}", std::process::id() % 10000, test_no);
        let ns = [
            format!("bso{tag}"),
            format!("bsa{tag}"),
            format!("bsb{tag}"),
        ];
        let net = 100 + (std::process::id() % 150) as u8;
        let base = test_no * 4;
        for n in &ns {
            sh(&["ip", "netns", "add", n]);
            sh(&["ip", "netns", "exec", n, "ip", "link", "set", "lo", "up"]);
        }
        let lab = Lab {
            ns,
            net,
            base,
            dir: tempfile::tempdir().expect("tempdir"),
            children: Vec::new(),
            orchestrator: None,
        };
        // link 0: this namespace <-> orch; link 1: orch <-> d1; link 2: orch <-> d2
        let (o, a, b) = (lab.ns[0].clone(), lab.ns[1].clone(), lab.ns[2].clone());
        for (i, far) in [(0u8, None), (1, Some(&a)), (2, Some(&b))] {
            let (x, y) = (format!("vx{tag}{i}"), format!("vy{tag}{i}"));
            sh(&["ip", "link", "add", &x, "type", "veth", "peer", "name", &y]);
            sh(&["ip", "link", "set", &y, "netns", &o]);
            sh(&[
                "ip",
                "netns",
                "exec",
                &o,
                "ip",
                "addr",
                "add",
                &format!("10.{net}.{}.1/24", base + i),
                "dev",
                &y,
            ]);
            sh(&["ip", "netns", "exec", &o, "ip", "link", "set", &y, "up"]);
            match far {
                None => {
                    sh(&[
                        "ip",
                        "addr",
                        "add",
                        &format!("10.{net}.{}.2/24", base + i),
                        "dev",
                        &x,
                    ]);
                    sh(&["ip", "link", "set", &x, "up"]);
                }
                Some(far) => {
                    sh(&["ip", "link", "set", &x, "netns", far]);
                    sh(&[
                        "ip",
                        "netns",
                        "exec",
                        far,
                        "ip",
                        "addr",
                        "add",
                        &format!("10.{net}.{}.2/24", base + i),
                        "dev",
                        &x,
                    ]);
                    sh(&["ip", "netns", "exec", far, "ip", "link", "set", &x, "up"]);
                }
            }
        }
        lab
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The drone's veth (upload direction) for `tc`.
    fn drone_link(&self, drone: usize) -> (String, String) {
        let tag = &self.ns[0][3..];
        (self.ns[drone].clone(), format!("vx{tag}{drone}"))
    }

    fn orch_url_from_test(&self) -> String {
        format!("http://10.{}.{}.1:8080", self.net, self.base)
    }

    /// Starts `argv` on host `ns_index`; returns its index in `children`.
    fn spawn_in(&mut self, ns_index: usize, argv: &[String], env: &[(&str, &str)]) -> usize {
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.ns[ns_index]])
            .args(argv)
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn in namespace");
        self.children.push(child);
        self.children.len() - 1
    }

    /// sshd on the orchestrator host, a key for the drones.
    fn start_sshd(&mut self) {
        self.start_sshd_in(0);
    }

    /// sshd on host `ns_index` (the lab's one key pair opens every host).
    fn start_sshd_in(&mut self, ns_index: usize) {
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let d = self.dir.path().to_path_buf();
        if d.join("host_key").exists() {
            return self.spawn_sshd(ns_index);
        }
        sh(&[
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            &d.join("host_key").display().to_string(),
        ]);
        sh(&[
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            &d.join("id_drone").display().to_string(),
        ]);
        std::fs::copy(d.join("id_drone.pub"), d.join("authorized_keys")).expect("authorized_keys");
        self.spawn_sshd(ns_index);
    }

    fn spawn_sshd(&mut self, ns_index: usize) {
        let d = self.dir.path().to_path_buf();
        let cfg = format!(
            "Port 22\nListenAddress 0.0.0.0\nHostKey {d}/host_key\nPidFile {d}/sshd{ns_index}.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n",
            d = d.display()
        );
        let path = d.join(format!("sshd_config{ns_index}"));
        std::fs::write(&path, cfg).expect("sshd_config");
        let argv = vec![
            "/usr/sbin/sshd".into(),
            "-D".into(),
            "-e".into(),
            "-f".into(),
            path.display().to_string(),
        ];
        self.spawn_in(ns_index, &argv, &[]);
    }

    fn start_orchestrator(&mut self, extra: &str) {
        let d = self.dir.path().display().to_string();
        let text = format!(
            "listen = \"0.0.0.0:8080\"\nname = \"lab\"\nstate_dir = \"{d}/state\"\nstaging_dir = \"{d}/staging\"\nbinhost_dir = \"{d}/binhost\"\n{extra}\n\
             [auth]\nadmin_token = \"{ADMIN}\"\ndrone_token = \"{DRONE}\"\n[leases]\nheartbeat_ttl_s = 8\n[log]\nlevel = \"debug\"\nfile = \"{d}/orchestrator.log\"\n"
        );
        std::fs::write(self.path("orchestrator.toml"), text).expect("config");
        let argv = vec![
            ORCH_BIN.into(),
            "--config".into(),
            self.path("orchestrator.toml").display().to_string(),
        ];
        self.orchestrator = Some(self.spawn_in(0, &argv, &[]));
    }

    /// Kills the orchestrator process outright (its API goes away; sshd stays up).
    async fn kill_orchestrator(&mut self) {
        if let Some(i) = self.orchestrator.take() {
            let _ = self.children[i].kill().await;
        }
    }

    /// Starts the orchestrator again with the same configuration and state.
    fn restart_orchestrator(&mut self) {
        let argv = vec![
            ORCH_BIN.into(),
            "--config".into(),
            self.path("orchestrator.toml").display().to_string(),
        ];
        self.orchestrator = Some(self.spawn_in(0, &argv, &[]));
    }

    fn start_drone(&mut self, i: usize, upload: &str, env: &[(&str, &str)]) -> usize {
        self.start_drone_with(i, "", upload, env)
    }

    /// As [`Lab::start_drone`] with top-level drone keys `top`; its index in `children`.
    fn start_drone_with(
        &mut self,
        i: usize,
        top: &str,
        upload: &str,
        env: &[(&str, &str)],
    ) -> usize {
        let name = format!("d{i}");
        let orch = format!("http://10.{}.{}.1:8080", self.net, self.base + i as u8);
        let ssh = format!(
            "ssh_identity = \"{}\"\nssh_options = [\"-o\", \"ConnectTimeout=10\", \"-o\", \"ServerAliveInterval=5\", \"-o\", \"BatchMode=yes\", \
             \"-o\", \"StrictHostKeyChecking=no\", \"-o\", \"UserKnownHostsFile=/dev/null\", \"-o\", \"LogLevel=ERROR\"]\n",
            self.path("id_drone").display()
        );
        let target = format!(
            "target = \"root@10.{}.{}.1:{}\"\n",
            self.net,
            self.base + i as u8,
            self.path("staging").display()
        );
        let cfg = drone_config(
            self.dir.path(),
            &name,
            &orch,
            top,
            &format!("[upload]\n{target}{ssh}{upload}"),
        );
        let argv = vec![
            DRONE_BIN.into(),
            "--config".into(),
            cfg.display().to_string(),
        ];
        self.spawn_in(i, &argv, env)
    }

    async fn wait_up(&self) -> ApiClient {
        let c = ApiClient::with_timeout(&self.orch_url_from_test(), None, Duration::from_secs(2));
        wait_for(20, "orchestrator reachable across the lab", || async {
            c.healthz().await.is_ok()
        })
        .await;
        c
    }

    async fn submit(&self, set: &str) {
        ApiClient::new(&self.orch_url_from_test(), Some(ADMIN.into()))
            .submit(set.as_bytes().to_vec())
            .await
            .expect("submit");
    }

    fn drone_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.path(&format!("d{i}/drone.log"))).unwrap_or_default()
    }
}

fn rx_bytes(ns: &str, dev: &str) -> u64 {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "cat",
            &format!("/sys/class/net/{dev}/statistics/tx_bytes"),
        ])
        .output()
        .expect("read counters");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[actix_web::test]
async fn twenty_packages_over_ssh_and_never_the_unrelated_200mb_file() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new(0);
    lab.start_sshd();
    lab.start_orchestrator("");
    let anon = lab.wait_up().await;
    let set: String = (0..20)
        .map(|i| format!("dev-libs/lib{i}-2.{i}\n"))
        .collect();
    lab.submit(&set).await;
    // d1's PKGDIR also holds a 200 MB file of another package, as a real PKGDIR would.
    let junk = lab.path("d1/pkgdir/dev-libs/huge-1.0.gpkg.tar");
    std::fs::create_dir_all(junk.parent().unwrap()).unwrap();
    let f = std::fs::File::create(&junk).unwrap();
    f.set_len(200 * 1024 * 1024).unwrap();
    drop(f);
    let env = [("STANDIN_SECONDS", "0.3"), ("STANDIN_KB", "512")];
    lab.start_drone(1, "", &env);
    lab.start_drone(2, "", &env);
    wait_for(120, "20 packages built over ssh", || async {
        anon.status().await.is_ok_and(|s| s.counts.built == 20)
    })
    .await;
    for i in 0..20 {
        let rel = format!("dev-libs/lib{i}-2.{i}.gpkg.tar");
        let published = sha256_file(&lab.path("binhost").join(&rel)).unwrap();
        let from = [
            lab.path("d1/pkgdir").join(&rel),
            lab.path("d2/pkgdir").join(&rel),
        ];
        assert!(
            from.iter()
                .any(|p| sha256_file(p).ok().as_ref() == Some(&published)),
            "{rel}"
        );
    }
    assert!(!lab.path("binhost/dev-libs/huge-1.0.gpkg.tar").exists());
    let (ns, dev) = lab.drone_link(1);
    let sent = rx_bytes(&ns, &dev);
    assert!(
        sent < 60 * 1024 * 1024,
        "d1 sent {sent} bytes: more than its own packages"
    );
    let drones = anon.drones().await.unwrap().drones;
    assert_eq!(drones.len(), 2);
}

#[actix_web::test]
async fn a_stalled_transfer_ends_through_rsync_timeout_and_the_package_is_built_later() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new(1);
    lab.start_sshd();
    lab.start_orchestrator("");
    let anon = lab.wait_up().await;
    lab.submit("media-libs/big-1.0\n").await;
    // Slow the link so the transfer is still running when the receiver is stopped.
    let (ns, dev) = lab.drone_link(1);
    sh(&[
        "ip", "netns", "exec", &ns, "tc", "qdisc", "add", "dev", &dev, "root", "tbf", "rate",
        "8mbit", "burst", "32kbit", "latency", "400ms",
    ]);
    lab.start_drone(
        1,
        "stall_timeout_s = 3\ntotal_timeout_s = 120\n",
        &[("STANDIN_SECONDS", "0.2"), ("STANDIN_KB", "8192")],
    );
    // Stop the receiving `rsync --server` as soon as it exists.
    let staging = lab.path("staging").display().to_string();
    let t0 = Instant::now();
    let stopped = loop {
        let servers: Vec<u32> = processes_matching("rsync --server")
            .into_iter()
            .filter(|(_, cmd)| cmd.contains(&staging) && !cmd.starts_with("ssh"))
            .map(|(pid, _)| pid)
            .collect();
        if let Some(pid) = servers.first() {
            unsafe {
                libc::kill(*pid as i32, libc::SIGSTOP);
            }
            break *pid;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no upload started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    wait_for(
        30,
        "rsync's own --timeout ends the stalled transfer",
        || async { lab.drone_log(1).contains("rsync exit 30") },
    )
    .await;
    unsafe {
        libc::kill(stopped as i32, libc::SIGKILL);
    }
    sh(&[
        "ip", "netns", "exec", &ns, "tc", "qdisc", "del", "dev", &dev, "root",
    ]);
    wait_for(60, "the package built in the end", || async {
        anon.status().await.is_ok_and(|s| s.counts.built == 1)
    })
    .await;
    let pkg = &anon.packages(None).await.unwrap().packages[0];
    assert!(pkg.attempts >= 1, "the stalled attempt was recorded");
}

#[actix_web::test]
async fn a_slow_transfer_past_total_timeout_is_killed_by_the_supervisor() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new(2);
    lab.start_sshd();
    lab.start_orchestrator("");
    let anon = lab.wait_up().await;
    lab.submit("media-libs/slow-1.0\n").await;
    let (ns, dev) = lab.drone_link(1);
    // 4 MiB at 1 Mbit/s takes ~35 s: it keeps moving (no stall), but too long.
    sh(&[
        "ip", "netns", "exec", &ns, "tc", "qdisc", "add", "dev", &dev, "root", "tbf", "rate",
        "1mbit", "burst", "32kbit", "latency", "400ms",
    ]);
    lab.start_drone(
        1,
        "stall_timeout_s = 60\ntotal_timeout_s = 4\n",
        &[("STANDIN_SECONDS", "0.2"), ("STANDIN_KB", "4096")],
    );
    // Watch the drone's rsync client and its ssh: when they appear, and when they are gone.
    // (Other tests run in parallel with their own leases: match this lab's staging path.)
    let lease_dir = format!("{}/lease-", lab.path("staging").display());
    let is_upload = |cmd: &str| {
        (cmd.starts_with("rsync -a") || cmd.starts_with("ssh ")) && cmd.contains(&lease_dir)
    };
    let t0 = Instant::now();
    let started = loop {
        // Dated from the process's own start time, not from when this poll saw it.
        if let Some(age) = processes_matching("lease-")
            .iter()
            .filter(|(_, c)| is_upload(c))
            .filter_map(|(pid, _)| process_age(*pid))
            .max()
        {
            break Instant::now() - age;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no upload started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ended = loop {
        if !processes_matching("lease-")
            .iter()
            .any(|(_, c)| is_upload(c))
        {
            break Instant::now();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the upload was never killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let lived = ended - started;
    assert!(
        // The transfer alone would take ~35 s.
        lived >= Duration::from_millis(3500) && lived <= Duration::from_secs(12),
        "killed {lived:?} after it started; total_timeout_s is 4"
    );
    wait_for(10, "the kill reported", || async {
        lab.drone_log(1)
            .contains("killed by the supervisor after total_timeout_s")
    })
    .await;
    // Nothing of that upload is left on the drone.
    wait_for(10, "nothing of that upload left", || async {
        !processes_matching("lease-")
            .iter()
            .any(|(_, c)| is_upload(c))
    })
    .await;
    // The orchestrator took the package back; with the link fast again it gets built.
    sh(&[
        "ip", "netns", "exec", &ns, "tc", "qdisc", "del", "dev", &dev, "root",
    ]);
    wait_for(90, "built after the slow link is fixed", || async {
        anon.status().await.is_ok_and(|s| s.counts.built == 1)
    })
    .await;
}

/// The orchestrator goes away for 20 s while a drone finishes its build and its upload
/// over ssh (sshd stays up): the drone keeps the result and reports it once the
/// orchestrator is back.
#[actix_web::test]
async fn a_result_finished_while_the_orchestrator_is_down_is_reported_when_it_is_back() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new(3);
    lab.start_sshd();
    lab.start_orchestrator("");
    let anon = lab.wait_up().await;
    lab.submit("sys-apps/patient-1.0\n").await;
    lab.start_drone(1, "", &[("STANDIN_SECONDS", "3"), ("STANDIN_KB", "256")]);
    wait_for(30, "the package claimed", || async {
        anon.status().await.is_ok_and(|s| s.counts.building == 1)
    })
    .await;
    lab.kill_orchestrator().await;
    wait_for(60, "the result kept while nobody answers", || async {
        lab.drone_log(1)
            .contains("cannot report yet, keeping the result")
    })
    .await;
    let log = lab.drone_log(1);
    assert!(
        log.contains("upload finished"),
        "uploaded over ssh while the orchestrator was down"
    );
    assert!(
        log.contains("cannot report yet, keeping the result"),
        "{log}"
    );
    lab.restart_orchestrator();
    let anon = lab.wait_up().await;
    wait_for(
        60,
        "reported and published once the orchestrator is back",
        || async { anon.status().await.is_ok_and(|s| s.counts.built == 1) },
    )
    .await;
    assert!(lab.path("binhost/sys-apps/patient-1.0.gpkg.tar").exists());
}

#[actix_web::test]
async fn a_hung_upload_through_the_shared_ssh_connection_is_killed_and_the_master_restarted() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new(4);
    lab.start_sshd();
    lab.start_orchestrator("");
    let anon = lab.wait_up().await;
    // reuse_connections is on by default: the first upload starts the drone's master.
    lab.submit("app-misc/warm-1.0\n").await;
    lab.start_drone(
        1,
        "stall_timeout_s = 60\ntotal_timeout_s = 4\n",
        &[("STANDIN_SECONDS", "0.2"), ("STANDIN_KB", "4096")],
    );
    wait_for(60, "the first package built", || async {
        anon.status().await.is_ok_and(|s| s.counts.built == 1)
    })
    .await;
    let control_dir = lab.path("d1/state/ssh").display().to_string();
    let masters = || {
        processes_matching(&control_dir)
            .into_iter()
            .filter(|(_, c)| c.starts_with("ssh ") && c.contains(" -M -N "))
            .collect::<Vec<_>>()
    };
    wait_for(10, "the drone's ssh master connection", || async {
        !masters().is_empty()
    })
    .await;
    let first_master = masters()[0].0;
    wait_for(10, "the master's control socket", || async {
        std::fs::read_dir(&control_dir).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("cm-"))
        })
    })
    .await;
    // Now the link crawls: 4 MiB at 1 Mbit/s would take ~35 s.
    let (ns, dev) = lab.drone_link(1);
    sh(&[
        "ip", "netns", "exec", &ns, "tc", "qdisc", "add", "dev", &dev, "root", "tbf", "rate",
        "1mbit", "burst", "32kbit", "latency", "400ms",
    ]);
    lab.submit("media-libs/slow-1.0\n").await;
    // The only upload now (its directory may be the first package's, reused).
    let lease_dirs = format!("{}/lease-", lab.path("staging").display());
    let upload = || {
        processes_matching(&lease_dirs)
            .into_iter()
            .filter(|(_, c)| c.starts_with("rsync -a") || c.starts_with("ssh "))
            .collect::<Vec<_>>()
    };
    wait_for(60, "the upload through the shared connection", || async {
        upload()
            .iter()
            .any(|(_, c)| c.starts_with("ssh ") && c.contains("ControlMaster=no"))
    })
    .await;
    // The master is not in the upload's process group.
    let pgid = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().nth(2).map(str::to_string))
            })
    };
    let upload_groups: Vec<_> = upload().iter().map(|(p, _)| pgid(*p)).collect();
    assert!(
        !upload_groups.contains(&pgid(first_master)),
        "the master shares a process group with the upload"
    );
    wait_for(30, "the hung upload killed by the supervisor", || async {
        lab.drone_log(1)
            .contains("killed by the supervisor after total_timeout_s")
    })
    .await;
    wait_for(10, "nothing of that upload left", || async {
        upload().is_empty()
    })
    .await;
    // The master it went through was closed (a hung connection must not hang the next
    // upload); the package is built over a new one once the link is fast again.
    wait_for(10, "the old master gone", || async {
        masters().iter().all(|(p, _)| *p != first_master)
    })
    .await;
    sh(&[
        "ip", "netns", "exec", &ns, "tc", "qdisc", "del", "dev", &dev, "root",
    ]);
    wait_for(90, "built after the slow link is fixed", || async {
        anon.status().await.is_ok_and(|s| s.counts.built == 2)
    })
    .await;
    // A stopping drone leaves no master behind.
    let drone = lab.children.last().and_then(|c| c.id()).expect("drone pid");
    unsafe {
        libc::kill(drone as i32, libc::SIGTERM);
    }
    wait_for(10, "no ssh master left after the drone stopped", || async {
        masters().is_empty()
    })
    .await;
}

/// `[heal]`: d1 (its host runs sshd) is frozen with SIGSTOP; once it has been offline past
/// `heal_after_s` the orchestrator runs d1's `restart_command` over ssh, which replaces
/// the frozen process with a new drone, and d1 is back. d2's restart command fails every
/// time: after `max_restarts` a `drone_needs_human` notification goes out (to a
/// `[[notify]]` program), and every step shows in d2's status.
#[actix_web::test]
async fn the_healing_ladder_restarts_a_frozen_drone_over_ssh_and_calls_a_human_when_it_cannot() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new(5);
    lab.start_sshd();
    lab.start_sshd_in(1);
    let d = lab.dir.path().display().to_string();
    let d1_host = format!("10.{}.{}.2", lab.net, lab.base + 1);
    let heal = format!(
        "[heal]\nheal_after_s = 2\nmax_restarts = 2\nbackoff_s = 3\ntimeout_s = 20\n\
         ssh_command = [\"ssh\", \"-i\", \"{d}/id_drone\", \"-o\", \"BatchMode=yes\", \"-o\", \"StrictHostKeyChecking=no\", \
         \"-o\", \"UserKnownHostsFile=/dev/null\", \"-o\", \"LogLevel=ERROR\", \"-o\", \"ConnectTimeout=5\"]\n\
         ssh_user = \"root\"\n[heal.hosts]\nd1 = \"{d1_host}\"\nd2 = \"{d1_host}\"\n\
         [[notify]]\ncommand = [\"sh\", \"-c\", \"cat >> {d}/notes.jsonl; echo >> {d}/notes.jsonl\"]\n"
    );
    lab.start_orchestrator(&heal);
    let api = lab.wait_up().await;
    // d1's restart: kill the frozen drone (SIGKILL ends a stopped process) and start a
    // new one, detached from the ssh session.
    let d1_cfg = lab.path("d1/drone.toml").display().to_string();
    let restart_d1 = format!(
        "restart_command = [\"sh\", \"-c\", \"kill -9 $(cat {d}/d1.pid); setsid {DRONE_BIN} --config {d1_cfg} >/dev/null 2>&1 </dev/null &\"]"
    );
    let d1 = lab.start_drone_with(1, &restart_d1, "", &[]);
    let d2 = lab.start_drone_with(
        2,
        "restart_command = [\"sh\", \"-c\", \"echo cannot restart >&2; exit 3\"]",
        "",
        &[],
    );
    wait_for(30, "both drones online", || async {
        api.drones().await.is_ok_and(|l| {
            l.drones
                .iter()
                .filter(|x| x.state != DroneState::Offline)
                .count()
                == 2
        })
    })
    .await;
    let pid = |i: usize| lab.children[i].id().expect("drone pid");
    let (pid1, pid2) = (pid(d1), pid(d2));
    std::fs::write(lab.path("d1.pid"), pid1.to_string()).expect("pid file");
    for p in [pid1, pid2] {
        unsafe {
            libc::kill(p as i32, libc::SIGSTOP);
        }
    }

    // d2: offline, restarted twice (visible in its status), then handed to a human.
    wait_for(40, "d2 being restarted by the ladder", || async {
        api.drone("d2").await.is_ok_and(|x| {
            x.state == DroneState::Offline && x.healing.as_ref().is_some_and(|h| h.restarts >= 1)
        })
    })
    .await;
    let notes = lab.path("notes.jsonl");
    let human = eventually(
        "a drone_needs_human notification for d2",
        Duration::from_secs(60),
        || async {
            let text = std::fs::read_to_string(&notes).unwrap_or_default();
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["event"] == "drone_needs_human" && v["drone"] == "d2")
        },
    )
    .await;
    let reason = human["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("2 restart(s)") && reason.contains("exit"),
        "{human}"
    );
    let h = api
        .drone("d2")
        .await
        .expect("d2")
        .healing
        .expect("d2 healing");
    assert_eq!((h.step.as_str(), h.restarts), ("needs_human", 2), "{h:?}");
    let cli = Command::new(env!("CARGO_BIN_EXE_build-swarm"))
        .args([
            "--orchestrator",
            &lab.orch_url_from_test(),
            "--token",
            ADMIN,
        ])
        .args(["d2", "status"])
        .env("HOME", lab.dir.path())
        .env("XDG_CONFIG_HOME", lab.dir.path())
        .output()
        .expect("build-swarm d2 status");
    let out = String::from_utf8_lossy(&cli.stdout);
    assert!(
        out.contains("needs a human (2/2 restarts)") && out.contains("exit"),
        "{out}"
    );

    // d1: its restart over ssh brought it back, as a new process.
    wait_for(60, "d1 back after its restart over ssh", || async {
        api.drone("d1")
            .await
            .is_ok_and(|x| x.state != DroneState::Offline)
    })
    .await;
    let log = std::fs::read_to_string(lab.path("orchestrator.log")).unwrap_or_default();
    assert!(
        !processes_matching(&d1_cfg).iter().any(|(p, _)| *p == pid1),
        "the frozen drone was replaced: {:?}\n{}",
        processes_matching(&d1_cfg),
        log.lines()
            .filter(|l| l.contains("d1"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        log.contains("restarting it over ssh") && log.contains("drone needs a human"),
        "{log}"
    );
    let text = std::fs::read_to_string(&notes).unwrap_or_default();
    assert!(
        text.lines()
            .any(|l| l.contains("\"drone_offline\"") && l.contains("\"d1\"")),
        "{text}"
    );
    unsafe {
        libc::kill(pid2 as i32, libc::SIGCONT);
    }
}
