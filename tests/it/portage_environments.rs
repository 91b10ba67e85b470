//! Build environments with real Portage (#18): each drone's fingerprint comes from the
//! default `environment_command` (`portageq envvar`, the profile, `emerge --info`'s
//! repositories) run in its own config root. A drone whose CFLAGS differ from the
//! reference drone's and whose repository lags builds nothing; once its make.conf is fixed
//! it is told to sync (real rsync as its `sync_command`), reports the new revision and
//! builds. Skips outside CI without Portage or root (saying so); fails in CI.

use crate::common::*;
use crate::portage::{portage_drone_config, portage_env_args, portage_venv};
use build_swarm::domain::DroneState;
use std::path::Path;
use std::time::Duration;

const SET: &str = "swarm-base/core-1.0\nswarm-base/zlib-1.2\nswarm-extra/extra00-1.0\n";

fn copy_repo(to: &Path, timestamp: u64) {
    let from = format!("{}/portage/repo/", env!("CARGO_MANIFEST_DIR"));
    let ok = std::process::Command::new("rsync")
        .args(["-a", &from, &format!("{}/", to.display())])
        .status()
        .expect("rsync");
    assert!(ok.success());
    std::fs::write(
        to.join("metadata/timestamp.x"),
        format!("{timestamp} Tue Nov 14 22:13:20 2023\n"),
    )
    .expect("timestamp");
}

fn set_cflags(env: &Path, cflags: &str) {
    let path = env.join("config/etc/portage/make.conf");
    let conf = std::fs::read_to_string(&path).expect("make.conf");
    let mut lines: Vec<String> = conf
        .lines()
        .filter(|l| !l.starts_with("CFLAGS="))
        .map(str::to_string)
        .collect();
    lines.push(format!("CFLAGS=\"{cflags}\""));
    std::fs::write(&path, lines.join("\n") + "\n").expect("write make.conf");
}

#[actix_web::test]
async fn a_drone_with_other_cflags_and_a_lagging_repository_builds_nothing_until_fixed() {
    let Some(_venv) = portage_venv() else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let app = spawn_app(|c| {
        c.environment.reference = Some("drone0".into());
        // A heartbeat every 2 s: the sync command reaches the drone quickly.
        c.leases.heartbeat_ttl_s = 8;
    })
    .await;
    let master = work.path().join("repo-master");
    let lagging = work.path().join("repo-lagging");
    copy_repo(&master, 1_700_000_200);
    copy_repo(&lagging, 1_700_000_100);
    let mut children = Vec::new();
    let mut envs = Vec::new();
    for (i, repo, cflags) in [
        (0, &master, "-O2 -pipe"),
        (1, &lagging, "-O3 -march=native"),
    ] {
        let repo = repo.display().to_string();
        let env = portage_env_args(&work.path().join(format!("drone{i}")), &["--repo", &repo]);
        set_cflags(&env, cflags);
        let environment_command = serde_json::to_string(&[
            "env".to_string(),
            format!("PATH={}/bin:/usr/bin:/bin", env.display()),
            "sh".into(),
            "-c".into(),
            build_swarm::config::drone::DEFAULT_ENVIRONMENT_SCRIPT.into(),
        ])
        .expect("json");
        let path = portage_drone_config(
            &work.path().join(format!("drone{i}-home")),
            &format!("drone{i}"),
            &app.url,
            &env,
            "",
            &format!(
                "environment_command = {environment_command}\nenvironment_check_s = 2\n\
                 sync_command = [\"rsync\", \"-a\", \"--checksum\", \"--delete\", \"{}/\", \"{}/\"]",
                master.display(),
                lagging.display()
            ),
        );
        children.push(spawn_drone(&path, &[]));
        envs.push(env);
    }
    let odd = eventually("drone1 mismatched", Duration::from_secs(90), || async {
        let d = app.anon().drone("drone1").await.ok()?;
        (d.state == DroneState::Mismatched).then_some(d)
    })
    .await;
    let why = odd.mismatch.clone().unwrap_or_default();
    assert!(
        why.contains("CFLAGS") && why.contains("REPO_REVISION/swarm-demo"),
        "{odd:?}"
    );
    assert!(!why.contains("USE") && !why.contains("PROFILE"), "{why}");
    let reference = app.anon().drone("drone0").await.expect("drone0");
    assert_eq!(reference.mismatch, None);
    assert!(reference.resources.is_some_and(|r| r.memory_mb > 0));
    // The reference drone is paused: nothing may be built but by drone1.
    let out = admin_cli(&app, &["drone0", "pause"]).await;
    assert!(out.status.success(), "{out:?}");
    app.submit(SET).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = app.anon().status().await.expect("status");
    assert_eq!((s.counts.queued, s.counts.building), (3, 0), "{s:?}");
    assert_eq!(s.eta_s, None, "no drone may build: no ETA");

    // Its make.conf is fixed: only the repository lags now, it is told to sync, syncs with
    // rsync, reports the new revision and builds the set.
    set_cflags(&envs[1], "-O2 -pipe");
    eventually("the set built", Duration::from_secs(180), || async {
        let s = app.anon().status().await.ok()?;
        assert_eq!(s.counts.failed, 0, "{s:?}");
        (s.counts.built == 3).then_some(())
    })
    .await;
    let d = app.anon().drone("drone1").await.expect("drone1");
    assert_eq!((d.state, d.mismatch), (DroneState::Idle, None));
    let list = app.anon().packages(None).await.expect("packages").packages;
    assert!(
        list.iter().all(|p| p.drone.as_deref() == Some("drone1")),
        "{list:?}"
    );
    assert_eq!(
        std::fs::read_to_string(lagging.join("metadata/timestamp.x")).expect("read"),
        std::fs::read_to_string(master.join("metadata/timestamp.x")).expect("read"),
    );
    let log =
        std::fs::read_to_string(work.path().join("drone1-home/drone.log")).unwrap_or_default();
    assert!(log.contains("syncing repositories"), "{log}");
    for mut c in children {
        let _ = c.kill().await;
    }
    app.stop().await;
}
