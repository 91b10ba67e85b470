//! **Store** — owns the SQLite database under `state_dir`. Runs on its own thread
//! (a one-thread `SyncArbiter`), so no other actor ever blocks on the disk.
//!
//! Start-up reads the snapshot with [`Store::load`] before the actor starts. Then it hears
//! `Commit` batches from the package queue (group commit, see
//! [`crate::actors::orchestrator::queue::commit`]) and `Reload` after a failed one;
//! `SaveCredential`/`DeleteCredential` from the credentials, `SaveOutbox` from the
//! notifier ([`notifications`]).

use crate::domain::LeasePhase;
use crate::domain::PackageState;
use crate::wire::orchestrator::LeaseId;
use actix::prelude::*;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("state database {path}: cannot create its directory: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state database {path}: row {row}: {message}")]
    Corrupt {
        path: PathBuf,
        row: String,
        message: String,
    },
    #[error("cannot sync directory {path}: {source}")]
    Sync {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One package as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageRow {
    pub id: u32,
    pub atom: String,
    pub seq: u64,
    pub state: PackageState,
    pub attempts: u32,
    pub infra_failures: u32,
    pub reason: Option<String>,
    pub log_tail: Option<String>,
    pub estimate_s: Option<f64>,
    pub priority: u64,
    /// Operator priority (`submit --priority`, `bump`).
    pub boost: i32,
    pub epoch: u64,
    pub drone: Option<String>,
    /// Drones the build failed on (JSON list in the table).
    pub failed_on: Vec<String>,
    pub path: Option<String>,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    /// What the drone that builds it must have (JSON in the table; NULL: nothing).
    pub requirements: crate::domain::environment::Requirements,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LeaseRow {
    pub id: LeaseId,
    /// The order leases were made in (rows from before lease ids were random: the id).
    pub seq: u64,
    pub pkg: u32,
    pub epoch: u64,
    pub drone: String,
    pub phase: LeasePhase,
    pub created_unix: u64,
    pub ended_unix: Option<u64>,
    /// The lease's upload directory under staging (a reused one keeps the name of the
    /// lease it was made for).
    pub upload_dir: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DroneRow {
    pub name: String,
    pub aliases: Vec<String>,
    pub host: String,
    pub slots: u32,
    pub version: String,
    pub restart_command: Vec<String>,
    pub paused: bool,
    pub last_seen_unix: Option<u64>,
    /// The build environment it last reported (JSON; None: none reported).
    pub environment: Option<String>,
}

/// One change to the durable state.
#[derive(Debug, Clone)]
pub enum Write {
    Package(PackageRow),
    Deps(Vec<(u32, u32)>),
    Lease(LeaseRow),
    Drone(DroneRow),
    /// A package name's learned build time.
    Duration(learned::DurationRow),
    /// A drone's learned speed factor.
    Speed(learned::SpeedRow),
    /// Forget ended leases that ended before this unix time.
    PruneLeases {
        ended_before: u64,
    },
    /// Sync the filesystem of this directory before the transaction: files renamed into
    /// it (published artifacts), their data and their names, are durable before the state
    /// that says they are built.
    SyncDir(PathBuf),
}

/// Everything the orchestrator needs to come back after a restart.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub packages: Vec<PackageRow>,
    pub deps: Vec<(u32, u32)>,
    pub leases: Vec<LeaseRow>,
    pub drones: Vec<DroneRow>,
    pub credentials: Vec<CredentialRow>,
    /// The number (`seq`) of the next lease.
    pub next_lease_seq: u64,
    pub durations: Vec<learned::DurationRow>,
    pub speeds: Vec<learned::SpeedRow>,
    /// Undelivered notifications and the open alerts ([`notifications`]).
    pub outbox: Vec<crate::orchestrator::notify::outbox::OutboxRow>,
    pub alerts: Vec<(String, String)>,
}

/// A drone's own credential (docs/design.md, "Drone identity"): only a hash of the token.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialRow {
    pub name: String,
    /// SHA-256 of the token, hex; `None`: revoked (it stays enrolled, with no token).
    pub token_sha256: Option<String>,
    /// The host the operator enrolled it for, if any.
    pub host: Option<String>,
    pub enrolled_unix: u64,
}

/// Stores a drone's credential, replacing the one it had.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SaveCredential(pub CredentialRow);

/// Removes a drone's credential; answers whether it had one.
#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct DeleteCredential {
    pub name: String,
}

