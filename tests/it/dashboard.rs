//! The dashboard in a real headless Chromium, `/metrics` through real Prometheus
//! text-format parsers, and the OpenAPI document through a real validator and against
//! the routes and wire types it describes.
//!
//! Chromium, Python's `prometheus_client` and `openapi-spec-validator` are installed by
//! `scripts/install-deps`. Without them these tests print SKIPPED outside CI; with
//! `CI=true` a missing one is a failure.

use crate::common::*;
use build_swarm::domain::{DroneState, FailureKind, PackageState};
use build_swarm::http::orchestrator::openapi::OPENAPI_JSON;
use build_swarm::wire::orchestrator::*;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

// ---------------------------------------------------------------- helpers

/// Outside CI a missing tool skips the test (with a message); in CI it fails it.
fn skip(what: &str) {
    assert!(
        std::env::var("CI").is_err(),
        "{what} is missing in CI: scripts/install-deps must install it"
    );
    eprintln!("SKIPPED: {what} (run scripts/install-deps)");
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn chromium() -> Option<PathBuf> {
    find_program(&["chromium", "chromium-browser"])
}

/// Loads `url` in a fresh headless Chromium, lets the page's script run for
/// `budget_ms` of virtual time (network waits do not count), and returns the DOM.
/// Async: the orchestrator under test runs on this very thread.
async fn dump_dom(chrome: &Path, url: &str, budget_ms: u32) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut cmd = tokio::process::Command::new(chrome);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--disable-dev-shm-usage",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--virtual-time-budget={budget_ms}"))
    .arg("--dump-dom")
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium finished within 90 s")
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// The opening tag of the element with this id.
fn tag_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let needle = format!("id=\"{id}\"");
    let at = dom
        .find(&needle)
        .unwrap_or_else(|| panic!("no element #{id} in the DOM"));
    let start = dom[..at].rfind('<').expect("tag start");
    let end = at + dom[at..].find('>').expect("tag end");
    &dom[start..=end]
}

fn attr(dom: &str, id: &str, name: &str) -> Option<String> {
    let tag = tag_of(dom, id);
    let needle = format!(" {name}=\"");
    let at = tag.find(&needle)? + needle.len();
    let len = tag[at..].find('"')?;
    Some(tag[at..at + len].to_string())
}

fn hidden(dom: &str, id: &str) -> bool {
    let tag = tag_of(dom, id);
    tag.contains(" hidden=\"") || tag.contains(" hidden>") || tag.contains(" hidden ")
}

/// The text of the element with this id, up to its first child tag.
fn text(dom: &str, id: &str) -> String {
    let needle = format!("id=\"{id}\"");
    let at = dom.find(&needle).expect("element");
    let open_end = at + dom[at..].find('>').expect("tag end") + 1;
    let close = open_end + dom[open_end..].find('<').expect("next tag");
    dom[open_end..close]
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

/// The inner HTML of the `<tbody id=...>`.
fn tbody<'a>(dom: &'a str, id: &str) -> &'a str {
    let needle = format!("id=\"{id}\"");
    let at = dom.find(&needle).expect("tbody");
    let end = at + dom[at..].find("</tbody>").expect("tbody end");
    &dom[at..end]
}

fn count_of(dom: &str, state: &str) -> usize {
    let id = format!("count-{state}");
    let v = attr(dom, &id, "data-value").unwrap_or_default();
    v.parse().unwrap_or_else(|_| {
        panic!("#{id} has no number (data-value={v:?}): did the page's script run?")
    })
}

fn assert_counts_match(dom: &str, st: &Status) {
    assert_eq!(
        attr(dom, "dashboard", "data-loaded").as_deref(),
        Some("1"),
        "the page never finished a refresh"
    );
    assert_eq!(count_of(dom, "total"), st.counts.total);
    for s in PackageState::ALL {
        assert_eq!(count_of(dom, s.as_str()), st.counts.get(s), "count of {s}");
    }
    assert_eq!(
        attr(dom, "progress-pct", "data-value").as_deref(),
        Some(format!("{}", st.progress_pct).as_str())
    );
}

// ---------------------------------------------------------------- (a) the page

#[actix_web::test]
async fn dashboard_in_headless_chromium_shows_the_api_counts_and_follows_a_completion() {
    let Some(chrome) = chromium() else {
        return skip("chromium");
    };
    let app = spawn_app(|_| {}).await;
    app.register("drone-a", 2).await;
    app.register("drone-b", 1).await;
    // 120 independent packages: more than one page of the package table.
    app.admin()
        .submit(chain_set(120).into_bytes())
        .await
        .expect("submit");
    // pkg0 fails on both drones: poison, failed with a reason and a log tail.
    let w = app.claim("drone-a").await;
    assert_eq!(w.atom, "app-misc/pkg0-1.0");
    app.fail(
        &w,
        FailureKind::Build,
        "undefined reference to `frobnicate'",
        &format!(
            "make: *** [all] Error 1\n{}\n",
            "undefined reference to `frobnicate'"
        ),
    )
    .await;
    let w = app.claim("drone-b").await;
    assert_eq!(w.atom, "app-misc/pkg0-1.0");
    app.fail(
        &w,
        FailureKind::Build,
        "undefined reference to `frobnicate'",
        &format!(
            "make: *** [all] Error 1\n{}\n",
            "undefined reference to `frobnicate'"
        ),
    )
    .await;
    // drone-a builds pkg1.
    let building = app.claim("drone-a").await;
    assert_eq!(building.atom, "app-misc/pkg1-1.0");

    let before = app.anon().status().await.expect("status");
    assert_eq!(
        (
            before.counts.failed,
            before.counts.building,
            before.counts.queued
        ),
        (1, 1, 118)
    );
    let dom = dump_dom(&chrome, &format!("{}/", app.url), 3000).await;
    assert_counts_match(&dom, &before);
    assert_eq!(text(&dom, "orch-name"), "test-orch");
    // Drones: both rows, with state and current work.
    let drones = tbody(&dom, "drones-body");
    assert!(drones.contains("data-drone=\"drone-a\""), "{drones}");
    assert!(drones.contains("data-drone=\"drone-b\""), "{drones}");
    assert!(drones.contains("app-misc/pkg1-1.0"), "{drones}");
    assert!(drones.contains("data-state=\"building\""), "{drones}");
    // Failures: the failed package with its reason.
    let failures = tbody(&dom, "failures-body");
    assert!(
        failures.contains("data-atom=\"app-misc/pkg0-1.0\""),
        "{failures}"
    );
    assert!(failures.contains("poison package"), "{failures}");
    assert_eq!(
        attr(&dom, "failures-total", "data-value").as_deref(),
        Some("1")
    );
    // Packages: paged, never the whole list.
    assert_eq!(
        attr(&dom, "packages-range", "data-total").as_deref(),
        Some("120")
    );
    let rows = tbody(&dom, "packages-body").matches("<tr").count();
    assert_eq!(rows, 50, "one page of 50 rows");
    assert!(
        text(&dom, "page-info").contains("1–50 of 120"),
        "{}",
        text(&dom, "page-info")
    );
    assert!(hidden(&dom, "fault-banner"), "no central fault here");
    assert!(hidden(&dom, "auth-banner"));

    // A package completes: a second load shows it.
    assert!(app.upload_and_complete(&building).await.accepted);
    let after = app.anon().status().await.expect("status");
    assert_eq!((after.counts.built, after.counts.building), (1, 0));
    let dom = dump_dom(&chrome, &format!("{}/", app.url), 3000).await;
    assert_counts_match(&dom, &after);
    assert_eq!(count_of(&dom, "built"), 1);
    assert!(!tbody(&dom, "drones-body").contains("app-misc/pkg1-1.0"));

    // The filter (from the address) and the log tail of a failure.
    let dom = dump_dom(
        &chrome,
        &format!("{}/#state=failed&log=app-misc/pkg0-1.0", app.url),
        3000,
    )
    .await;
    assert_eq!(
        attr(&dom, "packages-range", "data-total").as_deref(),
        Some("1")
    );
    let rows = tbody(&dom, "packages-body");
    assert_eq!(rows.matches("<tr").count(), 1, "{rows}");
    assert!(rows.contains("data-state=\"failed\""), "{rows}");
    assert!(!hidden(&dom, "log-section"));
    assert_eq!(text(&dom, "log-atom"), "app-misc/pkg0-1.0");
    assert!(
        text(&dom, "log-tail").contains("undefined reference to `frobnicate'"),
        "{}",
        text(&dom, "log-tail")
    );
    // A text search, paged as well.
    let dom = dump_dom(&chrome, &format!("{}/#q=pkg11", app.url), 3000).await;
    // pkg11 and pkg110..pkg119
    assert_eq!(
        attr(&dom, "packages-range", "data-total").as_deref(),
        Some("11")
    );
    app.stop().await;
}

