//! `swarm-drone` as a real process against a real orchestrator, uploading with real rsync
//! to a local staging directory: the one-artifact upload, hung builds, an orchestrator
//! that goes away for 20 s, operator control, start-up refusals. (The multi-host test over
//! ssh in network namespaces is `tests/drone_multihost.rs`.)

use crate::common::*;
use build_swarm::domain::PackageState;
use build_swarm::sys::digest::sha256_file;
use build_swarm::sys::process::{state_and_group, GUARD_NAME};
use build_swarm::wire::orchestrator::ControlAction;
use std::process::Stdio;
use std::time::Duration;

#[actix_web::test]
async fn drones_build_and_publish_only_the_one_artifact() {
    if !require_rsync() {
        return;
    }
    let app = spawn_app(|c| c.leases.heartbeat_ttl_s = 4).await;
    let set: String = (0..10)
        .map(|i| format!("app-misc/pkg{i}-1.{i}\n"))
        .collect();
    app.admin().submit(set.into_bytes()).await.unwrap();
    let env = [("STANDIN_SECONDS", "0.2"), ("STANDIN_KB", "64")];
    let c1 = drone_config(app.dir.path(), "d1", &app.url, "", "");
    let c2 = drone_config(
        app.dir.path(),
        "d2",
        &app.url,
        "",
        "[upload]\nstall_timeout_s = 30\n",
    );
    // A large unrelated file in PKGDIR that must never be sent (seed bug #3).
    let junk = app
        .dir
        .path()
        .join("d1/pkgdir/app-misc/unrelated-9.9.gpkg.tar");
    std::fs::create_dir_all(junk.parent().unwrap()).unwrap();
    std::fs::write(&junk, vec![7u8; 20 * 1024 * 1024]).unwrap();
    let _d1 = spawn_drone(&c1, &env);
    let _d2 = spawn_drone(&c2, &env);
    let anon = app.anon();
    wait_for(60, "all 10 packages built", || async {
        anon.status().await.is_ok_and(|s| s.counts.built == 10)
    })
    .await;
    for i in 0..10 {
        let rel = format!("app-misc/pkg{i}-1.{i}.gpkg.tar");
        let published = sha256_file(&app.binhost().join(&rel)).unwrap();
        let built_by = [
            app.dir.path().join("d1/pkgdir").join(&rel),
            app.dir.path().join("d2/pkgdir").join(&rel),
        ];
        assert!(
            built_by
                .iter()
                .any(|p| sha256_file(p).ok() == Some(published.clone())),
            "{rel}: published bytes match the drone's artifact"
        );
    }
    let sent_junk = walk(&app.staging())
        .chain(walk(&app.binhost()))
        .any(|p| p.contains("unrelated"));
    assert!(!sent_junk, "the unrelated PKGDIR file was uploaded");
    // Later leases got the emptied upload directories of earlier ones, and rsync landed
    // in them: no file is left in staging, only kept empty directories.
    let reused = metric(&app, "build_swarm_upload_dirs_reused_total")
        .await
        .unwrap_or(0.0);
    assert!(reused >= 1.0, "upload directories reused: {reused}");
    let left: Vec<String> = walk(&app.staging()).collect();
    assert!(left.is_empty(), "files left in staging: {left:?}");
    // Both drones worked and report their state.
    let drones = anon.drones().await.unwrap().drones;
    assert_eq!(drones.len(), 2);
    assert!(drones
        .iter()
        .all(|d| d.aliases.len() == 1 && d.host.ends_with(".example")));
    wait_for(10, "drone log lines reach the orchestrator", || async {
        anon.drone_logs("d1", 500)
            .await
            .is_ok_and(|l| l.lines.iter().any(|l| l.contains("upload finished")))
    })
    .await;
    let logs = anon.drone_logs("d1", 500).await.unwrap().lines;
    let unique: std::collections::HashSet<&String> = logs.iter().collect();
    assert_eq!(unique.len(), logs.len(), "each log line arrives once");
    app.stop().await;
}