#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Commit(pub Vec<Write>);

/// Reads the committed state back (after a failed commit, so memory equals disk again).
#[derive(Message)]
#[rtype(result = "Result<Snapshot, StoreError>")]
pub struct Reload;

pub struct Store {
    path: PathBuf,
    conn: Connection,
    /// The filesystem (device) of each directory synced so far, and one open directory
    /// per filesystem to `syncfs` through: a batch of hundreds of published packages
    /// costs one `syncfs` and no `open`/`stat` per package.
    filesystems: Filesystems,
}

/// Directories published into, by filesystem. Bounded: with the multi-instance layout
/// every package has its own directory, so the path cache is dropped when it grows. A
/// directory's filesystem is looked up once: a remount under a running orchestrator is
/// noticed only when a sync fails (the cache is then dropped); the open directories
/// keep their filesystems busy while it runs.
#[derive(Default)]
struct Filesystems {
    dev_of: std::collections::HashMap<PathBuf, u64>,
    handle: std::collections::HashMap<u64, std::fs::File>,
}

impl Filesystems {
    const MAX_PATHS: usize = 4096;

    /// The device of `dir`, opening it only the first time its filesystem is seen.
    fn device(&mut self, dir: &Path) -> std::io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        if let Some(dev) = self.dev_of.get(dir) {
            return Ok(*dev);
        }
        let dev = std::fs::metadata(dir)?.dev();
        if let std::collections::hash_map::Entry::Vacant(e) = self.handle.entry(dev) {
            e.insert(std::fs::File::open(dir)?);
        }
        if self.dev_of.len() >= Self::MAX_PATHS {
            self.dev_of.clear();
        }
        self.dev_of.insert(dir.to_path_buf(), dev);
        Ok(dev)
    }

    fn sync(&self, dev: u64) -> std::io::Result<()> {
        match self.handle.get(&dev) {
            Some(f) => crate::orchestrator::publish::sync_filesystem(f),
            None => Ok(()),
        }
    }
}

/// `synchronous = FULL`: the WAL is synced at every commit, so what a batch's answers
/// promise (a lease handed out, a package built) survives a power cut, not only a crash
/// of this process. The published files were synced before it (`Write::SyncDir`).
const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
PRAGMA foreign_keys = OFF;
CREATE TABLE IF NOT EXISTS packages(
  id INTEGER PRIMARY KEY, atom TEXT NOT NULL UNIQUE, seq INTEGER NOT NULL, state TEXT NOT NULL,
  attempts INTEGER NOT NULL, infra_failures INTEGER NOT NULL, reason TEXT, log_tail TEXT,
  estimate_s REAL, priority INTEGER NOT NULL, epoch INTEGER NOT NULL, drone TEXT,
  failed_on TEXT NOT NULL, path TEXT, size INTEGER, sha256 TEXT);
