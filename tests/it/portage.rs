//! Real Portage (from PyPI, in the venv scripts/install-deps makes) against a real
//! orchestrator: packages emerge built are indexed exactly as `emaint binhost --fix`
//! indexes them, `emaint binhost --check` finds nothing to fix, a fresh Portage client
//! installs everything from `/binhost/`, and drones building with real emerge take every
//! dependency from the swarm's binhost instead of building it again. Skips outside CI
//! without Portage or root (saying so); fails in CI.

use crate::common::*;
use build_swarm::wire::orchestrator::*;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The demo repository's packages and their dependencies inside the set (DEPEND and
/// RDEPEND of the ebuilds, with `extra` on).
pub(crate) const SET: &[(&str, &[&str])] = &[
    ("swarm-base/core-1.0", &[]),
    ("swarm-base/zlib-1.2", &[]),
    ("swarm-libs/liba-1.0", &["swarm-base/zlib-1.2"]),
    (
        "swarm-libs/libb-2.0",
        &["swarm-base/zlib-1.2", "swarm-base/core-1.0"],
    ),
    ("swarm-libs/libc-1.1", &["swarm-base/core-1.0"]),
    ("swarm-apps/tool-3.0", &["swarm-libs/libc-1.1"]),
    (
        "swarm-apps/app-1.0",
        &[
            "swarm-libs/liba-1.0",
            "swarm-libs/libb-2.0",
            "swarm-apps/tool-3.0",
        ],
    ),
];

pub(crate) fn set_json() -> String {
    let pkgs: Vec<serde_json::Value> = SET
        .iter()
        .map(|(a, deps)| serde_json::json!({"atom": a, "deps": deps}))
        .collect();
    serde_json::json!({ "packages": pkgs }).to_string()
}

/// The Portage venv, when real Portage can run here (root and the venv). Outside CI a
/// missing piece skips the test (saying so); in CI it fails it.
pub(crate) fn portage_venv() -> Option<PathBuf> {
    let venv = build_swarm::cli::demo::portage::venv_path();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ok = root && venv.join("bin/emerge").is_file();
    if !ok {
        let why = if root {
            format!("Portage in {} (scripts/install-deps)", venv.display())
        } else {
            "root".into()
        };
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the real-Portage tests need {why} in CI"
        );
        eprintln!("SKIPPED: the real-Portage tests need {why}");
    }
    ok.then_some(venv)
}

/// A throwaway Portage configuration under `dir` (scripts/portage-env).
pub(crate) fn portage_env(dir: &Path, binhost: Option<&str>) -> PathBuf {
    portage_env_with(dir, binhost, true)
}

/// The same, with binpkg-multi-instance on or off.
pub(crate) fn portage_env_with(dir: &Path, binhost: Option<&str>, multi_instance: bool) -> PathBuf {
    let mut args: Vec<&str> = Vec::new();
    if let Some(b) = binhost {
        args.extend(["--binhost", b]);
    }
    if !multi_instance {
        args.extend(["--multi-instance", "off"]);
    }
    portage_env_args(dir, &args)
}