/// The gateway serves the same page over its merged status and drone list: the counts are
/// the sums over both orchestrators and every drone of both is listed.
#[actix_web::test]
async fn the_gateway_serves_the_merged_dashboard() {
    let Some(chrome) = chromium() else {
        return skip("chromium");
    };
    let a = spawn_app(|c| c.name = "orch-a".into()).await;
    let b = spawn_app(|c| c.name = "orch-b".into()).await;
    a.register("drone-on-a", 1).await;
    b.register("drone-on-b", 1).await;
    a.admin()
        .submit(chain_set(7).into_bytes())
        .await
        .expect("submit a");
    b.admin()
        .submit(chain_set(5).into_bytes())
        .await
        .expect("submit b");
    b.claim("drone-on-b").await;
    let mut cfg = build_swarm::config::GatewayConfig {
        listen: "127.0.0.1:0".into(),
        orchestrators: vec![a.url.clone(), b.url.clone()],
        poll_interval_s: 1,
        ..Default::default()
    };
    cfg.auth.admin_token = Some(ADMIN.into());
    let gw = build_swarm::gateway::Gateway::start(
        cfg,
        build_swarm::sys::logging::Capture::default().logger(slog::Level::Info),
        false,
    )
    .await
    .expect("gateway starts");
    let gw_url = format!("http://127.0.0.1:{}", gw.port);
    actix_web::rt::spawn(gw.server);
    let merged = build_swarm::client::ApiClient::new(&gw_url, None);
    wait_for(10, "the gateway to see both orchestrators", || async {
        merged
            .get::<Json>("/api/v1/status")
            .await
            .is_ok_and(|v| v["total"] == 12)
    })
    .await;
    let dom = dump_dom(&chrome, &format!("{gw_url}/"), 3000).await;
    assert_eq!(
        attr(&dom, "dashboard", "data-loaded").as_deref(),
        Some("1"),
        "the page loaded"
    );
    assert_eq!(count_of(&dom, "total"), 12);
    assert_eq!(count_of(&dom, "building"), 1);
    assert_eq!(count_of(&dom, "queued"), 11);
    let drones = tbody(&dom, "drones-body");
    assert!(drones.contains("data-drone=\"drone-on-a\""), "{drones}");
    assert!(drones.contains("data-drone=\"drone-on-b\""), "{drones}");
    gw.handle.stop(false).await;
    a.stop().await;
    b.stop().await;
}

