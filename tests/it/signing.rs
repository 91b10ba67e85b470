//! Signed publishing (without Portage; tests/it/portage.rs has a real client verifying
//! the signatures): every published gpkg signed, the index describing the signed file,
//! the public key served, `binhost verify` finding a changed signature, refusals.

use crate::common::*;
use build_swarm::orchestrator::binhost::signing::Signer;
use build_swarm::orchestrator::Orchestrator;

fn signer() -> Signer {
    Signer::load(&test_signing_key(), "BUILD_SWARM_TEST_UNSET_PASSPHRASE").expect("test key")
}

async fn get(url: &str) -> (u16, Vec<u8>) {
    let mut resp = awc::Client::default().get(url).send().await.expect("GET");
    let body = resp.body().limit(1 << 24).await.expect("body");
    (resp.status().as_u16(), body.to_vec())
}

#[actix_web::test]
async fn published_packages_are_signed_and_the_index_describes_the_signed_file() {
    let app = spawn_app(|c| c.signing.key = Some(test_signing_key())).await;
    app.build_and_index("app-misc/a-1\napp-misc/b-1\n").await;
    let key = signer();
    let text = std::fs::read_to_string(app.binhost().join("Packages")).expect("index");
    let parsed = build_swarm::orchestrator::binhost::index::parse(&text);
    assert_eq!(parsed.entries.len(), 2);
    for e in &parsed.entries {
        let path = app.binhost().join(&e["PATH"]);
        let bytes = std::fs::read(&path).expect("published");
        key.check_gpkg(&bytes[..]).expect("a good signature");
        assert_eq!(
            e["SIZE"],
            bytes.len().to_string(),
            "SIZE is the signed file's"
        );
        let mut f = std::fs::File::open(&path).expect("open");
        let sums =
            build_swarm::sys::digest::sums_sized(&mut f, bytes.len() as u64, true).expect("sums");
        assert_eq!(Some(e["SHA1"].clone()), sums.sha1);
        assert_eq!(Some(e["MD5"].clone()), sums.md5);
        // Served as it is on disk.
        let (status, served) = get(&format!("{}/binhost/{}", app.url, e["PATH"])).await;
        assert_eq!((status, served), (200, bytes));
    }
    let (status, body) = get(&format!("{}/binhost/key.asc", app.url)).await;
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8(body).expect("text"),
        key.public_key_armored()
    );
    let report = app.admin().verify_binhost(false).await.expect("verify");
    assert!(report.ok, "{report:?}");

    // A signature changed on disk: verify names it; the fix stops listing the package.
    let victim = parsed.entries[0]["PATH"].clone();
    let path = app.binhost().join(&victim);
    let mut bytes = std::fs::read(&path).expect("read");
    let at = find(&bytes, b"-----BEGIN PGP SIGNATURE-----").expect("a signature") + 40;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::remove_file(&path).expect("rm");
    std::fs::write(&path, &bytes).expect("write");
    let report = app.admin().verify_binhost(true).await.expect("verify");
    let kinds: Vec<(&str, &str)> = report
        .problems
        .iter()
        .map(|p| (p.path.as_str(), p.kind.as_str()))
        .collect();
    assert!(
        kinds.contains(&(victim.as_str(), "signature")),
        "{report:?}"
    );
    eventually(
        "the changed package unlisted",
        std::time::Duration::from_secs(10),
        || async { (!index_paths(&app.binhost()).contains(&victim)).then_some(()) },
    )
    .await;
    app.stop().await;
}

