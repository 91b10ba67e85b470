//! Binhost releases over the API and the CLI (without Portage; tests/it/portage_releases.rs
//! has a real client rolling back): snapshot, tag, rollback, list, diff, gc; the channel's
//! index is never missing or partial while it is retagged; bad names change nothing.

use crate::common::*;
use build_swarm::wire::orchestrator::*;

/// Publishes `atoms` (a set of its own) and waits until they are indexed.
async fn publish(app: &TestApp, atoms: &[&str]) {
    app.submit(&(atoms.join("\n") + "\n")).await;
    for _ in atoms {
        let w = app.claim("d1").await;
        assert!(app.upload_and_complete(&w).await.accepted);
    }
    wait_indexed(app).await;
}

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>, Option<String>) {
    let mut req = awc::Client::default().get(url);
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut resp = req.send().await.expect("GET");
    let lm = resp
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = resp.body().limit(1 << 24).await.expect("body");
    (resp.status().as_u16(), body.to_vec(), lm)
}

fn cpvs(text: &str) -> Vec<String> {
    build_swarm::orchestrator::binhost::index::parse(text)
        .entries
        .iter()
        .map(|e| e["CPV"].clone())
        .collect()
}

#[actix_web::test]
async fn snapshot_tag_rollback_diff_and_gc_through_the_api() {
    let app = spawn_app(|c| c.releases.grace_s = 3600).await;
    app.register("d1", 2).await;
    let admin = app.admin();
    publish(&app, &["app-misc/a-1", "app-misc/b-1"]).await;
    let one = admin.snapshot(Some("one")).await.expect("snapshot");
    assert_eq!((one.name.as_str(), one.packages), ("one", 2));
    publish(&app, &["app-misc/c-1"]).await;
    let two = admin.snapshot(None).await.expect("snapshot");
    assert_eq!(two.packages, 3);
    // Files are hard links: the snapshot takes no package space.
    {
        use std::os::unix::fs::MetadataExt;
        let live = std::fs::metadata(app.binhost().join("app-misc/a-1.gpkg.tar")).expect("live");
        assert!(live.nlink() >= 3, "linked from both snapshots");
    }
    let d = admin.diff("one", &two.name).await.expect("diff");
    assert_eq!(
        d.added.iter().map(|p| p.cpv.as_str()).collect::<Vec<_>>(),
        ["app-misc/c-1"]
    );
    assert!(d.removed.is_empty() && d.changed.is_empty());

    let tagged = admin.tag("stable", &two.name).await.expect("tag");
    assert_eq!(tagged.path, "/binhost/stable/");
    let base = format!("{}/binhost/stable", app.url);
    let (status, body, lm) = get(&format!("{base}/Packages"), &[]).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).expect("utf-8");
    assert_eq!(
        cpvs(&text),
        ["app-misc/a-1", "app-misc/b-1", "app-misc/c-1"]
    );
    let t1 = build_swarm::orchestrator::binhost::index::parse(&text)
        .timestamp()
        .expect("ts");
    assert_eq!(t1, tagged.timestamp);
    // A package of the channel, and Portage's conditional GET of its cached index.
    let (status, bytes, _) = get(&format!("{base}/app-misc/c-1.gpkg.tar"), &[]).await;
    assert_eq!((status, bytes.len() > 512), (200, true));
    let lm = lm.expect("Last-Modified");
    let (status, _, _) = get(&format!("{base}/Packages"), &[("If-Modified-Since", &lm)]).await;
    assert_eq!(status, 304);

    // Roll back: the older set, under a newer TIMESTAMP.
    let back = admin.rollback("stable").await.expect("rollback");
    assert_eq!(back.snapshot, "one");
    assert!(back.timestamp > t1 + 5, "{} {t1}", back.timestamp);
    let (status, body, _) = get(&format!("{base}/Packages"), &[("If-Modified-Since", &lm)]).await;
    assert_eq!(
        status, 200,
        "a client with the newer index gets the rolled-back one"
    );
    let text = String::from_utf8(body).expect("utf-8");
    assert_eq!(cpvs(&text), ["app-misc/a-1", "app-misc/b-1"]);
    // A client still holding the newer index can fetch what it lists.
    let (status, _, _) = get(&format!("{base}/app-misc/c-1.gpkg.tar"), &[]).await;
    assert_eq!(status, 200);

    let list = app.anon().releases().await.expect("list");
    assert_eq!(list.channels.len(), 1);
    assert_eq!(list.channels[0].snapshot, "one");
    assert_eq!(list.snapshots.len(), 2);
    assert_eq!(list.snapshots[0].channels, ["stable"]);
    // gc: nothing goes (both are among the newest 10); a dry run says so too.
    let r = admin.gc(true).await.expect("gc");
    assert!(
        r.dry_run && r.removed.iter().all(|i| i.kind != "snapshot"),
        "{r:?}"
    );

    // The CLI, with --json.
    let out = admin_cli(&app, &["--json", "binhost", "list"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: ReleaseList = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(parsed, admin.releases().await.expect("list"));
    let out = admin_cli(&app, &["binhost", "diff", "one", "live"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("+ app-misc/c-1") && stdout.contains("1 added, 0 removed"),
        "{stdout}"
    );
    app.stop().await;
}

#[actix_web::test]
async fn the_channel_index_is_never_missing_or_partial_while_it_is_retagged() {
    let app = spawn_app(|_| {}).await;
    app.register("d1", 4).await;
    let admin = app.admin();
    let atoms: Vec<String> = (0..40).map(|i| format!("app-misc/p{i}-1")).collect();
    let refs: Vec<&str> = atoms.iter().map(String::as_str).collect();
    publish(&app, &refs[..20]).await;
    admin.snapshot(Some("small")).await.expect("snapshot");
    publish(&app, &refs[20..]).await;
    admin.snapshot(Some("large")).await.expect("snapshot");
    admin.tag("stable", "small").await.expect("tag");
    let url = format!("{}/binhost/stable/Packages", app.url);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (url, done) = (url.clone(), done.clone());
        actix_web::rt::spawn(async move {
            let mut reads = 0u32;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, body, _) = get(&url, &[]).await;
                assert_eq!(status, 200, "read {reads}: the channel's index was missing");
                let text = String::from_utf8(body).expect("utf-8");
                let parsed = build_swarm::orchestrator::binhost::index::parse(&text);
                let count: usize = parsed.header["PACKAGES"].parse().expect("PACKAGES");
                assert_eq!(parsed.entries.len(), count, "read {reads}: a partial index");
                assert!(count == 20 || count == 40, "read {reads}: {count}");
                reads += 1;
            }
            reads
        })
    };
    let mut last = 0;
    for i in 0..100 {
        let c = admin
            .tag("stable", if i % 2 == 0 { "large" } else { "small" })
            .await
            .expect("tag");
        assert!(c.timestamp > last, "TIMESTAMP went back");
        last = c.timestamp;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.await.expect("the reader saw every index whole");
    assert!(reads > 10, "only {reads} reads");
    app.stop().await;
}

