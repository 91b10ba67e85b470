//! **BinhostIndex** — owns the binhost's `Packages` index (a [`LiveIndex`]): every
//! published package's entry, the header, the next `TIMESTAMP`.
//!
//! Hears `AddToIndex` from the queue (entries of publishes already committed), `Relist`
//! from the queue after it read its state back, `Verify` from the HTTP API, `IndexStatus`
//! for reads, `CaptureIndex` from the release manager (a snapshot's entries). Writes the index whole at most once per
//! `write_interval_ms` on a blocking thread (temporary file, fsync, rename) and, once an
//! index listing them is on disk, tells the queue `Indexed` so their dependents may go. At
//! start it reads the index on disk back, adds the built packages it lacks (reading their
//! files) and tells the queue which are listed. It never waits on the queue.

use crate::actors::orchestrator::messages::{AddToIndex, CaptureIndex, Indexed, Relist};
use crate::orchestrator::binhost::index::{self, Entry, Header};
use crate::orchestrator::binhost::index_file;
use crate::orchestrator::binhost::live::LiveIndex;
use crate::orchestrator::binhost::verify::{self, Problem};
use crate::orchestrator::publish::Signing;
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
    /// With `[signing]`: `Verify` checks every package's signature too.
    pub signing: Option<crate::orchestrator::publish::Signing>,
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
    /// Each built package's path.
    paths: Vec<(String, u32)>,
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
    /// Packages an index on disk lists, and each package's path.
    listed: std::collections::HashSet<u32>,
    pkg_of_path: std::collections::HashMap<String, u32>,
    /// Paths `Verify { fix }` stopped listing and nothing listed again since: the live
    /// files retention may remove (after its grace period).
    dropped: std::collections::HashSet<String>,
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
            listed: Default::default(),
            pkg_of_path: Default::default(),
            dropped: Default::default(),
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

    /// The configured header, keys as entries name them (`REPO` is `repository`).
    fn header(&self) -> Header {
        Header {
            keys: self
                .settings
                .header
                .iter()
                .map(|(k, v)| {
                    let k = if k == "REPO" {
                        "repository"
                    } else {
                        k.as_str()
                    };
                    (k.to_string(), v.clone())
                })
                .collect(),
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
                        act.listed.extend(pkgs.iter().copied());
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
        signing: Option<Signing>,
        log: Logger,
    ) -> std::io::Result<Loaded> {
        let temps = index_file::remove_temps(&dir);
        if temps > 0 {
            warn!(log, "removed temporary index files a crash left"; "files" => temps);
        }
        // An index that cannot be read is one to write again (from the built packages).
        let parsed = match index_file::read(&dir) {
            Ok(t) => t.map(|t| index::parse(&t)),
            Err(e) => {
                crit!(log, "cannot read the binhost index; writing it again"; "error" => e.to_string());
                None
            }
        };
        // The newest TIMESTAMP given out before: the index's, or the mtime of either file
        // (a crash between the two renames leaves Packages.gz the newer).
        let mtime_s = |name: &str| {
            std::fs::metadata(dir.join(name))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs())
        };
        let timestamp = parsed
            .as_ref()
            .and_then(|p| p.timestamp())
            .unwrap_or(0)
            .max(mtime_s(index_file::INDEX))
            .max(mtime_s(index_file::INDEX_GZ));
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
        let paths: Vec<(String, u32)> = built
            .iter()
            .map(|(p, _, _, path)| (path.clone(), *p))
            .collect();
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
                _ => match verify::entry_of_signed_file(
                    &dir,
                    &path,
                    Some((&category, &pf)),
                    signing.as_ref(),
                ) {
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
            paths,
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
        let (gzip, signing) = (self.settings.gzip, self.settings.signing.clone());
        let built = std::mem::take(&mut self.built);
        let started = Instant::now();
        let work = actix_web::rt::task::spawn_blocking(move || {
            Self::load(dir, header, gzip, built, signing, log)
        });
        ctx.spawn(work.into_actor(self).map(move |res, act, ctx| {
            let loaded = match res {
                Ok(Ok(l)) => l,
                // Without the index read back, dependents of built packages would wait for
                // ever: the process stops (its supervisor starts it again).
                Ok(Err(e)) => {
                    crit!(act.log, "cannot bring the binhost index up to date; stopping"; "error" => e.to_string());
                    std::process::exit(70);
                }
                Err(e) => {
                    crit!(act.log, "reading the binhost index back failed; stopping"; "error" => e.to_string());
                    std::process::exit(70);
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
            act.pkg_of_path.extend(loaded.paths);
            if !loaded.listed.is_empty() {
                act.listed.extend(loaded.listed.iter().copied());
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
                    self.pkg_of_path.insert(e.path().to_string(), pkg);
                    self.dropped.remove(e.path());
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
        let signing = self.settings.signing.clone();
        let fix = msg.fix;
        // Entries added while the check runs are not the check's to fix.
        let before: std::collections::HashSet<String> =
            entries.iter().map(|e| e.path().to_string()).collect();
        let work = actix_web::rt::task::spawn_blocking(move || {
            let problems = verify::check(&dir, &entries, signing.as_ref()).map_err(|source| {
                VerifyError::Io {
                    dir: dir.clone(),
                    source,
                }
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
                        // A package whose signature is not good is no longer listed.
                        "missing" | "signature" => fixes.push((p.path.clone(), None)),
                        _ => {
                            let entry =
                                verify::entry_of_signed_file(&dir, &p.path, None, signing.as_ref())
                                    .ok();
                            fixes.push((p.path.clone(), entry))
                        }
                    }
                }
            }
            Ok((problems, fixes))
        });
        Box::pin(work.into_actor(self).map(move |res, act, ctx| {
            let (problems, fixes) = res.map_err(|e| VerifyError::Interrupted(e.to_string()))??;
            if !fixes.is_empty() {
                if let Some(live) = act.live.as_mut() {
                    for (path, entry) in fixes {
                        let pkg = act.pkg_of_path.get(&path).copied();
                        // Added meanwhile (its write pending): not the check's to touch.
                        if !before.contains(&path) && live.get(&path).is_some() {
                            continue;
                        }
                        live.remove(&path);
                        if entry.is_none() {
                            act.dropped.insert(path.clone());
                        }
                        if let Some(e) = entry {
                            act.dropped.remove(e.path());
                            Self::add(live, e);
                            // A package that could not be indexed before is, with the next
                            // write: its dependents go then.
                            if let Some(p) = pkg.filter(|p| !act.listed.contains(p)) {
                                act.pending.push(p);
                            }
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

impl Handler<CaptureIndex> for BinhostIndex {
    type Result = Option<crate::orchestrator::binhost::live::Capture>;
    fn handle(&mut self, _: CaptureIndex, _: &mut Self::Context) -> Self::Result {
        let mut capture = self.live.as_ref().map(LiveIndex::capture)?;
        capture.dropped = self.dropped.iter().cloned().collect();
        Some(capture)
    }
}

impl Handler<Relist> for BinhostIndex {
    type Result = ();
    fn handle(&mut self, msg: Relist, ctx: &mut Self::Context) {
        if self.live.is_none() {
            // Still loading: the load answers for every built package.
            return;
        }
        let mut listed = Vec::new();
        let mut missing = Vec::new();
        for (pkg, path) in msg.0 {
            self.pkg_of_path.insert(path.clone(), pkg);
            if self.listed.contains(&pkg) {
                listed.push(pkg);
            } else if !self.pending.contains(&pkg) {
                missing.push((pkg, path));
            }
        }
        if !listed.is_empty() {
            self.queue.do_send(Indexed { pkgs: listed });
        }
        if missing.is_empty() {
            return;
        }
        // Built, but not in the index (its entry was lost with the refused commit's
        // answer): read from its file.
        let dir = self.settings.dir.clone();
        let signing = self.settings.signing.clone();
        let log = self.log.clone();
        let work = actix_web::rt::task::spawn_blocking(move || {
            missing
                .into_iter()
                .filter_map(|(pkg, path)| match verify::entry_of_signed_file(
                    &dir,
                    &path,
                    None,
                    signing.as_ref(),
                ) {
                    Ok(e) => Some((pkg, e)),
                    Err(why) => {
                        crit!(log, "a built package cannot be indexed; its dependents wait (build-swarm binhost verify)";
                              "path" => &path, "error" => why);
                        None
                    }
                })
                .collect::<Vec<_>>()
        });
        ctx.spawn(work.into_actor(self).map(|res, act, ctx| {
            if let (Ok(entries), Some(live)) = (res, act.live.as_mut()) {
                for (pkg, e) in entries {
                    Self::add(live, e);
                    act.pending.push(pkg);
                }
                act.schedule(ctx);
            }
        }));
    }
}
