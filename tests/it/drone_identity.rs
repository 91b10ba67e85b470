//! Per-drone identity against a real orchestrator: enrolled drones' own tokens, every
//! cross-drone action refused with 403 and nothing changed, register hijacks refused, host
//! changes shown, the shared token switched off, tokens stored only hashed.

use crate::common::*;
use build_swarm::client::ApiClient;
use build_swarm::domain::FailureKind;
use build_swarm::wire::orchestrator::*;
use std::time::Duration;

/// A simulated drone `name` using `token`.
fn drone_with(app: &TestApp, name: &str, token: &str) -> SimDrone {
    SimDrone::new(
        ApiClient::new(&app.url, Some(token.into())),
        name,
        &app.staging(),
    )
}

fn forbidden<T: std::fmt::Debug>(what: &str, r: Result<T, build_swarm::client::ClientError>) {
    match r {
        Err(e) => assert_eq!(e.status(), Some(403), "{what}: {e}"),
        Ok(v) => panic!("{what}: accepted: {v:?}"),
    }
}

fn reg(name: &str, host: &str) -> RegisterRequest {
    RegisterRequest {
        host: host.into(),
        ..registration(name, 2)
    }
}

/// Everything the API shows of the swarm (what a refused request must leave as it was).
async fn everything(app: &TestApp) -> (PackageList, DroneList) {
    let anon = app.anon();
    (
        anon.packages(None).await.expect("packages"),
        anon.drones().await.expect("drones"),
    )
}

#[actix_web::test]
async fn an_enrolled_drone_can_act_only_for_itself() {
    let app = spawn_app(|_| {}).await;
    let admin = app.admin();
    let ta = admin
        .enroll("drone-a", Some("a.lan"), None)
        .await
        .expect("enroll a");
    let tb = admin.enroll("drone-b", None, None).await.expect("enroll b");
    assert!(ta.token.starts_with("bsd_") && ta.token != tb.token);
    assert_eq!(ta.host.as_deref(), Some("a.lan"));
    let a = drone_with(&app, "drone-a", &ta.token);
    let b = drone_with(&app, "drone-b", &tb.token);
    a.client
        .register(&reg("drone-a", "a.lan"))
        .await
        .expect("a registers");
    b.client
        .register(&reg("drone-b", "b.lan"))
        .await
        .expect("b registers");
    app.submit("app-misc/p1-1\napp-misc/p2-1\napp-misc/p3-1\n")
        .await;
    let wa = a.claim().await.expect("claim").expect("work for a");
    a.heartbeat(vec![wa.lease], vec!["a: building".into()])
        .await
        .expect("a's heartbeat");
    let before = everything(&app).await;

    // B, with its own valid token, tries everything as A.
    let as_a = drone_with(&app, "drone-a", &tb.token);
    forbidden(
        "register as a",
        b.client.register(&reg("drone-a", "evil.lan")).await,
    );
    forbidden("claim as a", as_a.claim().await);
    forbidden(
        "heartbeat as a",
        as_a.heartbeat(vec![], vec!["forged".into()]).await,
    );
    forbidden(
        "uploading a's lease",
        b.client.uploading(wa.lease, wa.epoch).await,
    );
    let forged = fake_upload(&app.staging(), &wa, b"b's bytes");
    forbidden(
        "complete a's lease",
        b.client.complete(wa.lease, &forged).await,
    );
    forbidden(
        "fail a's lease",
        b.fail(&wa, FailureKind::Build, "forged", "").await,
    );
    // The shared token may not act for an enrolled drone either.
    let shared_as_a = app.sim_drone("drone-a");
    forbidden("shared token claims as a", shared_as_a.claim().await);
    forbidden(
        "shared token fails a's lease",
        shared_as_a
            .fail(&wa, FailureKind::Build, "forged", "")
            .await,
    );
    forbidden(
        "shared token completes a's lease",
        app.drone().complete(wa.lease, &forged).await,
    );
    forbidden(
        "shared token heartbeats as a",
        shared_as_a.heartbeat(vec![], vec!["forged".into()]).await,
    );
    forbidden(
        "shared token registers as a",
        app.drone().register(&reg("drone-a", "evil.lan")).await,
    );

    let after = everything(&app).await;
    assert_eq!(before, after, "a refused request changes nothing");
    let logs = app.anon().drone_logs("drone-a", 50).await.expect("logs");
    assert!(
        !logs.lines.iter().any(|l| l.contains("forged")),
        "{:?}",
        logs.lines
    );
    let info = app.anon().drone("drone-a").await.expect("drone-a");
    assert_eq!(info.host, "a.lan");
    assert!(info.enrolled);
    assert_eq!(info.credential.as_deref(), Some("own"));
    // Refusals are logged with both names.
    let text = app.logs.text();
    assert!(
        text.contains("refused a report on another drone's lease")
            && text.contains("drone drone-b's token"),
        "{text}"
    );

    // A's own reports still work; the package is built by A.
    let done = a.upload_and_complete(&wa).await.expect("a completes");
    assert!(done.accepted);
    let pkgs = app.anon().packages(Some("built")).await.expect("built");
    assert_eq!(pkgs.packages[0].drone.as_deref(), Some("drone-a"));

    // A drone not enrolled still works with the shared token.
    let c = app.sim_drone("drone-c");
    c.register(1)
        .await
        .expect("shared token, drone not enrolled");
    let wc = c.claim().await.expect("claim").expect("work for c");
    let wb = b.claim().await.expect("claim").expect("work for b");
    // Lease ids say nothing about each other.
    assert!(
        wb.lease.abs_diff(wc.lease) > 1 << 16 && wc.lease.abs_diff(wa.lease) > 1 << 16,
        "lease ids look sequential: {} {} {}",
        wa.lease,
        wc.lease,
        wb.lease
    );
    app.stop().await;
}

