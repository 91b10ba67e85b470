//! Tests of the parent module.

use super::*;

fn pkg(id: u32, atom: &str) -> PackageRow {
    PackageRow {
        id,
        atom: atom.into(),
        seq: id as u64,
        state: PackageState::Queued,
        attempts: 0,
        infra_failures: 0,
        reason: None,
        log_tail: None,
        estimate_s: Some(3.5),
        priority: 7,
        boost: 0,
        epoch: 0,
        drone: None,
        failed_on: vec![],
        path: None,
        size: None,
        sha256: None,
        requirements: Default::default(),
    }
}

#[test]
fn commit_and_reload_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let mut a = pkg(0, "app-misc/a-1");
    store
        .commit(&[
            Write::Package(a.clone()),
            Write::Package(pkg(1, "app-misc/b-1")),
            Write::Deps(vec![(1, 0)]),
            Write::Lease(LeaseRow {
                id: 9,
                seq: 9,
                pkg: 0,
                epoch: 1,
                drone: "d1".into(),
                phase: LeasePhase::Building,
                created_unix: 5,
                ended_unix: None,
                upload_dir: "lease-3".into(),
            }),
        ])
        .unwrap();
    a.state = PackageState::Building;
    a.failed_on = vec!["d0".into()];
    store.commit(&[Write::Package(a.clone())]).unwrap();
    drop(store);
    let snap = Store::open(dir.path()).unwrap().load().unwrap();
    assert_eq!(snap.packages.len(), 2);
    assert_eq!(snap.packages[0], a);
    assert_eq!(snap.deps, vec![(1, 0)]);
    assert_eq!(snap.leases.len(), 1);
    assert_eq!(snap.leases[0].upload_dir, "lease-3");
    assert_eq!(snap.next_lease_seq, 10);
}

/// Each commit syncs the WAL before the batch is answered (`FULL`; `NORMAL` would
/// leave the last commits to the next checkpoint or the kernel's writeback).
#[test]
fn commits_are_synced_before_they_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let level: i64 = store
        .conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(level, 2, "PRAGMA synchronous should be FULL (2)");
    let mode: String = store
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

/// A state file written before leases had an upload directory column (and drones a
/// restart command) opens, and its leases get the names they had then.
#[test]
fn an_older_state_file_gains_the_new_columns() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join("state.sqlite3")).unwrap();
    conn.execute_batch(
        "CREATE TABLE leases(id INTEGER PRIMARY KEY, pkg INTEGER NOT NULL,
           epoch INTEGER NOT NULL, drone TEXT NOT NULL, phase TEXT NOT NULL,
           created_unix INTEGER NOT NULL, ended_unix INTEGER);
         INSERT INTO leases VALUES(4, 0, 1, 'd1', 'building', 5, NULL);
         CREATE TABLE drones(name TEXT PRIMARY KEY, aliases TEXT NOT NULL,
           host TEXT NOT NULL, slots INTEGER NOT NULL, version TEXT NOT NULL,
           paused INTEGER NOT NULL, last_seen_unix INTEGER);",
    )
    .unwrap();
    drop(conn);
    let snap = Store::open(dir.path()).unwrap().load().unwrap();
    assert_eq!(snap.leases.len(), 1);
    assert_eq!(snap.leases[0].upload_dir, "lease-4");
    assert_eq!(snap.leases[0].seq, 4, "an old lease's number is its id");
    assert_eq!(snap.next_lease_seq, 5);
}

#[test]
fn requirements_environments_and_learned_times_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let mut p = pkg(0, "www-client/chromium-1");
    p.requirements.requires = vec!["big-mem".into()];
    p.requirements.min_memory_mb = Some(16_000);
    store
        .commit(&[
            Write::Package(p.clone()),
            Write::Package(pkg(1, "app-misc/a-1")),
            Write::Drone(DroneRow {
                name: "d".into(),
                aliases: vec![],
                host: "h".into(),
                slots: 1,
                version: "1".into(),
                restart_command: vec![],
                paused: false,
                last_seen_unix: None,
                environment: Some("{\"capabilities\":[\"big-mem\"]}".into()),
            }),
            Write::Duration(learned::DurationRow {
                name: "www-client/chromium".into(),
                builds: 3,
                mean_s: 7200.5,
            }),
            Write::Speed(learned::SpeedRow {
                drone: "d".into(),
                samples: 3,
                factor: 0.8,
            }),
        ])
        .unwrap();
    drop(store);
    let snap = Store::open(dir.path()).unwrap().load().unwrap();
    assert_eq!(snap.packages[0].requirements, p.requirements);
    assert!(snap.packages[1].requirements.is_empty());
    assert!(snap.drones[0]
        .environment
        .as_deref()
        .is_some_and(|e| e.contains("big-mem")));
    assert_eq!(snap.durations[0].mean_s, 7200.5);
    assert_eq!(snap.speeds[0].factor, 0.8);
}