/// A real run (two drone processes with two slots each) drawn as the timeline: a bar for
/// every drone slot, the throughput chart; a screenshot is left in the test's output
/// directory (the path is printed).
#[actix_web::test]
async fn dashboard_draws_the_timeline_of_a_real_run_with_a_bar_on_every_drone_slot() {
    let Some(chrome) = chromium() else {
        return skip("chromium");
    };
    if !require_rsync() {
        return;
    }
    let app = spawn_app(|_| {}).await;
    let env = [("STANDIN_SECONDS", "0.6"), ("STANDIN_KB", "16")];
    let _d1 = spawn_drone(&drone_config(app.dir.path(), "d1", &app.url, "", ""), &env);
    let _d2 = spawn_drone(&drone_config(app.dir.path(), "d2", &app.url, "", ""), &env);
    let anon = app.anon();
    // Both drones first: one that started late could find the set already built.
    wait_for(60, "both drones registered", || async {
        anon.status().await.is_ok_and(|s| s.drones.active == 2)
    })
    .await;
    let set: String = (0..16).map(|i| format!("app-misc/tl{i}-1.0\n")).collect();
    app.submit(&set).await;
    wait_for(90, "all 16 packages built", || async {
        anon.status().await.is_ok_and(|s| s.counts.built == 16)
    })
    .await;
    let api = anon.timeline().await.expect("timeline");
    let rows: Vec<String> = api
        .rows
        .iter()
        .map(|r| format!("{}/{}", r.drone, r.slot))
        .collect();
    for want in ["d1/0", "d1/1", "d2/0", "d2/1"] {
        assert!(rows.contains(&want.to_string()), "{want} in {rows:?}");
    }
    assert_eq!(api.throughput.iter().map(|b| b.built).sum::<u32>(), 16);

    let dom = dump_dom(&chrome, &format!("{}/", app.url), 3000).await;
    for row in &rows {
        assert!(
            dom.contains(&format!("data-row=\"{row}\"")),
            "no bar for slot {row} in the drawn timeline"
        );
    }
    assert_eq!(
        dom.matches("class=\"bar o-built\"").count(),
        16,
        "one bar per build"
    );
    assert!(dom.contains("class=\"tp o-built\""), "the throughput chart");
    assert!(
        text(&dom, "timeline-summary").contains("16 attempts on 4 slots"),
        "{}",
        text(&dom, "timeline-summary")
    );

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-timeline.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().expect("profile");
    let out = tokio::process::Command::new(&chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--window-size=1280,1600")
        .arg("--virtual-time-budget=3000")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("{}/", app.url))
        .stdin(Stdio::null())
        .output()
        .await
        .expect("chromium screenshot");
    let png = std::fs::read(&shot).unwrap_or_default();
    assert!(
        png.starts_with(b"\x89PNG"),
        "no screenshot ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("timeline screenshot: {}", shot.display());
}

/// The package view of a building package follows its live output (log/live).
#[actix_web::test]
async fn dashboard_follows_a_building_packages_live_output() {
    let Some(chrome) = chromium() else {
        return skip("chromium");
    };
    let app = spawn_app(|_| {}).await;
    app.register("d1", 1).await;
    app.submit("app-misc/live-1.0\n").await;
    let w = app.claim("d1").await;
    let lines: Vec<String> = (1..=30).map(|i| format!("compiling unit {i}")).collect();
    let chunk = build_swarm::wire::orchestrator::OutputChunk {
        epoch: w.epoch,
        first: 0,
        lines,
    };
    app.drone().output(w.lease, &chunk).await.expect("output");
    let dom = dump_dom(
        &chrome,
        &format!("{}/#log=app-misc/live-1.0", app.url),
        3000,
    )
    .await;
    assert!(!hidden(&dom, "log-section"));
    let tail = text(&dom, "log-tail");
    assert!(
        tail.contains("compiling unit 1\n") && tail.trim_end().ends_with("compiling unit 30"),
        "{tail}"
    );
    assert!(
        text(&dom, "log-reason").contains("live output from d1 (building)"),
        "{}",
        text(&dom, "log-reason")
    );
}

#[actix_web::test]
async fn dashboard_marks_drones_older_than_the_orchestrator() {
    let Some(chrome) = chromium() else {
        return skip("chromium");
    };
    let app = spawn_app(|_| {}).await;
    app.register("current", 1).await;
    app.register_with(RegisterRequest {
        version: "0.0.1".into(),
        ..registration("old", 1)
    })
    .await;
    let dom = dump_dom(&chrome, &format!("{}/", app.url), 3000).await;
    let rows = tbody(&dom, "drones-body");
    let row_of = |name: &str| {
        let at = rows
            .find(&format!(r#"data-drone="{name}""#))
            .expect("a row");
        rows[at..]
            .split("</tr>")
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert!(row_of("old").contains(r#"data-outdated="1""#), "{rows}");
    assert!(row_of("old").contains("outdated"), "{rows}");
    assert!(!row_of("current").contains("outdated"), "{rows}");
    app.stop().await;
}

/// A drone whose environment does not fit shows as `mismatched` with what differs; a
/// package no drone can build shows why it waits; the ETA is shown.
#[actix_web::test]
async fn dashboard_shows_mismatched_drones_waiting_reasons_and_the_eta() {
    let Some(chrome) = chromium() else {
        return skip("chromium");
    };
    let app = spawn_app(|c| {
        c.environment.expected.insert("CFLAGS".into(), "-O2".into());
    })
    .await;
    app.register("plain", 1).await;
    let mut odd = build_swarm::domain::environment::DroneEnvironment::default();
    odd.fingerprint.insert("CFLAGS".into(), "-O3".into());
    app.register_with(RegisterRequest {
        environment: Some(odd),
        ..registration("odd", 1)
    })
    .await;
    app.submit(
        r#"{"packages": [{"atom": "a/x-1", "estimate_s": 90},
                         {"atom": "a/big-1", "requires": ["big-mem"]}]}"#,
    )
    .await;
    let dom = dump_dom(&chrome, &format!("{}/", app.url), 3000).await;
    let rows = tbody(&dom, "drones-body");
    let at = rows.find(r#"data-drone="odd""#).expect("a row");
    let odd_row = rows[at..].split("</tr>").next().unwrap_or_default();
    assert!(odd_row.contains(r#"data-state="mismatched""#), "{rows}");
    assert!(odd_row.contains("differs: CFLAGS"), "{rows}");
    // 90 s for the one slot that may build (the parked package is left out).
    assert_eq!(attr(&dom, "eta", "data-value").as_deref(), Some("90"));
    let packages = tbody(&dom, "packages-body");
    assert!(
        packages.contains("waiting for a drone with big-mem"),
        "{packages}"
    );
    app.stop().await;
}

#[actix_web::test]
async fn dashboard_shows_each_channel_and_the_snapshot_it_serves() {
    let Some(chrome) = chromium() else {
        return skip("chromium");
    };
    let app = spawn_app(|_| {}).await;
    app.register("d1", 1).await;
    app.submit("app-misc/a-1\n").await;
    let w = app.claim("d1").await;
    assert!(app.upload_and_complete(&w).await.accepted);
    wait_indexed(&app).await;
    let admin = app.admin();
    admin.snapshot(Some("one")).await.expect("snapshot");
    admin.snapshot(Some("two")).await.expect("snapshot");
    admin.tag("stable", "one").await.expect("tag");
    admin.tag("testing", "two").await.expect("tag");
    let dom = dump_dom(&chrome, &format!("{}/", app.url), 3000).await;
    let rows = tbody(&dom, "channels-body");
    assert!(
        rows.contains(r#"data-channel="stable" data-snapshot="one""#),
        "{rows}"
    );
    assert!(
        rows.contains(r#"data-channel="testing" data-snapshot="two""#),
        "{rows}"
    );
    assert!(rows.contains("/binhost/testing/"), "{rows}");
    assert!(hidden(&dom, "channels-empty"));
    assert!(
        text(&dom, "releases-summary").contains("2 snapshots"),
        "{dom}"
    );
    app.stop().await;
}

#[actix_web::test]
async fn dashboard_asks_for_the_read_token_and_sends_it_as_bearer() {
    let Some(chrome) = chromium() else {
        return skip("chromium");
    };
    let app = spawn_app(|c| c.auth.read_token = Some("reader-secret".into())).await;
    app.admin()
        .submit(chain_set(3).into_bytes())
        .await
        .expect("submit");
    // The page itself needs no token; without one it says so.
    let dom = dump_dom(&chrome, &format!("{}/", app.url), 2000).await;
    assert!(!hidden(&dom, "auth-banner"), "the token prompt is shown");
    assert!(!hidden(&dom, "token-form"));
    assert_eq!(
        attr(&dom, "dashboard", "data-auth").as_deref(),
        Some("needed")
    );
    assert_eq!(attr(&dom, "count-total", "data-value").as_deref(), Some(""));
    // A wrong token is refused the same way.
    let dom = dump_dom(&chrome, &format!("{}/#token=wrong", app.url), 2000).await;
    assert!(!hidden(&dom, "auth-banner"));
    // With the token (given once in the address; the page keeps it) the counts show.
    let dom = dump_dom(&chrome, &format!("{}/#token=reader-secret", app.url), 2000).await;
    assert!(hidden(&dom, "auth-banner"));
    let st = app.admin().status().await.expect("status");
    assert_counts_match(&dom, &st);
    assert_eq!(count_of(&dom, "queued"), 3);
    app.stop().await;
}

/// A stand-in for the gateway (merged status and drones, no package listings) and for the
/// failure policy's central fault: the same embedded page, fed canned answers.
#[actix_web::test]
async fn dashboard_shows_a_central_fault_and_copes_without_package_listings() {
    use actix_web::{web, App, HttpResponse, HttpServer};
    use build_swarm::http::dashboard;
    let Some(chrome) = chromium() else {
        return skip("chromium");
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let status = serde_json::json!({
        "name": "gateway", "total": 10, "waiting": 0, "queued": 4, "building": 1,
        "uploading": 0, "built": 5, "failed": 0, "blocked": 0, "progress_pct": 50.0,
        "drones": {"total": 2, "active": 1, "grounded": 1, "offline": 0, "paused": 0},
        "central_fault": {"since": now - 300, "reason": "rsync to the upload target: No space left on device"}
    });
    // Grounded until 100 s after each answer (Chromium's start-up is not counted).
    let drones = || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        serde_json::json!({"drones": [
            {"name": "d-ok", "aliases": [], "host": "h1", "state": "building", "slots": 2,
             "current": ["app-misc/x-1"], "failures": 0, "grounded_until": null, "last_seen": now},
            {"name": "d-bad", "aliases": [], "host": "h2", "state": "grounded", "slots": 1,
             "current": [], "failures": 5, "grounded_until": now + 100, "last_seen": now,
             "grounded_reason": "5 consecutive failures, last (infra): rsync exit 30"}
        ]})
    };
    let server = HttpServer::new(move || {
        let status = status.clone();
        App::new()
            .route("/", web::get().to(dashboard::index))
            .route("/dashboard/app.js", web::get().to(dashboard::app_js))
            .route("/dashboard/style.css", web::get().to(dashboard::style_css))
            .route(
                "/api/v1/status",
                web::get().to(move || {
                    let s = status.clone();
                    async move { HttpResponse::Ok().json(s) }
                }),
            )
            .route(
                "/api/v1/drones",
                web::get().to(move || {
                    let d = drones();
                    async move { HttpResponse::Ok().json(d) }
                }),
            )
            .default_service(web::to(|| async {
                HttpResponse::NotFound().json(serde_json::json!({"error": "no such endpoint"}))
            }))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .expect("bind");
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);

    let dom = dump_dom(&chrome, &format!("http://127.0.0.1:{port}/"), 3000).await;
    assert!(!hidden(&dom, "fault-banner"), "the central fault is shown");
    let banner_at = dom.find("id=\"fault-banner\"").expect("banner");
    let banner = &dom[banner_at..banner_at + dom[banner_at..].find("</div>").expect("end")];
    assert!(banner.contains("No space left on device"), "{banner}");
    assert!(
        banner.contains(" (5m ") && banner.contains("s ago)"),
        "{banner}"
    );
    assert_eq!(count_of(&dom, "built"), 5);
    let rows = tbody(&dom, "drones-body");
    assert!(rows.contains("data-state=\"grounded\""), "{rows}");
    assert!(rows.contains("rsync exit 30"), "{rows}");
    // 100 s after the answer (whole seconds, so up to 1 s more), read a moment later:
    // "in 1m 41s", "in 1m 40s" or a few seconds less.
    assert!(
        rows.contains(">in 1m 3") || rows.contains(">in 1m 40s<") || rows.contains(">in 1m 41s<"),
        "{rows}"
    );
    // No package listings there: the panels step aside instead of showing errors.
    assert!(hidden(&dom, "packages-section"));
    assert!(hidden(&dom, "failures-section"));
    assert!(!hidden(&dom, "packages-unavailable"));
    assert_eq!(
        attr(&dom, "conn", "data-state").as_deref(),
        Some("ok"),
        "{}",
        text(&dom, "conn")
    );
    handle.stop(false).await;
}

// ---------------------------------------------------------------- (b) /metrics

async fn get_text(url: &str, token: Option<&str>) -> (u16, String, String) {
    let client = awc::Client::default();
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut resp = req.send().await.expect("request");
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.body().limit(16 << 20).await.expect("body");
    (
        resp.status().as_u16(),
        ct,
        String::from_utf8(body.to_vec()).expect("utf-8"),
    )
}

/// Parsed with the `prometheus-parse` crate; every line must be one it understands but
/// OpenMetrics' closing `# EOF` (which must be the last). That crate reads the text
/// format 0.0.4: it takes OpenMetrics counters (`# TYPE x counter`, samples `x_total`)
/// for untyped ones, so counter types are checked on the `# TYPE` lines instead.
struct Scraped {
    samples: Vec<prometheus_parse::Sample>,
}

impl Scraped {
    fn parse(text: &str) -> Scraped {
        let text = text
            .strip_suffix("# EOF\n")
            .unwrap_or_else(|| panic!("no closing # EOF: {text}"));
        for line in text.lines() {
            assert!(
                !matches!(
                    prometheus_parse::LineInfo::parse(line),
                    prometheus_parse::LineInfo::Ignored
                ),
                "line not in the text format: {line:?}"
            );
        }
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("parse");
        Scraped {
            samples: scrape.samples,
        }
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let s = self
            .samples
            .iter()
            .find(|s| {
                s.metric == name
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"));
        match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{name} is not a plain value: {other:?}"),
        }
    }

    fn kind(&self, name: &str) -> &prometheus_parse::Value {
        &self
            .samples
            .iter()
            .find(|s| s.metric == name)
            .unwrap_or_else(|| panic!("no sample {name}"))
            .value
    }

    /// Cumulative (le, count) pairs of a histogram, checked to be monotonic and to end
    /// with +Inf = `_count`.
    fn histogram(&self, name: &str) -> Vec<(f64, f64)> {
        let prometheus_parse::Value::Histogram(buckets) = self.kind(name) else {
            panic!("{name} is not a histogram");
        };
        let mut b: Vec<(f64, f64)> = buckets.iter().map(|h| (h.less_than, h.count)).collect();
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        assert!(
            b.windows(2).all(|w| w[0].1 <= w[1].1),
            "{name} not cumulative: {b:?}"
        );
        let last = b.last().expect("buckets");
        assert!(last.0.is_infinite(), "{name} has no +Inf bucket");
        assert_eq!(last.1, self.value(&format!("{name}_count"), &[]), "{name}");
        b
    }
}

/// Python's `prometheus_client` parser is strict (it refuses malformed lines and
/// samples that do not belong to their family). Returns family name → type, or None
/// when the parser is not installed (outside CI).
async fn python_prometheus_families(text: &str) -> Option<BTreeMap<String, String>> {
    let Some(python) = find_program(&["python3"]) else {
        skip("python3");
        return None;
    };
    let script = r#"
import json, sys
try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError:
    sys.exit(3)
fams = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    fams[f.name] = f.type
print(json.dumps(fams))
"#;
    let mut child = tokio::process::Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).await.expect("write");
    }
    let out = child.wait_with_output().await.expect("python3 runs");
    if out.status.code() == Some(3) {
        skip("the Python package prometheus_client");
        return None;
    }
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("families json"))
}

#[actix_web::test]
async fn metrics_parse_as_prometheus_text_and_count_claims_completions_failures_and_trips() {
    let app = spawn_app(|c| c.breaker.max_failures = 2).await;
    app.register("d1", 4).await;
    app.register("d2", 1).await;
    app.admin()
        .submit(chain_set(6).into_bytes())
        .await
        .expect("submit");
    let d = app.drone();
    let mut claim_requests = 0;
    let w1 = app.claim("d1").await;
    let w2 = app.claim("d1").await;
    let w3 = app.claim("d1").await;
    claim_requests += 3;
    // d1: a build failure, a cancellation, then a success (its count is back to 0).
    app.fail(
        &w2,
        FailureKind::Build,
        "compile error",
        &format!("make: *** [all] Error 1\n{}\n", "compile error"),
    )
    .await;
    d.fail(
        w3.lease,
        &FailRequest {
            epoch: w3.epoch,
            kind: FailureKind::Cancelled,
            reason: "operator".into(),
            log_tail: String::new(),
        },
    )
    .await
    .expect("cancel");
    assert!(app.upload_and_complete(&w1).await.accepted);
    let done_size = package_bytes(&w1, &artifact_bytes(&w1.atom)).len();
    // d2: two infrastructure failures in a row ground it (max_failures = 2).
    for _ in 0..2 {
        let w = app.claim("d2").await;
        claim_requests += 1;
        d.fail(
            w.lease,
            &FailRequest {
                epoch: w.epoch,
                kind: FailureKind::Infra,
                reason: "rsync exit 30".into(),
                log_tail: String::new(),
            },
        )
        .await
        .expect("fail");
    }
    assert!(d.claim("d2").await.expect("claim").is_none(), "grounded");
    claim_requests += 1;
    // d1 takes one more and restarts: the lease is reclaimed (drone lost).
    let _w6 = app.claim("d1").await;
    claim_requests += 1;
    app.register("d1", 4).await;

    let (code, ct, text) = get_text(&format!("{}/metrics", app.url), None).await;
    assert_eq!(code, 200, "{text}");
    assert!(
        ct.starts_with("application/openmetrics-text; version=1.0.0"),
        "{ct}"
    );
    let m = Scraped::parse(&text);
    assert_eq!(m.value("build_swarm_claims_total", &[]), 6.0);
    assert_eq!(m.value("build_swarm_completions_total", &[]), 1.0);
    assert_eq!(
        m.value("build_swarm_upload_bytes_total", &[]),
        done_size as f64
    );
    assert_eq!(
        m.value("build_swarm_failures_total", &[("kind", "build")]),
        1.0
    );
    assert_eq!(
        m.value("build_swarm_failures_total", &[("kind", "cancelled")]),
        1.0
    );
    // Two reported by d2, one for the reclaimed lease.
    assert_eq!(
        m.value("build_swarm_failures_total", &[("kind", "infra")]),
        3.0
    );
    assert_eq!(m.value("build_swarm_breaker_trips_total", &[]), 1.0);
    assert_eq!(m.value("build_swarm_grounded_drones", &[]), 1.0);
    assert_eq!(
        m.value(
            "build_swarm_lease_reclaims_total",
            &[("reason", "drone_lost")]
        ),
        1.0
    );
    for r in ["build_timeout", "upload_timeout", "dropped"] {
        assert_eq!(
            m.value("build_swarm_lease_reclaims_total", &[("reason", r)]),
            0.0,
            "{r}"
        );
    }
    // Gauges agree with the API.
    let st = app.anon().status().await.expect("status");
    for s in PackageState::ALL {
        assert_eq!(
            m.value("build_swarm_packages", &[("state", s.as_str())]),
            st.counts.get(s) as f64,
            "{s}"
        );
    }
    let drones = app.anon().drones().await.expect("drones").drones;
    for s in [
        DroneState::Idle,
        DroneState::Building,
        DroneState::Grounded,
        DroneState::Paused,
        DroneState::Offline,
    ] {
        let n = drones.iter().filter(|d| d.state == s).count();
        assert_eq!(
            m.value("build_swarm_drones", &[("state", s.as_str())]),
            n as f64,
            "{s}"
        );
    }
    assert_eq!(m.value("build_swarm_drones", &[("state", "grounded")]), 1.0);
    assert_eq!(
        m.value("build_swarm_orchestrator_info", &[("name", "test-orch")]),
        1.0
    );
    // Histograms: every claim request timed, one upload timed.
    let claims = m.histogram("build_swarm_claim_duration_seconds");
    assert_eq!(claims.last().map(|b| b.1), Some(claim_requests as f64));
    assert!(m.value("build_swarm_claim_duration_seconds_sum", &[]) > 0.0);
    let uploads = m.histogram("build_swarm_upload_duration_seconds");
    assert_eq!(uploads.last().map(|b| b.1), Some(1.0));
    assert!(
        text.contains("\n# TYPE build_swarm_claims counter\n"),
        "{text}"
    );
    assert!(matches!(
        m.kind("build_swarm_packages"),
        prometheus_parse::Value::Gauge(_)
    ));

    // The strict parser agrees on the families and their types.
    if let Some(fams) = python_prometheus_families(&text).await {
        let want = [
            ("build_swarm_packages", "gauge"),
            ("build_swarm_drones", "gauge"),
            ("build_swarm_grounded_drones", "gauge"),
            ("build_swarm_claims", "counter"),
            ("build_swarm_completions", "counter"),
            ("build_swarm_failures", "counter"),
            ("build_swarm_breaker_trips", "counter"),
            ("build_swarm_upload_bytes", "counter"),
            ("build_swarm_lease_reclaims", "counter"),
            ("build_swarm_upload_dirs_reused", "counter"),
            ("build_swarm_upload_dirs_kept", "gauge"),
            ("build_swarm_claim_duration_seconds", "histogram"),
            ("build_swarm_upload_duration_seconds", "histogram"),
        ];
        for (name, kind) in want {
            assert_eq!(
                fams.get(name).map(String::as_str),
                Some(kind),
                "{name}: {fams:?}"
            );
        }
    }
    app.stop().await;
}

#[actix_web::test]
async fn metrics_count_build_and_upload_timeouts_and_honour_the_read_token() {
    let app = spawn_app(|c| {
        // Far apart, so a slow `uploading` report cannot turn w2's upload timeout into a
        // second build timeout.
        c.leases.build_timeout_s = 5;
        c.leases.upload_timeout_s = 1;
        c.auth.read_token = Some("reader".into());
    })
    .await;
    app.register("d1", 2).await;
    app.admin()
        .submit(chain_set(2).into_bytes())
        .await
        .expect("submit");
    // One lease never starts uploading, the other never finishes its upload.
    let w1 = app.claim("d1").await;
    let w2 = app.claim("d1").await;
    app.drone()
        .uploading(w2.lease, w2.epoch)
        .await
        .expect("uploading");
    let url = format!("{}/metrics", app.url);
    assert_eq!(get_text(&url, None).await.0, 401, "read token required");
    assert_eq!(get_text(&url, Some("wrong")).await.0, 401);
    let u = &url;
    wait_for(20, "both timeouts to reclaim their leases", || async move {
        let (_, _, text) = get_text(u, Some("reader")).await;
        let m = Scraped::parse(&text);
        let r = |reason| m.value("build_swarm_lease_reclaims_total", &[("reason", reason)]);
        r("build_timeout") == 1.0 && r("upload_timeout") == 1.0
    })
    .await;
    let (code, _, text) = get_text(&url, Some("reader")).await;
    assert_eq!(code, 200);
    let m = Scraped::parse(&text);
    assert_eq!(
        m.value("build_swarm_failures_total", &[("kind", "infra")]),
        2.0
    );
    assert_eq!(m.value("build_swarm_completions_total", &[]), 0.0);
    // A timed-out upload is no upload duration.
    assert_eq!(
        m.histogram("build_swarm_upload_duration_seconds")
            .last()
            .map(|b| b.1),
        Some(0.0)
    );
    // The late upload report of the reclaimed lease changes nothing.
    let ack = app
        .drone()
        .uploading(w1.lease, w1.epoch)
        .await
        .expect("ack");
    assert!(ack.stale);
    app.stop().await;
}

#[actix_web::test]
async fn metrics_count_leases_dropped_from_heartbeats_and_lost_with_their_drone() {
    let app = spawn_app(|c| c.leases.heartbeat_ttl_s = 1).await;
    app.register("d1", 1).await;
    app.register("d2", 1).await;
    app.admin()
        .submit(chain_set(2).into_bytes())
        .await
        .expect("submit");
    let d = app.drone();
    let w1 = app.claim("d1").await;
    // d1 reports the lease for longer than the TTL, then stops listing it.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        app.heartbeat("d1", vec![w1.lease], vec![]).await;
    }
    d.heartbeat("d1", &HeartbeatRequest::default())
        .await
        .expect("heartbeat");
    // d2 takes work and falls silent: offline after the TTL, its lease reclaimed.
    let _w2 = app.claim("d2").await;
    let url = format!("{}/metrics", app.url);
    let u = &url;
    wait_for(
        10,
        "the silent drone's lease to be reclaimed",
        || async move {
            let (_, _, text) = get_text(u, None).await;
            Scraped::parse(&text).value(
                "build_swarm_lease_reclaims_total",
                &[("reason", "drone_lost")],
            ) == 1.0
        },
    )
    .await;
    let m = Scraped::parse(&get_text(&url, None).await.2);
    assert_eq!(
        m.value("build_swarm_lease_reclaims_total", &[("reason", "dropped")]),
        1.0
    );
    assert_eq!(
        m.value("build_swarm_failures_total", &[("kind", "infra")]),
        2.0
    );
    assert!(m.value("build_swarm_drones", &[("state", "offline")]) >= 1.0);
    app.stop().await;
}

// ---------------------------------------------------------------- (c) OpenAPI

fn openapi() -> Json {
    serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON")
}

/// (path, method) of every route registered in `file` (the server's routes), read from
/// its source.
fn registered_routes(file: &str) -> BTreeSet<(String, String)> {
    let src = std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("read {file}: {e}"));
    let flat: String = src.chars().filter(|c| !c.is_whitespace()).collect();
    let scope_at = flat.find("web::scope(\"").expect("a scope");
    let scope_start = scope_at + "web::scope(\"".len();
    let scope = &flat[scope_start..scope_start + flat[scope_start..].find('"').expect("end")];
    let mut out = BTreeSet::new();
    let mut rest = 0;
    while let Some(i) = flat[rest..].find(".route(\"") {
        let start = rest + i + ".route(\"".len();
        let end = start + flat[start..].find('"').expect("path end");
        // A path parameter's pattern (`{tail:.*}`) is not part of its documented name.
        let path = &flat[start..end].replace(":.*", "");
        let after = &flat[end..];
        let m_start = after.find("web::").expect("web::method") + "web::".len();
        let m_end = m_start + after[m_start..].find('(').expect("method end");
        let method = after[m_start..m_end].to_string();
        let full = if start > scope_at {
            format!("{scope}{path}")
        } else {
            path.to_string()
        };
        out.insert((full, method));
        rest = end;
    }
    assert!(out.len() >= 8, "parsed too few routes: {out:?}");
    out
}

/// Routes registered in `file` and documented in `doc` must be the same.
fn assert_documents_exactly(doc: &Json, file: &str) {
    let registered = registered_routes(file);
    let documented = documented_routes(doc);
    let missing: Vec<_> = registered.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&registered).collect();
    assert!(
        missing.is_empty(),
        "routes of {file} missing from the document: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "the document names routes {file} lacks: {stale:?}"
    );
}

const VALIDATE_OPENAPI: &str = r#"
import sys
try:
    from openapi_spec_validator import validate
    from openapi_spec_validator.readers import read_from_filename
except ImportError:
    sys.exit(3)
spec, _ = read_from_filename(sys.argv[1])
validate(spec)
print("valid", spec["openapi"])
"#;

/// openapi-spec-validator's verdict on `doc`: `None` when it is not installed (the test
/// then skips, failing in CI), else whether it accepted the document and what it said.
async fn validate_openapi(doc: &str) -> Option<(bool, String)> {
    let python = find_program(&["python3"])?;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc).expect("write");
    let out = tokio::process::Command::new(python)
        .args(["-c", VALIDATE_OPENAPI])
        .arg(&file)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("python3 runs");
    if out.status.code() == Some(3) {
        return None;
    }
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success() && said.contains("valid 3.0"), said))
}

fn documented_routes(doc: &Json) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "delete", "patch", "head", "options"] {
            if item.get(method).is_some() {
                out.insert((path.clone(), method.to_string()));
            }
        }
    }
    out
}

