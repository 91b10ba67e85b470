//! The orchestrator's HTTP API against a real server on a real port with a real SQLite
//! file: the drone protocol, dependency order, reclaims, stale completions, concurrency,
//! authentication and input validation.

use crate::common::*;
use build_swarm::client::ClientError;
use build_swarm::domain::{FailureKind, PackageState};
use build_swarm::sys::digest::sha256_file;
use build_swarm::wire::orchestrator::{
    CompleteRequest, FailRequest, HeartbeatRequest, RetryRequest, WorkAssignment,
};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

async fn states(app: &TestApp) -> HashMap<String, PackageState> {
    app.anon()
        .packages(None)
        .await
        .expect("list")
        .packages
        .into_iter()
        .map(|p| (p.atom, p.state))
        .collect()
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[actix_web::test]
async fn an_emptied_upload_directory_is_reused_for_the_next_lease_of_its_category() {
    let app = spawn_app(|_| {}).await;
    app.register("drone-a", 1).await;
    app.submit("app-misc/foo-1.0\napp-misc/bar-2.0\ndev-libs/qux-3.0\napp-misc/zap-4.0\n")
        .await;
    let d = app.drone();
    let kept = || async { metric(&app, "build_swarm_upload_dirs_kept").await };
    let reused = || async { metric(&app, "build_swarm_upload_dirs_reused_total").await };

    // Published from its upload directory: the directory is kept, holding only its empty
    // category directory.
    let w1 = d.claim("drone-a").await.unwrap().expect("work");
    assert_eq!(w1.upload_dir, format!("lease-{}", w1.lease));
    assert!(app.upload_and_complete(&w1).await.accepted);
    wait_for(10, "the emptied upload directory to be kept", || async {
        kept().await == Some(1.0)
    })
    .await;
    let dir = app.staging().join(&w1.upload_dir);
    assert_eq!(entries(&dir), ["app-misc"]);
    assert!(entries(&dir.join("app-misc")).is_empty());

    // The next lease of that category gets that very directory as its upload directory.
    let w2 = d.claim("drone-a").await.unwrap().expect("work");
    assert_eq!(w2.upload_dir, w1.upload_dir);
    assert_eq!(entries(&dir), ["app-misc"]);
    assert_eq!((reused().await, kept().await), (Some(1.0), Some(0.0)));

    // The first lease's completion again (its answer was lost): stale, and the directory,
    // now the second lease's, stays.
    let again = fake_upload(&app.staging(), &w1, &artifact_bytes(&w1.atom));
    assert!(d.complete(w1.lease, &again).await.unwrap().stale);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        dir.is_dir(),
        "the directory of an active lease is never removed"
    );
    std::fs::remove_file(dir.join("app-misc/foo-1.0.gpkg.tar")).unwrap();
    assert!(app.upload_and_complete(&w2).await.accepted);
    wait_for(10, "kept again", || async { kept().await == Some(1.0) }).await;

    // A lease of another category gets it too, its category directory renamed before the
    // claim is answered.
    let w3 = d.claim("drone-a").await.unwrap().expect("work");
    assert_eq!(w3.category, "dev-libs");
    assert_eq!(w3.upload_dir, w1.upload_dir);
    assert_eq!(entries(&dir), ["dev-libs"], "renamed before the answer");
    assert_eq!(reused().await, Some(2.0));

    // Anything else left in an upload directory (here an rsync temporary of a killed
    // transfer) and it is removed, not reused.
    std::fs::write(dir.join("dev-libs/.qux-3.0.gpkg.tar.Zx81a"), b"half").unwrap();
    assert!(app.upload_and_complete(&w3).await.accepted);
    wait_for(
        10,
        "the upload directory with a stray file to be removed",
        || async { !dir.exists() },
    )
    .await;
    assert_eq!(kept().await, Some(0.0));
    let w4 = d.claim("drone-a").await.unwrap().expect("work");
    assert_eq!(w4.upload_dir, format!("lease-{}", w4.lease));
    assert!(!app.staging().join(&w4.upload_dir).exists());
    assert_eq!(reused().await, Some(2.0));
    app.stop().await;
}

/// A completion retried after its package was built, once its emptied directory went to
/// a later lease that has ended since: the directory is that lease's now (a late upload
/// may still land there), so the retry does not remove it.
#[actix_web::test]
async fn a_retried_completion_leaves_a_directory_a_later_lease_was_given() {
    let app = spawn_app(|_| {}).await;
    app.register("drone-a", 1).await;
    app.submit("app-misc/foo-1.0\napp-misc/bar-2.0\n").await;
    let d = app.drone();
    let w1 = d.claim("drone-a").await.unwrap().expect("work");
    assert!(app.upload_and_complete(&w1).await.accepted);
    wait_for(10, "the emptied upload directory to be kept", || async {
        metric(&app, "build_swarm_upload_dirs_kept").await == Some(1.0)
    })
    .await;
    let w2 = d.claim("drone-a").await.unwrap().expect("work");
    assert_eq!(w2.upload_dir, w1.upload_dir);
    let fail = FailRequest {
        epoch: w2.epoch,
        kind: FailureKind::Infra,
        reason: "the drone's disk filled up".into(),
        log_tail: String::new(),
    };
    d.fail(w2.lease, &fail).await.unwrap();
    let again = fake_upload(&app.staging(), &w1, &artifact_bytes(&w1.atom));
    assert!(d.complete(w1.lease, &again).await.unwrap().stale);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        app.staging().join(&w2.upload_dir).is_dir(),
        "left for the later lease's sweep"
    );
    app.stop().await;
}

