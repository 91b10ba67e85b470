//! Build environments (#18): drones whose fingerprint does not fit get no work and show as
//! `mismatched`; lagging ones are told to sync; packages' requirements go only to drones
//! that meet them, and wait with the reason when none does; learned build times order the
//! next set. Simulated drones over the real API, and real `swarm-drone` processes whose
//! environment and sync commands really run (and are killed when they hang).

use crate::common::*;
use build_swarm::domain::environment::{DroneEnvironment, Resources};
use build_swarm::domain::{DroneState, PackageState};
use build_swarm::wire::orchestrator::{DroneAction, HeartbeatRequest, RegisterRequest};
use std::time::Duration;

fn env_with(pairs: &[(&str, &str)], capabilities: &[&str]) -> DroneEnvironment {
    DroneEnvironment {
        fingerprint: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
        resources: Resources {
            cores: 4,
            memory_mb: 8000,
            pkgdir_free_mb: 50_000,
            tmpdir_free_mb: 50_000,
        },
        ..DroneEnvironment::default()
    }
}

async fn register_env(app: &TestApp, name: &str, env: Option<DroneEnvironment>) {
    app.register_with(RegisterRequest {
        environment: env,
        ..registration(name, 1)
    })
    .await;
}

async fn report(app: &TestApp, name: &str, env: DroneEnvironment) -> Vec<DroneAction> {
    app.drone()
        .heartbeat(
            name,
            &HeartbeatRequest {
                environment: Some(env),
                ..HeartbeatRequest::default()
            },
        )
        .await
        .expect("heartbeat")
        .commands
        .into_iter()
        .map(|c| c.action)
        .collect()
}

async fn drone_info(app: &TestApp, name: &str) -> build_swarm::wire::orchestrator::DroneInfo {
    app.anon()
        .drones()
        .await
        .expect("drones")
        .drones
        .into_iter()
        .find(|d| d.name == name)
        .expect("drone listed")
}