#[actix_web::test]
async fn openapi_document_names_exactly_the_registered_routes_and_they_answer() {
    let doc = openapi();
    assert_documents_exactly(&doc, "src/http/orchestrator/mod.rs");
    let documented = documented_routes(&doc);

    // Served as it is embedded, and every documented route is really there: none gets
    // the default "no such endpoint" answer.
    let app = spawn_app(|_| {}).await;
    let (code, ct, body) = get_text(&format!("{}/api/v1/openapi.json", app.url), None).await;
    assert_eq!(code, 200);
    assert!(ct.starts_with("application/json"), "{ct}");
    assert_eq!(serde_json::from_str::<Json>(&body).expect("json"), doc);
    let client = awc::Client::default();
    for (path, method) in &documented {
        let concrete = path
            .replace("{category}", "app-misc")
            .replace("{pf}", "foo-1.0")
            .replace("{name}", "nobody")
            .replace("{lease}", "1")
            .replace("{tail}", "Packages")
            .replace("{channel}", "stable");
        let url = format!("{}{concrete}", app.url);
        let mut resp = match method.as_str() {
            "get" => client.get(&url).send().await,
            "post" => client.post(&url).send_body("{}").await,
            "head" => client.head(&url).send().await,
            other => panic!("unexpected method {other}"),
        }
        .expect("request");
        let body = resp.body().limit(16 << 20).await.expect("body");
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("no such endpoint"),
            "{method} {path} is documented but not served: {text}"
        );
    }
    app.stop().await;
}

