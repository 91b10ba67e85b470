//! The learned build times (docs/design.md, "Learned durations"): one row per package
//! name (category/name, not version) with its mean build time on a drone of the swarm's
//! average speed, and one row per drone with its speed factor.

use super::Snapshot;
use rusqlite::{params, Connection, Transaction};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS learned_durations(
  name TEXT PRIMARY KEY, builds INTEGER NOT NULL, mean_s REAL NOT NULL);
CREATE TABLE IF NOT EXISTS drone_speeds(
  drone TEXT PRIMARY KEY, samples INTEGER NOT NULL, factor REAL NOT NULL);
";

#[derive(Debug, Clone, PartialEq)]
pub struct DurationRow {
    /// `category/name`.
    pub name: String,
    pub builds: u64,
    pub mean_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpeedRow {
    pub drone: String,
    pub samples: u64,
    pub factor: f64,
}

pub(super) fn load(conn: &Connection, snap: &mut Snapshot) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT name, builds, mean_s FROM learned_durations")?;
    let rows = stmt.query_map([], |r| {
        Ok(DurationRow {
            name: r.get(0)?,
            builds: r.get::<_, i64>(1)?.max(0) as u64,
            mean_s: r.get(2)?,
        })
    })?;
    for r in rows {
        snap.durations.push(r?);
    }
    let mut stmt = conn.prepare("SELECT drone, samples, factor FROM drone_speeds")?;
    let rows = stmt.query_map([], |r| {
        Ok(SpeedRow {
            drone: r.get(0)?,
            samples: r.get::<_, i64>(1)?.max(0) as u64,
            factor: r.get(2)?,
        })
    })?;
    for r in rows {
        snap.speeds.push(r?);
    }
    Ok(())
}

pub(super) fn write_duration(tx: &Transaction, d: &DurationRow) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO learned_durations(name, builds, mean_s) VALUES(?1, ?2, ?3)
         ON CONFLICT(name) DO UPDATE SET builds=excluded.builds, mean_s=excluded.mean_s",
    )?
    .execute(params![d.name, d.builds as i64, d.mean_s])
    .map(drop)
}

pub(super) fn write_speed(tx: &Transaction, s: &SpeedRow) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO drone_speeds(drone, samples, factor) VALUES(?1, ?2, ?3)
         ON CONFLICT(drone) DO UPDATE SET samples=excluded.samples, factor=excluded.factor",
    )?
    .execute(params![s.drone, s.samples as i64, s.factor])
    .map(drop)
}