/// A drone whose CFLAGS differ gets no work, is `mismatched` with CFLAGS named in the API,
/// the CLI and /metrics, and gets work once it reports the right ones; an older drone that
/// reports nothing counts as matching; a failed environment command means no work.
#[actix_web::test]
async fn a_drone_whose_environment_differs_gets_no_work_until_it_fits() {
    let app = spawn_app(|c| {
        c.environment
            .expected
            .insert("CFLAGS".into(), "-O2 -pipe".into());
        c.environment
            .expected
            .insert("CHOST".into(), "x86_64-pc-linux-gnu".into());
    })
    .await;
    app.submit("app-misc/a-1\napp-misc/b-1\napp-misc/c-1\n")
        .await;
    let good = [("CHOST", "x86_64-pc-linux-gnu"), ("CFLAGS", "-O2  -pipe")];
    let odd = [
        ("CHOST", "x86_64-pc-linux-gnu"),
        ("CFLAGS", "-O2 -pipe -march=native"),
    ];
    register_env(&app, "odd", Some(env_with(&odd, &[]))).await;
    let d = drone_info(&app, "odd").await;
    assert_eq!(d.state, DroneState::Mismatched);
    assert_eq!(d.mismatch.as_deref(), Some("differs: CFLAGS"));
    assert_eq!(d.resources.as_ref().map(|r| r.cores), Some(4));
    assert_eq!(app.sim_drone("odd").claim().await.expect("claim"), None);
    let status = app.anon().status().await.expect("status");
    assert_eq!(status.drones.mismatched, 1);
    assert_eq!(
        metric(&app, "build_swarm_drones{state=\"mismatched\"}").await,
        Some(1.0)
    );
    assert_eq!(
        metric(
            &app,
            "build_swarm_drone_mismatched{drone=\"odd\",mismatch=\"differs: CFLAGS\"}"
        )
        .await,
        Some(1.0)
    );
    let out = admin_cli(&app, &["drones"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mismatched (differs: CFLAGS)"), "{text}");
    let out = admin_cli(&app, &["odd", "status"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("environment") && text.contains("CFLAGS"),
        "{text}"
    );
    // Mismatch is never a failure of the drone or of a package.
    assert_eq!(d.failures, 0);

    // An older drone (no environment at all) is treated as matching.
    register_env(&app, "old", None).await;
    assert_eq!(drone_info(&app, "old").await.state, DroneState::Idle);
    let w = app.claim("old").await;
    app.upload_and_complete(&w).await;

    // The odd drone's config is fixed: it reports again and gets work.
    report(&app, "odd", env_with(&good, &[])).await;
    let d = drone_info(&app, "odd").await;
    assert_eq!((d.state, d.mismatch), (DroneState::Idle, None));
    let w = app.claim("odd").await;
    app.upload_and_complete(&w).await;

    // Its environment command fails: reported, no work, nothing else affected.
    let broken = DroneEnvironment {
        error: Some(
            "environment_command: `portageq` did not finish within 120 s and was killed".into(),
        ),
        ..DroneEnvironment::default()
    };
    report(&app, "odd", broken).await;
    let d = drone_info(&app, "odd").await;
    assert_eq!(d.state, DroneState::Mismatched);
    assert!(d.mismatch.expect("why").contains("did not finish"));
    assert_eq!(app.sim_drone("odd").claim().await.expect("claim"), None);
    let w = app.claim("old").await;
    app.upload_and_complete(&w).await;
    assert_eq!(app.anon().status().await.expect("status").counts.built, 3);
    app.stop().await;
}

/// Absurd reports get one clear error and change nothing: 10 MB of USE flags, negative
/// memory, a capability with a space.
#[actix_web::test]
async fn absurd_environment_reports_are_refused_clearly() {
    let app = spawn_app(|_| {}).await;
    register_env(&app, "fine", Some(env_with(&[("CHOST", "x")], &[]))).await;
    let huge = env_with(&[("USE", &"flag ".repeat(2_000_000))], &[]);
    let err = app
        .drone()
        .register(&RegisterRequest {
            environment: Some(huge),
            ..registration("huge", 1)
        })
        .await
        .expect_err("refused");
    assert_eq!(err.status(), Some(413), "{err}");
    let big = env_with(&[("USE", &"flag ".repeat(20_000))], &[]);
    let err = app
        .drone()
        .register(&RegisterRequest {
            environment: Some(big),
            ..registration("big", 1)
        })
        .await
        .expect_err("refused");
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(
        err.to_string().contains("`USE` is 100000 bytes long"),
        "{err}"
    );
    let bad_cap = env_with(&[], &["big mem"]);
    let err = app
        .drone()
        .heartbeat(
            "fine",
            &HeartbeatRequest {
                environment: Some(bad_cap),
                ..HeartbeatRequest::default()
            },
        )
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("capability `big mem`"), "{err}");
    // Negative memory is not a number of megabytes.
    let resp = awc::Client::default()
        .post(format!("{}/api/v1/drones/register", app.url))
        .bearer_auth(DRONE)
        .send_json(
            &serde_json::json!({"name": "neg", "environment": {"resources": {"memory_mb": -5}}}),
        )
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 400);
    // None of it registered anything or disturbed the drone that was there.
    let drones = app.anon().drones().await.expect("drones").drones;
    assert_eq!(
        drones.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["fine"]
    );
    assert_eq!(drones[0].state, DroneState::Idle);
    app.stop().await;
}

/// Packages needing `big-mem` go only to the drone that has it; with it gone they wait
/// with the reason shown; 300 packages nobody can build never keep a plain drone from the
/// one it can.
#[actix_web::test]
async fn requirements_go_to_drones_that_have_them_and_wait_with_the_reason() {
    let app = spawn_app(|c| c.leases.heartbeat_ttl_s = 2).await;
    register_env(&app, "plain", Some(env_with(&[], &[]))).await;
    let mut packages: Vec<serde_json::Value> = (0..300)
        .map(|i| serde_json::json!({"atom": format!("sci-libs/impossible-{i}"), "requires": ["quantum"]}))
        .collect();
    packages.push(serde_json::json!({"atom": "www-client/chromium-1", "requires": ["big-mem"], "min_memory_mb": 4000}));
    packages.push(serde_json::json!({"atom": "app-misc/plain-1"}));
    let set = serde_json::json!({ "packages": packages }).to_string();
    app.submit(&set).await;
    // No drone online has big-mem: chromium waits, saying why.
    let list = app.anon().packages(None).await.expect("packages").packages;
    let chromium = list
        .iter()
        .find(|p| p.atom == "www-client/chromium-1")
        .expect("listed");
    assert_eq!(chromium.state, PackageState::Waiting);
    assert!(
        chromium
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("big-mem")),
        "{chromium:?}"
    );
    let impossible = list
        .iter()
        .find(|p| p.atom == "sci-libs/impossible-7")
        .expect("listed");
    assert!(impossible
        .reason
        .as_deref()
        .is_some_and(|r| r.contains("quantum")));
    // The plain drone gets the plain package past 300 it cannot build, then nothing.
    let w = app.claim("plain").await;
    assert_eq!(w.atom, "app-misc/plain-1");
    app.upload_and_complete(&w).await;
    assert_eq!(app.sim_drone("plain").claim().await.expect("claim"), None);

    // The big-mem drone comes: chromium is queued and goes to it, never to the plain one.
    register_env(&app, "big", Some(env_with(&[], &["big-mem"]))).await;
    assert_eq!(app.sim_drone("plain").claim().await.expect("claim"), None);
    let w = app.claim("big").await;
    assert_eq!(w.atom, "www-client/chromium-1");
    app.upload_and_complete(&w).await;

    // It goes offline; another big-mem package waits with the reason until it is back.
    app.submit(r#"{"packages": [{"atom": "www-client/firefox-1", "requires": ["big-mem"]}]}"#)
        .await;
    let plain = app.sim_drone("plain");
    wait_for(10, "the big-mem drone offline", || async {
        plain.heartbeat(vec![], vec![]).await.ok();
        drone_info(&app, "big").await.state == DroneState::Offline
    })
    .await;
    let firefox = app
        .anon()
        .packages(None)
        .await
        .expect("packages")
        .packages
        .into_iter()
        .find(|p| p.atom == "www-client/firefox-1")
        .expect("listed");
    assert_eq!(firefox.state, PackageState::Waiting, "{firefox:?}");
    assert!(firefox
        .reason
        .as_deref()
        .is_some_and(|r| r.contains("big-mem")));
    assert_eq!(plain.claim().await.expect("claim"), None);
    let s = app.anon().status().await.expect("status");
    assert_eq!((s.counts.failed, s.counts.waiting), (0, 301));
    register_env(&app, "big", Some(env_with(&[], &["big-mem"]))).await;
    assert_eq!(app.claim("big").await.atom, "www-client/firefox-1");
    app.stop().await;
}

/// A real drone whose environment command hangs: killed after `environment_timeout_s`,
/// reported, and the drone is given no work; a real drone whose repository lags is told to
/// sync, runs its `sync_command`, reports the new revision and builds.
#[actix_web::test]
async fn real_drones_report_hung_commands_and_sync_when_they_lag() {
    let app = spawn_app(|c| {
        // A heartbeat every 2 s: sync commands reach the drone quickly.
        c.leases.heartbeat_ttl_s = 8;
        c.environment
            .expected
            .insert("REPO_REVISION/gentoo".into(), "new".into());
        c.environment
            .expected
            .insert("CHOST".into(), "x86_64-pc-linux-gnu".into());
    })
    .await;
    let work = tempfile::tempdir().expect("tempdir");
    app.submit("app-misc/a-1\napp-misc/b-1\n").await;
    // The hanging one.
    let marker = format!("envhang-{}", std::process::id());
    let hang = drone_config(
        work.path(),
        "hang",
        &app.url,
        &format!(
            "environment_command = [\"sh\", \"-c\", \"sleep 300; : {marker}\"]\nenvironment_timeout_s = 1"
        ),
        "",
    );
    let mut hang = spawn_drone(&hang, &[]);
    // The lagging one: its "repository" is a file the sync command replaces.
    let fp = work.path().join("fingerprint");
    std::fs::write(
        &fp,
        "CHOST=x86_64-pc-linux-gnu\nREPO_REVISION/gentoo=old\nREPO_TIMESTAMP/gentoo=100\n",
    )
    .expect("write");
    let synced = work.path().join("synced");
    std::fs::write(
        &synced,
        "CHOST=x86_64-pc-linux-gnu\nREPO_REVISION/gentoo=new\nREPO_TIMESTAMP/gentoo=200\n",
    )
    .expect("write");
    let lag = drone_config(
        work.path(),
        "lag",
        &app.url,
        &format!(
            "environment_command = [\"cat\", \"{fp}\"]\nsync_command = [\"cp\", \"{synced}\", \"{fp}\"]\ncapabilities = [\"x86-64-v3\"]",
            fp = fp.display(),
            synced = synced.display()
        ),
        "",
    );
    let mut lag = spawn_drone(&lag, &[]);
    let info = eventually(
        "the hung command reported",
        Duration::from_secs(30),
        || async {
            let d = app.anon().drones().await.ok()?;
            d.drones
                .into_iter()
                .find(|d| d.name == "hang" && d.mismatch.is_some())
        },
    )
    .await;
    assert_eq!(info.state, DroneState::Mismatched);
    assert!(
        info.mismatch
            .as_deref()
            .is_some_and(|m| m.contains("did not finish within 1 s")),
        "{info:?}"
    );
    // Killed with its whole group: nothing of it is left.
    wait_for(10, "the hung command killed", || async {
        processes_matching(&marker).is_empty()
    })
    .await;
    // The lagging drone synced and built everything; the hung one built nothing.
    eventually("the set built", Duration::from_secs(60), || async {
        let s = app.anon().status().await.ok()?;
        (s.counts.built == 2).then_some(())
    })
    .await;
    assert_eq!(
        std::fs::read(&fp).expect("read"),
        std::fs::read(&synced).expect("read")
    );
    let d = drone_info(&app, "lag").await;
    assert_eq!(d.mismatch, None);
    assert_eq!(d.capabilities, ["x86-64-v3"]);
    let list = app.anon().packages(None).await.expect("packages").packages;
    assert!(
        list.iter().all(|p| p.drone.as_deref() == Some("lag")),
        "{list:?}"
    );
    let log_path = work.path().join("lag/drone.log");
    let syncs = || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .matches("syncing repositories")
            .count()
    };
    assert_eq!(syncs(), 1);
    // The operator asks for a sync by hand: it runs with the next heartbeat.
    let out = admin_cli(&app, &["lag", "sync"]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("told to sync"));
    wait_for(30, "the operator's sync", || async { syncs() == 2 }).await;
    let _ = hang.kill().await;
    let _ = lag.kill().await;
    app.stop().await;
}

