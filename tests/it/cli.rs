//! The real `build-swarm` binary against a real orchestrator with registered drones: the
//! seed's examples, drone name matching, `--json`, submit/retry/failures/log, restart
//! through the API and over ssh, watch, discovery and errors.
//!
//! The orchestrator's actors run on the test's thread, so the CLI runs as an async child
//! process (`tokio::process`) — a blocking wait would stall the orchestrator. Config
//! discovery is isolated: HOME and XDG_CONFIG_HOME point into a temporary directory, the
//! BUILD_SWARM_* variables are removed, and `--orchestrator` skips gateway discovery.

use crate::common::*;
use build_swarm::domain::FailureKind;
use build_swarm::wire::orchestrator::{DroneAction, FailRequest, RegisterRequest};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_build-swarm");

#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A CLI with its own empty HOME: nothing found by discovery unless a test puts it there.
struct Cli {
    home: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        Cli {
            home: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("xdg"))
            .env_remove("BUILD_SWARM_GATEWAY")
            .env_remove("BUILD_SWARM_ORCHESTRATOR")
            .env_remove("BUILD_SWARM_TOKEN")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str]) -> Out {
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn build-swarm");
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("build-swarm {args:?} did not finish"))
            .expect("wait");
        let out = Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(
            !out.stderr.contains("panicked") && !out.stderr.contains("RUST_BACKTRACE"),
            "{args:?}: {out:?}"
        );
        out
    }

    /// Against `app` with the admin token.
    async fn at(&self, app: &TestApp, args: &[&str]) -> Out {
        let mut all = vec!["--orchestrator", &app.url, "--token", ADMIN];
        all.extend_from_slice(args);
        self.run(&all).await
    }

    async fn ok(&self, app: &TestApp, args: &[&str]) -> Out {
        let out = self.at(app, args).await;
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        out
    }

    /// Writes a config file into this CLI's temporary directory.
    fn config_file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.home.path().join(name);
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// An `ssh` stand-in that appends its arguments (one per line) to `ssh.log`.
    fn fake_ssh(&self) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let log = self.home.path().join("ssh.log");
        let script = self.home.path().join("fake-ssh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >> '{}'\necho '--end--' >> '{}'\n",
                log.display(),
                log.display()
            ),
        )
        .expect("write fake ssh");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        (script, log)
    }
}

/// Registers a drone with 2 slots, `aliases` and `host`.
async fn register(app: &TestApp, name: &str, aliases: &[&str], host: &str) {
    app.register_with(RegisterRequest {
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        host: host.into(),
        ..registration(name, 2)
    })
    .await;
}

/// A heartbeat listing no lease; the actions it got back.
async fn heartbeat(app: &TestApp, name: &str, log: Vec<String>) -> Vec<DroneAction> {
    app.heartbeat(name, vec![], log)
        .await
        .into_iter()
        .map(|c| c.action)
        .collect()
}

/// The seed's four drones.
async fn fleet(app: &TestApp) {
    register(app, "drone-Mirach", &["masai"], "100.64.0.18").await;
    register(app, "drone-Icarus", &[], "100.64.0.21").await;
    register(app, "drone-Tau-Ceti", &[], "100.64.0.30").await;
    register(app, "drone-Titawin", &[], "100.64.0.44").await;
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

fn json(out: &Out) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", out.stdout))
}