CREATE TABLE IF NOT EXISTS deps(pkg INTEGER NOT NULL, dep INTEGER NOT NULL, PRIMARY KEY(pkg, dep)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases(
  id INTEGER PRIMARY KEY, pkg INTEGER NOT NULL, epoch INTEGER NOT NULL, drone TEXT NOT NULL,
  phase TEXT NOT NULL, created_unix INTEGER NOT NULL, ended_unix INTEGER, upload_dir TEXT,
  seq INTEGER);
CREATE INDEX IF NOT EXISTS leases_phase ON leases(phase);
CREATE TABLE IF NOT EXISTS drones(
  name TEXT PRIMARY KEY, aliases TEXT NOT NULL, host TEXT NOT NULL, slots INTEGER NOT NULL,
  version TEXT NOT NULL, paused INTEGER NOT NULL, last_seen_unix INTEGER,
  restart_command TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS drone_credentials(
  name TEXT PRIMARY KEY, token_sha256 TEXT UNIQUE, host TEXT,
  enrolled_unix INTEGER NOT NULL);
";

impl Store {
    /// Opens (creating if needed) `state_dir/state.sqlite3`.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let path = state_dir.join("state.sqlite3");
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Dir {
            path: path.clone(),
            source,
        })?;
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        conn.execute_batch(learned::SCHEMA).map_err(sql)?;
        conn.execute_batch(notifications::SCHEMA).map_err(sql)?;
        // State files from before drones reported their restart_command, from before
        // upload directories were reused, and from before lease ids were random.
        let columns = [
            ("drones", "restart_command", "TEXT NOT NULL DEFAULT '[]'"),
            ("leases", "upload_dir", "TEXT"),
            ("leases", "seq", "INTEGER"),
            ("packages", "boost", "INTEGER NOT NULL DEFAULT 0"),
            ("packages", "requirements", "TEXT"),
            ("drones", "environment", "TEXT"),
        ];
        for (table, column, decl) in columns {
            let has: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
                    [table, column],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            if has == 0 {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))
                    .map_err(sql)?;
            }
        }
        // Leases from before lease ids were random: their number is their id.
        conn.execute_batch(
            "UPDATE leases SET seq = id WHERE seq IS NULL;
             CREATE INDEX IF NOT EXISTS leases_seq ON leases(seq);",
        )
        .map_err(sql)?;
        Ok(Store {
            path,
            conn,
            filesystems: Filesystems::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, row: impl Into<String>, message: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            row: row.into(),
            message: message.into(),
        }
    }

    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let mut snap = Snapshot::default();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, atom, seq, state, attempts, infra_failures, reason, log_tail, estimate_s,
                        priority, epoch, drone, failed_on, path, size, sha256, boost, requirements
                 FROM packages ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, u32>(4)?,
                    r.get::<_, u32>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<f64>>(8)?,
                    r.get::<_, i64>(9)?,
                    r.get::<_, i64>(10)?,
                    r.get::<_, Option<String>>(11)?,
                    r.get::<_, String>(12)?,
                    (
                        r.get::<_, Option<String>>(13)?,
                        r.get::<_, Option<i64>>(14)?,
                        r.get::<_, Option<String>>(15)?,
                        r.get::<_, i64>(16)?,
                        r.get::<_, Option<String>>(17)?,
                    ),
                ))
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            let (
                id,
                atom,
                seq,
                state,
                attempts,
                infra,
                reason,
                log_tail,
                est,
                prio,
                epoch,
                drone,
                failed_on,
                (path, size, sha, boost, requirements),
            ) = row.map_err(|e| self.err(e))?;
            let requirements = match requirements {
                Some(r) => serde_json::from_str(&r).map_err(|e| {
                    self.corrupt(format!("package {atom}"), format!("requirements: {e}"))
                })?,
                None => Default::default(),
            };
            let state = PackageState::parse(&state).ok_or_else(|| {
                self.corrupt(
                    format!("package {atom}"),
                    format!("unknown state `{state}`"),
                )
            })?;
            let failed_on: Vec<String> = serde_json::from_str(&failed_on)
                .map_err(|e| self.corrupt(format!("package {atom}"), format!("failed_on: {e}")))?;
            snap.packages.push(PackageRow {
                id,
                atom,
                seq: seq as u64,
                state,
                attempts,
                infra_failures: infra,
                reason,
                log_tail,
                estimate_s: est,
                priority: prio as u64,
                boost: boost.clamp(i32::MIN as i64, i32::MAX as i64) as i32,
                epoch: epoch as u64,
                drone,
                failed_on,
                path,
                size: size.map(|s| s as u64),
                sha256: sha,
                requirements,
            });
        }
        drop(stmt);

        let mut stmt = self
            .conn
            .prepare("SELECT pkg, dep FROM deps")
            .map_err(|e| self.err(e))?;
        let deps = stmt
            .query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, u32>(1)?)))
            .map_err(|e| self.err(e))?;
        for d in deps {
            snap.deps.push(d.map_err(|e| self.err(e))?);
        }
        drop(stmt);

        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, pkg, epoch, drone, phase, created_unix, ended_unix, upload_dir,
                   seq FROM leases ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        let leases = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, i64>(8)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        for l in leases {
            let (id, pkg, epoch, drone, phase, created, ended, upload_dir, seq) =
                l.map_err(|e| self.err(e))?;
            let phase = LeasePhase::parse(&phase).ok_or_else(|| {
                self.corrupt(format!("lease {id}"), format!("unknown phase `{phase}`"))
            })?;
            snap.leases.push(LeaseRow {
                id: id as u64,
                seq: seq as u64,
                pkg,
                epoch: epoch as u64,
                drone,
                phase,
                created_unix: created as u64,
                ended_unix: ended.map(|e| e as u64),
                // Written before upload directories were reused: named after the lease.
                upload_dir: upload_dir
                    .unwrap_or_else(|| crate::orchestrator::staging::lease_dir_name(id as u64)),
            });
        }
        drop(stmt);

        let max_seq: Option<i64> = self
            .conn
            .query_row("SELECT MAX(seq) FROM leases", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?
            .flatten();
        snap.next_lease_seq = max_seq.map(|m| m as u64 + 1).unwrap_or(1);

        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, token_sha256, host, enrolled_unix FROM drone_credentials
                 ORDER BY name",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(CredentialRow {
                    name: r.get(0)?,
                    token_sha256: r.get(1)?,
                    host: r.get(2)?,
                    enrolled_unix: r.get::<_, i64>(3)? as u64,
                })
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            snap.credentials.push(row.map_err(|e| self.err(e))?);
        }
        drop(stmt);

        let mut stmt = self
            .conn
            .prepare("SELECT name, aliases, host, slots, version, paused, last_seen_unix, restart_command, environment FROM drones ORDER BY name")
            .map_err(|e| self.err(e))?;
        let drones = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, u32>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, bool>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, Option<String>>(8)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        for d in drones {
            let (name, aliases, host, slots, version, paused, last_seen, restart, environment) =
                d.map_err(|e| self.err(e))?;
            let aliases: Vec<String> = serde_json::from_str(&aliases)
                .map_err(|e| self.corrupt(format!("drone {name}"), format!("aliases: {e}")))?;
            let restart_command: Vec<String> = serde_json::from_str(&restart).map_err(|e| {
                self.corrupt(format!("drone {name}"), format!("restart_command: {e}"))
            })?;
            snap.drones.push(DroneRow {
                name,
                aliases,
                host,
                slots,
                version,
                restart_command,
                paused,
                last_seen_unix: last_seen.map(|s| s as u64),
                environment,
            });
        }
        drop(stmt);
        learned::load(&self.conn, &mut snap).map_err(|e| self.err(e))?;
        notifications::load(&self.conn, &mut snap).map_err(|e| self.err(e))?;
        Ok(snap)
    }

    /// Applies a batch in one transaction: all of it or none of it.
    pub fn commit(&mut self, writes: &[Write]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        // Published files first: one `syncfs` per filesystem for the whole batch, which
        // makes the files' data and their renames durable together.
        let mut synced: Vec<u64> = Vec::new();
        for w in writes {
            if let Write::SyncDir(dir) = w {
                let fs = &mut self.filesystems;
                let mut sync = |synced: &mut Vec<u64>| -> std::io::Result<()> {
                    let dev = fs.device(dir)?;
                    if !synced.contains(&dev) {
                        fs.sync(dev)?;
                        synced.push(dev);
                    }
                    Ok(())
                };
                if let Err(source) = sync(&mut synced) {
                    // Looked up again next time (a remount, a directory made again).
                    self.filesystems = Filesystems::default();
                    return Err(StoreError::Sync {
                        path: dir.clone(),
                        source,
                    });
                }
            }
        }
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut pkg = tx
                .prepare_cached(
                    "INSERT INTO packages(id, atom, seq, state, attempts, infra_failures, reason, log_tail,
                        estimate_s, priority, epoch, drone, failed_on, path, size, sha256, boost,
                        requirements)
                     VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)
                     ON CONFLICT(id) DO UPDATE SET state=excluded.state, attempts=excluded.attempts,
                        boost=excluded.boost, estimate_s=excluded.estimate_s,
                        priority=excluded.priority,
                        infra_failures=excluded.infra_failures, reason=excluded.reason,
                        log_tail=excluded.log_tail, epoch=excluded.epoch, drone=excluded.drone,
                        failed_on=excluded.failed_on, path=excluded.path, size=excluded.size,
                        sha256=excluded.sha256",
                )
                .map_err(sql)?;
            let mut dep = tx
                .prepare_cached("INSERT OR IGNORE INTO deps(pkg, dep) VALUES(?1, ?2)")
                .map_err(sql)?;
            let mut lease = tx
                .prepare_cached(
                    "INSERT INTO leases(id, pkg, epoch, drone, phase, created_unix, ended_unix, upload_dir, seq)
                     VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)
                     ON CONFLICT(id) DO UPDATE SET phase=excluded.phase, ended_unix=excluded.ended_unix",
                )
                .map_err(sql)?;
            let mut drone = tx
                .prepare_cached(
                    "INSERT INTO drones(name, aliases, host, slots, version, paused, last_seen_unix,
                        restart_command, environment)
                     VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)
                     ON CONFLICT(name) DO UPDATE SET aliases=excluded.aliases, host=excluded.host,
                        slots=excluded.slots, version=excluded.version, paused=excluded.paused,
                        last_seen_unix=excluded.last_seen_unix, restart_command=excluded.restart_command,
                        environment=excluded.environment",
                )
                .map_err(sql)?;
            for w in writes {
                match w {
                    Write::Package(p) => {
                        let failed_on =
                            serde_json::to_string(&p.failed_on).unwrap_or_else(|_| "[]".into());
                        pkg.execute(params![
                            p.id,
                            p.atom,
                            p.seq as i64,
                            p.state.as_str(),
                            p.attempts,
                            p.infra_failures,
                            p.reason,
                            p.log_tail,
                            p.estimate_s,
                            p.priority as i64,
                            p.epoch as i64,
                            p.drone,
                            failed_on,
                            p.path,
                            p.size.map(|s| s as i64),
                            p.sha256,
                            p.boost,
                            (!p.requirements.is_empty())
                                .then(|| serde_json::to_string(&p.requirements).ok())
                                .flatten(),
                        ])
                        .map_err(sql)?;
                    }
                    Write::Deps(pairs) => {
                        for (p, d) in pairs {
                            dep.execute(params![p, d]).map_err(sql)?;
                        }
                    }
                    Write::Lease(l) => {
                        lease
                            .execute(params![
                                l.id as i64,
                                l.pkg,
                                l.epoch as i64,
                                l.drone,
                                l.phase.as_str(),
                                l.created_unix as i64,
                                l.ended_unix.map(|e| e as i64),
                                l.upload_dir,
                                l.seq as i64,
                            ])
                            .map_err(sql)?;
                    }
                    Write::Drone(d) => {
                        let aliases =
                            serde_json::to_string(&d.aliases).unwrap_or_else(|_| "[]".into());
                        drone
                            .execute(params![
                                d.name,
                                aliases,
                                d.host,
                                d.slots,
                                d.version,
                                d.paused,
                                d.last_seen_unix.map(|s| s as i64),
                                serde_json::to_string(&d.restart_command)
                                    .unwrap_or_else(|_| "[]".into()),
                                d.environment,
                            ])
                            .map_err(sql)?;
                    }
                    Write::SyncDir(_) => {}
                    Write::Duration(d) => learned::write_duration(&tx, d).map_err(sql)?,
                    Write::Speed(d) => learned::write_speed(&tx, d).map_err(sql)?,
                    Write::PruneLeases { ended_before } => {
                        tx.execute(
                            "DELETE FROM leases WHERE phase = 'ended' AND ended_unix < ?1
                             AND seq < (SELECT MAX(seq) FROM leases)",
                            params![*ended_before as i64],
                        )
                        .map_err(sql)?;
                    }
                }
            }
        }
        tx.commit().map_err(sql)
    }
}