#[actix_web::test]
async fn claim_upload_complete_publishes_the_verified_file() {
    let app = spawn_app(|_| {}).await;
    app.register("drone-a", 2).await;
    let r = app
        .submit("=app-misc/foo-1.0\n# comment\ndev-libs/bar-2.1-r1\n")
        .await;
    assert_eq!(r.added, 2);
    let d = app.drone();
    let w = d.claim("drone-a").await.unwrap().expect("work");
    assert_eq!(w.atom, "app-misc/foo-1.0");
    assert_eq!(
        (w.category.as_str(), w.name.as_str(), w.version.as_str()),
        ("app-misc", "foo", "1.0")
    );
    assert_eq!(
        states(&app).await["app-misc/foo-1.0"],
        PackageState::Building
    );
    let resp = app.upload_and_complete(&w).await;
    assert!(resp.accepted && !resp.stale);
    let published = app.binhost().join("app-misc/foo-1.0.gpkg.tar");
    assert_eq!(
        std::fs::read(&published).unwrap(),
        package_bytes(&w, &artifact_bytes("app-misc/foo-1.0"))
    );
    assert!(
        !app.staging()
            .join(&w.upload_dir)
            .join("app-misc/foo-1.0.gpkg.tar")
            .exists(),
        "the file was moved out of staging"
    );
    let st = app.anon().status().await.unwrap();
    assert_eq!(
        (st.counts.total, st.counts.built, st.counts.queued),
        (2, 1, 1)
    );
    assert_eq!(st.progress_pct, 50.0);
    assert_eq!(st.name, "test-orch");
    assert_eq!(st.drones.total, 1);

    // A second claim gets the other package; a wrong checksum sends it back to the queue.
    let w2 = d.claim("drone-a").await.unwrap().expect("work");
    d.uploading(w2.lease, w2.epoch).await.unwrap();
    let mut req = fake_upload(&app.staging(), &w2, b"real bytes");
    req.sha256 = "ab".repeat(32);
    let err = d.complete(w2.lease, &req).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert_eq!(
        states(&app).await["dev-libs/bar-2.1-r1"],
        PackageState::Queued
    );
    assert!(!app.binhost().join("dev-libs/bar-2.1-r1.gpkg.tar").exists());
    app.stop().await;
}

