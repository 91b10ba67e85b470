//! The main job end to end: `build-swarm demo` starts an orchestrator, a gateway and drones
//! as real processes, builds a generated set with the stand-in builder (one package fails,
//! its dependents are blocked), uploads with rsync, publishes, prints the summary and stops
//! every process it started — with `--keep` only on Ctrl-C.

use crate::common::{processes_matching, require_rsync, wait_for};
use std::time::Duration;

const CLI: &str = env!("CARGO_BIN_EXE_build-swarm");

#[actix_web::test]
async fn the_demo_runs_a_small_set_end_to_end() {
    if !require_rsync() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new(CLI)
            .args([
                "demo",
                "--drones",
                "2",
                "--packages",
                "30",
                "--build-seconds",
                "0.2",
                "--package-kb",
                "64",
                "--dir",
            ])
            .arg(&demo_dir)
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the demo finishes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The generated set fails pkg7 (and pkg32, …) on purpose.
    assert!(stdout.contains("build-swarm demo: 30 packages"), "{stdout}");
    assert!(stdout.contains("failed   1"), "{stdout}");
    assert!(stdout.contains("/pkg7-1.7: build failed"), "{stdout}");
    assert!(stdout.contains("poison package"), "{stdout}");
    let built: usize = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("built"))
        .and_then(|n| n.trim().parse().ok())
        .expect("built count");
    let blocked: usize = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("blocked"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("blocked count");
    assert_eq!(built + 1 + blocked, 30, "{stdout}");
    // Everything built is in the binhost, uploaded once, nothing more on the wire.
    let mut files = 0;
    for cat in std::fs::read_dir(demo_dir.join("binhost")).unwrap() {
        let cat = cat.unwrap().path();
        if cat.is_dir() {
            files += std::fs::read_dir(cat).unwrap().count();
        }
    }
    assert_eq!(files, built);
    // ...and in the binhost's index.
    let index = std::fs::read_to_string(demo_dir.join("binhost/Packages")).expect("Packages");
    assert!(
        index.lines().any(|l| l == format!("PACKAGES: {built}")),
        "{index}"
    );
    assert_eq!(index.matches("\nCPV: ").count(), built);
    let ratio: f64 = stdout
        .lines()
        .find(|l| l.contains("bytes on the wire per package byte"))
        .and_then(|l| l.split(" bytes on the wire").next())
        .and_then(|l| l.rsplit(": ").next())
        .and_then(|r| r.trim().parse().ok())
        .expect("ratio in the summary");
    assert!(ratio > 0.9 && ratio <= 1.02, "{ratio}");
    // Every process the demo started is gone.
    let mine = demo_dir.display().to_string();
    wait_for(10, "every process of the demo gone", || async {
        processes_matching(&mine).is_empty()
    })
    .await;
}

/// `--keep`: the swarm stays up after the set is done, the dashboard and the CLI work on
/// it, and Ctrl-C (SIGINT) stops every process.
#[actix_web::test]
async fn the_demo_keeps_the_swarm_up_until_ctrl_c() {
    use tokio::io::AsyncBufReadExt;
    if !require_rsync() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let mut child = tokio::process::Command::new(CLI)
        .args([
            "demo",
            "--keep",
            "--drones",
            "1",
            "--packages",
            "5",
            "--build-seconds",
            "0.1",
            "--package-kb",
            "16",
            "--dir",
        ])
        .arg(&demo_dir)
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the demo");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut text = String::new();
    let read = tokio::time::timeout(Duration::from_secs(180), async {
        while let Ok(Some(line)) = lines.next_line().await {
            text.push_str(&line);
            text.push('\n');
            if line.contains("build-swarm binhost snapshot") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no --keep notice: {text}");
    assert!(text.contains("Ctrl-C stops every process"), "{text}");
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    let dashboard = field("Dashboard:");
    let exports = field("export");
    // The dashboard answers, and the CLI works with what the notice says.
    let mut resp = awc::Client::default()
        .get(&dashboard)
        .send()
        .await
        .expect("dashboard");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(String::from_utf8_lossy(&resp.body().await.expect("body")).contains("build-swarm"));
    let mut cli = tokio::process::Command::new(CLI);
    cli.arg("drones")
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path());
    for kv in exports.split_whitespace() {
        let (k, v) = kv.split_once('=').expect("KEY=value");
        cli.env(k, v);
    }
    let out = cli.output().await.expect("the CLI");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("drone-1"), "{listing}");
    // Still up a moment later; then Ctrl-C stops everything.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the demo ended without Ctrl-C"
    );
    let pid = child.id().expect("pid") as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the demo stops on Ctrl-C")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    let mine = demo_dir.display().to_string();
    wait_for(10, "every process of the demo gone", || async {
        processes_matching(&mine).is_empty()
    })
    .await;
}
