//! The notification outbox (docs/design.md, "Notifications"): undelivered events per
//! `[[notify]]` entry and the alerts still open. Written by the notifier through
//! [`SaveOutbox`], one transaction per change, so an event is on disk before it is sent
//! and off it once delivered.

use super::{Snapshot, Store, StoreError};
use crate::orchestrator::notify::outbox::{AlertChange, OutboxRow};
use actix::prelude::*;
use rusqlite::{params, Connection};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notify_outbox(
  sink TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
  attempts INTEGER NOT NULL, PRIMARY KEY(sink, seq));
CREATE TABLE IF NOT EXISTS notify_alerts(key TEXT PRIMARY KEY, id TEXT NOT NULL);
";

/// One change of the outbox, written in one transaction.
#[derive(Message, Debug, Default)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SaveOutbox {
    /// New rows, and rows whose attempts changed.
    pub upsert: Vec<OutboxRow>,
    /// Rows delivered or given up.
    pub delete: Vec<OutboxRow>,
    pub alert: Option<AlertChange>,
}

pub(super) fn load(conn: &Connection, snap: &mut Snapshot) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT sink, seq, id, body, attempts FROM notify_outbox")?;
    let rows = stmt.query_map([], |r| {
        Ok(OutboxRow {
            sink: r.get(0)?,
            seq: r.get::<_, i64>(1)?.max(0) as u64,
            id: r.get(2)?,
            body: r.get(3)?,
            attempts: r.get::<_, i64>(4)?.clamp(0, u32::MAX as i64) as u32,
        })
    })?;
    for r in rows {
        snap.outbox.push(r?);
    }
    let mut stmt = conn.prepare("SELECT key, id FROM notify_alerts")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    for r in rows {
        snap.alerts.push(r?);
    }
    Ok(())
}

fn save(conn: &mut Connection, msg: &SaveOutbox) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for r in &msg.upsert {
        tx.prepare_cached(
            "INSERT INTO notify_outbox(sink, seq, id, body, attempts) VALUES(?1,?2,?3,?4,?5)
             ON CONFLICT(sink, seq) DO UPDATE SET attempts=excluded.attempts",
        )?
        .execute(params![r.sink, r.seq as i64, r.id, r.body, r.attempts])?;
    }
    for r in &msg.delete {
        tx.prepare_cached("DELETE FROM notify_outbox WHERE sink = ?1 AND seq = ?2")?
            .execute(params![r.sink, r.seq as i64])?;
    }
    match &msg.alert {
        Some(AlertChange::Open { key, id }) => {
            tx.execute(
                "INSERT INTO notify_alerts(key, id) VALUES(?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET id=excluded.id",
                params![key, id],
            )?;
        }
        Some(AlertChange::Close { key }) => {
            tx.execute("DELETE FROM notify_alerts WHERE key = ?1", params![key])?;
        }
        None => {}
    }
    tx.commit()
}

impl Handler<SaveOutbox> for Store {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: SaveOutbox, _: &mut Self::Context) -> Self::Result {
        save(&mut self.conn, &msg).map_err(|e| self.err(e))
    }
}