/// A published file changed while the orchestrator was down is read again at start-up:
/// with its signature broken it is not listed (its dependents wait, `binhost verify`
/// names it, `retry` builds it again), one merely touched is listed again.
#[actix_web::test]
async fn a_file_changed_while_the_orchestrator_was_down_is_listed_again_only_if_signed() {
    let app = spawn_app(|c| c.signing.key = Some(test_signing_key())).await;
    app.build_and_index("app-misc/a-1\napp-misc/b-1\n").await;
    let (a, b) = ("app-misc/a-1.gpkg.tar", "app-misc/b-1.gpkg.tar");
    assert_eq!(index_paths(&app.binhost()), vec![a, b]);
    let TestApp {
        handle, dir, cfg, ..
    } = app;
    handle.stop(true).await;

    // a: one byte of its signature changed; b: the same bytes under a new mtime.
    let binhost = cfg.binhost_dir.clone();
    let mut bytes = std::fs::read(binhost.join(a)).expect("read");
    let at = find(&bytes, b"-----BEGIN PGP SIGNATURE-----").expect("a signature") + 40;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::remove_file(binhost.join(a)).expect("rm");
    std::fs::write(binhost.join(a), &bytes).expect("write");
    // The index's MTIME has whole seconds: move both well away from the published ones.
    let earlier = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for f in [a, b] {
        std::fs::File::options()
            .write(true)
            .open(binhost.join(f))
            .and_then(|f| f.set_modified(earlier))
            .expect("touch");
    }

    let app = spawn_app_in(dir, cfg).await;
    eventually(
        "the index written again without a",
        std::time::Duration::from_secs(10),
        || async { (index_paths(&app.binhost()) == vec![b]).then_some(()) },
    )
    .await;
    let logs = app.logs.text();
    assert!(
        logs.contains("a built package cannot be indexed") && logs.contains("bad signature"),
        "{logs}"
    );
    // b is served as published (the queue hears of it after the index is written); a
    // waits, and `binhost verify` says why.
    let unindexed = |n: u64| {
        let anon = app.anon();
        async move {
            let st = anon.status().await.ok()?;
            (st.counts.unindexed as u64 == n).then_some(())
        }
    };
    eventually(
        "only a unindexed",
        std::time::Duration::from_secs(10),
        || unindexed(1),
    )
    .await;
    let report = app.admin().verify_binhost(false).await.expect("verify");
    let kinds: Vec<(&str, &str)> = report
        .problems
        .iter()
        .map(|p| (p.path.as_str(), p.kind.as_str()))
        .collect();
    assert_eq!(kinds, vec![(a, "signature")], "{report:?}");
    // `--fix` cannot list it while its signature is bad; `retry` builds it again, and the
    // new file is signed and listed.
    app.admin().verify_binhost(true).await.expect("fix");
    assert_eq!(index_paths(&app.binhost()), vec![b]);
    let r = app
        .admin()
        .retry(&build_swarm::wire::orchestrator::RetryRequest {
            atoms: vec!["app-misc/a-1".into()],
            state: None,
        })
        .await
        .expect("retry");
    assert_eq!(r.retried, 1);
    app.register("d1", 2).await;
    let w = app.claim("d1").await;
    assert_eq!(w.atom, "app-misc/a-1");
    assert!(app.upload_and_complete(&w).await.accepted);
    eventually(
        "a listed again",
        std::time::Duration::from_secs(10),
        || async { (index_paths(&app.binhost()) == vec![a, b]).then_some(()) },
    )
    .await;
    eventually(
        "nothing unindexed",
        std::time::Duration::from_secs(10),
        || unindexed(0),
    )
    .await;
    let report = app.admin().verify_binhost(false).await.expect("verify");
    assert!(report.ok, "{report:?}");
    assert_ne!(std::fs::read(binhost.join(a)).expect("read"), bytes);
    app.stop().await;
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[actix_web::test]
async fn an_unsigned_binhost_has_no_key_and_a_signing_one_refuses_what_it_cannot_sign() {
    let plain = spawn_app(|_| {}).await;
    let (status, body) = get(&format!("{}/binhost/key.asc", plain.url)).await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("[signing] key is not set"));
    plain.stop().await;

    let app = spawn_app(|c| {
        c.signing.key = Some(test_signing_key());
        c.policy.max_infra_retries = 0;
    })
    .await;
    app.register("d1", 1).await;
    app.submit("app-misc/x-1\n").await;
    let w = app.claim("d1").await;
    // An xpak package cannot carry a signature.
    let rel = format!("{}/{}-{}.tbz2", w.category, w.name, w.version);
    let path = app.staging().join(&w.upload_dir).join(&rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, b"xpak bytes").expect("write");
    let (sha256, size) = build_swarm::sys::digest::sha256_file(&path).expect("hash");
    let d = app.drone();
    d.uploading(w.lease, w.epoch).await.expect("uploading");
    let _ = d
        .complete(
            w.lease,
            &build_swarm::wire::orchestrator::CompleteRequest {
                epoch: w.epoch,
                path: rel.clone(),
                size,
                sha256,
            },
        )
        .await;
    let pkgs = app.anon().packages(None).await.expect("packages");
    let p = pkgs
        .packages
        .iter()
        .find(|p| p.atom == "app-misc/x-1")
        .expect("listed");
    let reason = p.reason.clone().unwrap_or_default();
    assert!(reason.contains("cannot carry a signature"), "{p:?}");
    assert!(!app.binhost().join(&rel).exists());
    app.stop().await;
}

#[actix_web::test]
async fn a_missing_or_unreadable_key_stops_the_start_with_one_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.signing.key = Some(dir.path().join("no-such-key.asc"));
    let logs = build_swarm::sys::logging::Capture::default();
    let e = match Orchestrator::start(cfg.clone(), logs.logger(slog::Level::Debug), false).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("started without its key"),
    };
    assert!(
        e.starts_with(&format!(
            "signing.key {}/no-such-key.asc: cannot read it",
            dir.path().display()
        )),
        "{e}"
    );
    // Nothing was made.
    assert!(!cfg.state_dir.exists() && !cfg.binhost_dir.exists());
    // required without a key is a configuration error.
    cfg.signing.key = None;
    cfg.signing.required = Some(true);
    let e = cfg.validate().expect_err("refused").to_string();
    assert_eq!(
        e,
        "config key `signing.key` is required but not set (signing.required = true needs the key to sign with)"
    );
}