#[actix_web::test]
async fn build_failures_poison_a_package_and_block_its_dependents_until_retried() {
    let app = spawn_app(|_| {}).await;
    app.register("d1", 1).await;
    app.register("d2", 1).await;
    let set = r#"{"packages":[
        {"atom":"dev-libs/base-1"},
        {"atom":"app-misc/mid-1","deps":["dev-libs/base-1"]},
        {"atom":"app-misc/top-1","deps":["app-misc/mid-1"]}]}"#;
    app.submit(set).await;
    let d = app.drone();
    let fail = |w: &WorkAssignment| FailRequest {
        epoch: w.epoch,
        kind: FailureKind::Build,
        reason: "emerge exited with 1".into(),
        log_tail: "error: undefined reference to `foo'\n".into(),
    };
    let w = d.claim("d1").await.unwrap().unwrap();
    d.fail(w.lease, &fail(&w)).await.unwrap();
    assert_eq!(states(&app).await["dev-libs/base-1"], PackageState::Queued);
    // d1 already failed it and d2 is around: d1 gets nothing, d2 gets it.
    assert!(d.claim("d1").await.unwrap().is_none());
    let w = d.claim("d2").await.unwrap().unwrap();
    d.fail(w.lease, &fail(&w)).await.unwrap();
    let s = states(&app).await;
    assert_eq!(s["dev-libs/base-1"], PackageState::Failed);
    assert_eq!(s["app-misc/mid-1"], PackageState::Blocked);
    assert_eq!(s["app-misc/top-1"], PackageState::Blocked);
    let log = app.anon().package_log("dev-libs/base-1").await.unwrap();
    assert!(log.log_tail.contains("undefined reference"));
    assert!(log.reason.unwrap().contains("poison"));
    // A late failure report for the ended lease changes nothing.
    let ack = d.fail(w.lease, &fail(&w)).await.unwrap();
    assert!(ack.stale);

    let r = app
        .admin()
        .retry(&RetryRequest {
            atoms: vec![],
            state: Some(PackageState::Failed),
        })
        .await
        .unwrap();
    assert_eq!((r.retried, r.unblocked), (1, 2));
    let s = states(&app).await;
    assert_eq!(s["dev-libs/base-1"], PackageState::Queued);
    assert_eq!(s["app-misc/mid-1"], PackageState::Waiting);
    let err = app
        .admin()
        .retry(&RetryRequest {
            atoms: vec!["app-misc/nope-1".into()],
            state: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    app.stop().await;
}

/// A 50-package DAG: nothing is handed out before all its dependencies are built, and the
/// longest chain goes first.
#[actix_web::test]
async fn dependency_order_on_a_50_package_dag() {
    let app = spawn_app(|_| {}).await;
    app.register("d1", 4).await;
    app.register("d2", 4).await;
    let mut pkgs = Vec::new();
    let mut deps_of: HashMap<String, Vec<String>> = HashMap::new();
    for i in 0..50usize {
        let atom = format!("cat-{}/p{i}-1.{i}", i % 5);
        // Each package depends on up to three earlier ones, deterministically.
        let deps: Vec<String> = [i / 2, i / 3, i.saturating_sub(7)]
            .into_iter()
            .filter(|j| *j < i)
            .collect::<HashSet<_>>()
            .into_iter()
            .map(|j| format!("cat-{}/p{j}-1.{j}", j % 5))
            .collect();
        deps_of.insert(atom.clone(), deps.clone());
        pkgs.push(serde_json::json!({"atom": atom, "deps": deps, "estimate_s": 10 + (i % 7)}));
    }
    let set = serde_json::json!({ "packages": pkgs }).to_string();
    assert_eq!(app.submit(&set).await.added, 50);
    let d = app.drone();
    let mut built: HashSet<String> = HashSet::new();
    let mut rounds = 0;
    let mut idle_since: Option<Instant> = None;
    while built.len() < 50 {
        rounds += 1;
        assert!(rounds < 2000, "no progress");
        let mut claimed = Vec::new();
        for drone in ["d1", "d2"] {
            while let Some(w) = d.claim(drone).await.unwrap() {
                for dep in &deps_of[&w.atom] {
                    assert!(
                        built.contains(dep),
                        "{} handed out before its dependency {dep} was built",
                        w.atom
                    );
                }
                claimed.push(w);
            }
        }
        if claimed.is_empty() {
            // Dependents go once the binhost index lists their dependencies.
            // (Index writes wait up to 4× the last write's cost: no fixed round count.)
            let since = *idle_since.get_or_insert_with(Instant::now);
            assert!(
                since.elapsed() < Duration::from_secs(30),
                "nothing claimable but {} built",
                built.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        idle_since = None;
        for w in claimed {
            assert!(app.upload_and_complete(&w).await.accepted);
            built.insert(w.atom.clone());
        }
    }
    assert_eq!(app.anon().status().await.unwrap().counts.built, 50);
    app.stop().await;
}

#[actix_web::test]
async fn critical_path_goes_first() {
    let app = spawn_app(|_| {}).await;
    app.register("d1", 1).await;
    let set = r#"{"packages":[
        {"atom":"a/short-1","estimate_s":5},
        {"atom":"a/long-1","estimate_s":5},
        {"atom":"a/after-long-1","deps":["a/long-1"],"estimate_s":100}]}"#;
    app.submit(set).await;
    let w = app.drone().claim("d1").await.unwrap().unwrap();
    assert_eq!(w.atom, "a/long-1");
    app.stop().await;
}

#[actix_web::test]
async fn a_later_set_raises_the_priority_of_what_it_depends_on() {
    let app = spawn_app(|_| {}).await;
    app.register("d1", 1).await;
    app.submit(
        r#"{"packages":[{"atom":"a/base-1","estimate_s":5},{"atom":"a/other-1","estimate_s":50}]}"#,
    )
    .await;
    // A long build that needs a/base-1 arrives later (dependencies name atoms of the same
    // set, so a/base-1 is in it again, as an existing package): a/base-1 now heads the
    // longest chain (5 + 1000 s against 50 s) and goes first, as it would in one set.
    let r = app.submit(r#"{"packages":[{"atom":"a/base-1"},{"atom":"a/top-1","deps":["a/base-1"],"estimate_s":1000}]}"#,
    )
    .await;
    assert_eq!((r.added, r.existing), (1, 1));
    let w = app.drone().claim("d1").await.unwrap().unwrap();
    assert_eq!(w.atom, "a/base-1");
    app.stop().await;
}

#[actix_web::test]
async fn heartbeat_ttl_reclaims_an_offline_drones_work() {
    let app = spawn_app(|c| c.leases.heartbeat_ttl_s = 1).await;
    app.register("d1", 1).await;
    app.submit("app-misc/foo-1.0\n").await;
    let d = app.drone();
    let w = d.claim("d1").await.unwrap().unwrap();
    // Heartbeats keep it alive...
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        app.heartbeat(
            "d1",
            vec![w.lease],
            vec!["building app-misc/foo-1.0".into()],
        )
        .await;
    }
    assert_eq!(
        states(&app).await["app-misc/foo-1.0"],
        PackageState::Building
    );
    // ...silence does not.
    wait_for(10, "the silent drone's lease reclaimed", || async {
        states(&app).await["app-misc/foo-1.0"] == PackageState::Queued
    })
    .await;
    let pkgs = app.anon().packages(None).await.unwrap().packages;
    assert_eq!(pkgs[0].state, PackageState::Queued);
    assert_eq!(pkgs[0].attempts, 1);
    assert!(
        pkgs[0].reason.as_deref().unwrap_or("").contains("offline"),
        "{:?}",
        pkgs[0].reason
    );
    let drone = app.anon().drone("d1").await.unwrap();
    assert_eq!(drone.state, build_swarm::domain::DroneState::Offline);
    let logs = app.anon().drone_logs("d1", 20).await.unwrap();
    assert_eq!(logs.lines.len(), 3);
    app.stop().await;
}