fn walk(dir: &std::path::Path) -> Box<dyn Iterator<Item = String>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Box::new(std::iter::empty());
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    Box::new(out.into_iter())
}

#[actix_web::test]
async fn a_build_silent_for_the_idle_timeout_is_killed_with_its_children() {
    if !require_rsync() {
        return;
    }
    // One build failure is final here, so no second attempt starts a new build.
    let app = spawn_app(|c| c.policy.build_failure_drones = 1).await;
    app.admin()
        .submit(b"app-misc/hangs-1.0\n".to_vec())
        .await
        .unwrap();
    let cfg = drone_config(app.dir.path(), "d1", &app.url, "", "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("build_idle_timeout_s = 30", "build_idle_timeout_s = 2");
    std::fs::write(&cfg, text).unwrap();
    let _d = spawn_drone(
        &cfg,
        &[
            ("STANDIN_SILENT", "hangs"),
            ("STANDIN_SECONDS", "0.1"),
            ("STANDIN_HANG", "100001"),
        ],
    );
    let anon = app.anon();
    wait_for(30, "the hung build reported", || async {
        anon.packages(None)
            .await
            .is_ok_and(|l| l.packages[0].state == PackageState::Failed)
    })
    .await;
    let pkg = &anon.packages(None).await.unwrap().packages[0];
    assert_eq!(pkg.attempts, 1);
    assert!(
        pkg.reason
            .as_deref()
            .unwrap_or("")
            .contains("build_idle_timeout_s"),
        "{:?}",
        pkg.reason
    );
    // The build's child (sleep 100001) died with it.
    wait_for(3, "the build's child to be gone", || async {
        processes_matching("sleep 100001").is_empty()
    })
    .await;
    app.stop().await;
}

#[actix_web::test]
async fn a_result_is_reported_once_the_orchestrator_is_back_after_20_seconds() {
    if !require_rsync() {
        return;
    }
    // The orchestrator is a real process here, so it can really go away.
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut ocfg = test_config(dir.path());
    ocfg.listen = format!("127.0.0.1:{port}");
    let orch_toml = format!(
        "listen = \"127.0.0.1:{port}\"\nstate_dir = \"{}\"\nstaging_dir = \"{}\"\nbinhost_dir = \"{}\"\n[auth]\nadmin_token = \"{ADMIN}\"\ndrone_token = \"{DRONE}\"\n",
        ocfg.state_dir.display(),
        ocfg.staging_dir.display(),
        ocfg.binhost_dir.display()
    );
    std::fs::write(dir.path().join("o.toml"), orch_toml).unwrap();
    let start_orch = || {
        tokio::process::Command::new(ORCH_BIN)
            .arg("--config")
            .arg(dir.path().join("o.toml"))
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut orch = start_orch();
    let anon = build_swarm::client::ApiClient::new(&url, None);
    wait_for(20, "orchestrator up", || async {
        anon.healthz().await.is_ok()
    })
    .await;
    build_swarm::client::ApiClient::new(&url, Some(ADMIN.into()))
        .submit(b"app-misc/slow-1.0\n".to_vec())
        .await
        .unwrap();
    let cfg = drone_config(dir.path(), "d1", &url, "", "");
    let _d = spawn_drone(&cfg, &[("STANDIN_SECONDS", "3")]);
    wait_for(20, "the package claimed", || async {
        anon.status().await.is_ok_and(|s| s.counts.building == 1)
    })
    .await;
    orch.kill().await.unwrap();
    // The drone finishes its build and upload while nobody answers...
    let log_path = dir.path().join("d1/drone.log");
    wait_for(60, "the result kept while nobody answers", || async {
        std::fs::read_to_string(&log_path)
            .is_ok_and(|l| l.contains("cannot report yet, keeping the result"))
    })
    .await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("upload finished"),
        "the drone finished while the orchestrator was away"
    );
    assert!(
        log.contains("cannot report yet, keeping the result"),
        "{log}"
    );
    // ...and reports once it is back.
    let _orch = start_orch();
    wait_for(
        60,
        "the package built after the orchestrator came back",
        || async { anon.status().await.is_ok_and(|s| s.counts.built == 1) },
    )
    .await;
    assert!(dir
        .path()
        .join("binhost/app-misc/slow-1.0.gpkg.tar")
        .exists());
}

#[actix_web::test]
async fn restart_pause_and_resume_from_the_operator() {
    if !require_rsync() {
        return;
    }
    let app = spawn_app(|c| c.leases.heartbeat_ttl_s = 4).await;
    let set: String = (0..4).map(|i| format!("app-misc/r{i}-1\n")).collect();
    app.admin().submit(set.into_bytes()).await.unwrap();
    let cfg = drone_config(app.dir.path(), "d1", &app.url, "", "");
    let mut drone = spawn_drone(&cfg, &[("STANDIN_SECONDS", "4")]);
    let pid = drone.id().unwrap();
    let anon = app.anon();
    wait_for(20, "building", || async {
        anon.status().await.is_ok_and(|s| s.counts.building >= 1)
    })
    .await;
    app.admin()
        .control("d1", ControlAction::Restart)
        .await
        .unwrap();
    // The running builds are cancelled (no failure counted), the drone re-executes itself
    // (same pid) and registers again.
    wait_for(30, "re-registered after restart", || async {
        std::fs::read_to_string(app.dir.path().join("d1/drone.log"))
            .is_ok_and(|l| l.matches("drone starting").count() >= 2)
    })
    .await;
    assert!(
        drone.try_wait().unwrap().is_none(),
        "the drone process is still alive"
    );
    assert_eq!(drone.id(), Some(pid));
    let pkgs = anon.packages(None).await.unwrap().packages;
    assert!(
        pkgs.iter().all(|p| p.attempts == 0),
        "a cancellation is not a failure: {pkgs:?}"
    );
    let d = anon.drone("d1").await.unwrap();
    assert_eq!(d.failures, 0);

    app.admin()
        .control("d1", ControlAction::Pause)
        .await
        .unwrap();
    wait_for(20, "paused drone drained", || async {
        anon.status()
            .await
            .is_ok_and(|s| s.counts.building == 0 && s.counts.uploading == 0)
    })
    .await;
    let built = anon.status().await.unwrap().counts.built;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = anon.status().await.unwrap();
    assert_eq!(
        (s.counts.built, s.counts.building),
        (built, 0),
        "a paused drone claims nothing"
    );
    app.admin()
        .control("d1", ControlAction::Resume)
        .await
        .unwrap();
    wait_for(60, "all built after resume", || async {
        anon.status().await.is_ok_and(|s| s.counts.built == 4)
    })
    .await;
    let states: Vec<PackageState> = anon
        .packages(None)
        .await
        .unwrap()
        .packages
        .iter()
        .map(|p| p.state)
        .collect();
    assert!(states.iter().all(|s| *s == PackageState::Built));
    app.stop().await;
}

#[actix_web::test]
async fn contimeout_with_an_ssh_target_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = drone_config(
        dir.path(),
        "d1",
        "http://127.0.0.1:9",
        "",
        "[upload]\ntarget = \"root@orch.example:/var/cache/build-swarm/staging\"\nrsync_options = [\"--contimeout=30\"]\n",
    );
    let out = tokio::process::Command::new(DRONE_BIN)
        .arg("--config")
        .arg(&cfg)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--contimeout") && err.contains("ssh"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// The orchestrator announces an ssh upload target; a drone whose rsync options only work
/// with an rsync daemon refuses to run rather than fail every upload.
#[actix_web::test]
async fn contimeout_is_refused_against_the_orchestrators_ssh_target_too() {
    let app =
        spawn_app(|c| c.upload_target = "root@orch.example:/var/cache/build-swarm/staging".into())
            .await;
    let cfg = drone_config(
        app.dir.path(),
        "d1",
        &app.url,
        "",
        "[upload]\nrsync_options = [\"--contimeout=30\"]\n",
    );
    let mut d = spawn_drone(&cfg, &[]);
    let status = tokio::time::timeout(Duration::from_secs(20), d.wait())
        .await
        .expect("drone exits")
        .unwrap();
    assert_eq!(status.code(), Some(2));
    app.stop().await;
}

/// A drone killed outright (SIGKILL) cannot stop its builds; the next start of the drone
/// finds their process groups and kills them, so no orphaned build keeps running.
#[actix_web::test]
async fn builds_left_by_a_killed_drone_are_killed_when_it_starts_again() {
    if !require_rsync() {
        return;
    }
    let app = spawn_app(|_| {}).await;
    app.admin()
        .submit(b"app-misc/orphan-1.0\n".to_vec())
        .await
        .unwrap();
    let cfg = drone_config(app.dir.path(), "d1", &app.url, "", "");
    let env = [
        ("STANDIN_SILENT", "orphan"),
        ("STANDIN_SECONDS", "0.1"),
        ("STANDIN_HANG", "100002"),
    ];
    let mut drone = spawn_drone(&cfg, &env);
    let marker = "sleep 100002";
    wait_for(20, "the build running", || async {
        !processes_matching(marker).is_empty()
    })
    .await;
    // The first line of defence, the group's guard, dies too (as if it had been killed
    // with the drone): the restart is the second line.
    let (_, pgid) = state_and_group(processes_matching(marker)[0].0).expect("the build's group");
    let guard = format!("{GUARD_NAME} {pgid}");
    wait_for(10, "the build's guard", || async {
        !processes_matching(&guard).is_empty()
    })
    .await;
    for (pid, _) in processes_matching(&guard) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    drone.kill().await.unwrap(); // SIGKILL: no chance to clean up
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !processes_matching(marker).is_empty(),
        "the orphaned build is still running"
    );
    let _again = spawn_drone(&cfg, &[("STANDIN_SECONDS", "0.1")]);
    wait_for(10, "the orphaned build killed", || async {
        processes_matching(marker).is_empty()
    })
    .await;
    // The drone logs each group after killing it: wait for the line, not just the kill.
    let log_file = app.dir.path().join("d1/drone.log");
    wait_for(10, "the kill logged", || async {
        std::fs::read_to_string(&log_file)
            .is_ok_and(|log| log.contains("left running by a previous run"))
    })
    .await;
    app.stop().await;
}