/// What a build took is learned per package name: after a restart, a new version of the
/// same packages without estimates is ordered by it (the long one first), and the ETA
/// uses it.
#[actix_web::test]
async fn learned_build_times_order_the_next_set_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = test_config(dir.path());
    let app = spawn_app_in(dir, cfg.clone()).await;
    register_env(&app, "d", None).await;
    app.submit("app-misc/short-1\napp-misc/long-1\napp-misc/mid-1\n")
        .await;
    for _ in 0..3 {
        let w = app.claim("d").await;
        let ms = match w.atom.as_str() {
            "app-misc/long-1" => 800,
            "app-misc/mid-1" => 250,
            _ => 10,
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        app.upload_and_complete(&w).await;
    }
    // Learned times are saved every 30 s and when the orchestrator stops.
    app.queue
        .send(build_swarm::actors::orchestrator::queue::SaveLearned)
        .await
        .expect("queue")
        .expect("saved");
    let TestApp { handle, dir, .. } = app;
    handle.stop(true).await;
    let app = spawn_app_in(dir, cfg).await;
    register_env(&app, "d", None).await;
    // Set order is short, mid, long: the learned times put long first, then mid.
    app.submit("app-misc/short-2\napp-misc/mid-2\napp-misc/long-2\n")
        .await;
    // 0.8 + 0.25 + 0.01 s slept (plus commits and requests: learned as up to 2 s), one
    // slot: 2 s (unknown, each would count 1 s: 3 s).
    let eta = app.anon().status().await.expect("status").eta_s;
    assert_eq!(eta, Some(2));
    let first = app.claim("d").await;
    assert_eq!(first.atom, "app-misc/long-2");
    app.upload_and_complete(&first).await;
    let second = app.claim("d").await;
    assert_eq!(second.atom, "app-misc/mid-2");
    app.stop().await;
}