#[actix_web::test]
async fn openapi_document_validates_with_openapi_spec_validator() {
    let app = spawn_app(|_| {}).await;
    let (code, _, body) = get_text(&format!("{}/api/v1/openapi.json", app.url), None).await;
    assert_eq!(code, 200);
    app.stop().await;
    let Some((valid, said)) = validate_openapi(&body).await else {
        return skip("python3 with the package openapi-spec-validator");
    };
    assert!(valid, "openapi-spec-validator refused the document: {said}");
    // And it does refuse a broken document (a path parameter that is not declared).
    let mut broken: Json = serde_json::from_str(&body).expect("json");
    broken["paths"]["/api/v1/drones/{name}"]["get"]
        .as_object_mut()
        .expect("op")
        .remove("parameters");
    let (valid, _) = validate_openapi(&broken.to_string())
        .await
        .expect("validator");
    assert!(!valid, "the validator accepts anything?");
}

/// The gateway serves its own OpenAPI document: it validates, names exactly the gateway's
/// routes, and every $ref in it resolves.
#[actix_web::test]
async fn the_gateway_serves_its_own_openapi_document() {
    let mut cfg = build_swarm::config::GatewayConfig {
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    };
    cfg.auth.admin_token = Some(ADMIN.into());
    let gw = build_swarm::gateway::Gateway::start(
        cfg,
        build_swarm::sys::logging::Capture::default().logger(slog::Level::Info),
        false,
    )
    .await
    .expect("gateway starts");
    let url = format!("http://127.0.0.1:{}/api/v1/openapi.json", gw.port);
    actix_web::rt::spawn(gw.server);
    let (code, ct, body) = get_text(&url, None).await;
    assert_eq!(code, 200);
    assert!(ct.starts_with("application/json"), "{ct}");
    let doc: Json = serde_json::from_str(&body).expect("json");
    assert_eq!(doc["info"]["title"], "build-swarm gateway API");
    assert_documents_exactly(&doc, "src/http/gateway/mod.rs");
    let Some((valid, said)) = validate_openapi(&body).await else {
        return skip("python3 with the package openapi-spec-validator");
    };
    assert!(
        valid,
        "openapi-spec-validator refused the gateway's document: {said}"
    );
}