/// A drone killed with SIGKILL leaves no build and no rsync running behind it.
#[actix_web::test]
async fn a_killed_drones_build_and_upload_die_with_it() {
    if !require_rsync() {
        return;
    }
    let app = spawn_app(|_| {}).await;
    app.submit("app-misc/hangs-1.0\napp-misc/slow-1.0\n").await;
    // One build hangs; the other's upload crawls at 1 KiB/s.
    let cfg = drone_config(
        app.dir.path(),
        "d1",
        &app.url,
        "",
        "[upload]\nrsync_options = [\"--bwlimit=1\"]\n",
    );
    // A hang no other run of this test shares (a failed run may leave its own behind).
    let hang = (300_000 + std::process::id() % 100_000).to_string();
    let env = [
        ("STANDIN_SILENT", "hangs"),
        ("STANDIN_SECONDS", "0.1"),
        ("STANDIN_HANG", hang.as_str()),
        ("STANDIN_KB", "4096"),
    ];
    let mut drone = spawn_drone(&cfg, &env);
    let build = &format!("sleep {hang}");
    let staging = app.staging().display().to_string();
    let upload = || {
        processes_matching("--bwlimit=1")
            .into_iter()
            .filter(|(_, cmd)| cmd.starts_with("rsync") && cmd.contains(&staging))
            .collect::<Vec<_>>()
    };
    wait_for(30, "a build and an upload running", || async {
        !processes_matching(build).is_empty() && !upload().is_empty()
    })
    .await;
    drone.kill().await.unwrap();
    wait_for(10, "the drone's children gone", || async {
        processes_matching(build).is_empty() && upload().is_empty()
    })
    .await;
    assert!(
        processes_matching(build).is_empty(),
        "the build outlived its drone"
    );
    assert!(
        upload().is_empty(),
        "rsync outlived its drone: {:?}",
        upload()
    );
    app.stop().await;
}