#[actix_web::test]
async fn drones_outdated_lists_the_drones_older_than_the_orchestrator() {
    let app = spawn_app(|_| {}).await;
    register(&app, "current", &[], "h1").await;
    app.register_with(RegisterRequest {
        version: "0.0.1".into(),
        ..registration("old", 1)
    })
    .await;
    app.register_with(RegisterRequest {
        version: String::new(),
        ..registration("silent", 1)
    })
    .await;
    let cli = Cli::new();
    let out = cli.ok(&app, &["drones", "--outdated"]).await;
    assert!(
        out.stdout.contains("old") && out.stdout.contains("0.0.1 (outdated)"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("silent") && out.stdout.contains("unknown (outdated)"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("current"), "{out:?}");
    let out = cli.ok(&app, &["--json", "drones", "--outdated"]).await;
    let names: Vec<String> = json(&out)["drones"]
        .as_array()
        .expect("drones")
        .iter()
        .map(|d| d["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(!names.contains(&"current".to_string()));
    // Everyone up to date: said so.
    let fresh = spawn_app(|_| {}).await;
    register(&fresh, "current", &[], "h1").await;
    let out = cli.ok(&fresh, &["drones", "--outdated"]).await;
    assert_eq!(
        out.stdout,
        "no drone runs a version older than its orchestrator's\n"
    );
    let all = app.anon().drones().await.expect("drones");
    assert!(all.drones.iter().any(|d| d.name == "old" && d.outdated));
    assert!(all
        .drones
        .iter()
        .any(|d| d.name == "current" && !d.outdated));
    app.stop().await;
    fresh.stop().await;
}

#[actix_web::test]
async fn the_seeds_examples_work() {
    let app = spawn_app(|_| {}).await;
    fleet(&app).await;
    let log: Vec<String> = (0..30).map(|i| format!("titawin line {i}")).collect();
    heartbeat(&app, "drone-Titawin", log).await;
    app.admin()
        .submit(b"app-misc/foo-1.0\napp-misc/bar-2.0\n".to_vec())
        .await
        .unwrap();
    let cli = Cli::new();

    let out = cli.ok(&app, &["drone-Titawin", "logs", "20"]).await;
    let got = lines(&out.stdout);
    assert_eq!(got.len(), 20, "{out:?}");
    assert_eq!(got[0], "titawin line 10");
    assert_eq!(got[19], "titawin line 29");

    let out = cli.ok(&app, &["Titawin-Host", "logs", "3"]).await;
    assert_eq!(
        lines(&out.stdout),
        ["titawin line 27", "titawin line 28", "titawin line 29"]
    );

    let out = cli.ok(&app, &["masai", "status"]).await;
    assert!(out.stdout.contains("drone-Mirach"), "{out:?}");
    assert!(out.stdout.contains("100.64.0.18"), "{out:?}");

    let out = cli.ok(&app, &["status"]).await;
    assert!(out.stdout.contains("test-orch"), "{out:?}");
    assert!(out.stdout.contains("Progress  0% (0/2)"), "{out:?}");
    assert!(out.stdout.contains("queued 2"), "{out:?}");
    assert!(out.stdout.contains("all 4 active"), "{out:?}");

    // The seed's deploy loop: `build-swarm $drone ip`.
    let out = cli.ok(&app, &["drone-Tau-Ceti", "ip"]).await;
    assert_eq!(out.stdout, "100.64.0.30\n");

    let out = cli.ok(&app, &["drones"]).await;
    for name in [
        "drone-Mirach",
        "drone-Icarus",
        "drone-Tau-Ceti",
        "drone-Titawin",
    ] {
        assert!(out.stdout.contains(name), "{out:?}");
    }
    assert!(lines(&out.stdout)[0].starts_with("NAME"), "{out:?}");
    app.stop().await;
}

#[actix_web::test]
async fn logs_print_at_most_n_lines_default_20() {
    let app = spawn_app(|_| {}).await;
    register(&app, "drone-a", &[], "127.0.0.1").await;
    for batch in 0..5 {
        let log = (0..10).map(|i| format!("a {}", batch * 10 + i)).collect();
        heartbeat(&app, "drone-a", log).await;
    }
    let cli = Cli::new();
    let out = cli.ok(&app, &["drone-a", "logs"]).await;
    assert_eq!(lines(&out.stdout).len(), 20, "{out:?}");
    assert_eq!(lines(&out.stdout)[19], "a 49");
    let out = cli.ok(&app, &["drone-a", "logs", "20"]).await;
    assert_eq!(lines(&out.stdout).len(), 20, "{out:?}");
    assert_eq!(lines(&out.stdout)[0], "a 30");
    let out = cli.ok(&app, &["drone", "a", "logs", "7"]).await;
    assert_eq!(lines(&out.stdout).len(), 7, "{out:?}");
    let out = cli.ok(&app, &["drone-a", "logs", "500"]).await;
    assert_eq!(lines(&out.stdout).len(), 50, "{out:?}");
    app.stop().await;
}

async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut tokio::io::Lines<R>) -> String {
    tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("a line in time")
        .expect("read")
        .expect("not closed")
}

#[actix_web::test]
async fn logs_follow_prints_new_lines_as_they_arrive() {
    let app = spawn_app(|_| {}).await;
    register(&app, "drone-a", &[], "127.0.0.1").await;
    heartbeat(&app, "drone-a", vec!["old 1".into(), "old 2".into()]).await;
    let cli = Cli::new();
    let mut child = cli
        .command(&[
            "--orchestrator",
            &app.url,
            "drone-a",
            "logs",
            "1",
            "-f",
            "--interval",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(next_line(&mut out).await, "old 2");
    heartbeat(&app, "drone-a", vec!["new 1".into(), "new 2".into()]).await;
    assert_eq!(next_line(&mut out).await, "new 1");
    assert_eq!(next_line(&mut out).await, "new 2");
    heartbeat(&app, "drone-a", vec!["new 3".into()]).await;
    assert_eq!(next_line(&mut out).await, "new 3");
    child.kill().await.expect("kill");
    app.stop().await;
}

#[actix_web::test]
async fn ambiguous_and_unknown_names_exit_3_with_the_candidates() {
    let app = spawn_app(|_| {}).await;
    fleet(&app).await;
    let cli = Cli::new();

    let out = cli.at(&app, &["t", "status"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.starts_with("build-swarm: "), "{out:?}");
    assert!(out.stderr.contains("drone-Tau-Ceti"), "{out:?}");
    assert!(out.stderr.contains("drone-Titawin"), "{out:?}");
    assert!(!out.stderr.contains("drone-Mirach"), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");

    let out = cli.at(&app, &["nosuchdrone", "logs"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    for name in [
        "drone-Mirach",
        "drone-Icarus",
        "drone-Tau-Ceti",
        "drone-Titawin",
    ] {
        assert!(out.stderr.contains(name), "{out:?}");
    }

    let out = cli.at(&app, &["titawni", "status"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains("did you mean `drone-Titawin`"),
        "{out:?}"
    );

    let out = cli.at(&app, &["stauts"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("the command `status`"), "{out:?}");

    // Usage errors are clap's: exit 2.
    let out = cli.at(&app, &["packages", "--state", "bogus"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    app.stop().await;
}

/// A set with one failed package (with a reason and a log) and one queued.
async fn failed_set(app: &TestApp) {
    register(app, "drone-a", &[], "127.0.0.1").await;
    app.admin()
        .submit(b"dev-libs/broken-1.0\napp-misc/fine-2.0\n".to_vec())
        .await
        .unwrap();
    let d = app.drone();
    let w = d.claim("drone-a").await.unwrap().expect("work");
    assert_eq!(w.atom, "dev-libs/broken-1.0");
    d.fail(
        w.lease,
        &FailRequest {
            epoch: w.epoch,
            kind: FailureKind::Build,
            reason: "emerge exited with 1".into(),
            log_tail: "configure: error: no acceptable C compiler\n".into(),
        },
    )
    .await
    .unwrap();
}

#[actix_web::test]
async fn failures_log_and_retry() {
    let app = spawn_app(|c| c.policy.build_failure_drones = 1).await;
    failed_set(&app).await;
    let cli = Cli::new();

    let out = cli.ok(&app, &["failures"]).await;
    assert!(out.stdout.contains("dev-libs/broken-1.0"), "{out:?}");
    assert!(out.stdout.contains("emerge exited with 1"), "{out:?}");
    assert!(!out.stdout.contains("app-misc/fine-2.0"), "{out:?}");

    let out = cli.ok(&app, &["log", "dev-libs/broken-1.0"]).await;
    assert!(out.stdout.contains("no acceptable C compiler"), "{out:?}");
    assert!(out.stdout.contains("failed"), "{out:?}");
    let out = cli.ok(&app, &["log", "broken-1.0"]).await;
    assert!(out.stdout.contains("no acceptable C compiler"), "{out:?}");

    let out = cli.at(&app, &["log", "app-misc/nope-1"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.starts_with("build-swarm: "), "{out:?}");
    assert!(out.stderr.contains("app-misc/nope-1"), "{out:?}");
    let out = cli.at(&app, &["log", "not an atom"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let out = cli.at(&app, &["retry", "app-misc/nope-1"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("app-misc/nope-1"), "{out:?}");

    let out = cli.ok(&app, &["retry", "dev-libs/broken-1.0"]).await;
    assert!(out.stdout.contains("retried 1"), "{out:?}");
    let out = cli.ok(&app, &["packages", "--state", "queued"]).await;
    assert!(out.stdout.contains("dev-libs/broken-1.0"), "{out:?}");
    assert!(out.stdout.contains("2 package(s)"), "{out:?}");
    let out = cli.ok(&app, &["failures"]).await;
    assert!(out.stdout.contains("no failed packages"), "{out:?}");

    // Fail it again, then retry every failed package.
    let d = app.drone();
    let w = d.claim("drone-a").await.unwrap().expect("work");
    d.fail(
        w.lease,
        &FailRequest {
            epoch: w.epoch,
            kind: FailureKind::Build,
            reason: "again".into(),
            log_tail: String::new(),
        },
    )
    .await
    .unwrap();
    let out = cli.ok(&app, &["retry", "--failed"]).await;
    assert!(out.stdout.contains("retried 1"), "{out:?}");

    // Retrying needs the admin token.
    let out = cli
        .run(&["--orchestrator", &app.url, "retry", "--failed"])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("token"), "{out:?}");
    app.stop().await;
}

#[actix_web::test]
async fn every_json_output_parses() {
    let app = spawn_app(|c| c.policy.build_failure_drones = 1).await;
    failed_set(&app).await;
    register(&app, "drone-b", &["bee"], "127.0.0.1").await;
    heartbeat(&app, "drone-b", vec!["hello".into()]).await;
    let cli = Cli::new();
    let reads: &[&[&str]] = &[
        &["status"],
        &["drones"],
        &["packages"],
        &["packages", "--state", "failed"],
        &["failures"],
        &["log", "dev-libs/broken-1.0"],
        &["orchestrators"],
        &["drone-b", "status"],
        &["drone-b", "queue"],
        &["drone-b", "logs"],
        &["drone-b", "ip"],
    ];
    for args in reads {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = cli.ok(&app, &all).await;
        json(&out);
    }
    let v = json(&cli.ok(&app, &["--json", "status"]).await);
    assert_eq!(v["total"], 2);
    assert_eq!(v["failed"], 1);
    assert_eq!(v["name"], "test-orch");
    let v = json(&cli.ok(&app, &["drones", "--json"]).await);
    assert_eq!(v["drones"].as_array().map(Vec::len), Some(2));
    let v = json(&cli.ok(&app, &["--json", "bee", "logs"]).await);
    assert_eq!(v["lines"][0], "hello");
    let v = json(&cli.ok(&app, &["--json", "orchestrators"]).await);
    assert_eq!(v["orchestrators"][0]["name"], "test-orch");
    assert_eq!(v["orchestrators"][0]["url"], app.url.as_str());
    let v = json(&cli.ok(&app, &["--json", "failures"]).await);
    assert_eq!(v["packages"][0]["atom"], "dev-libs/broken-1.0");

    // watch --json: one status per line; the set ends with failures, so exit 1.
    let d = app.drone();
    let w = d.claim("drone-b").await.unwrap().expect("work");
    d.fail(
        w.lease,
        &FailRequest {
            epoch: w.epoch,
            kind: FailureKind::Build,
            reason: "x".into(),
            log_tail: String::new(),
        },
    )
    .await
    .unwrap();
    let out = cli.at(&app, &["--json", "watch"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    for line in out.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON status per line");
        assert_eq!(v["total"], 2);
    }
    assert!(!out.stdout.is_empty());
    app.stop().await;
}

#[actix_web::test]
async fn submit_sends_the_file_and_reports_the_bad_line() {
    let app = spawn_app(|_| {}).await;
    let cli = Cli::new();
    let good = cli.config_file("world.txt", "=app-misc/foo-1.0\n# c\ndev-libs/bar-2.1-r1\n");
    let out = cli.ok(&app, &["submit", good.to_str().unwrap()]).await;
    assert!(out.stdout.contains("2 new package(s)"), "{out:?}");
    let st = app.anon().status().await.unwrap();
    assert_eq!(st.counts.total, 2);
    // A set without dependencies says so.
    assert!(out.stderr.contains("carries no dependencies"), "{out:?}");
    let with_deps = cli.config_file(
        "set.json",
        r#"{"packages":[{"atom":"a/x-1"},{"atom":"a/y-1","deps":["a/x-1"]}]}"#,
    );
    let out = cli.ok(&app, &["submit", with_deps.to_str().unwrap()]).await;
    assert!(out.stdout.contains("1 dependencies"), "{out:?}");
    assert!(!out.stderr.contains("carries no dependencies"), "{out:?}");
    assert_eq!(app.anon().status().await.unwrap().counts.total, 4);

    let bad = cli.config_file("bad.txt", "app-misc/ok-1.0\napp-misc/../evil-1.0\n");
    let out = cli.at(&app, &["submit", bad.to_str().unwrap()]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.starts_with("build-swarm: "), "{out:?}");
    assert!(out.stderr.contains("line 2"), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert_eq!(app.anon().status().await.unwrap().counts.total, 4);

    let out = cli.at(&app, &["submit", "/nonexistent/set.txt"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("/nonexistent/set.txt"), "{out:?}");

    // A wrong token is refused, in one sentence.
    let out = cli
        .run(&[
            "--orchestrator",
            &app.url,
            "--token",
            "wrong",
            "submit",
            good.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("the token was refused"), "{out:?}");
    app.stop().await;
}

#[actix_web::test]
async fn an_unreachable_swarm_is_a_clear_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let cli = Cli::new();
    for args in [
        &["status"][..],
        &["drones"],
        &["drone-a", "logs"],
        &["watch"],
    ] {
        let mut all = vec!["--orchestrator", url.as_str()];
        all.extend_from_slice(args);
        let out = cli.run(&all).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            out.stderr
                .starts_with("build-swarm: cannot reach the swarm"),
            "{out:?}"
        );
        assert!(out.stderr.contains(&url), "{out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
    }
    // A gateway and an orchestrator from a config file: both are named.
    let cfg = cli.config_file(
        "cli.toml",
        &format!("gateway = \"{url}\"\norchestrator = \"http://127.0.0.1:{port}/x\"\n"),
    );
    let out = cli
        .run(&["--config", cfg.to_str().unwrap(), "status"])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("gateway http://127.0.0.1"), "{out:?}");
    assert!(
        out.stderr.contains("orchestrator http://127.0.0.1"),
        "{out:?}"
    );
}

#[actix_web::test]
async fn discovery_falls_through_a_missing_gateway_quietly_and_v_says_where() {
    let app = spawn_app(|_| {}).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cli = Cli::new();
    // The user's config file, found through XDG_CONFIG_HOME.
    let dir = cli.home.path().join("xdg/build-swarm");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "gateway = \"http://127.0.0.1:{port}\"\norchestrator = \"{}\"\n",
            app.url
        ),
    )
    .unwrap();
    let out = cli.run(&["status"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.is_empty(), "quietly: {out:?}");
    assert!(out.stdout.contains("test-orch"), "{out:?}");

    let out = cli.run(&["-v", "status"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("no gateway at http://127.0.0.1:{port}")),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains(&format!("found the swarm at orchestrator {}", app.url)),
        "{out:?}"
    );
    assert!(out.stderr.contains("config.toml"), "{out:?}");

    // --orchestrator beats the file, skips its gateway and names itself.
    let out = cli.run(&["-v", "--orchestrator", &app.url, "drones"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("from --orchestrator"), "{out:?}");
    assert!(!out.stderr.contains("no gateway"), "{out:?}");

    // So does the environment.
    let out = cli
        .command(&["-v", "status"])
        .env("BUILD_SWARM_ORCHESTRATOR", &app.url)
        .output()
        .await
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("from $BUILD_SWARM_ORCHESTRATOR"),
        "{stderr}"
    );
    assert!(!stderr.contains("no gateway"), "{stderr}");

    // A "gateway" that is really an orchestrator is used as one.
    let out = cli.run(&["-v", "--gateway", &app.url, "status"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("not a gateway"), "{out:?}");

    // An unknown key in the config file is refused by name.
    std::fs::write(dir.join("config.toml"), "gatway = \"http://x:1\"\n").unwrap();
    let out = cli.run(&["status"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("gatway"), "{out:?}");
    app.stop().await;
}

#[actix_web::test]
async fn restart_is_delivered_with_the_drones_next_heartbeat() {
    let app = spawn_app(|_| {}).await;
    register(&app, "drone-a", &[], "127.0.0.1").await;
    let cli = Cli::new();
    let (ssh, ssh_log) = cli.fake_ssh();
    let cfg = cli.config_file(
        "cli.toml",
        &format!("ssh_command = [\"{}\"]\n", ssh.display()),
    );
    let mut child = cli
        .command(&[
            "--config",
            cfg.to_str().unwrap(),
            "--orchestrator",
            &app.url,
            "--token",
            ADMIN,
            "drone-a",
            "restart",
            "--wait",
            "15",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let drone = async {
        // Once the CLI has queued the command, heartbeat like a drone (in a later second,
        // so last_seen moves).
        let line = next_line(&mut stderr).await;
        assert!(line.contains("asked drone-a to restart"), "{line}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        heartbeat(&app, "drone-a", vec![]).await
    };
    let (out, commands) = tokio::join!(child.wait_with_output(), drone);
    let out = out.expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(commands, [DroneAction::Restart]);
    assert!(stdout.contains("picked up the restart"), "{stdout}");
    assert!(!ssh_log.exists(), "no ssh when the API worked");
    // Delivered once.
    assert!(heartbeat(&app, "drone-a", vec![]).await.is_empty());
    app.stop().await;
}

fn read_ssh_log(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split("--end--\n")
        .filter(|s| !s.is_empty())
        .map(|call| call.lines().map(str::to_string).collect())
        .collect()
}

#[actix_web::test]
async fn restart_falls_back_to_ssh_and_ssh_passes_argv() {
    let app = spawn_app(|c| c.leases.heartbeat_ttl_s = 5).await;
    register(&app, "drone-quiet", &[], "127.0.0.1").await;
    let cli = Cli::new();
    let (ssh, ssh_log) = cli.fake_ssh();
    let cfg = cli.config_file(
        "cli.toml",
        &format!(
            "ssh_user = \"root\"\nssh_command = [\"{}\", \"-o\", \"BatchMode=yes\"]\n",
            ssh.display()
        ),
    );
    let with_cfg = |args: &[&str]| {
        let mut all = vec![
            "--config".to_string(),
            cfg.display().to_string(),
            "--orchestrator".into(),
            app.url.clone(),
            "--token".into(),
            ADMIN.into(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        all
    };
    let run = |args: Vec<String>| {
        let cli = &cli;
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            cli.run(&refs).await
        }
    };
    let expected_restart: Vec<String> = [
        "-o",
        "BatchMode=yes",
        "--",
        "root@127.0.0.1",
        "rc-service swarm-drone restart",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    // Online but silent: the API request is not picked up within --wait, then ssh.
    let out = run(with_cfg(&["quiet", "restart", "--wait", "1"])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("did not pick up the restart"),
        "{out:?}"
    );
    assert!(out.stdout.contains("restarted over ssh"), "{out:?}");
    let calls = read_ssh_log(&ssh_log);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0], expected_restart);

    // --via-ssh goes straight there.
    let out = run(with_cfg(&["quiet", "restart", "--via-ssh"])).await;
    assert_eq!(out.code, 0, "{out:?}");
    let calls = read_ssh_log(&ssh_log);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1], expected_restart);

    // Offline: no waiting at all.
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.anon().drone("drone-quiet").await.unwrap().state
        != build_swarm::domain::DroneState::Offline
    {
        assert!(Instant::now() < deadline, "drone never went offline");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = Instant::now();
    let out = run(with_cfg(&["quiet", "restart", "--wait", "60"])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("is offline"), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let calls = read_ssh_log(&ssh_log);
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[2], expected_restart);

    // A drone that reports its own restart_command (a systemd host) gets that one.
    app.drone()
        .register(&RegisterRequest {
            name: "drone-systemd".into(),
            aliases: vec![],
            host: "127.0.0.2".into(),
            slots: 1,
            version: "test".into(),
            restart_command: vec!["systemctl".into(), "restart".into(), "swarm-drone".into()],
            environment: None,
        })
        .await
        .unwrap();
    let out = run(with_cfg(&["drone-systemd", "restart", "--via-ssh"])).await;
    assert_eq!(out.code, 0, "{out:?}");
    let calls = read_ssh_log(&ssh_log);
    assert_eq!(
        calls.last().unwrap()[3..],
        ["root@127.0.0.2", "systemctl restart swarm-drone"]
    );

    // `<drone> ssh cmd…`: one line for the remote shell, each argument quoted so it
    // arrives as given.
    std::fs::remove_file(&ssh_log).unwrap();
    let out = run(with_cfg(&["quiet", "ssh", "echo", "a b", "$HOME", "-la"])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        read_ssh_log(&ssh_log),
        [vec![
            "-o",
            "BatchMode=yes",
            "--",
            "root@127.0.0.1",
            "echo 'a b' '$HOME' -la"
        ]]
    );

    // A failing ssh is an error.
    let bad = cli.config_file("bad.toml", "ssh_command = [\"false\"]\n");
    let out = cli
        .run(&[
            "--config",
            bad.to_str().unwrap(),
            "--orchestrator",
            &app.url,
            "quiet",
            "restart",
            "--via-ssh",
        ])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("restarting drone-quiet over ssh failed"),
        "{out:?}"
    );
    app.stop().await;
}

#[actix_web::test]
async fn pause_and_resume_go_through_the_api() {
    let app = spawn_app(|_| {}).await;
    register(&app, "drone-a", &[], "127.0.0.1").await;
    let cli = Cli::new();
    cli.ok(&app, &["drone-a", "pause"]).await;
    let d = app.anon().drone("drone-a").await.unwrap();
    assert_eq!(d.state, build_swarm::domain::DroneState::Paused);
    assert_eq!(
        heartbeat(&app, "drone-a", vec![]).await,
        [DroneAction::Pause]
    );
    cli.ok(&app, &["drone-a", "resume"]).await;
    let d = app.anon().drone("drone-a").await.unwrap();
    assert_ne!(d.state, build_swarm::domain::DroneState::Paused);
    app.stop().await;
}

#[actix_web::test]
async fn watch_follows_the_set_until_it_is_built() {
    let app = spawn_app(|_| {}).await;
    register(&app, "drone-a", &[], "127.0.0.1").await;
    app.admin()
        .submit(b"app-misc/one-1\napp-misc/two-1\n".to_vec())
        .await
        .unwrap();
    let cli = Cli::new();
    let mut child = cli
        .command(&["--orchestrator", &app.url, "watch", "--interval", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // What watch printed so far, read as it comes (a slow start must not miss "0/2").
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(String::new()));
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = {
        let seen = seen.clone();
        actix_web::rt::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf).await {
                seen.lock().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    wait_for(30, "watch shows the set before anything is built", || {
        let shown = seen.lock().contains("0/2 built");
        async move { shown }
    })
    .await;
    let d = app.drone();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let w = d.claim("drone-a").await.unwrap().expect("work");
        d.uploading(w.lease, w.epoch).await.unwrap();
        let req = fake_upload(&app.staging(), &w, &artifact_bytes(&w.atom));
        assert!(d.complete(w.lease, &req).await.unwrap().accepted);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("watch ends when the set is done")
        .expect("wait");
    let _ = reader.await;
    let stdout = seen.lock().clone();
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("done: 2 built, 0 failed, 0 blocked of 2"),
        "{stdout}"
    );
    app.stop().await;
}

#[actix_web::test]
async fn completions_and_man_page_are_generated() {
    let cli = Cli::new();
    let out = cli.run(&["completions", "bash"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("complete -F"), "{out:?}");
    assert!(out.stdout.contains("failures"), "{out:?}");
    let out = cli.run(&["completions", "zsh"]).await;
    assert!(out.stdout.starts_with("#compdef build-swarm"), "{out:?}");
    let out = cli.run(&["completions", "fish"]).await;
    assert!(out.stdout.contains("complete -c build-swarm"), "{out:?}");
    let out = cli.run(&["man"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains(".TH build-swarm"), "{out:?}");
    assert!(out.stdout.contains("orchestrators"), "{out:?}");
    let out = cli.run(&["completions", "tcsh"]).await;
    assert_eq!(out.code, 2, "{out:?}");
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A stand-in for `swarm-gateway` serving fixed answers in the shapes docs/contract.md §5 names:
/// `/api/v1/orchestrators` (entries with `name` and `url`), merged `/api/v1/status` and
/// `/api/v1/drones` (drones may name their `orchestrator`).
async fn fake_gateway(
    orchestrators: serde_json::Value,
    status: serde_json::Value,
    drones: serde_json::Value,
) -> (String, actix_web::dev::ServerHandle) {
    use actix_web::{web, App, HttpResponse, HttpServer};
    type Answers = (serde_json::Value, serde_json::Value, serde_json::Value);
    let data = web::Data::new((orchestrators, status, drones));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route(
                "/api/v1/orchestrators",
                web::get().to(|d: web::Data<Answers>| async move { HttpResponse::Ok().json(&d.0) }),
            )
            .route(
                "/api/v1/status",
                web::get().to(|d: web::Data<Answers>| async move { HttpResponse::Ok().json(&d.1) }),
            )
            .route(
                "/api/v1/drones",
                web::get().to(|d: web::Data<Answers>| async move { HttpResponse::Ok().json(&d.2) }),
            )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("bind fake gateway");
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (format!("http://127.0.0.1:{port}"), handle)
}

#[actix_web::test]
async fn through_a_gateway_drone_commands_go_to_the_drones_orchestrator() {
    let app = spawn_app(|_| {}).await;
    register(&app, "drone-a", &["alpha"], "127.0.0.1").await;
    register(&app, "drone-b", &[], "127.0.0.2").await;
    heartbeat(&app, "drone-a", vec!["a on test-orch".into()]).await;
    heartbeat(&app, "drone-b", vec!["b on test-orch".into()]).await;
    app.admin()
        .submit(b"app-misc/foo-1.0\n".to_vec())
        .await
        .unwrap();
    let mut drones = serde_json::to_value(app.anon().drones().await.unwrap()).unwrap();
    // drone-a names its orchestrator; drone-b does not (the CLI has to look for it).
    for d in drones["drones"].as_array_mut().unwrap() {
        if d["name"] == "drone-a" {
            d["orchestrator"] = serde_json::json!("test-orch");
        }
    }
    let mut status = serde_json::to_value(app.anon().status().await.unwrap()).unwrap();
    status["name"] = serde_json::json!("merged-by-gateway");
    // The first orchestrator listed is down.
    let backup = format!("http://127.0.0.1:{}", closed_port());
    let orchestrators = serde_json::json!({"orchestrators": [
        {"name": "backup", "url": backup, "queued": 0},
        {"name": "test-orch", "url": app.url, "queued": 1},
    ]});
    let (gw, handle) = fake_gateway(orchestrators, status, drones).await;
    let cli = Cli::new();
    let via = |args: &[&str]| {
        let mut all = vec![
            "--gateway".to_string(),
            gw.clone(),
            "--token".into(),
            ADMIN.into(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        all
    };
    let run = |args: Vec<String>| {
        let cli = &cli;
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            cli.run(&refs).await
        }
    };

    let out = run(via(&["-v", "status"])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("merged-by-gateway"), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("found the swarm at gateway {gw}")),
        "{out:?}"
    );
    assert!(out.stderr.contains("2 orchestrator(s)"), "{out:?}");

    let out = run(via(&["alpha", "logs"])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "a on test-orch\n");
    let out = run(via(&["drone-b", "logs"])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "b on test-orch\n");

    let out = run(via(&["drones"])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("ORCHESTRATOR"), "{out:?}");
    assert!(out.stdout.contains("test-orch"), "{out:?}");

    let out = run(via(&["--json", "orchestrators"])).await;
    assert_eq!(out.code, 0, "{out:?}");
    let v = json(&out);
    assert_eq!(v["orchestrators"][0]["name"], "backup");
    assert_eq!(v["orchestrators"][0]["reachable"], false);
    assert_eq!(v["orchestrators"][1]["reachable"], true);
    assert_eq!(v["orchestrators"][1]["status"]["total"], 1);

    let out = run(via(&["packages"])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("app-misc/foo-1.0"), "{out:?}");
    assert!(
        out.stderr.contains("skipping orchestrator backup"),
        "{out:?}"
    );

    let set = cli.config_file("set.txt", "app-misc/bar-1.0\n");
    let out = run(via(&["submit", set.to_str().unwrap()])).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("--to"), "{out:?}");
    let out = run(via(&["submit", "--to", "test-orch", set.to_str().unwrap()])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(app.anon().status().await.unwrap().counts.total, 2);
    handle.stop(false).await;
    app.stop().await;
}

/// `drone enroll` prints a token that works once; ssh goes to the host the operator gave
/// (`[hosts]`, then the enrolled one), not the one the drone announces, and says so.
#[actix_web::test]
async fn enrolled_drones_and_the_host_ssh_goes_to() {
    let app = spawn_app(|_| {}).await;
    let cli = Cli::new();
    let out = cli
        .ok(&app, &["drone", "enroll", "drone-e", "--host", "10.0.0.5"])
        .await;
    let token = out.stdout.trim().to_string();
    assert!(token.starts_with("bsd_"), "{out:?}");
    assert!(out.stderr.contains("shown only now"), "{out:?}");
    // The drone announces another host (with its own, valid token).
    let own = build_swarm::client::ApiClient::new(&app.url, Some(token.clone()));
    own.register(&RegisterRequest {
        host: "203.0.113.9".into(),
        ..registration("drone-e", 1)
    })
    .await
    .expect("register with the enrolled token");
    let status = cli.ok(&app, &["drone-e", "status"]).await;
    assert!(
        status
            .stdout
            .contains("203.0.113.9 (enrolled for 10.0.0.5)"),
        "{status:?}"
    );
    assert!(status.stdout.contains("its own token"), "{status:?}");
    let list = cli.ok(&app, &["--json", "enrollments"]).await;
    assert_eq!(json(&list)["drones"][0]["host"], "10.0.0.5");

    let (ssh, ssh_log) = cli.fake_ssh();
    let cfg = cli.config_file(
        "cli.toml",
        &format!("ssh_command = [\"{}\"]\n", ssh.display()),
    );
    let cfg = cfg.display().to_string();
    let out = cli
        .ok(&app, &["--config", &cfg, "drone-e", "ssh", "true"])
        .await;
    assert!(
        out.stderr
            .contains("announces host 203.0.113.9; using 10.0.0.5 (enrolled)"),
        "{out:?}"
    );
    assert_eq!(read_ssh_log(&ssh_log)[0], ["--", "10.0.0.5", "true"]);
    // The operator's own [hosts] entry wins over both.
    let cfg = cli.config_file(
        "cli2.toml",
        &format!(
            "ssh_command = [\"{}\"]\n[hosts]\ndrone-e = \"e.lan\"\n",
            ssh.display()
        ),
    );
    let cfg = cfg.display().to_string();
    let out = cli
        .ok(&app, &["--config", &cfg, "drone-e", "ssh", "true"])
        .await;
    assert!(
        out.stderr.contains(
            "drone-e is enrolled for 10.0.0.5, announces host 203.0.113.9; using e.lan (configured in [hosts])"
        ),
        "{out:?}"
    );
    assert_eq!(read_ssh_log(&ssh_log)[1], ["--", "e.lan", "true"]);

    // Revoked: the token stops working.
    cli.ok(&app, &["drone", "revoke", "drone-e"]).await;
    let err = own
        .heartbeat(
            "drone-e",
            &build_swarm::wire::orchestrator::HeartbeatRequest::default(),
        )
        .await
        .expect_err("revoked");
    assert_eq!(err.status(), Some(401));
    let out = cli.at(&app, &["revoke", "--forget", "drone-e"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = cli.at(&app, &["revoke", "drone-e"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("not enrolled"), "{out:?}");
    // Only the admin enrolls.
    let out = cli
        .run(&["--orchestrator", &app.url, "--token", DRONE, "enroll", "x"])
        .await;
    assert_ne!(out.code, 0, "{out:?}");
    app.stop().await;
}

#[actix_web::test]
async fn timeline_shows_each_drone_slot_and_json_has_the_bars() {
    let app = spawn_app(|c| c.policy.build_failure_drones = 1).await;
    app.register("d1", 2).await;
    app.submit("app-misc/a-1.0\napp-misc/b-1.0\n").await;
    let a = app.claim("d1").await;
    let b = app.claim("d1").await;
    app.upload_and_complete(&a).await;
    app.fail(&b, FailureKind::Build, "emerge exited with 1", "")
        .await;
    let out = admin_cli(&app, &["timeline", "--since", "10m"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("2 attempts on 2 slots"), "{text}");
    assert!(text.contains("d1/0 |") && text.contains("d1/1 |"), "{text}");
    assert!(
        text.contains('#') && text.contains('x'),
        "built and failed cells: {text}"
    );
    let out = admin_cli(&app, &["timeline", "--json"]).await;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON answer per orchestrator");
    let outcomes: Vec<&str> = v["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .flat_map(|r| r["bars"].as_array().cloned().unwrap_or_default())
        .filter_map(|b| b["outcome"].as_str().map(str::to_string))
        .map(|s| {
            if s == "built" {
                "built"
            } else if s == "failed" {
                "failed"
            } else {
                "other"
            }
        })
        .collect();
    assert!(
        outcomes.contains(&"built") && outcomes.contains(&"failed"),
        "{v}"
    );
    let bad = admin_cli(&app, &["timeline", "--since", "2w"]).await;
    assert_eq!(
        bad.status.code(),
        Some(2),
        "a bad duration is a usage error"
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a duration"));
}