fn keys(v: &impl serde::Serialize) -> BTreeSet<String> {
    serde_json::to_value(v)
        .expect("serialize")
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

fn schema_props(doc: &Json, name: &str) -> BTreeSet<String> {
    doc["components"]["schemas"][name]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema {name} has no properties"))
        .keys()
        .cloned()
        .collect()
}

fn schema_enum(doc: &Json, name: &str) -> BTreeSet<String> {
    doc["components"]["schemas"][name]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("schema {name} has no enum"))
        .iter()
        .map(|v| v.as_str().expect("string").to_string())
        .collect()
}

fn enum_values<T: serde::Serialize>(all: &[T]) -> BTreeSet<String> {
    all.iter()
        .map(|v| {
            serde_json::to_value(v)
                .expect("serialize")
                .as_str()
                .expect("string")
                .to_string()
        })
        .collect()
}

/// Every schema of the document has exactly the fields `build_swarm::wire::orchestrator` serializes.
#[test]
fn openapi_schemas_use_exactly_the_wire_field_names() {
    let doc = openapi();
    let info = PackageInfo {
        atom: "a/b-1".into(),
        state: PackageState::Failed,
        drone: None,
        attempts: 1,
        reason: Some("r".into()),
        priority: 0,
    };
    let drone = DroneInfo {
        name: "d".into(),
        aliases: vec![],
        host: "h".into(),
        state: DroneState::Idle,
        slots: 1,
        current: vec![],
        failures: 0,
        grounded_until: None,
        last_seen: None,
        version: "v".into(),
        restart_command: vec![],
        grounded_reason: None,
        probing: false,
        enrolled: true,
        enrolled_host: Some("h.lan".into()),
        previous_host: Some("old".into()),
        credential: Some("own".into()),
        outdated: false,
        mismatch: None,
        capabilities: vec![],
        resources: None,
        speed_factor: 1.0,
        healing: None,
    };
    let lease = LeaseView {
        lease: 1,
        epoch: 1,
        atom: "a/b-1".into(),
        state: PackageState::Building,
        age_s: 3,
    };
    let status = Status {
        name: "o".into(),
        counts: PackageCounts::default(),
        progress_pct: 0.0,
        drones: DroneCounts::default(),
        central_fault: None,
        eta_s: None,
    };
    let channel = ChannelInfo {
        name: "stable".into(),
        snapshot: "s".into(),
        timestamp: 1,
        tagged_at: 1,
        previous: None,
        path: "/binhost/stable/".into(),
    };
    let package = DiffPackage {
        cpv: "a/b-1".into(),
        build_id: None,
        path: "a/b-1.gpkg.tar".into(),
    };
    let samples: Vec<(&str, BTreeSet<String>)> = vec![
        ("ErrorBody", keys(&ErrorBody { error: "e".into() })),
        ("Health", keys(&Health { ok: true })),
        ("DroneCounts", keys(&DroneCounts::default())),
        ("Status", keys(&status)),
        ("PackageInfo", keys(&info)),
        (
            "PackageList",
            keys(&PackageList {
                packages: vec![],
                total: 0,
            }),
        ),
        (
            "PackageLog",
            keys(&PackageLog {
                atom: "a/b-1".into(),
                state: PackageState::Failed,
                reason: None,
                log_tail: String::new(),
            }),
        ),
        (
            "SubmitResult",
            keys(&SubmitResult {
                format: build_swarm::domain::package_set::SetFormat::Plain,
                added: 1,
                existing: 0,
                skipped: 0,
                dependencies: 0,
            }),
        ),
        ("RetryRequest", keys(&RetryRequest::default())),
        (
            "RetryResult",
            keys(&RetryResult {
                retried: 0,
                unblocked: 0,
            }),
        ),
        ("DroneInfo", keys(&drone)),
        ("DroneList", keys(&DroneList { drones: vec![] })),
        ("LeaseView", keys(&lease)),
        (
            "DroneQueue",
            keys(&DroneQueue {
                drone: "d".into(),
                current: vec![],
                next: vec![],
            }),
        ),
        (
            "DroneLogs",
            keys(&DroneLogs {
                drone: "d".into(),
                lines: vec![],
            }),
        ),
        (
            "ControlRequest",
            keys(&ControlRequest {
                action: ControlAction::Pause,
            }),
        ),
        (
            "ControlResult",
            keys(&ControlResult {
                ok: true,
                drone: "d".into(),
                action: ControlAction::Pause,
            }),
        ),
        (
            "RegisterRequest",
            keys(&RegisterRequest {
                name: "d".into(),
                aliases: vec![],
                host: String::new(),
                slots: 1,
                version: String::new(),
                restart_command: vec![],
                environment: None,
            }),
        ),
        (
            "RegisterResponse",
            keys(&RegisterResponse {
                name: "d".into(),
                heartbeat_s: 15,
                upload_target: "/x".into(),
            }),
        ),
        (
            "HeartbeatRequest",
            keys(&HeartbeatRequest {
                environment: Some(Default::default()),
                ..HeartbeatRequest::default()
            }),
        ),
        (
            "DroneEnvironment",
            keys(&build_swarm::domain::environment::DroneEnvironment::default()),
        ),
        (
            "Resources",
            keys(&build_swarm::domain::environment::Resources::default()),
        ),
        (
            "RepoRevision",
            keys(&build_swarm::domain::environment::RepoRevision::default()),
        ),
        (
            "DroneCommand",
            keys(&DroneCommand {
                action: DroneAction::Cancel,
                lease: Some(1),
            }),
        ),
        ("HeartbeatResponse", keys(&HeartbeatResponse::default())),
        ("ClaimRequest", keys(&ClaimRequest { drone: "d".into() })),
        (
            "WorkAssignment",
            keys(&WorkAssignment {
                lease: 1,
                epoch: 1,
                atom: "a/b-1".into(),
                category: "a".into(),
                name: "b".into(),
                version: "1".into(),
                upload_dir: "lease-1".into(),
            }),
        ),
        ("EpochBody", keys(&EpochBody { epoch: 1 })),
        (
            "CompleteRequest",
            keys(&CompleteRequest {
                epoch: 1,
                path: "a/b-1.gpkg.tar".into(),
                size: 1,
                sha256: "0".repeat(64),
            }),
        ),
        // `stale` is only sent when true.
        (
            "CompleteResponse",
            keys(&CompleteResponse {
                accepted: false,
                stale: true,
            }),
        ),
        (
            "FailRequest",
            keys(&FailRequest {
                epoch: 1,
                kind: FailureKind::Build,
                reason: String::new(),
                log_tail: String::new(),
            }),
        ),
        (
            "Ack",
            keys(&Ack {
                ok: true,
                stale: true,
            }),
        ),
        (
            "EnrollRequest",
            keys(&EnrollRequest {
                host: None,
                token: None,
            }),
        ),
        ("RevokeRequest", keys(&RevokeRequest { forget: false })),
        (
            "BinhostVerifyRequest",
            keys(&BinhostVerifyRequest { fix: false }),
        ),
        (
            "BinhostProblem",
            keys(&BinhostProblem {
                path: "p".into(),
                kind: "missing".into(),
                detail: String::new(),
            }),
        ),
        (
            "BinhostReport",
            keys(&BinhostReport {
                ok: true,
                problems: vec![],
                fixed: false,
                entries: 0,
            }),
        ),
        (
            "BumpRequest",
            keys(&BumpRequest {
                atom: "a/b-1".into(),
            }),
        ),
        (
            "BumpResult",
            keys(&BumpResult {
                atom: "a/b-1".into(),
                moved: 1,
                priority: 1,
            }),
        ),
        ("SnapshotRequest", keys(&SnapshotRequest { name: None })),
        (
            "SnapshotInfo",
            keys(&SnapshotInfo {
                name: "s".into(),
                created: 1,
                packages: 0,
                timestamp: 1,
                channels: vec![],
                kept_because: vec![],
            }),
        ),
        ("ChannelInfo", keys(&channel)),
        (
            "ReleaseList",
            keys(&ReleaseList {
                snapshots: vec![],
                channels: vec![],
            }),
        ),
        (
            "TagRequest",
            keys(&TagRequest {
                snapshot: "s".into(),
            }),
        ),
        ("DiffPackage", keys(&package)),
        (
            "DiffReport",
            keys(&DiffReport {
                from: "a".into(),
                to: "b".into(),
                added: vec![],
                removed: vec![],
                changed: vec![],
            }),
        ),
        ("GcRequest", keys(&GcRequest { dry_run: true })),
        (
            "GcItem",
            keys(&GcItem {
                kind: "file".into(),
                name: "n".into(),
                detail: "d".into(),
                at: None,
            }),
        ),
        ("GcReport", keys(&GcReport::default())),
        (
            "Enrollment",
            keys(&Enrollment {
                name: "d".into(),
                token: "t".into(),
                host: None,
                replaced: false,
            }),
        ),
        (
            "EnrolledDrone",
            keys(&EnrolledDrone {
                name: "d".into(),
                host: None,
                enrolled_unix: 1,
                revoked: false,
            }),
        ),
        ("EnrollmentList", keys(&EnrollmentList { drones: vec![] })),
        (
            "Revoked",
            keys(&Revoked {
                name: "d".into(),
                revoked: true,
                forgotten: false,
            }),
        ),
    ];
    for (name, fields) in samples {
        let props = schema_props(&doc, name);
        assert_eq!(
            props, fields,
            "schema {name} vs build_swarm::wire::orchestrator"
        );
        let required: BTreeSet<String> = doc["components"]["schemas"][name]["required"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            required.is_subset(&props),
            "{name}: required {required:?} not all in {props:?}"
        );
    }
    assert_eq!(
        schema_enum(&doc, "PackageState"),
        enum_values(&PackageState::ALL)
    );
    assert_eq!(
        schema_enum(&doc, "DroneState"),
        enum_values(&[
            DroneState::Idle,
            DroneState::Building,
            DroneState::Grounded,
            DroneState::Paused,
            DroneState::Offline,
            DroneState::Mismatched
        ])
    );
    assert_eq!(
        schema_enum(&doc, "FailureKind"),
        enum_values(&[
            FailureKind::Build,
            FailureKind::Infra,
            FailureKind::Cancelled
        ])
    );
    assert_eq!(
        schema_enum(&doc, "ControlAction"),
        enum_values(&[
            ControlAction::Restart,
            ControlAction::Pause,
            ControlAction::Resume,
            ControlAction::Unground,
            ControlAction::Sync
        ])
    );
    assert_eq!(
        schema_enum(&doc, "DroneAction"),
        enum_values(&[
            DroneAction::Restart,
            DroneAction::Pause,
            DroneAction::Resume,
            DroneAction::Cancel,
            DroneAction::Sync
        ])
    );
    // Every endpoint says which tokens it takes.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            assert!(
                op.get("security").is_some(),
                "{method} {path} has no security"
            );
        }
    }
}