#[actix_web::test]
async fn upload_deadline_reclaims_the_lease_and_tells_the_drone_to_stop() {
    let app = spawn_app(|c| c.leases.upload_timeout_s = 1).await;
    app.register("d1", 1).await;
    app.submit("app-misc/foo-1.0\n").await;
    let d = app.drone();
    let w = d.claim("d1").await.unwrap().unwrap();
    d.uploading(w.lease, w.epoch).await.unwrap();
    wait_for(10, "the upload deadline reclaims the lease", || async {
        states(&app).await["app-misc/foo-1.0"] == PackageState::Queued
    })
    .await;
    let commands = app.heartbeat("d1", vec![w.lease], vec![]).await;
    assert!(
        commands.iter().any(
            |c| c.action == build_swarm::wire::orchestrator::DroneAction::Cancel
                && c.lease == Some(w.lease)
        ),
        "{commands:?}"
    );
    app.stop().await;
}

/// Lease 1 is reclaimed (drone offline), the package is leased again; the first drone's
/// late completion still wins because its artifact verifies, and the second lease is
/// cancelled. The second drone's completion is then `stale` and changes nothing.
#[actix_web::test]
async fn stale_completions() {
    let app = spawn_app(|c| c.leases.heartbeat_ttl_s = 1).await;
    app.register("slow", 1).await;
    app.submit("app-misc/foo-1.0\n").await;
    let d = app.drone();
    let w1 = d.claim("slow").await.unwrap().unwrap();
    wait_for(10, "\"slow\" goes offline", || async {
        states(&app).await["app-misc/foo-1.0"] == PackageState::Queued
    })
    .await;
    app.register("fast", 1).await;
    let w2 = d.claim("fast").await.unwrap().unwrap();
    assert_eq!(w2.atom, w1.atom);
    assert!(w2.epoch > w1.epoch);

    let resp = app.upload_and_complete(&w1).await;
    assert!(resp.accepted, "valid work from a stale lease is accepted");
    let commands = app.heartbeat("fast", vec![w2.lease], vec![]).await;
    assert!(
        commands.iter().any(|c| c.lease == Some(w2.lease)),
        "{commands:?}"
    );

    let published = app.binhost().join("app-misc/foo-1.0.gpkg.tar");
    let before = sha256_file(&published).unwrap();
    let req = fake_upload(&app.staging(), &w2, b"a different build");
    let resp = d.complete(w2.lease, &req).await.unwrap();
    assert!(!resp.accepted && resp.stale);
    assert_eq!(
        sha256_file(&published).unwrap(),
        before,
        "published exactly once"
    );
    assert_eq!(app.anon().status().await.unwrap().counts.built, 1);
    app.stop().await;
}

/// 8 concurrent clients making 1,000 claims never receive the same package twice.
#[actix_web::test]
async fn concurrent_claims_never_hand_out_a_package_twice() {
    let app = spawn_app(|_| {}).await;
    app.submit(&chain_set(1000)).await;
    for i in 0..8 {
        app.register(&format!("c{i}"), 1000).await;
    }
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let d = app.drone();
            async move {
                let mut got = Vec::new();
                while let Some(w) = d.claim(&format!("c{i}")).await.unwrap() {
                    got.push(w.atom);
                }
                got
            }
        })
        .collect();
    let all: Vec<String> = futures_util::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(all.len(), 1000);
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), 1000, "a package was handed out twice");
    assert_eq!(app.anon().status().await.unwrap().counts.building, 1000);
    app.stop().await;
}