impl Actor for Store {
    type Context = SyncContext<Self>;
}

impl Handler<Reload> for Store {
    type Result = Result<Snapshot, StoreError>;
    fn handle(&mut self, _: Reload, _: &mut Self::Context) -> Self::Result {
        self.load()
    }
}

impl Handler<Commit> for Store {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: Commit, _: &mut Self::Context) -> Self::Result {
        self.commit(&msg.0)
    }
}

impl Handler<SaveCredential> for Store {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: SaveCredential, _: &mut Self::Context) -> Self::Result {
        let c = msg.0;
        self.conn
            .execute(
                "INSERT INTO drone_credentials(name, token_sha256, host, enrolled_unix)
                 VALUES(?1,?2,?3,?4)
                 ON CONFLICT(name) DO UPDATE SET token_sha256=excluded.token_sha256,
                    host=excluded.host, enrolled_unix=excluded.enrolled_unix",
                params![c.name, c.token_sha256, c.host, c.enrolled_unix as i64],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }
}

impl Handler<DeleteCredential> for Store {
    type Result = Result<bool, StoreError>;
    fn handle(&mut self, msg: DeleteCredential, _: &mut Self::Context) -> Self::Result {
        self.conn
            .execute(
                "DELETE FROM drone_credentials WHERE name = ?1",
                params![msg.name],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }
}

pub mod learned;
pub mod notifications;
#[cfg(test)]
mod tests;