#[actix_web::test]
async fn a_register_under_an_online_name_is_refused_and_a_host_change_shown() {
    let app = spawn_app(|_| {}).await;
    let admin = app.admin();
    let ta = admin
        .enroll("drone-a", Some("a.lan"), None)
        .await
        .expect("enroll");
    let a = drone_with(&app, "drone-a", &ta.token);
    a.client
        .register(&reg("drone-a", "a.lan"))
        .await
        .expect("a");
    // Even the admin token may not take over a drone that is online with its own token.
    let err = admin
        .register(&reg("drone-a", "elsewhere.lan"))
        .await
        .expect_err("hijack refused");
    assert_eq!(err.status(), Some(409), "{err}");
    assert!(err.to_string().contains("online"), "{err}");
    assert_eq!(app.anon().drone("drone-a").await.expect("a").host, "a.lan");
    // The drone itself moving to another host is allowed, logged and shown.
    a.client
        .register(&reg("drone-a", "a2.lan"))
        .await
        .expect("a again");
    let info = app.anon().drone("drone-a").await.expect("a");
    assert_eq!(info.host, "a2.lan");
    assert_eq!(info.previous_host.as_deref(), Some("a.lan"));
    assert_eq!(info.enrolled_host.as_deref(), Some("a.lan"));
    let text = app.logs.text();
    assert!(text.contains("drone host changed"), "{text}");
    assert!(
        text.contains("drone announces another host than it was enrolled for"),
        "{text}"
    );

    // A drone that ran on the shared token moves to its own: its enrolled token takes the
    // name over at once.
    let d = app.sim_drone("drone-d");
    d.register(1).await.expect("shared");
    let td = admin.enroll("drone-d", None, None).await.expect("enroll d");
    drone_with(&app, "drone-d", &td.token)
        .register(1)
        .await
        .expect("own token takes over");
    assert_eq!(
        app.anon()
            .drone("drone-d")
            .await
            .expect("d")
            .credential
            .as_deref(),
        Some("own")
    );
    app.stop().await;
}

