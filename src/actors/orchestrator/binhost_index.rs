//! **BinhostIndex** — owns the binhost's `Packages` index (a [`LiveIndex`]): every
//! published package's entry, the header, the next `TIMESTAMP`.
//!
//! Hears `AddToIndex` from the queue (entries of publishes already committed), `Verify`
//! from the HTTP API, `IndexStatus` for reads. Writes the index whole at most once per
//! `write_interval_ms` on a blocking thread (temporary file, fsync, rename) and, once an
//! index listing them is on disk, tells the queue `Indexed` so their dependents may go. At
//! start it reads the index on disk back, adds the built packages it lacks (reading their
//! files) and tells the queue which are listed. It never waits on the queue.

use crate::actors::orchestrator::messages::{AddToIndex, Indexed};
use crate::orchestrator::binhost::index::{self, Entry, Header};
use crate::orchestrator::binhost::index_file;
use crate::orchestrator::binhost::live::LiveIndex;
use crate::orchestrator::binhost::verify::{self, Problem};
use actix::prelude::*;
use slog::{crit, info, warn, Logger};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Writes are at least this many times their own duration apart.
const COST_FACTOR: u32 = 4;

pub struct IndexSettings {
    pub dir: PathBuf,
    /// Header keys from the configuration.
    pub header: BTreeMap<String, String>,
    pub gzip: bool,
    pub interval: Duration,
}

/// A package built before this start: `(id, category, pf, path)`.
pub type BuiltPackage = (u32, String, String, String);

/// Checks the binhost against the index; with `fix`, brings the index in line with the
/// files (and removes temporary files). Answers what was wrong (before any fix).
#[derive(Message)]
#[rtype(result = "Result<Vec<Problem>, VerifyError>")]
pub struct Verify {
    pub fix: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the index is still being read back after the start; try again shortly")]
    Loading,
    #[error("checking {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the check was interrupted: {0}")]
    Interrupted(String),
}

/// How many entries the index has and how many wait for the next write.
#[derive(Message)]
#[rtype(result = "IndexCounts")]
pub struct IndexStatus;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IndexCounts {
    pub entries: usize,
    pub pending: usize,
    /// `TIMESTAMP` of the index on disk (0: none written yet).
    pub timestamp: u64,
}

/// The index read back at start.
struct Loaded {
    live: LiveIndex,
    /// Listed on disk already.
    listed: Vec<u32>,
    /// Added now: listed once the next write is done.
    added: Vec<u32>,
    /// Entries dropped (their file is gone or changed) or added: the disk needs a write.
    changed: bool,
    timestamp: u64,
}

pub struct BinhostIndex {
    settings: IndexSettings,
    /// `None` until the index on disk is read back.
    live: Option<LiveIndex>,
    built: Vec<BuiltPackage>,
    /// Entries that arrived while loading.
    early: Vec<(u32, Entry)>,
    /// Packages whose entry waits for the next write.
    pending: Vec<u32>,
    writing: bool,
    scheduled: bool,
    /// Something changed while a write was in flight.
    again: bool,
    last_write: Option<Instant>,
    /// How long the last write took: writes are spaced at least [`COST_FACTOR`] times
    /// that apart, so a large index costs at most a fifth of a core.
    last_cost: Duration,
    timestamp: u64,
    failures: u32,
    queue: Recipient<Indexed>,
    log: Logger,
}

impl BinhostIndex {
    pub fn new(
        settings: IndexSettings,
        built: Vec<BuiltPackage>,
        queue: Recipient<Indexed>,
        log: Logger,
    ) -> Self {
        BinhostIndex {
            settings,
            live: None,
            built,
            early: Vec::new(),
            pending: Vec::new(),
            writing: false,
            scheduled: false,
            again: false,
            last_write: None,
            last_cost: Duration::ZERO,
            timestamp: 0,
            failures: 0,
            queue,
            log: log.new(slog::o!("actor" => "binhost_index")),
        }
    }

    fn header(&self) -> Header {
        Header {
            keys: self.settings.header.clone(),
        }
    }

    /// Adds entries; a CHOST not configured comes from the first package that has one.
    fn add(live: &mut LiveIndex, entry: Entry) {
        if !live.header.keys.contains_key("CHOST") {
            if let Some(chost) = entry.get("CHOST").map(str::to_string) {
                live.set_header("CHOST", &chost);
            }
        }
        live.insert(entry);
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.live.is_none() {
            return;
        }
        if self.writing {
            self.again = true;
            return;
        }
        if self.scheduled {
            return;
        }
        self.scheduled = true;
        let gap = self.settings.interval.max(self.last_cost * COST_FACTOR);
        let wait = self
            .last_write
            .map(|t| gap.saturating_sub(t.elapsed()))
            .unwrap_or_default();
        let backoff = Duration::from_millis(500) * self.failures.min(20);
        ctx.run_later(wait + backoff, |act, ctx| {
            act.scheduled = false;
            act.write(ctx);
        });
    }

