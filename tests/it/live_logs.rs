//! `build-swarm log -f` against a real drone whose builder prints 10,000 numbered lines
//! over a few seconds: a reader from the start gets every line once, in order, then the
//! outcome; a reader that comes late gets the kept tail, then the live lines; a reader
//! stopped with SIGSTOP does not slow the build down.

use crate::common::*;
use build_swarm::client::ApiClient;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const LINES: usize = 10_000;

/// A reader: `log -f` with its standard output read as it comes (a pipe nobody reads
/// would stall it), collected by the returned task.
struct Reader {
    child: Child,
    out: tokio::task::JoinHandle<String>,
    /// Fires once `log -f` said it waits for a drone (it is connected).
    waiting: tokio::sync::oneshot::Receiver<()>,
}

impl Reader {
    async fn finish(self) -> (std::process::ExitStatus, String) {
        let Reader { mut child, out, .. } = self;
        let status = child.wait().await.expect("log -f ends");
        (status, out.await.unwrap_or_default())
    }
}

fn follow(url: &str, atom: &str) -> Reader {
    let mut child = spawn_follow(url, atom, Stdio::piped());
    let mut stdout = child.stdout.take().expect("stdout");
    let out = actix_web::rt::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s).await;
        s
    });
    let stderr = child.stderr.take().expect("stderr");
    let (tx, waiting) = tokio::sync::oneshot::channel();
    actix_web::rt::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let mut tx = Some(tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("waiting for a drone") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    Reader {
        child,
        out,
        waiting,
    }
}

fn spawn_follow(url: &str, atom: &str, stderr: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_build-swarm"))
        .args(["--orchestrator", url, "--token", ADMIN, "log", "-f", atom])
        .env("NO_COLOR", "1")
        .env_remove("BUILD_SWARM_GATEWAY")
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("build-swarm log -f")
}

