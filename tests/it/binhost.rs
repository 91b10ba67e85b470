//! The binhost the orchestrator keeps (without Portage; tests/it/portage.rs has the real
//! thing): its Packages index, refused packages, dependents held until the index lists
//! their dependencies, serving with exact If-Modified-Since, `binhost verify`, restarts.

use crate::common::*;
use build_swarm::wire::orchestrator::*;
use std::time::Duration;

/// Uploads `bytes` as `work`'s artifact (at the flat path) and completes it.
async fn complete_with(
    app: &TestApp,
    work: &WorkAssignment,
    bytes: &[u8],
) -> Result<CompleteResponse, build_swarm::client::ClientError> {
    let rel = format!("{}/{}-{}.gpkg.tar", work.category, work.name, work.version);
    let path = app.staging().join(&work.upload_dir).join(&rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, bytes).expect("write");
    let (sha256, size) = build_swarm::sys::digest::sha256_file(&path).expect("hash");
    let d = app.drone();
    d.uploading(work.lease, work.epoch).await?;
    d.complete(
        work.lease,
        &CompleteRequest {
            epoch: work.epoch,
            path: rel,
            size,
            sha256,
        },
    )
    .await
}

#[actix_web::test]
async fn a_package_that_is_not_the_leased_one_is_not_published() {
    let app = spawn_app(|c| {
        c.policy.infra_backoff_s = 0;
        c.policy.max_infra_retries = 10;
    })
    .await;
    app.register("d1", 1).await;
    app.submit("app-misc/foo-1.0\n").await;
    let gpkg_of = |cat: &str, pf: &str| {
        build_swarm::domain::binpkg::stand_in_gpkg(cat, pf, None, b"x").expect("gpkg")
    };
    let no_metadata = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        h.set_cksum();
        b.append_data(&mut h, "foo-1.0/gpkg-1", &b""[..])
            .expect("tar");
        b.into_inner().expect("tar")
    };
    let good = gpkg_of("app-misc", "foo-1.0");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("without metadata", no_metadata, "has no metadata member"),
        (
            "another package's metadata",
            gpkg_of("app-misc", "bar-2.0"),
            "the metadata is for app-misc/bar-2.0, not app-misc/foo-1.0",
        ),
        (
            "a truncated tar",
            good[..700].to_vec(),
            "not a binary package",
        ),
        ("random bytes", vec![7u8; 3000], "not a binary package"),
    ];
    for (what, bytes, reason) in cases {
        let w = app.claim("d1").await;
        let err = complete_with(&app, &w, &bytes).await.expect_err(what);
        assert_eq!(err.status(), Some(400), "{what}: {err}");
        assert!(err.to_string().contains(reason), "{what}: {err}");
        assert!(
            !app.binhost().join("app-misc/foo-1.0.gpkg.tar").exists(),
            "{what}: published"
        );
        let p = app.anon().packages(None).await.expect("packages");
        assert_eq!(
            p.packages[0].state,
            build_swarm::domain::PackageState::Queued,
            "{what}"
        );
        assert!(
            p.packages[0]
                .reason
                .as_deref()
                .unwrap_or("")
                .contains(reason),
            "{what}: {:?}",
            p.packages[0].reason
        );
    }
    // The real one goes in, and into the index.
    let w = app.claim("d1").await;
    assert!(complete_with(&app, &w, &good).await.expect("good").accepted);
    wait_indexed(&app).await;
    assert_eq!(
        index_paths(&app.binhost()),
        vec!["app-misc/foo-1.0.gpkg.tar"]
    );
    app.stop().await;
}