    fn write(&mut self, ctx: &mut Context<Self>) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let timestamp = live.next_timestamp(crate::sys::clock::unix_now());
        let (header, blocks, bytes) = live.snapshot();
        let pkgs = std::mem::take(&mut self.pending);
        let (dir, gzip) = (self.settings.dir.clone(), self.settings.gzip);
        self.writing = true;
        self.last_write = Some(Instant::now());
        let started = Instant::now();
        let work = actix_web::rt::task::spawn_blocking(move || {
            let text = index::render(
                &header,
                timestamp,
                blocks.len(),
                blocks.iter().map(|b| &**b),
                bytes,
            );
            index_file::write(&dir, &text, timestamp, gzip)
        });
        ctx.spawn(work.into_actor(self).map(move |res, act, ctx| {
            act.writing = false;
            act.last_cost = started.elapsed();
            let res = res.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string()));
            match res {
                Ok(()) => {
                    act.failures = 0;
                    act.timestamp = timestamp;
                    slog::debug!(act.log, "index written"; "packages" => act.live.as_ref().map_or(0, LiveIndex::len),
                                 "timestamp" => timestamp, "ms" => started.elapsed().as_millis() as u64);
                    if !pkgs.is_empty() {
                        act.queue.do_send(Indexed { pkgs });
                    }
                }
                Err(e) => {
                    act.failures += 1;
                    crit!(act.log, "cannot write the binhost index; dependents of new packages wait"; "error" => e,
                          "attempt" => act.failures);
                    act.pending.extend(pkgs);
                    act.again = true;
                }
            }
            if std::mem::take(&mut act.again) || !act.pending.is_empty() {
                act.schedule(ctx);
            }
        }));
    }

    /// Reads the index on disk back and brings it up to date with the built packages.
    fn load(
        dir: PathBuf,
        header: Header,
        gzip: bool,
        built: Vec<BuiltPackage>,
        log: Logger,
    ) -> std::io::Result<Loaded> {
        let temps = index_file::remove_temps(&dir);
        if temps > 0 {
            warn!(log, "removed temporary index files a crash left"; "files" => temps);
        }
        let parsed = index_file::read(&dir)?.map(|t| index::parse(&t));
        let timestamp = parsed.as_ref().and_then(|p| p.timestamp()).unwrap_or(0);
        let mut live = LiveIndex::new(header).after(timestamp);
        let mut on_disk: BTreeMap<String, Entry> = BTreeMap::new();
        if let Some(p) = parsed {
            if !live.header.keys.contains_key("CHOST") {
                if let Some(c) = p.header.get("CHOST") {
                    live.set_header("CHOST", c);
                }
            }
            for e in p.entries.into_iter().filter_map(Entry::from_written) {
                on_disk.insert(e.path().to_string(), e);
            }
        }
        // Both files carry the index's TIMESTAMP as mtime: a Packages.gz that does not is
        // not this index (or should not be there), and is written again.
        let mtime = |name: &str| {
            std::fs::metadata(dir.join(name))
                .and_then(|m| m.modified())
                .ok()
        };
        let mut changed = match (mtime(index_file::INDEX), mtime(index_file::INDEX_GZ)) {
            (Some(a), Some(b)) => !gzip || a != b,
            (Some(_), None) => gzip,
            (None, gz) => gz.is_some(),
        };
        let (mut listed, mut added) = (Vec::new(), Vec::new());
        for (pkg, category, pf, path) in built {
            match on_disk.remove(&path) {
                Some(e) if verify::unchanged(&dir, &e) => {
                    live.insert(e);
                    listed.push(pkg);
                }
                _ => match verify::entry_of_file(&dir, &path, Some((&category, &pf))) {
                    Ok(e) => {
                        Self::add(&mut live, e);
                        added.push(pkg);
                        changed = true;
                    }
                    Err(why) => {
                        crit!(log, "a built package cannot be indexed; its dependents wait (build-swarm binhost verify)";
                              "path" => &path, "error" => why);
                        changed = true;
                    }
                },
            }
        }
        // Entries of files the queue does not know (published before its state, or by
        // hand) stay while their file does.
        for (_, e) in on_disk {
            if verify::unchanged(&dir, &e) {
                live.insert(e);
            } else {
                changed = true;
            }
        }
        Ok(Loaded {
            live,
            listed,
            added,
            changed,
            timestamp,
        })
    }
}