/// Repositories newer than the reference drone's: the reference is told to sync; a drone
/// still lagging after a sync is told again once `resync_s` is over (checked at each
/// heartbeat), never an older drone.
#[actix_web::test]
async fn the_reference_syncs_when_others_are_ahead_and_laggards_are_asked_again() {
    let app = spawn_app(|c| {
        c.environment.reference = Some("ref".into());
        c.environment.resync_s = 60;
    })
    .await;
    let repo = |rev: &str, ts: &str| {
        let mut e = env_with(&[("CHOST", "x")], &[]);
        e.repos.insert(
            "gentoo".into(),
            build_swarm::domain::environment::RepoRevision {
                revision: rev.into(),
                timestamp: ts.parse().ok(),
            },
        );
        e
    };
    register_env(&app, "ref", Some(repo("mid", "200"))).await;
    register_env(&app, "new", Some(repo("newest", "300"))).await;
    let d = drone_info(&app, "new").await;
    assert_eq!(d.state, DroneState::Mismatched);
    assert!(
        d.mismatch
            .as_deref()
            .is_some_and(|m| m.contains("newer than expected")),
        "{d:?}"
    );
    assert_eq!(
        report(&app, "ref", repo("mid", "200")).await,
        [DroneAction::Sync]
    );
    // Told once per resync_s, not at every heartbeat.
    assert!(report(&app, "ref", repo("mid", "200")).await.is_empty());
    // A lagging drone is told to sync; still lagging, it is not told again at once.
    register_env(&app, "old", Some(repo("oldest", "100"))).await;
    assert_eq!(
        report(&app, "old", repo("oldest", "100")).await,
        [DroneAction::Sync]
    );
    assert!(report(&app, "old", repo("oldest", "100")).await.is_empty());
    // The reference syncs: the drone ahead fits, the lagging one still lags.
    report(&app, "ref", repo("newest", "300")).await;
    assert_eq!(drone_info(&app, "new").await.state, DroneState::Idle);
    // An older drone is never sent `sync`, and the control API says why.
    register_env(&app, "ancient", None).await;
    assert!(app.heartbeat("ancient", vec![], vec![]).await.is_empty());
    let out = admin_cli(&app, &["ancient", "sync"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("reports no build environment"),
        "{out:?}"
    );
    app.stop().await;
}

/// Speed factors are learned per drone: with a faster drone idle, a slower one is handed
/// the shorter package and the long chain waits for the faster one.
#[actix_web::test]
async fn a_slower_drone_leaves_the_longest_chain_to_a_faster_idle_one() {
    let app = spawn_app(|_| {}).await;
    register_env(&app, "fast", None).await;
    register_env(&app, "slow", None).await;
    // Both build the same package names: slow takes four times as long.
    for round in 1..=4 {
        app.submit(&format!("app-misc/probe-{round}\n")).await;
        let w = app.claim("fast").await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        app.upload_and_complete(&w).await;
        app.submit(&format!("app-misc/probe-{round}.1\n")).await;
        let w = app.claim("slow").await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        app.upload_and_complete(&w).await;
    }
    let speed = |name: &str| {
        let app = &app;
        let name = name.to_string();
        async move { drone_info(app, &name).await.speed_factor }
    };
    let (fast, slow) = (speed("fast").await, speed("slow").await);
    assert!(slow > 1.25 * fast, "fast {fast}, slow {slow}");
    let out = admin_cli(&app, &["slow", "status"]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("slower"),
        "{out:?}"
    );
    app.submit(
        r#"{"packages": [{"atom": "sys-devel/gcc-14", "estimate_s": 3000},
                         {"atom": "app-misc/tiny-1", "estimate_s": 5}]}"#,
    )
    .await;
    // The fast drone claimed lately and has a free slot: the slow one gets the tiny one.
    assert_eq!(app.claim("slow").await.atom, "app-misc/tiny-1");
    assert_eq!(app.claim("fast").await.atom, "sys-devel/gcc-14");
    app.stop().await;
}