/// A dependent is handed out only once an index on disk lists its dependency.
#[actix_web::test]
async fn dependents_are_claimable_only_once_the_index_lists_their_dependencies() {
    // A long write interval makes the wait visible (and leaves a slow machine time to
    // complete `base` and read the status inside it).
    let app = spawn_app(|c| c.binhost.write_interval_ms = 5000).await;
    app.register("d1", 2).await;
    let set = r#"{"packages":[{"atom":"a/base-1"},{"atom":"a/other-1"},
        {"atom":"a/top-1","deps":["a/base-1"]}]}"#;
    app.submit(set).await;
    let d = app.drone();
    // Something written first, so the next write has to wait for the interval.
    let w0 = d.claim("d1").await.expect("claim").expect("work");
    let w1 = d.claim("d1").await.expect("claim").expect("work");
    let (base, other) = if w0.atom == "a/base-1" {
        (w0, w1)
    } else {
        (w1, w0)
    };
    assert!(app.upload_and_complete(&other).await.accepted);
    eventually("other indexed", Duration::from_secs(10), || async {
        let s = app.anon().status().await.ok()?;
        (s.counts.unindexed == 0).then_some(())
    })
    .await;
    assert!(app.upload_and_complete(&base).await.accepted);
    let s = app.anon().status().await.expect("status");
    assert_eq!((s.counts.built, s.counts.unindexed), (2, 1));
    assert!(
        d.claim("d1").await.expect("claim").is_none(),
        "top handed out before the index lists base"
    );
    let top = eventually("top claimable", Duration::from_secs(20), || async {
        d.claim("d1").await.ok().flatten()
    })
    .await;
    assert_eq!(top.atom, "a/top-1");
    assert!(index_paths(&app.binhost()).contains(&"a/base-1.gpkg.tar".to_string()));
    app.stop().await;
}

#[actix_web::test]
async fn the_binhost_is_served_with_exact_if_modified_since_and_ranges() {
    let app = spawn_app(|_| {}).await;
    app.register("d1", 1).await;
    app.submit("app-misc/foo-1.0\n").await;
    let w = app.claim("d1").await;
    assert!(app.upload_and_complete(&w).await.accepted);
    wait_indexed(&app).await;
    let client = awc::Client::default();
    let url = |p: &str| format!("{}/binhost/{p}", app.url);
    let mut r = client.get(url("Packages")).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 200);
    let last_modified = r
        .headers()
        .get("last-modified")
        .expect("Last-Modified")
        .to_str()
        .expect("ascii")
        .to_string();
    let body = r.body().await.expect("body");
    let text = String::from_utf8_lossy(&body);
    let ts: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("TIMESTAMP: "))
        .and_then(|t| t.parse().ok())
        .expect("TIMESTAMP");
    // Last-Modified is the index's TIMESTAMP.
    let lm: std::time::SystemTime = last_modified
        .parse::<actix_web::http::header::HttpDate>()
        .expect("date")
        .into();
    assert_eq!(
        lm.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
        ts
    );
    // Exactly the same date: 304. Any other, later or earlier: the file.
    let r = client
        .get(url("Packages"))
        .insert_header(("If-Modified-Since", last_modified.as_str()))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 304);
    for delta in [5i64, 6, -1] {
        let when = std::time::UNIX_EPOCH + Duration::from_secs((ts as i64 + delta) as u64);
        let date = actix_web::http::header::HttpDate::from(when).to_string();
        let r = client
            .get(url("Packages"))
            .insert_header(("If-Modified-Since", date.as_str()))
            .send()
            .await
            .expect("get");
        assert_eq!(
            r.status().as_u16(),
            200,
            "If-Modified-Since TIMESTAMP{delta:+}"
        );
    }
    // Ranges of a package.
    let mut r = client
        .get(url("app-misc/foo-1.0.gpkg.tar"))
        .insert_header(("Range", "bytes=0-99"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.body().await.expect("body").len(), 100);
    // Packages.gz is the same index.
    let mut r = client.get(url("Packages.gz")).send().await.expect("gz");
    assert_eq!(r.status().as_u16(), 200);
    let gz = r.body().limit(1 << 20).await.expect("body");
    let mut unzipped = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut unzipped)
        .expect("gunzip");
    assert_eq!(unzipped, text);
    // No listing, no escape, no hidden files.
    std::fs::write(app.binhost().join(".hidden"), b"x").expect("write");
    std::fs::write(app.dir.path().join("secret"), b"x").expect("write");
    for bad in [
        "",
        "app-misc",
        "app-misc/",
        "../secret",
        "%2e%2e/secret",
        ".hidden",
        "nope",
    ] {
        let r = client.get(url(bad)).send().await.expect("get");
        assert_eq!(r.status().as_u16(), 404, "/binhost/{bad}");
    }
    app.stop().await;
}