/// The numbers of the `build output line N of 10000` lines, in the order printed.
fn numbers(out: &str) -> Vec<usize> {
    out.lines()
        .filter_map(|l| l.strip_prefix("build output line "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect()
}

async fn built(anon: &ApiClient, atom: &str) {
    let (cat, pf) = atom.split_once('/').expect("atom");
    wait_for(60, &format!("{atom} built"), || async {
        anon.package_log(&format!("{cat}/{pf}"))
            .await
            .is_ok_and(|l| l.state == build_swarm::domain::PackageState::Built)
    })
    .await;
}

#[actix_web::test]
async fn log_follow_prints_every_line_once_in_order_late_readers_get_the_tail_and_a_stalled_one_costs_nothing(
) {
    if !require_rsync() {
        return;
    }
    let app = spawn_app(|_| {}).await;
    let cfg = drone_config(app.dir.path(), "d1", &app.url, "slots = 1", "");
    let env = [
        ("STANDIN_LINES", "10000"),
        ("STANDIN_SECONDS", "3"),
        ("STANDIN_KB", "16"),
    ];
    // drone_config writes slots = 2 itself: one build at a time is what is measured.
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(&cfg, text.replacen("slots = 2\n", "", 1)).expect("config");
    let anon = app.anon();

    // A reader from before the build starts, and one that comes in the middle.
    let first_atom = "app-misc/loud-1.0";
    // Submitted first (an unknown atom is an error), followed before any drone exists:
    // the drone starts only once the reader said it waits.
    app.submit(&format!("{first_atom}\n")).await;
    let mut early = follow(&app.url, first_atom);
    tokio::time::timeout(Duration::from_secs(30), &mut early.waiting)
        .await
        .expect("log -f says it waits for a drone")
        .expect("log -f's stderr");
    let _drone = spawn_drone(&cfg, &env);
    wait_for(30, "the build under way", || async {
        anon.package_log(first_atom)
            .await
            .is_ok_and(|l| l.state == build_swarm::domain::PackageState::Building)
    })
    .await;
    // The build's wall time: from building to built (the claim's idle poll left out).
    let t0 = Instant::now();
    // The late reader comes once more lines went by than the orchestrator keeps (a fixed
    // sleep raced the drone's start-up on a loaded machine).
    wait_for(30, "more output than the ring keeps", || async {
        anon.live_log(first_atom, None, 0)
            .await
            .is_ok_and(|l| l.first > 100)
    })
    .await;
    let late = follow(&app.url, first_atom);
    built(&anon, first_atom).await;
    let alone = t0.elapsed();

    let (status, out) = early.finish().await;
    assert!(status.success(), "{out}");
    let got = numbers(&out);
    assert_eq!(got.len(), LINES, "every line once: {} lines", got.len());
    assert!(got.iter().enumerate().all(|(i, n)| *n == i + 1), "in order");
    assert!(
        out.trim_end().ends_with(&format!("=== {first_atom} built")),
        "{out}"
    );

    let (status, out) = late.finish().await;
    assert!(status.success(), "{out}");
    let got = numbers(&out);
    assert!(
        got[0] > 1,
        "the late reader starts with the kept tail, not line 1"
    );
    assert!(
        got.windows(2).all(|w| w[1] == w[0] + 1),
        "then every following line once, in order"
    );
    assert_eq!(got.last(), Some(&LINES));
    assert!(out.contains("[… earlier output not kept]") || got[0] < 2_000);

    // The same build with a reader that stops reading (SIGSTOP) right away.
    let second = "app-misc/loud-2.0";
    // Its output pipe is never read either.
    app.submit(&format!("{second}\n")).await;
    let stalled = spawn_follow(&app.url, second, Stdio::null());
    let pid = stalled.id().expect("pid");
    wait_for(30, "the second build under way", || async {
        anon.package_log(second)
            .await
            .is_ok_and(|l| l.state == build_swarm::domain::PackageState::Building)
    })
    .await;
    let t1 = Instant::now();
    unsafe {
        libc::kill(pid as i32, libc::SIGSTOP);
    }
    built(&anon, second).await;
    let with_stalled = t1.elapsed();
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    eprintln!("build wall time: {alone:?} alone, {with_stalled:?} with a stalled reader");
    assert!(
        // Loose: two wall-clock windows under changing load; a reader that held the
        // build back would hold it until killed (after `built`), failing the wait above.
        with_stalled <= alone * 2 + Duration::from_secs(5),
        "a stalled reader slowed the build: {alone:?} alone, {with_stalled:?} with it"
    );
    // The drone's log file has every line of both builds too.
    let log = std::fs::read_to_string(app.dir.path().join("d1/state/logs/app-misc/loud-2.0.log"))
        .unwrap_or_default();
    assert_eq!(numbers(&log).len(), LINES);
}

#[actix_web::test]
async fn the_live_log_of_an_unknown_package_is_a_404_and_a_drone_cannot_post_to_another_lease() {
    let app = spawn_app(|_| {}).await;
    let err = app
        .anon()
        .live_log("app-misc/nothing-1", None, 0)
        .await
        .expect_err("unknown");
    assert_eq!(err.status(), Some(404));
    app.register("d1", 1).await;
    app.submit("app-misc/a-1\n").await;
    let w = app.claim("d1").await;
    let chunk = build_swarm::wire::orchestrator::OutputChunk {
        epoch: w.epoch,
        first: 0,
        lines: vec!["hello".into()],
    };
    let ack = app.drone().output(w.lease, &chunk).await.expect("output");
    assert_eq!(ack.next, 1);
    let stale = build_swarm::wire::orchestrator::OutputChunk {
        epoch: w.epoch + 1,
        ..chunk.clone()
    };
    assert_eq!(
        app.drone()
            .output(w.lease, &stale)
            .await
            .unwrap_err()
            .status(),
        Some(400)
    );
    assert_eq!(
        app.drone()
            .output(w.lease + 1, &chunk)
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );
    let live = app
        .anon()
        .live_log("app-misc/a-1", None, 0)
        .await
        .expect("live");
    assert_eq!(
        (live.phase.as_str(), live.lines.clone()),
        ("building", vec!["hello".to_string()])
    );
    assert_eq!(live.drone.as_deref(), Some("d1"));
}
