//! Signed packages with real Portage and real GnuPG: a client with `verify-signature =
//! true` and the swarm's public key installs the whole set; the same client refuses a
//! package whose signature was replaced (Portage's own error) and `binhost verify`
//! reports it; packages Portage signs itself (`FEATURES=binpkg-signing`) have the layout
//! the orchestrator writes. Skips outside CI without Portage or root; fails in CI.

use crate::common::*;
use crate::portage::{
    install_set, portage, portage_env_args, portage_run, portage_venv, publish_through, set_json,
};
use build_swarm::orchestrator::binhost::signing::Signer;
use std::io::Read;
use std::path::Path;

fn key(name: &str) -> Signer {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/signing")
        .join(name);
    Signer::load(&path, "BUILD_SWARM_TEST_UNSET_PASSPHRASE").expect("fixture key")
}

/// The member names of a gpkg (without its directory) and its Manifest's text.
fn layout(pkg: &[u8]) -> (Vec<String>, String) {
    let mut a = tar::Archive::new(pkg);
    let mut names = Vec::new();
    let mut manifest = String::new();
    for e in a.entries().expect("tar") {
        let mut e = e.expect("member");
        let name = e.path().expect("path").to_string_lossy().into_owned();
        let base = name.rsplit('/').next().unwrap_or_default().to_string();
        if base == "Manifest" {
            e.read_to_string(&mut manifest).expect("Manifest");
        }
        names.push(base);
    }
    (names, manifest)
}

/// The shape of a Manifest line: `DATA <name> <size>` and its digest names.
fn shape(manifest: &str) -> Vec<String> {
    let start = manifest.find("\n\n").map_or(0, |i| i + 2);
    let body = &manifest[start
        ..manifest
            .find("-----BEGIN PGP SIGNATURE-----")
            .unwrap_or(manifest.len())];
    let mut lines: Vec<String> = body
        .lines()
        .filter(|l| l.starts_with("DATA "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let mut digests: Vec<&str> = f[3..].iter().step_by(2).copied().collect();
            digests.sort();
            format!("DATA {} {}", f[1], digests.join(" "))
        })
        .collect();
    lines.sort();
    lines
}

