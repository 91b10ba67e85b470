//! Operator priority over the API and the CLI: a high-priority set submitted while a low
//! one runs takes the next free slots, `bump` builds a package's missing dependencies
//! first, the low set still finishes, bad input is refused, and priorities survive a
//! restart.

use crate::common::*;

/// The CLI's success and its whole output.
async fn cli(app: &TestApp, args: &[&str]) -> (bool, String) {
    let out = admin_cli(app, args).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Claims one package for `drone`, completes it, waits until it is indexed (so its
/// dependents are ready), returns its atom.
async fn build_one(app: &TestApp, drone: &str) -> String {
    let w = app.claim(drone).await;
    assert!(app.upload_and_complete(&w).await.accepted);
    wait_indexed(app).await;
    w.atom
}

#[actix_web::test]
async fn a_high_priority_set_goes_next_bump_goes_first_and_the_low_set_still_finishes() {
    let app = spawn_app(|_| {}).await;
    app.register("d1", 1).await;
    let low: String = (0..12).map(|i| format!("low/l{i}-1\n")).collect();
    app.submit(&low).await;
    assert!(build_one(&app, "d1").await.starts_with("low/"));
    // A high-priority set arrives while the low one runs (from a file, by the CLI).
    let file = app.dir.path().join("high.txt");
    std::fs::write(&file, "high/h0-1\nhigh/h1-1\nhigh/h2-1\n").expect("write");
    let (ok, out) = cli(
        &app,
        &["submit", "--priority", "5", file.to_str().expect("utf-8")],
    )
    .await;
    assert!(ok, "{out}");
    // The next free slots go to it — but one hand-out in four to the oldest outranked
    // package, so the low set is never starved.
    let mut next = Vec::new();
    for _ in 0..4 {
        next.push(build_one(&app, "d1").await);
    }
    let high = next.iter().filter(|a| a.starts_with("high/")).count();
    assert_eq!(high, 3, "{next:?}");
    assert!(
        next[0].starts_with("high/") && next[1].starts_with("high/"),
        "{next:?}"
    );
    // A package whose dependency is missing: bump builds the dependency first.
    app.submit(
        r#"{"packages": [{"atom": "dep/base-1"}, {"atom": "dep/top-1", "deps": ["dep/base-1"]}]}"#,
    )
    .await;
    let (ok, out) = cli(&app, &["bump", "dep/top-1"]).await;
    assert!(ok && out.contains("2 package(s)"), "{out}");
    assert_eq!(build_one(&app, "d1").await, "dep/base-1");
    assert_eq!(build_one(&app, "d1").await, "dep/top-1");
    let listed = app.anon().packages(None).await.expect("packages");
    let prio = |atom: &str| {
        listed
            .packages
            .iter()
            .find(|p| p.atom == atom)
            .map(|p| p.priority)
    };
    assert_eq!(prio("high/h0-1"), Some(5));
    assert_eq!(prio("low/l5-1"), Some(0));
    // Bad input: one line each, nothing changed.
    let (ok, out) = cli(&app, &["bump", "nope/x-1"]).await;
    assert!(
        !ok && out.contains("`nope/x-1` is not in this orchestrator's package set"),
        "{out}"
    );
    let (ok, out) = cli(&app, &["bump", "dep/top-1"]).await;
    assert!(!ok && out.contains("is built already"), "{out}");
    let (ok, out) = cli(
        &app,
        &[
            "submit",
            "--priority",
            "5000",
            file.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert!(!ok && out.contains("5000"), "{out}");
    // The low set still finishes, and the order survives a restart.
    app.submit("late/hi-1\n").await;
    app.admin().bump("late/hi-1").await.expect("bump");
    let TestApp {
        handle, dir, cfg, ..
    } = app;
    handle.stop(false).await;
    let app = spawn_app_in(dir, cfg).await;
    app.register("d1", 1).await;
    assert_eq!(build_one(&app, "d1").await, "late/hi-1");
    for _ in 0..10 {
        build_one(&app, "d1").await;
    }
    let s = app.anon().status().await.expect("status");
    assert_eq!(s.counts.built, s.counts.total, "{s:?}");
    app.stop().await;
}

/// A JSON set may carry its own priority; `?priority=` wins over it.
#[actix_web::test]
async fn a_json_set_carries_its_priority_and_the_query_wins() {
    let app = spawn_app(|_| {}).await;
    app.submit(r#"{"priority": 7, "packages": [{"atom": "a/seven-1"}]}"#)
        .await;
    app.admin()
        .submit_with_priority(
            br#"{"priority": 7, "packages": [{"atom": "a/three-1"}]}"#.to_vec(),
            3,
        )
        .await
        .expect("submit");
    let err = app
        .admin()
        .submit(br#"{"priority": 5000, "packages": [{"atom": "a/b-1"}]}"#.to_vec())
        .await
        .expect_err("out of range");
    assert!(
        err.to_string().contains("priority 5000 is out of range"),
        "{err}"
    );
    let list = app.anon().packages(None).await.expect("packages").packages;
    let prio = |atom: &str| list.iter().find(|p| p.atom == atom).map(|p| p.priority);
    assert_eq!(prio("a/seven-1"), Some(7));
    assert_eq!(prio("a/three-1"), Some(3));
    assert_eq!(prio("a/b-1"), None);
    app.stop().await;
}