/// A drone whose CFLAGS change while it builds: its lease is withdrawn (cancelled at no
/// cost to the package or the drone), its late completion is not published, and the
/// package goes to a drone that fits.
#[actix_web::test]
async fn a_drone_whose_environment_changes_mid_build_has_its_work_withdrawn() {
    let app = spawn_app(|c| {
        c.environment.expected.insert("CFLAGS".into(), "-O2".into());
    })
    .await;
    register_env(&app, "a", Some(env_with(&[("CFLAGS", "-O2")], &[]))).await;
    app.submit("app-misc/x-1\n").await;
    let w = app.claim("a").await;
    // Someone edits make.conf on the drone; its next report says so.
    let commands = app
        .drone()
        .heartbeat(
            "a",
            &HeartbeatRequest {
                leases: vec![w.lease],
                environment: Some(env_with(&[("CFLAGS", "-O3 -funroll-loops")], &[])),
                ..HeartbeatRequest::default()
            },
        )
        .await
        .expect("heartbeat")
        .commands;
    let commands = if commands.is_empty() {
        app.heartbeat("a", vec![w.lease], vec![]).await
    } else {
        commands
    };
    assert!(
        commands
            .iter()
            .any(|c| c.action == DroneAction::Cancel && c.lease == Some(w.lease)),
        "{commands:?}"
    );
    // Its build finished anyway: the completion is not published.
    let resp = app.upload_and_complete(&w).await;
    assert!(!resp.accepted && resp.stale, "{resp:?}");
    let p = &app.anon().packages(None).await.expect("list").packages[0];
    assert_eq!((p.state, p.attempts), (PackageState::Queued, 0), "{p:?}");
    assert_eq!(drone_info(&app, "a").await.failures, 0);
    assert_eq!(index_paths(&app.binhost()).len(), 0);
    // A drone that fits builds it.
    register_env(&app, "b", Some(env_with(&[("CFLAGS", "-O2")], &[]))).await;
    let w = app.claim("b").await;
    assert!(app.upload_and_complete(&w).await.accepted);
    app.stop().await;
}

/// A package that failed on the only drone that can build it goes back to that drone,
/// even while drones that cannot build it are around.
#[actix_web::test]
async fn a_retry_goes_back_to_the_only_drone_that_can_build_it() {
    let app = spawn_app(|_| {}).await;
    register_env(&app, "plain", Some(env_with(&[], &[]))).await;
    register_env(&app, "big", Some(env_with(&[], &["big-mem"]))).await;
    app.submit(r#"{"packages": [{"atom": "www-client/chromium-1", "requires": ["big-mem"]}]}"#)
        .await;
    let w = app.claim("big").await;
    app.fail(&w, build_swarm::domain::FailureKind::Build, "flaky", "")
        .await;
    assert_eq!(app.sim_drone("plain").claim().await.expect("claim"), None);
    let again = app.claim("big").await;
    assert_eq!(again.atom, "www-client/chromium-1");
    app.stop().await;
}