#[actix_web::test]
async fn binhost_verify_names_each_difference_and_fix_rewrites_the_index() {
    let app = spawn_app(|_| {}).await;
    app.build_and_index("app-misc/a-1\napp-misc/b-1\napp-misc/c-1\n")
        .await;
    let admin = app.admin();
    let r = admin.verify_binhost(false).await.expect("verify");
    assert!(r.ok && r.problems.is_empty() && r.entries == 3, "{r:?}");
    let b = app.binhost();
    std::fs::remove_file(b.join("app-misc/a-1.gpkg.tar")).expect("delete");
    let corrupt = b.join("app-misc/b-1.gpkg.tar");
    let mut bytes = std::fs::read(&corrupt).expect("read");
    // In the image, past the metadata: the file still says what it is.
    let n = bytes.len();
    bytes[n - 3000] ^= 1;
    std::fs::remove_file(&corrupt).expect("rm");
    std::fs::write(&corrupt, bytes).expect("write");
    std::fs::write(
        b.join("app-misc/z-9.gpkg.tar"),
        build_swarm::domain::binpkg::stand_in_gpkg("app-misc", "z-9", None, b"z").expect("gpkg"),
    )
    .expect("write");
    let r = admin.verify_binhost(false).await.expect("verify");
    let found: Vec<(String, String)> = r
        .problems
        .iter()
        .map(|p| (p.path.clone(), p.kind.clone()))
        .collect();
    let want = |p: &str, k: &str| (p.to_string(), k.to_string());
    assert_eq!(
        found,
        vec![
            want("app-misc/a-1.gpkg.tar", "missing"),
            want("app-misc/b-1.gpkg.tar", "md5"),
            want("app-misc/b-1.gpkg.tar", "sha1"),
            want("app-misc/z-9.gpkg.tar", "unindexed"),
        ]
    );
    assert!(!r.ok && !r.fixed);
    // The CLI says the same and exits 1.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_build-swarm"))
        .args([
            "--orchestrator",
            &app.url,
            "--token",
            ADMIN,
            "binhost",
            "verify",
        ])
        .env("HOME", app.dir.path())
        .output()
        .await
        .expect("run the CLI");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("app-misc/a-1.gpkg.tar: missing"),
        "{stdout}"
    );
    // --fix: the index lists what the files hold.
    let r = admin.verify_binhost(true).await.expect("fix");
    assert!(r.fixed && r.entries == 3, "{r:?}");
    eventually(
        "the fixed index on disk",
        Duration::from_secs(10),
        || async {
            let paths = index_paths(&app.binhost());
            (paths
                == vec![
                    "app-misc/b-1.gpkg.tar".to_string(),
                    "app-misc/c-1.gpkg.tar".to_string(),
                    "app-misc/z-9.gpkg.tar".to_string(),
                ])
            .then_some(())
        },
    )
    .await;
    let r = admin.verify_binhost(false).await.expect("verify");
    assert!(r.ok, "{r:?}");
    app.stop().await;
}

/// After a restart the index is read back, keeps increasing its TIMESTAMP, a built
/// package missing from it is added from its file, and a Packages.gz that is not the
/// index is written again.
#[actix_web::test]
async fn a_restart_reads_the_index_back_and_completes_it() {
    let app = spawn_app(|_| {}).await;
    app.build_and_index("app-misc/a-1\napp-misc/b-1\n").await;
    let read_ts = |b: &std::path::Path| -> u64 {
        let text = std::fs::read_to_string(b.join("Packages")).expect("Packages");
        build_swarm::orchestrator::binhost::index::parse(&text)
            .timestamp()
            .expect("TIMESTAMP")
    };
    let before = read_ts(&app.binhost());
    let TestApp {
        handle, dir, cfg, ..
    } = app;
    handle.stop(false).await;
    // The index lost b-1's entry (as if written before its publish was committed), and a
    // stale Packages.gz is left.
    let path = cfg.binhost_dir.join("Packages");
    let text = std::fs::read_to_string(&path).expect("Packages");
    let mut blocks: Vec<&str> = text.split("\n\n").collect();
    blocks.retain(|b| !b.contains("PATH: app-misc/b-1.gpkg.tar"));
    let cut = blocks.join("\n\n").replace("PACKAGES: 2", "PACKAGES: 1");
    std::fs::write(&path, cut).expect("write");
    std::fs::write(cfg.binhost_dir.join("Packages.gz"), b"stale").expect("stale gz");
    assert_eq!(index_paths(&cfg.binhost_dir).len(), 1);
    let app = spawn_app_in(dir, cfg).await;
    eventually("the index completed", Duration::from_secs(10), || async {
        (index_paths(&app.binhost()).len() == 2).then_some(())
    })
    .await;
    assert!(
        read_ts(&app.binhost()) > before,
        "TIMESTAMP goes on increasing"
    );
    assert_ne!(
        std::fs::read(app.binhost().join("Packages.gz")).expect("gz"),
        b"stale"
    );
    app.stop().await;
}