/// The same with scripts/portage-env's options as given.
pub(crate) fn portage_env_args(dir: &Path, args: &[&str]) -> PathBuf {
    let out = std::process::Command::new(format!(
        "{}/scripts/portage-env",
        env!("CARGO_MANIFEST_DIR")
    ))
    .arg(dir)
    .args(args)
    .output()
    .expect("run scripts/portage-env");
    assert!(
        out.status.success(),
        "portage-env: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.to_path_buf()
}

/// Writes `home/drone.toml` for a drone `name` building with `env`'s real emerge
/// (`--oneshot --buildpkg`, then `emerge_args` — a TOML list's items — and `={atom}`);
/// `extra` adds top-level keys. Returns its path.
pub(crate) fn portage_drone_config(
    home: &Path,
    name: &str,
    url: &str,
    env: &Path,
    emerge_args: &str,
    extra: &str,
) -> PathBuf {
    std::fs::create_dir_all(home).expect("mkdir");
    let emerge_args = if emerge_args.is_empty() {
        String::new()
    } else {
        format!("{emerge_args}, ")
    };
    let cfg = format!(
        r#"name = "{name}"
orchestrator = "{url}"
token = "{DRONE}"
slots = 1
pkgdir = "{pkgdir}"
state_dir = "{home}/state"
build_command = ["{emerge}", "--oneshot", "--buildpkg", {emerge_args}"={{atom}}"]
build_timeout_s = 300
build_idle_timeout_s = 120
idle_poll_s = 1
{extra}

[log]
level = "debug"
file = "{home}/drone.log"
"#,
        pkgdir = env.join("pkgdir").display(),
        home = home.display(),
        emerge = env.join("bin/emerge").display(),
    );
    let path = home.join("drone.toml");
    std::fs::write(&path, cfg).expect("write drone config");
    path
}

/// Runs one of the environment's Portage tools; its output, which must be a success.
pub(crate) async fn portage(
    env: &Path,
    tool: &str,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> String {
    let (ok, text) = portage_run(env, tool, args, extra_env).await;
    assert!(ok, "{tool} {args:?} failed:\n{text}");
    text
}

/// The same, whether it succeeds or not: (success, output).
pub(crate) async fn portage_run(
    env: &Path,
    tool: &str,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> (bool, String) {
    let mut c = tokio::process::Command::new(env.join("bin").join(tool));
    c.args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .env("NOCOLOR", "true");
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(600), c.output())
        .await
        .unwrap_or_else(|_| panic!("{tool} {args:?} did not finish"))
        .expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The entries of an index, by PATH, without `MTIME` (the file's, which a copy changes).
fn entries_by_path(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    build_swarm::orchestrator::binhost::index::parse(text)
        .entries
        .into_iter()
        .map(|mut e| {
            e.remove("MTIME");
            (e["PATH"].clone(), e)
        })
        .collect()
}

/// Every file under `dir`, relative.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).expect("inside").display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The client `env` installs the whole set with `--getbinpkgonly` (which must succeed);
/// every package's file must then be there. Emerge's output.
pub(crate) async fn install_set(client: &Path) -> String {
    let out = portage(
        client,
        "emerge",
        &["--getbinpkgonly", "--oneshot", "=swarm-apps/app-1.0"],
        &[],
    )
    .await;
    for (atom, _) in SET {
        let name = atom
            .split('/')
            .nth(1)
            .and_then(|pf| pf.rsplit_once('-'))
            .map(|(n, _)| n);
        let name = name.expect("name");
        let installed = client.join(format!("root/usr/share/{name}/{name}.txt"));
        assert!(installed.is_file(), "{atom} not installed:\n{out}");
    }
    out
}

/// Publishes the set's packages built into `pkgdir` through `app`, in dependency order,
/// as drones would upload them (the multi-instance layout), checking that each is handed
/// out only once the index on disk lists its dependencies; returns once all are indexed.
pub(crate) async fn publish_through(app: &TestApp, pkgdir: &Path) {
    let d = app.drone();
    let deps_of: BTreeMap<&str, &[&str]> = SET.iter().copied().collect();
    for _ in 0..SET.len() {
        let w = eventually("work", Duration::from_secs(30), || async {
            d.claim("d1").await.ok().flatten()
        })
        .await;
        // Handed out only once the index on disk lists every dependency.
        let listed: HashSet<String> = build_swarm::orchestrator::binhost::index::parse(
            &std::fs::read_to_string(app.binhost().join("Packages")).unwrap_or_default(),
        )
        .entries
        .iter()
        .map(|e| e["CPV"].clone())
        .collect();
        for dep in deps_of[w.atom.as_str()] {
            assert!(listed.contains(*dep), "{} before {dep} was indexed", w.atom);
        }
        let rel = format!(
            "{}/{}/{}-{}-1.gpkg.tar",
            w.category, w.name, w.name, w.version
        );
        let staged = app.staging().join(&w.upload_dir).join(&rel);
        std::fs::create_dir_all(staged.parent().expect("parent")).expect("mkdir");
        std::fs::copy(pkgdir.join(&rel), &staged).expect("copy the built package");
        let (sha256, size) = build_swarm::sys::digest::sha256_file(&staged).expect("hash");
        d.uploading(w.lease, w.epoch).await.expect("uploading");
        let done = d
            .complete(
                w.lease,
                &CompleteRequest {
                    epoch: w.epoch,
                    path: rel,
                    size,
                    sha256,
                },
            )
            .await
            .expect("complete");
        assert!(done.accepted);
    }
    eventually("everything indexed", Duration::from_secs(30), || async {
        let s = app.anon().status().await.ok()?;
        (s.counts.built == SET.len() && s.counts.unindexed == 0).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn portage_builds_are_indexed_as_emaint_does_and_a_client_installs_them() {
    if portage_venv().is_none() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    // Real emerge builds the whole set once (every package a binary package).
    let builder = portage_env(&work.path().join("builder"), None);
    portage(
        &builder,
        "emerge",
        &["--oneshot", "--buildpkg", "--usepkg", "=swarm-apps/app-1.0"],
        &[],
    )
    .await;
    let pkgdir = builder.join("pkgdir");

    // The packages go through a real orchestrator, in dependency order, as drones would
    // upload them.
    let app = spawn_app(|_| {}).await;
    app.register("d1", 1).await;
    app.submit(&set_json()).await;
    publish_through(&app, &pkgdir).await;
    let ours = std::fs::read_to_string(app.binhost().join("Packages")).expect("Packages");

    // Portage's own check finds nothing to fix in the orchestrator's binhost...
    let binhost = app.binhost().display().to_string();
    let check = portage(
        &builder,
        "emaint",
        &["binhost", "--check"],
        &[("PKGDIR", &binhost)],
    )
    .await;
    let problems = |out: &str| {
        [
            "is not in Packages",
            "is not in the repository",
            "Missing index file",
            "is not equal",
        ]
        .iter()
        .any(|p| out.contains(p))
    };
    assert!(!problems(&check), "emaint binhost --check: {check}");
    // ...and for the same files emaint writes the same entries (but MTIME).
    let copy = work.path().join("emaint-copy");
    std::fs::create_dir_all(&copy).expect("mkdir");
    for rel in files_under(&app.binhost()) {
        if rel.ends_with(".gpkg.tar") {
            let to = copy.join(&rel);
            std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
            std::fs::copy(app.binhost().join(&rel), &to).expect("copy");
        }
    }
    let copy_s = copy.display().to_string();
    // (The same check does see a binhost without its index.)
    let (ok, check) = portage_run(
        &builder,
        "emaint",
        &["binhost", "--check"],
        &[("PKGDIR", &copy_s)],
    )
    .await;
    assert!(
        !ok && problems(&check),
        "emaint binhost --check saw nothing wrong: {check}"
    );
    portage(
        &builder,
        "emaint",
        &["binhost", "--fix"],
        &[("PKGDIR", &copy_s)],
    )
    .await;
    let theirs = std::fs::read_to_string(copy.join("Packages")).expect("emaint's Packages");
    assert_eq!(
        entries_by_path(&ours),
        entries_by_path(&theirs),
        "ours:\n{ours}\nemaint's:\n{theirs}"
    );

    // A fresh client installs every package from /binhost/ (checksums checked by Portage).
    let client = portage_env(
        &work.path().join("client"),
        Some(&format!("{}/binhost/", app.url)),
    );
    let out = install_set(&client).await;
    assert!(
        !out.contains("Compiling"),
        "the client built something from source:\n{out}"
    );
    app.stop().await;
}

/// Drones building with real emerge, fed the set in dependency order: every package is
/// built once across the swarm and every dependency comes from the swarm's binhost. One
/// drone has binpkg-multi-instance on (`cat/pn/pf-N.gpkg.tar`), the other off
/// (`cat/pf.gpkg.tar`).
#[actix_web::test]
async fn drones_with_real_emerge_take_dependencies_from_the_binhost() {
    let Some(venv) = portage_venv() else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let app = spawn_app(|c| c.leases.heartbeat_ttl_s = 60).await;
    // Fed by `build-swarm submit --plan`: Portage's resolver on a planning host.
    let planner = portage_env(&work.path().join("planner"), None);
    let script = format!(
        ". '{}/env.sh'; exec '{}' --orchestrator {} --token {ADMIN} submit --portage-python '{}/bin/python3' --plan --emptytree =swarm-apps/app-1.0",
        planner.display(),
        env!("CARGO_BIN_EXE_build-swarm"),
        app.url,
        venv.display()
    );
    let out = tokio::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .await
        .expect("submit --plan");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deps_of: BTreeMap<&str, &[&str]> = SET.iter().copied().collect();
    let binhost_url = format!("{}/binhost/", app.url);
    let mut children = Vec::new();
    let mut envs = Vec::new();
    for i in 0..2 {
        let env = portage_env_with(
            &work.path().join(format!("drone{i}")),
            Some(&binhost_url),
            i == 0,
        );
        // The recommended build_command (config/drone.toml): dependencies from the swarm's
        // binhost, the package itself always built.
        let path = portage_drone_config(
            &work.path().join(format!("drone{i}-home")),
            &format!("drone{i}"),
            &app.url,
            &env,
            r#""--usepkg", "--getbinpkg", "--usepkg-exclude", "{category}/{name}""#,
            "",
        );
        children.push(spawn_drone(&path, &[]));
        envs.push(env);
    }
    eventually(
        "the set built and indexed",
        Duration::from_secs(400),
        || async {
            // Whatever a drone builds now, the index on disk lists its dependencies.
            let drones = app.anon().drones().await.ok()?;
            let listed: HashSet<String> = build_swarm::orchestrator::binhost::index::parse(
                &std::fs::read_to_string(app.binhost().join("Packages")).unwrap_or_default(),
            )
            .entries
            .iter()
            .map(|e| e["CPV"].clone())
            .collect();
            for atom in drones.drones.iter().flat_map(|d| d.current.iter()) {
                for dep in deps_of.get(atom.as_str()).copied().unwrap_or_default() {
                    assert!(
                        listed.contains(*dep),
                        "{atom} building before {dep} was indexed"
                    );
                }
            }
            let s = app.anon().status().await.ok()?;
            assert_eq!(s.counts.failed, 0, "{s:?}");
            (s.counts.built == SET.len() && s.counts.unindexed == 0).then_some(())
        },
    )
    .await;
    for mut c in children {
        let _ = c.kill().await;
    }
    // What each drone's emerge compiled: exactly the packages it was given, each once.
    let mut compiled: Vec<String> = Vec::new();
    for env in &envs {
        let log = std::fs::read_to_string(env.join("log/emerge.log")).unwrap_or_default();
        for line in log.lines().filter(|l| l.contains("Compiling/")) {
            // `=== (1 of 3) Compiling/Packaging (cat/pkg-1.0::/repo/…)`
            let cpv = line
                .split("Compiling/")
                .nth(1)
                .and_then(|r| r.split(" (").nth(1))
                .and_then(|r| r.split("::").next())
                .expect("cpv");
            compiled.push(cpv.to_string());
        }
    }
    compiled.sort();
    let mut all: Vec<String> = SET.iter().map(|(a, _)| a.to_string()).collect();
    all.sort();
    assert_eq!(
        compiled, all,
        "every package compiled exactly once across the swarm, no dependency rebuilt"
    );
    assert_eq!(index_paths(&app.binhost()).len(), SET.len());
    app.stop().await;
}

/// `build-swarm plan` in `env` (its environment sourced), with the venv's Python.
async fn plan_in(
    env: &Path,
    venv: &Path,
    args: &[&str],
    extra_env: &str,
) -> (bool, String, String) {
    let mut script = format!(
        ". '{}/env.sh'; {extra_env} exec '{}' plan --portage-python '{}/bin/python3'",
        env.display(),
        env!("CARGO_BIN_EXE_build-swarm"),
        venv.display()
    );
    for a in args {
        script.push_str(&format!(" '{a}'"));
    }
    let out = tokio::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run build-swarm plan");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn edges(json: &str) -> BTreeMap<String, Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(json).expect("a JSON set");
    v["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let mut deps: Vec<String> = p["deps"]
                .as_array()
                .expect("deps")
                .iter()
                .map(|d| d.as_str().expect("atom").to_string())
                .collect();
            deps.sort();
            (p["atom"].as_str().expect("atom").to_string(), deps)
        })
        .collect()
}

/// `build-swarm plan` gives Portage's own graph: a diamond (liba, libb → zlib), a chain
/// (app → tool → libc → core), a subslot dependency (liba → zlib:=) and a USE-conditional
/// one (app → tool with `extra`); blockers and missing packages are one clear error; and
/// `submit --plan` puts the planned set with its edges into the orchestrator.
#[actix_web::test]
async fn plan_lists_every_package_and_every_real_dependency() {
    let Some(venv) = portage_venv() else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let env = portage_env(&work.path().join("host"), None);
    let (ok, out, err) = plan_in(&env, &venv, &["--emptytree", "=swarm-apps/app-1.0"], "").await;
    assert!(ok, "{err}");
    let want: BTreeMap<String, Vec<String>> = SET
        .iter()
        .map(|(a, deps)| {
            let mut d: Vec<String> = deps.iter().map(|s| s.to_string()).collect();
            d.sort();
            (a.to_string(), d)
        })
        .collect();
    assert_eq!(edges(&out), want, "{out}");
    assert!(err.contains("planned 7 packages, 8 dependencies"), "{err}");

    // Without the USE flag the conditional dependency (and what only it needed) is gone.
    let (ok, out, err) = plan_in(
        &env,
        &venv,
        &["--emptytree", "=swarm-apps/app-1.0"],
        "USE=-extra",
    )
    .await;
    assert!(ok, "{err}");
    let got = edges(&out);
    assert_eq!(got.len(), 5, "{out}");
    assert_eq!(
        got["swarm-apps/app-1.0"],
        vec![
            "swarm-libs/liba-1.0".to_string(),
            "swarm-libs/libb-2.0".to_string()
        ]
    );

    // Unresolvable: one line naming the package.
    for (atom, says) in [
        ("=swarm-broken/needs-missing-1.0", "no package satisfies swarm-base/nonexistent (needed by swarm-broken/needs-missing-1.0)"),
        ("=swarm-broken/both-1.0", "swarm-broken/blocker-1.0 blocks swarm-base/core"),
    ] {
        let (ok, out, err) = plan_in(&env, &venv, &["--emptytree", atom], "").await;
        assert!(!ok && out.is_empty(), "{atom}: {out}");
        assert!(err.contains(says), "{atom}: {err}");
        assert_eq!(err.lines().count(), 1, "{atom}: {err}");
    }

    // Estimates come from this host's emerge.log once it built something.
    portage(&env, "emerge", &["--oneshot", "=swarm-base/core-1.0"], &[]).await;
    let (ok, out, err) = plan_in(&env, &venv, &["--emptytree", "=swarm-libs/libc-1.1"], "").await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let core = v["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["atom"] == "swarm-base/core-1.0")
        .expect("core planned");
    assert!(core["estimate_s"].as_f64().is_some(), "{out}");

    // submit --plan: planned and submitted in one go.
    let app = spawn_app(|_| {}).await;
    let script = format!(
        ". '{}/env.sh'; exec '{}' --orchestrator {} --token {ADMIN} submit --portage-python '{}/bin/python3' --plan --emptytree =swarm-apps/app-1.0",
        env.display(),
        env!("CARGO_BIN_EXE_build-swarm"),
        app.url,
        venv.display()
    );
    let out = tokio::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .await
        .expect("submit --plan");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("7 new package(s)") && stdout.contains("8 dependencies"),
        "{stdout}"
    );
    let s = app.anon().status().await.expect("status");
    assert_eq!((s.counts.total, s.counts.queued), (7, 2), "{s:?}");
    app.stop().await;
}

/// `build-swarm demo --builder portage`: real emerge on every drone over the shipped demo
/// repository, and a clean client installing the whole set from `/binhost/` at the end.
#[actix_web::test]
async fn the_demo_builds_the_demo_repository_with_real_portage() {
    if portage_venv().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let demo_dir = dir.path().join("demo");
    let out = tokio::time::timeout(
        Duration::from_secs(900),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_build-swarm"))
            .args(["demo", "--builder", "portage", "--drones", "2", "--dir"])
            .arg(&demo_dir)
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the demo finishes")
    .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("built    31"), "{stdout}");
    assert!(
        stdout.contains("a clean Portage client installed all 31 packages"),
        "{stdout}"
    );
    assert_eq!(index_paths(&demo_dir.join("binhost")).len(), 31);
    // The binhost is signed and the client verified it.
    assert!(
        stdout.contains("verifying every package's signature"),
        "{stdout}"
    );
    let conf =
        std::fs::read_to_string(demo_dir.join("portage/client/config/etc/portage/binrepos.conf"))
            .expect("the client's binrepos.conf");
    assert!(conf.contains("verify-signature = true"), "{conf}");
    let key = build_swarm::orchestrator::binhost::signing::Signer::load(
        &demo_dir.join("signing-key.asc"),
        "BUILD_SWARM_TEST_UNSET_PASSPHRASE",
    )
    .expect("the demo's key");
    for rel in index_paths(&demo_dir.join("binhost")) {
        let bytes = std::fs::read(demo_dir.join("binhost").join(&rel)).expect("package");
        key.check_gpkg(&bytes[..])
            .expect("signed by the demo's key");
    }
    // Every drone reported Portage's view of its environment and matched drone-1's.
    let orch_log = std::fs::read_to_string(demo_dir.join("orchestrator.log")).expect("log");
    assert!(
        orch_log.contains("the reference drone's environment is the expected one now"),
        "{orch_log}"
    );
    assert!(!orch_log.contains("does not fit"), "{orch_log}");
    // Nothing is left running (GnuPG's agent included).
    let mine = demo_dir.display().to_string();
    wait_for(10, "every process of the demo gone", || async {
        processes_matching(&mine).is_empty()
    })
    .await;
}