#[actix_web::test]
async fn tokens_are_required_and_roles_are_separate() {
    let app = spawn_app(|_| {}).await;
    let anon = app.anon();
    let wrong = build_swarm::client::ApiClient::new(&app.url, Some("nope".into()));
    // Submit is admin-only: no token, a wrong token and the drone token all get 401.
    for c in [&anon, &wrong, &app.drone()] {
        let err = c.submit(b"app-misc/foo-1.0\n".to_vec()).await.unwrap_err();
        assert!(matches!(err, ClientError::Unauthorized { .. }), "{err}");
        let err = c
            .control("d1", build_swarm::wire::orchestrator::ControlAction::Pause)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Unauthorized { .. }), "{err}");
        let err = c
            .retry(&RetryRequest {
                atoms: vec![],
                state: Some(PackageState::Failed),
            })
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Unauthorized { .. }), "{err}");
    }
    for c in [&anon, &wrong] {
        let err = c.claim("d1").await.unwrap_err();
        assert!(matches!(err, ClientError::Unauthorized { .. }), "{err}");
    }
    assert_eq!(
        app.anon().status().await.unwrap().counts.total,
        0,
        "nothing changed"
    );
    // Reads need no token unless configured.
    assert!(anon.healthz().await.unwrap().ok);
    app.stop().await;

    let app = spawn_app(|c| c.auth.read_token = Some("reader".into())).await;
    assert_eq!(app.anon().status().await.unwrap_err().status(), Some(401));
    let reader = build_swarm::client::ApiClient::new(&app.url, Some("reader".into()));
    assert!(reader.status().await.is_ok());
    app.stop().await;
}

#[actix_web::test]
async fn bad_atoms_are_refused_and_nothing_is_stored() {
    let app = spawn_app(|_| {}).await;
    for bad in [
        "../../etc/passwd-1",
        "a/b/c-1",
        "cat/na me-1",
        "cat/foo-1;rm",
    ] {
        let body = format!("app-misc/good-1.0\n{bad}\n");
        let err = app.admin().submit(body.into_bytes()).await.unwrap_err();
        assert_eq!(err.status(), Some(400), "{bad}: {err}");
        let text = err.to_string();
        assert!(text.contains("line 2"), "{text}");
        assert!(text.contains(bad.split(' ').next().unwrap()), "{text}");
    }
    let cycle =
        r#"{"packages":[{"atom":"a/x-1","deps":["a/y-1"]},{"atom":"a/y-1","deps":["a/x-1"]}]}"#;
    let err = app
        .admin()
        .submit(cycle.as_bytes().to_vec())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cycle"), "{err}");
    let unknown = r#"{"packages":[{"atom":"a/x-1","deps":["a/zz-1"]}]}"#;
    let err = app
        .admin()
        .submit(unknown.as_bytes().to_vec())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("a/zz-1"), "{err}");
    assert_eq!(
        app.anon().status().await.unwrap().counts.total,
        0,
        "nothing of any set was stored"
    );
    // Malformed JSON on a drone endpoint: a 400 with a JSON error, and the server goes on.
    let err = app
        .drone()
        .post::<_, serde_json::Value>("/api/v1/work/claim", &serde_json::json!({"drone": 5}))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    let err = app
        .drone()
        .post::<_, serde_json::Value>("/api/v1/work/notanumber/fail", &serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(app.anon().healthz().await.unwrap().ok);
    app.stop().await;
}

#[actix_web::test]
async fn oversized_submissions_are_refused() {
    let app = spawn_app(|c| c.max_submit_bytes = 2048).await;
    let err = app
        .admin()
        .submit(chain_set(500).into_bytes())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(413), "{err}");
    assert_eq!(app.anon().status().await.unwrap().counts.total, 0);
    app.stop().await;
}

#[actix_web::test]
async fn a_completion_whose_path_escapes_is_refused() {
    let app = spawn_app(|_| {}).await;
    app.register("d1", 1).await;
    app.submit("app-misc/foo-1.0\napp-misc/other-1.0\n").await;
    let d = app.drone();
    let w = d.claim("d1").await.unwrap().unwrap();
    let good = fake_upload(&app.staging(), &w, b"bytes");
    // A file outside the staging area that a malicious path might point at.
    std::fs::write(app.dir.path().join("secret"), b"bytes").unwrap();
    for path in [
        "../../secret",
        "app-misc/../../../secret",
        "/etc/passwd",
        "sys-apps/foo-1.0.gpkg.tar",
        "app-misc/other-1.0.gpkg.tar",
    ] {
        let req = CompleteRequest {
            path: path.into(),
            ..good.clone()
        };
        let err = d.complete(w.lease, &req).await.unwrap_err();
        assert_eq!(err.status(), Some(400), "{path}: {err}");
    }
    assert_eq!(
        states(&app).await["app-misc/foo-1.0"],
        PackageState::Building
    );
    assert!(d.complete(w.lease, &good).await.unwrap().accepted);
    app.stop().await;
}

