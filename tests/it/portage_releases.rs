//! A channel rolled back with real Portage and real HTTP: a client that fetched the newer
//! index (with `swarm-release/roll-2.0`) gets the rolled-back one on its next `emerge
//! --getbinpkg` — Portage asks with If-Modified-Since, the rolled-back index is newer —
//! and installs the older package. Skips outside CI without Portage or root; fails in CI.

use crate::common::*;
use crate::portage::{portage, portage_env_args, portage_venv};
use build_swarm::wire::orchestrator::CompleteRequest;
use std::path::Path;
use std::time::Duration;

/// Publishes the package `rel` (under `pkgdir`) as the set's one atom `atom`.
async fn publish_one(app: &TestApp, pkgdir: &Path, atom: &str, rel: &str) {
    app.submit(&format!("{atom}\n")).await;
    let d = app.drone();
    let w = eventually("work", Duration::from_secs(30), || async {
        d.claim("d1").await.ok().flatten()
    })
    .await;
    assert_eq!(w.atom, atom);
    let staged = app.staging().join(&w.upload_dir).join(rel);
    std::fs::create_dir_all(staged.parent().expect("parent")).expect("mkdir");
    std::fs::copy(pkgdir.join(rel), &staged).expect("copy the built package");
    let (sha256, size) = build_swarm::sys::digest::sha256_file(&staged).expect("hash");
    d.uploading(w.lease, w.epoch).await.expect("uploading");
    let done = d
        .complete(
            w.lease,
            &CompleteRequest {
                epoch: w.epoch,
                path: rel.to_string(),
                size,
                sha256,
            },
        )
        .await
        .expect("complete");
    assert!(done.accepted);
    wait_indexed(app).await;
}

/// The `TIMESTAMP` of the index the client cached for the binhost, and its CPVs.
fn cached_index(client: &Path) -> (u64, Vec<String>) {
    let mut found = None;
    let mut todo = vec![client.join("root")];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.file_name().is_some_and(|n| n == "Packages")
                && p.to_string_lossy().contains("binhost")
            {
                found = Some(p);
            }
        }
    }
    let path = found.expect("the client's cached index");
    let parsed = build_swarm::orchestrator::binhost::index::parse(
        &std::fs::read_to_string(&path).expect("read"),
    );
    let cpvs = parsed.entries.iter().map(|e| e["CPV"].clone()).collect();
    (parsed.timestamp().expect("TIMESTAMP"), cpvs)
}

fn installed(client: &Path) -> String {
    std::fs::read_to_string(client.join("root/usr/share/roll/roll.txt"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[actix_web::test]
async fn a_client_that_fetched_the_newer_index_installs_the_older_package_after_a_rollback() {
    if portage_venv().is_none() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let builder = portage_env_args(&work.path().join("builder"), &[]);
    for v in ["1.0", "2.0"] {
        portage(
            &builder,
            "emerge",
            &[
                "--oneshot",
                "--buildpkg",
                "--nodeps",
                &format!("=swarm-release/roll-{v}"),
            ],
            &[],
        )
        .await;
    }
    let pkgdir = builder.join("pkgdir");
    let app = spawn_app(|_| {}).await;
    app.register("d1", 1).await;
    let admin = app.admin();
    publish_one(
        &app,
        &pkgdir,
        "swarm-release/roll-1.0",
        "swarm-release/roll/roll-1.0-1.gpkg.tar",
    )
    .await;
    admin.snapshot(Some("one")).await.expect("snapshot one");
    publish_one(
        &app,
        &pkgdir,
        "swarm-release/roll-2.0",
        "swarm-release/roll/roll-2.0-1.gpkg.tar",
    )
    .await;
    admin.snapshot(Some("two")).await.expect("snapshot two");
    let tagged = admin.tag("stable", "two").await.expect("tag");

    let url = format!("{}/binhost/stable/", app.url);
    let client = portage_env_args(&work.path().join("client"), &["--binhost", &url]);
    let out = portage(
        &client,
        "emerge",
        &["--getbinpkgonly", "--oneshot", "swarm-release/roll"],
        &[],
    )
    .await;
    assert_eq!(installed(&client), "swarm-release/roll-2.0", "{out}");
    let (cached, cpvs) = cached_index(&client);
    assert_eq!(cached, tagged.timestamp);
    assert!(cpvs.contains(&"swarm-release/roll-2.0".to_string()));

    let back = admin.rollback("stable").await.expect("rollback");
    assert_eq!(back.snapshot, "one");
    let out = portage(
        &client,
        "emerge",
        &["--getbinpkgonly", "--oneshot", "swarm-release/roll"],
        &[],
    )
    .await;
    let (cached, cpvs) = cached_index(&client);
    assert_eq!(
        cached, back.timestamp,
        "the client did not fetch the rolled-back index:\n{out}"
    );
    assert_eq!(cpvs, ["swarm-release/roll-1.0"]);
    assert_eq!(installed(&client), "swarm-release/roll-1.0", "{out}");
    app.stop().await;
}