#[actix_web::test]
async fn a_verifying_client_installs_the_signed_set_and_refuses_a_replaced_signature() {
    if portage_venv().is_none() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let builder = portage_env_args(&work.path().join("builder"), &[]);
    portage(
        &builder,
        "emerge",
        &["--oneshot", "--buildpkg", "--usepkg", "=swarm-apps/app-1.0"],
        &[],
    )
    .await;
    let app = spawn_app(|c| c.signing.key = Some(test_signing_key())).await;
    app.register("d1", 1).await;
    app.submit(&set_json()).await;
    publish_through(&app, &builder.join("pkgdir")).await;
    let report = app.admin().verify_binhost(false).await.expect("verify");
    assert!(report.ok, "{report:?}");

    // The client's keyring holds the key served at /binhost/key.asc.
    let mut resp = awc::Client::default()
        .get(format!("{}/binhost/key.asc", app.url))
        .send()
        .await
        .expect("key.asc");
    let public = work.path().join("key.asc");
    std::fs::write(&public, resp.body().await.expect("body")).expect("write key");
    let url = format!("{}/binhost/", app.url);
    let client_args = [
        "--binhost",
        url.as_str(),
        "--verify-key",
        public.to_str().expect("utf-8"),
    ];
    let client = portage_env_args(&work.path().join("client"), &client_args);
    let conf =
        std::fs::read_to_string(client.join("config/etc/portage/binrepos.conf")).expect("conf");
    assert!(conf.contains("verify-signature = true"), "{conf}");
    install_set(&client).await;

    // Someone with the server replaces a package's signatures with their own key's and
    // fixes the index to match (the index is not signed): Portage refuses it.
    let text = std::fs::read_to_string(app.binhost().join("Packages")).expect("index");
    let victim = build_swarm::orchestrator::binhost::index::parse(&text)
        .entries
        .into_iter()
        .find(|e| e["CPV"] == "swarm-base/core-1.0")
        .expect("core indexed");
    let path = app.binhost().join(&victim["PATH"]);
    let mut forged = Vec::new();
    key("other-key.asc")
        .sign_gpkg(&std::fs::read(&path).expect("read")[..], &mut forged)
        .expect("sign with the other key");
    std::fs::remove_file(&path).expect("rm");
    std::fs::write(&path, &forged).expect("write");
    let mut f = std::fs::File::open(&path).expect("open");
    let sums =
        build_swarm::sys::digest::sums_sized(&mut f, forged.len() as u64, true).expect("sums");
    let mut forged_index = String::new();
    for block in text.split("\n\n") {
        let mine = block
            .lines()
            .any(|l| l == format!("PATH: {}", victim["PATH"]));
        for line in block.lines() {
            let line = match line.split_once(": ") {
                Some(("SIZE", _)) if mine => format!("SIZE: {}", forged.len()),
                Some(("MD5", _)) if mine => format!("MD5: {}", sums.md5.clone().expect("md5")),
                Some(("SHA1", _)) if mine => format!("SHA1: {}", sums.sha1.clone().expect("sha1")),
                _ => line.to_string(),
            };
            forged_index.push_str(&line);
            forged_index.push('\n');
        }
        if !block.is_empty() {
            forged_index.push('\n');
        }
    }
    std::fs::write(app.binhost().join("Packages"), &forged_index).expect("index");
    let _ = std::fs::remove_file(app.binhost().join("Packages.gz"));
    let fresh = portage_env_args(&work.path().join("client2"), &client_args);
    let (ok, out) = portage_run(
        &fresh,
        "emerge",
        &["--getbinpkgonly", "--oneshot", "=swarm-base/core-1.0"],
        &[],
    )
    .await;
    assert!(!ok, "a package signed by another key was installed:\n{out}");
    assert!(
        out.contains("GnuPG verification failed") || out.contains("signature"),
        "not Portage's signature error:\n{out}"
    );
    assert!(!fresh.join("root/usr/share/core/core.txt").exists());
    let report = app.admin().verify_binhost(false).await.expect("verify");
    let found: Vec<(&str, &str)> = report
        .problems
        .iter()
        .map(|p| (p.path.as_str(), p.kind.as_str()))
        .collect();
    assert!(
        found.contains(&(victim["PATH"].as_str(), "signature")),
        "{report:?}"
    );
    app.stop().await;
}

#[actix_web::test]
async fn portage_signs_packages_in_the_layout_the_orchestrator_writes() {
    if portage_venv().is_none() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let key_file = test_signing_key();
    let signer_env = portage_env_args(
        &work.path().join("signer"),
        &["--signing-key", key_file.to_str().expect("utf-8")],
    );
    portage(
        &signer_env,
        "emerge",
        &[
            "--oneshot",
            "--buildpkg",
            "--nodeps",
            "=swarm-base/core-1.0",
        ],
        &[],
    )
    .await;
    let rel = "swarm-base/core/core-1.0-1.gpkg.tar";
    let portage_signed =
        std::fs::read(signer_env.join("pkgdir").join(rel)).expect("Portage's package");
    let (names, manifest) = layout(&portage_signed);
    assert!(
        manifest.contains("-----BEGIN PGP SIGNED MESSAGE-----"),
        "{manifest}"
    );
    // rPGP verifies what GnuPG signed...
    let ours = key("test-key.asc");
    ours.check_gpkg(&portage_signed[..])
        .expect("Portage's signature checks out");
    // ...and re-signing it gives the same members and the same Manifest lines.
    let mut resigned = Vec::new();
    ours.sign_gpkg(&portage_signed[..], &mut resigned)
        .expect("sign");
    let (our_names, our_manifest) = layout(&resigned);
    assert_eq!(our_names, names);
    assert_eq!(
        shape(&our_manifest),
        shape(&manifest),
        "ours:\n{our_manifest}\nPortage's:\n{manifest}"
    );
}