/// schemathesis fuzzes both daemons from their own OpenAPI documents (a bounded number of
/// examples per operation): no server error, no status code, content type or response
/// body the document does not describe.
#[actix_web::test]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let Some(python) = find_program(&["python3"]) else {
        return skip("python3");
    };
    let app = spawn_app(|_| {}).await;
    app.register("d1", 1).await;
    app.submit("app-misc/foo-1.0\napp-misc/bar-2.0\n").await;
    let mut cfg = build_swarm::config::GatewayConfig {
        listen: "127.0.0.1:0".into(),
        orchestrators: vec![app.url.clone()],
        poll_interval_s: 1,
        ..Default::default()
    };
    cfg.auth.admin_token = Some(ADMIN.into());
    let gw = build_swarm::gateway::Gateway::start(
        cfg,
        build_swarm::sys::logging::Capture::default().logger(slog::Level::Info),
        false,
    )
    .await
    .expect("gateway starts");
    let gw_url = format!("http://127.0.0.1:{}", gw.port);
    actix_web::rt::spawn(gw.server);
    // schemathesis keeps a cache in the directory it runs in: not in the checkout.
    let scratch = tempfile::tempdir().expect("tempdir");
    for base in [&app.url, &gw_url] {
        let out = tokio::process::Command::new(&python)
            .current_dir(scratch.path())
            .args(["-m", "schemathesis.cli", "run"])
            .arg(format!("{base}/api/v1/openapi.json"))
            .args(["--header", &format!("Authorization: Bearer {ADMIN}")])
            .args(["--max-examples", "10", "--generation-deterministic", "--workers", "1"])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .expect("python3 runs");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if said.contains("No module named schemathesis") {
            return skip("the Python package schemathesis");
        }
        assert!(out.status.success(), "schemathesis against {base}:\n{said}");
        assert!(said.contains("Tested"), "{said}");
    }
    app.stop().await;
}