impl Actor for BinhostIndex {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (dir, header, log) = (self.settings.dir.clone(), self.header(), self.log.clone());
        let gzip = self.settings.gzip;
        let built = std::mem::take(&mut self.built);
        let started = Instant::now();
        let work =
            actix_web::rt::task::spawn_blocking(move || Self::load(dir, header, gzip, built, log));
        ctx.spawn(work.into_actor(self).map(move |res, act, ctx| {
            let loaded = match res {
                Ok(Ok(l)) => l,
                Ok(Err(e)) => {
                    crit!(act.log, "cannot read the binhost index back; writing a new one"; "error" => e.to_string());
                    Loaded {
                        live: LiveIndex::new(act.header()),
                        listed: Vec::new(),
                        added: Vec::new(),
                        changed: true,
                        timestamp: 0,
                    }
                }
                Err(e) => {
                    crit!(act.log, "reading the binhost index back failed"; "error" => e.to_string());
                    ctx.stop();
                    return;
                }
            };
            info!(act.log, "binhost index loaded"; "entries" => loaded.live.len(), "listed" => loaded.listed.len(),
                  "added" => loaded.added.len(), "ms" => started.elapsed().as_millis() as u64);
            act.timestamp = loaded.timestamp;
            let mut live = loaded.live;
            for (pkg, e) in std::mem::take(&mut act.early) {
                Self::add(&mut live, e);
                act.pending.push(pkg);
            }
            act.live = Some(live);
            if !loaded.listed.is_empty() {
                act.queue.do_send(Indexed {
                    pkgs: loaded.listed,
                });
            }
            act.pending.extend(loaded.added);
            if loaded.changed || !act.pending.is_empty() || loaded.timestamp == 0 {
                act.schedule(ctx);
            }
        }));
    }
}

impl Handler<AddToIndex> for BinhostIndex {
    type Result = ();
    fn handle(&mut self, msg: AddToIndex, ctx: &mut Self::Context) {
        match self.live.as_mut() {
            None => self.early.extend(msg.0),
            Some(live) => {
                for (pkg, e) in msg.0 {
                    Self::add(live, e);
                    self.pending.push(pkg);
                }
                self.schedule(ctx);
            }
        }
    }
}

impl Handler<IndexStatus> for BinhostIndex {
    type Result = MessageResult<IndexStatus>;
    fn handle(&mut self, _: IndexStatus, _: &mut Self::Context) -> Self::Result {
        MessageResult(IndexCounts {
            entries: self.live.as_ref().map_or(0, LiveIndex::len),
            pending: self.pending.len() + self.early.len(),
            timestamp: self.timestamp,
        })
    }
}

impl Handler<Verify> for BinhostIndex {
    type Result = ResponseActFuture<Self, Result<Vec<Problem>, VerifyError>>;
    fn handle(&mut self, msg: Verify, _: &mut Self::Context) -> Self::Result {
        let Some(live) = &self.live else {
            return Box::pin(fut::ready(Err(VerifyError::Loading)));
        };
        let entries: Vec<Entry> = live.entries().cloned().collect();
        let dir = self.settings.dir.clone();
        let fix = msg.fix;
        let work = actix_web::rt::task::spawn_blocking(move || {
            let problems = verify::check(&dir, &entries).map_err(|source| VerifyError::Io {
                dir: dir.clone(),
                source,
            })?;
            // With `fix`: a fresh entry for every file with a problem, the temporary files
            // removed.
            let mut fixes: Vec<(String, Option<Entry>)> = Vec::new();
            if fix {
                for p in &problems {
                    match p.kind.as_str() {
                        "temporary" => {
                            let _ = std::fs::remove_file(dir.join(&p.path));
                        }
                        "missing" => fixes.push((p.path.clone(), None)),
                        _ => fixes.push((
                            p.path.clone(),
                            verify::entry_of_file(&dir, &p.path, None).ok(),
                        )),
                    }
                }
            }
            Ok((problems, fixes))
        });
        Box::pin(work.into_actor(self).map(|res, act, ctx| {
            let (problems, fixes) = res.map_err(|e| VerifyError::Interrupted(e.to_string()))??;
            if !fixes.is_empty() {
                if let Some(live) = act.live.as_mut() {
                    for (path, entry) in fixes {
                        live.remove(&path);
                        if let Some(e) = entry {
                            Self::add(live, e);
                        }
                    }
                }
                info!(act.log, "binhost index fixed"; "problems" => problems.len());
                act.schedule(ctx);
            }
            Ok(problems)
        }))
    }
}