#[actix_web::test]
async fn bad_names_and_unknown_snapshots_are_refused_and_change_nothing() {
    let app = spawn_app(|_| {}).await;
    app.register("d1", 1).await;
    let admin = app.admin();
    publish(&app, &["app-misc/a-1"]).await;
    admin.snapshot(Some("one")).await.expect("snapshot");
    admin.tag("stable", "one").await.expect("tag");
    let before = admin.releases().await.expect("list");
    let status_of = |e: build_swarm::client::ClientError| e.to_string();
    for (what, err) in [
        (
            "snapshot a/b",
            admin
                .snapshot(Some("a/b"))
                .await
                .map(|_| ())
                .map_err(status_of),
        ),
        (
            "snapshot ..",
            admin
                .snapshot(Some(".."))
                .await
                .map(|_| ())
                .map_err(status_of),
        ),
        (
            "snapshot one again",
            admin
                .snapshot(Some("one"))
                .await
                .map(|_| ())
                .map_err(status_of),
        ),
        (
            "tag unknown",
            admin
                .tag("stable", "nope")
                .await
                .map(|_| ())
                .map_err(status_of),
        ),
        (
            "tag ../one",
            admin
                .tag("stable", "../one")
                .await
                .map(|_| ())
                .map_err(status_of),
        ),
        (
            "channel ..",
            admin.tag("..", "one").await.map(|_| ()).map_err(status_of),
        ),
        (
            "channel app-misc",
            admin
                .tag("app-misc", "one")
                .await
                .map(|_| ())
                .map_err(status_of),
        ),
        (
            "rollback once-tagged",
            admin
                .rollback("stable")
                .await
                .map(|_| ())
                .map_err(status_of),
        ),
        (
            "rollback unknown",
            admin.rollback("nope").await.map(|_| ()).map_err(status_of),
        ),
    ] {
        let e = err.expect_err(what);
        let expect = match what {
            "snapshot a/b" => "snapshot name `a/b` is not allowed",
            "snapshot .." => "snapshot name `..` is not allowed",
            "snapshot one again" => "a snapshot `one` exists already",
            "tag unknown" => "there is no snapshot `nope`",
            "tag ../one" => "snapshot name `../one` is not allowed",
            "channel .." => "channel name `..` is not allowed",
            "channel app-misc" => "channel name `app-misc` is not allowed",
            "rollback once-tagged" => "channel `stable` cannot roll back",
            _ => "there is no channel `nope`",
        };
        assert!(e.contains(expect), "{what}: {e}");
    }
    assert_eq!(admin.releases().await.expect("list"), before);
    // Without the admin token nothing changes either.
    assert!(app.anon().snapshot(Some("x")).await.is_err());
    assert_eq!(admin.releases().await.expect("list"), before);
    app.stop().await;
}