#[actix_web::test]
async fn control_commands_reach_the_drone_and_pause_stops_claims() {
    let app = spawn_app(|_| {}).await;
    app.register("drone-Titawin", 1).await;
    app.submit("app-misc/foo-1.0\n").await;
    let admin = app.admin();
    admin
        .control(
            "drone-Titawin",
            build_swarm::wire::orchestrator::ControlAction::Pause,
        )
        .await
        .unwrap();
    assert!(app.drone().claim("drone-Titawin").await.unwrap().is_none());
    assert_eq!(
        app.anon().drone("drone-Titawin").await.unwrap().state,
        build_swarm::domain::DroneState::Paused
    );
    admin
        .control(
            "drone-Titawin",
            build_swarm::wire::orchestrator::ControlAction::Restart,
        )
        .await
        .unwrap();
    let hb = app
        .drone()
        .heartbeat("drone-Titawin", &HeartbeatRequest::default())
        .await
        .unwrap();
    let actions: Vec<_> = hb.commands.iter().map(|c| c.action).collect();
    assert_eq!(
        actions,
        vec![
            build_swarm::wire::orchestrator::DroneAction::Pause,
            build_swarm::wire::orchestrator::DroneAction::Restart
        ]
    );
    admin
        .control(
            "drone-Titawin",
            build_swarm::wire::orchestrator::ControlAction::Resume,
        )
        .await
        .unwrap();
    assert!(app.drone().claim("drone-Titawin").await.unwrap().is_some());
    let err = admin
        .control(
            "nobody",
            build_swarm::wire::orchestrator::ControlAction::Pause,
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    app.stop().await;
}

/// The seed's "every log line appears twice" must not exist: one event, one line.
#[actix_web::test]
async fn one_event_gives_one_log_line() {
    let app = spawn_app(|_| {}).await;
    app.submit("app-misc/foo-1.0\n").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = app.logs.text();
    assert_eq!(text.matches("package set added").count(), 1, "{text}");
    assert_eq!(text.matches("orchestrator listening").count(), 1, "{text}");
    app.stop().await;
}

/// Restarting in-process from the same state directory keeps everything.
#[actix_web::test]
async fn state_survives_a_restart() {
    let app = spawn_app(|_| {}).await;
    app.register("d1", 2).await;
    app.submit("app-misc/a-1\napp-misc/b-1\napp-misc/c-1\n")
        .await;
    let d = app.drone();
    let w1 = d.claim("d1").await.unwrap().unwrap();
    app.upload_and_complete(&w1).await;
    let w2 = d.claim("d1").await.unwrap().unwrap();
    assert_eq!(
        w2.upload_dir, w1.upload_dir,
        "the emptied directory is reused"
    );
    let TestApp {
        handle, dir, cfg, ..
    } = app;
    handle.stop(false).await;
    let app = spawn_app_in(dir, cfg).await;
    let s = states(&app).await;
    assert_eq!(s["app-misc/a-1"], PackageState::Built);
    assert_eq!(s[&w2.atom], PackageState::Building);
    // The restored lease can still be finished by the live drone.
    let resp = app.upload_and_complete(&w2).await;
    assert!(resp.accepted);
    let w3 = app.drone().claim("d1").await.unwrap().unwrap();
    assert!(
        w3.lease != w2.lease && w3.lease != w1.lease,
        "lease ids are never reused"
    );
    app.stop().await;
}

/// A lease that was reclaimed before a restart is still known after it: the late, valid
/// completion is accepted rather than thrown away.
#[actix_web::test]
async fn a_reclaimed_lease_can_still_complete_after_a_restart() {
    let app = spawn_app(|c| c.leases.heartbeat_ttl_s = 1).await;
    app.register("slow", 1).await;
    app.submit("app-misc/foo-1.0\n").await;
    let w = app.drone().claim("slow").await.unwrap().unwrap();
    wait_for(10, "offline: reclaimed", || async {
        states(&app).await["app-misc/foo-1.0"] == PackageState::Queued
    })
    .await;
    let TestApp {
        handle, dir, cfg, ..
    } = app;
    handle.stop(false).await;
    let app = spawn_app_in(dir, cfg).await;
    let resp = app.upload_and_complete(&w).await;
    assert!(resp.accepted, "valid work survives the restart");
    assert_eq!(states(&app).await["app-misc/foo-1.0"], PackageState::Built);
    app.stop().await;
}

/// A failed package that still gets a valid artifact (a late completion) is built, and
/// what it blocked is free again.
#[actix_web::test]
async fn a_late_valid_artifact_unblocks_dependents() {
    let app = spawn_app(|c| c.policy.build_failure_drones = 1).await;
    app.register("d1", 2).await;
    let set = r#"{"packages":[{"atom":"a/base-1"},{"atom":"a/top-1","deps":["a/base-1"]}]}"#;
    app.submit(set).await;
    let d = app.drone();
    let w1 = d.claim("d1").await.unwrap().unwrap();
    // The same package, failed by an earlier attempt, is failed for good...
    let fail = FailRequest {
        epoch: w1.epoch,
        kind: FailureKind::Build,
        reason: "flaky".into(),
        log_tail: String::new(),
    };
    let w_upload = fake_upload(&app.staging(), &w1, &artifact_bytes(&w1.atom));
    d.fail(w1.lease, &fail).await.unwrap();
    let s = states(&app).await;
    assert_eq!(
        (s["a/base-1"], s["a/top-1"]),
        (PackageState::Failed, PackageState::Blocked)
    );
    // ...but the artifact that lease uploaded verifies: accepted, dependents unblocked
    // (and queued once the binhost index lists it).
    assert!(d.complete(w1.lease, &w_upload).await.unwrap().accepted);
    let s = states(&app).await;
    assert_eq!(s["a/base-1"], PackageState::Built);
    assert_ne!(s["a/top-1"], PackageState::Blocked);
    eventually("top queued", Duration::from_secs(10), || async {
        (states(&app).await["a/top-1"] == PackageState::Queued).then_some(())
    })
    .await;
    app.stop().await;
}

/// `publish_command` runs after publishing, coalesced: several publications while it runs
/// cause one more run, not one run each.
#[actix_web::test]
async fn publish_command_runs_after_publishing_and_is_coalesced() {
    let dir_for_marker = tempfile::tempdir().unwrap();
    let marker = dir_for_marker.path().join("runs");
    // Each run holds until the gate exists: every publication lands while the first
    // run is still going, however slowly this machine completes them.
    let gate = dir_for_marker.path().join("gate");
    let script = format!(
        "echo run >> {}; while [ ! -e {} ]; do sleep 0.05; done",
        marker.display(),
        gate.display()
    );
    let app = spawn_app(|c| c.publish_command = vec!["sh".into(), "-c".into(), script]).await;
    app.register("d1", 8).await;
    app.submit(&chain_set(6)).await;
    let d = app.drone();
    let mut works = Vec::new();
    while let Some(w) = d.claim("d1").await.unwrap() {
        works.push(w);
    }
    for w in &works {
        assert!(app.upload_and_complete(w).await.accepted);
    }
    std::fs::write(&gate, b"").unwrap();
    let hook = app.hook.clone();
    wait_for(10, "the publish_command runs to finish", || {
        let hook = hook.clone();
        async move {
            hook.send(build_swarm::actors::orchestrator::publish_hook::RunsFinished)
                .await
                .is_ok_and(|n| n >= 1)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let runs = std::fs::read_to_string(&marker).unwrap().lines().count();
    assert!((1..=2).contains(&runs), "6 publications, {runs} runs");
    app.stop().await;
}

/// An artifact swapped for other bytes (renamed over it) while the orchestrator verifies
/// it is never published with those bytes: either the verified file is published, or the
/// completion is refused and nothing stays under the final name.
#[actix_web::test]
async fn a_file_swapped_during_verification_is_never_published() {
    let app = spawn_app(|_| {}).await;
    app.register("d1", 1).await;
    for (i, delay_ms) in [20u64, 150, 600].into_iter().enumerate() {
        app.submit(&format!("app-misc/big{i}-1.0\n")).await;
        let w = app.claim("d1").await;
        let d = app.drone();
        d.uploading(w.lease, w.epoch).await.expect("uploading");
        // Large enough that hashing it takes a while.
        let good = vec![b'g'; 32 << 20];
        let req = fake_upload(&app.staging(), &w, &good);
        let staged = app.staging().join(&w.upload_dir).join(&req.path);
        let evil = staged.with_file_name("evil");
        std::fs::write(&evil, vec![b'e'; good.len()]).expect("write");
        let swap = async {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            std::fs::rename(&evil, &staged).expect("swap");
        };
        let (resp, ()) = futures_util::future::join(d.complete(w.lease, &req), swap).await;
        let published = app.binhost().join(&req.path);
        match resp {
            Ok(r) if r.accepted => assert_eq!(
                sha256_file(&published).expect("published").0,
                req.sha256,
                "published with other bytes (swap after {delay_ms} ms)"
            ),
            other => {
                let text = format!("{other:?}");
                assert!(
                    text.contains("replaced while it was being verified")
                        || text.contains("checksum mismatch"),
                    "{text}"
                );
                assert!(!published.exists(), "nothing under the final name");
            }
        }
    }
}

/// A hard link to the upload kept in staging cannot change the published package.
#[actix_web::test]
async fn a_kept_hard_link_cannot_change_the_published_package() {
    let app = spawn_app(|_| {}).await;
    app.register("d1", 1).await;
    app.submit("app-misc/foo-1.0\n").await;
    let w = app.claim("d1").await;
    let d = app.drone();
    d.uploading(w.lease, w.epoch).await.expect("uploading");
    let req = fake_upload(&app.staging(), &w, b"the real package");
    let kept = app.staging().join("kept");
    std::fs::hard_link(app.staging().join(&w.upload_dir).join(&req.path), &kept).expect("link");
    let resp = d.complete(w.lease, &req).await.expect("complete");
    assert!(resp.accepted);
    std::fs::write(&kept, b"something else!").expect("write through the link");
    let published = app.binhost().join(&req.path);
    assert_eq!(
        std::fs::read(&published).expect("read"),
        package_bytes(&w, b"the real package")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&published)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o222, 0, "read-only");
}

/// Every JSON body of the drone protocol must be an object: an array, a number, a string
/// or `null` is a 400 naming the problem, never an empty heartbeat or claim.
#[actix_web::test]
async fn request_bodies_that_are_not_json_objects_are_refused() {
    let app = spawn_app(|_| {}).await;
    app.register("d1", 1).await;
    let http = awc::Client::default();
    for (path, body) in [
        ("/api/v1/drones/d1/heartbeat", "[]"),
        ("/api/v1/drones/d1/heartbeat", "[[[[[[[["),
        ("/api/v1/work/claim", "[\"d1\"]"),
        ("/api/v1/drones/register", "null"),
        ("/api/v1/work/1/fail", "17"),
    ] {
        let mut resp = http
            .post(format!("{}{path}", app.url))
            .insert_header(("Authorization", format!("Bearer {DRONE}")))
            .insert_header(("Content-Type", "application/json"))
            .send_body(body)
            .await
            .expect("answer");
        assert_eq!(resp.status().as_u16(), 400, "{path} {body}");
        let text = String::from_utf8_lossy(&resp.body().await.expect("body")).into_owned();
        assert!(text.contains("invalid JSON body"), "{path} {body}: {text}");
    }
    app.stop().await;
}

/// With the state database's filesystem full, a change the store cannot write answers 503
/// and changes nothing (what status and the package list show is what is on disk; no
/// lease id is used up); once there is room again everything works.
#[actix_web::test]
async fn a_change_the_state_database_cannot_take_changes_nothing() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI runs as root: this test must not skip there"
        );
        eprintln!("skipped: needs root to mount a small filesystem for state_dir");
        return;
    }
    let mnt = tempfile::tempdir().expect("tempdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(mnt.path())
        .status()
        .expect("mount");
    assert!(mounted.success(), "mount a tmpfs");
    let state_dir = mnt.path().join("state");
    let app = spawn_app(|c| c.state_dir = state_dir.clone()).await;
    app.register("d1", 4).await;
    // A built package with a dependent still waiting for it (in the index on disk).
    app.submit(r#"{"packages":[{"atom":"app-misc/base-1"}]}"#)
        .await;
    let wb = app.claim("d1").await;
    assert!(app.upload_and_complete(&wb).await.accepted);
    eventually("base indexed", Duration::from_secs(10), || async {
        let s = app.anon().status().await.ok()?;
        (s.counts.unindexed == 0).then_some(())
    })
    .await;
    app.submit("app-misc/a-1.0\napp-misc/b-1.0\n").await;
    let w = app.claim("d1").await;
    // Fill the filesystem.
    let filler = mnt.path().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
    }
    let before = app.anon().status().await.expect("status");
    let big: String = (0..2000)
        .map(|i| format!("app-misc/big{i}-1.0\n"))
        .collect();
    let err = app
        .admin()
        .submit(big.clone().into_bytes())
        .await
        .expect_err("the store is full");
    assert_eq!(err.status(), Some(503), "{err}");
    // What is shown is what is on disk, also once the committed state is read back.
    let settled = || async {
        app.anon()
            .status()
            .await
            .ok()
            .filter(|s| s.counts == before.counts)
    };
    eventually("the committed state back", Duration::from_secs(10), settled).await;
    let list = app.anon().packages(None).await.expect("list");
    assert_eq!(list.total, 3, "no package of the refused set appears");
    // A claim that cannot be written is refused and uses up no lease id.
    let claimed = app.drone().claim("d1").await;
    let claim_failed = claimed.is_err();
    if claim_failed {
        eventually("the committed state back", Duration::from_secs(10), settled).await;
    }
    std::fs::remove_file(&filler).expect("make room");
    // Room again: the same set goes in (a moment after a refusal it may still answer 503).
    let added = eventually("the submit accepted", Duration::from_secs(10), || {
        let body = big.clone().into_bytes();
        let admin = app.admin();
        async move { admin.submit(body).await.ok() }
    })
    .await;
    assert_eq!(added.added, 2000);
    // After the state was read back the index says again what it lists: a dependent of
    // the built package goes.
    app.submit(r#"{"packages":[{"atom":"app-misc/base-1"},{"atom":"app-misc/top-1","deps":["app-misc/base-1"]}]}"#)
        .await;
    eventually("top queued", Duration::from_secs(10), || async {
        let p = app.anon().packages(Some("queued")).await.ok()?;
        p.packages
            .iter()
            .any(|p| p.atom == "app-misc/top-1")
            .then_some(())
    })
    .await;
    if claim_failed {
        let next = app.claim("d1").await;
        // Lease ids are not sequential; the numbers they are made from are.
        let db = rusqlite::Connection::open(app.cfg.state_dir.join("state.sqlite3"))
            .expect("open the state database");
        let seq = |lease: u64| -> i64 {
            db.query_row(
                "SELECT seq FROM leases WHERE id = ?1",
                [lease as i64],
                |r| r.get(0),
            )
            .expect("the lease's row")
        };
        assert_eq!(
            seq(next.lease),
            seq(w.lease) + 1,
            "the refused claim used no lease number"
        );
    }
    app.stop().await;
    let _ = std::process::Command::new("umount")
        .arg(mnt.path())
        .status();
}