#[actix_web::test]
async fn with_the_shared_token_off_only_enrolled_tokens_work_until_revoked() {
    let app = spawn_app(|c| c.auth.shared_drone_token = false).await;
    let err = app
        .drone()
        .register(&registration("d1", 1))
        .await
        .expect_err("shared token off");
    assert_eq!(err.status(), Some(401), "{err}");
    let shared = app.sim_drone("d1");
    let err = shared.claim().await.expect_err("claim");
    assert_eq!(err.status(), Some(401), "{err}");
    let err = shared
        .heartbeat(vec![], vec![])
        .await
        .expect_err("heartbeat");
    assert_eq!(err.status(), Some(401), "{err}");
    let err = app.drone().uploading(1, 1).await.expect_err("uploading");
    assert_eq!(err.status(), Some(401), "{err}");
    let t1 = app.admin().enroll("d1", None, None).await.expect("enroll");
    let d1 = drone_with(&app, "d1", &t1.token);
    d1.register(1).await.expect("own token");
    // Drones may read with their own token when reads need one.
    d1.client.status().await.expect("read");
    // Enrolling again replaces the token: the old one stops working.
    let t2 = app.admin().enroll("d1", None, None).await.expect("again");
    assert!(t2.replaced);
    let err = d1.register(1).await.expect_err("old token");
    assert_eq!(err.status(), Some(401));
    let d1 = drone_with(&app, "d1", &t2.token);
    d1.register(1).await.expect("new token");
    let list = app.admin().enrollments().await.expect("list");
    assert_eq!(list.drones.len(), 1);
    assert_eq!(list.drones[0].name, "d1");
    // Only the admin enrolls, lists and revokes.
    let err = d1
        .client
        .enroll("d9", None, None)
        .await
        .expect_err("not admin");
    assert_eq!(err.status(), Some(401));
    let err = d1.client.enrollments().await.expect_err("not admin");
    assert_eq!(err.status(), Some(401));
    app.admin().revoke("d1", false).await.expect("revoke");
    let err = d1.heartbeat(vec![], vec![]).await.expect_err("revoked");
    assert_eq!(err.status(), Some(401));
    let list = app.admin().enrollments().await.expect("list");
    assert!(list.drones[0].revoked, "{list:?}");
    app.admin().revoke("d1", true).await.expect("forget");
    let err = app.admin().revoke("d1", false).await.expect_err("gone");
    assert_eq!(err.status(), Some(404));
    let err = app
        .admin()
        .enroll("bad/name", None, None)
        .await
        .expect_err("name");
    assert!(matches!(err.status(), Some(400) | Some(404)), "{err}");
    app.stop().await;
}

#[actix_web::test]
async fn credentials_survive_a_restart_and_are_stored_only_hashed() {
    let app = spawn_app(|_| {}).await;
    let t = app
        .admin()
        .enroll("d1", Some("h1"), None)
        .await
        .expect("enroll");
    let TestApp {
        handle, dir, cfg, ..
    } = app;
    handle.stop(false).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(&cfg.state_dir).expect("state dir") {
        stored.extend(std::fs::read(entry.expect("entry").path()).expect("read"));
    }
    let needle = t.token.as_bytes();
    assert!(
        !stored.windows(needle.len()).any(|w| w == needle),
        "the token is stored in the clear"
    );
    let app = spawn_app_in(dir, cfg).await;
    let d1 = drone_with(&app, "d1", &t.token);
    d1.register(1)
        .await
        .expect("the token works after a restart");
    let info = app.anon().drone("d1").await.expect("d1");
    assert_eq!(info.enrolled_host.as_deref(), Some("h1"));
    assert_eq!(info.state, build_swarm::domain::DroneState::Idle);
    app.stop().await;
}

/// Revoking a drone that is online: its token stops at once, and the shared token cannot
/// keep its session alive or report on its leases instead.
#[actix_web::test]
async fn a_revoked_drone_is_locked_out_also_for_the_shared_token() {
    let app = spawn_app(|_| {}).await;
    let t = app.admin().enroll("d1", None, None).await.expect("enroll");
    let d1 = drone_with(&app, "d1", &t.token);
    d1.register(1).await.expect("register");
    app.submit("app-misc/r-1\n").await;
    let w = d1.claim().await.expect("claim").expect("work");
    app.admin().revoke("d1", false).await.expect("revoke");
    let err = d1
        .heartbeat(vec![w.lease], vec![])
        .await
        .expect_err("revoked");
    assert_eq!(err.status(), Some(401));
    let err = d1.upload_and_complete(&w).await.expect_err("revoked");
    assert_eq!(err.status(), Some(401));
    let shared = app.sim_drone("d1");
    forbidden(
        "shared heartbeat",
        shared.heartbeat(vec![w.lease], vec![]).await,
    );
    forbidden("shared claim", shared.claim().await);
    forbidden("shared complete", shared.upload_and_complete(&w).await);
    let p = app.anon().packages(None).await.expect("packages");
    assert_eq!(
        p.packages[0].state,
        build_swarm::domain::PackageState::Building
    );
    // Enrolled again, with a token brought by the operator (one for every orchestrator).
    let token = format!("bsd_{}", "7".repeat(64));
    app.admin()
        .enroll("d1", None, Some(&token))
        .await
        .expect("enroll with a given token");
    drone_with(&app, "d1", &token)
        .upload_and_complete(&w)
        .await
        .expect("the new token works");
    app.stop().await;
}
