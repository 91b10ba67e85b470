//! **ReleaseManager** — owns the binhost's releases under `releases_dir`: snapshots,
//! channels and their retention ([`Releases`] holds the logic).
//!
//! Hears `TakeSnapshot`, `Tag`, `Rollback`, `ListReleases`, `DiffSnapshots` and
//! `CollectGarbage` from the HTTP API, and runs `CollectGarbage` itself every
//! `gc_interval_s`. Asks the binhost index for a `CaptureIndex` (the index never asks it
//! anything back). One operation at a time, each on a blocking thread; serving channel
//! files does not come here (the HTTP layer reads them directly, as it reads the live
//! binhost).

use crate::actors::orchestrator::messages::CaptureIndex;
use crate::orchestrator::binhost::live::Capture;
use crate::orchestrator::binhost::releases::snapshot::{PackageRef, SnapshotMeta};
use crate::orchestrator::binhost::releases::{retention, ChannelState, ReleaseError, Releases};
use crate::wire::orchestrator::{
    ChannelInfo, DiffPackage, DiffReport, GcReport, ReleaseList, SnapshotInfo,
};
use actix::prelude::*;
use slog::{info, warn, Logger};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Takes a snapshot of the live binhost (`name`: or after the time).
#[derive(Message)]
#[rtype(result = "Result<SnapshotInfo, ReleaseError>")]
pub struct TakeSnapshot {
    pub name: Option<String>,
}

/// Points `channel` at `snapshot`.
#[derive(Message)]
#[rtype(result = "Result<ChannelInfo, ReleaseError>")]
pub struct Tag {
    pub channel: String,
    pub snapshot: String,
}

/// Points `channel` back at the snapshot it served before its last tag.
#[derive(Message)]
#[rtype(result = "Result<ChannelInfo, ReleaseError>")]
pub struct Rollback {
    pub channel: String,
}

#[derive(Message)]
#[rtype(result = "Result<ReleaseList, ReleaseError>")]
pub struct ListReleases;

/// What changed from `from` to `to` (snapshot names, or `live`).
#[derive(Message)]
#[rtype(result = "Result<DiffReport, ReleaseError>")]
pub struct DiffSnapshots {
    pub from: String,
    pub to: String,
}

/// Applies the retention policy (`dry_run`: only says what would go).
#[derive(Message)]
#[rtype(result = "Result<GcReport, ReleaseError>")]
pub struct CollectGarbage {
    pub dry_run: bool,
}

pub struct ReleaseManager {
    runner: Runner,
    /// The binhost index (`None`: the orchestrator keeps no index).
    index: Option<Recipient<CaptureIndex>>,
    gc_interval: Duration,
    log: Logger,
}

/// Runs release work on a blocking thread, one operation at a time.
#[derive(Clone)]
struct Runner {
    releases: Arc<Releases>,
    /// Held by the operation under way.
    busy: Arc<tokio::sync::Mutex<()>>,
}

impl Runner {
    async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce(&Releases) -> Result<T, ReleaseError> + Send + 'static,
    ) -> Result<T, ReleaseError> {
        self.run_with(std::future::ready(Ok(())), |r, ()| work(r))
            .await
    }

    /// As [`Runner::run`], with what `first` gives once it is this operation's turn (the
    /// live index captured then, not while an earlier operation ran).
    async fn run_with<A: Send + 'static, T: Send + 'static>(
        self,
        first: impl std::future::Future<Output = Result<A, ReleaseError>>,
        work: impl FnOnce(&Releases, A) -> Result<T, ReleaseError> + Send + 'static,
    ) -> Result<T, ReleaseError> {
        let _turn = self.busy.lock_owned().await;
        let a = first.await?;
        let releases = self.releases;
        actix_web::rt::task::spawn_blocking(move || work(&releases, a))
            .await
            .unwrap_or_else(|e| Err(interrupted(e)))
    }
}

impl ReleaseManager {
    pub fn new(
        releases: Arc<Releases>,
        index: Option<Recipient<CaptureIndex>>,
        gc_interval: Duration,
        log: Logger,
    ) -> Self {
        ReleaseManager {
            runner: Runner {
                releases,
                busy: Arc::new(tokio::sync::Mutex::new(())),
            },
            index,
            gc_interval,
            log: log.new(slog::o!("actor" => "release_manager")),
        }
    }

    /// The live index now (`Ok(None)`: no index kept).
    fn capture(&self) -> impl std::future::Future<Output = Result<Option<Capture>, ReleaseError>> {
        let index = self.index.clone();
        async move {
            let Some(index) = index else {
                return Ok(None);
            };
            match index.send(CaptureIndex).await {
                Ok(Some(c)) => Ok(Some(c)),
                Ok(None) => Err(ReleaseError::IndexLoading),
                Err(e) => Err(interrupted(e)),
            }
        }
    }
}

fn interrupted(e: impl std::error::Error + Send + Sync + 'static) -> ReleaseError {
    ReleaseError::Interrupted(Box::new(e))
}

fn now() -> u64 {
    crate::sys::clock::unix_now()
}

/// What the API shows of a channel (`snapshots`: those that exist, oldest first).
pub fn channel_info(c: &ChannelState, snapshots: &[SnapshotMeta]) -> Option<ChannelInfo> {
    let g = c.current()?;
    Some(ChannelInfo {
        name: c.name.clone(),
        snapshot: g.snapshot.clone(),
        timestamp: g.timestamp,
        tagged_at: g.tagged_at,
        previous: c.rollback_target(snapshots).map(String::from),
        path: format!("/binhost/{}/", c.name),
    })
}

fn snapshot_info(m: SnapshotMeta, channels: &[ChannelState], why: Vec<String>) -> SnapshotInfo {
    SnapshotInfo {
        channels: channels
            .iter()
            .filter(|c| c.current().is_some_and(|g| g.snapshot == m.name))
            .map(|c| c.name.clone())
            .collect(),
        name: m.name,
        created: m.created,
        packages: m.packages,
        timestamp: m.timestamp,
        kept_because: why,
    }
}

fn diff_packages(v: Vec<PackageRef>) -> Vec<DiffPackage> {
    v.into_iter()
        .map(|p| DiffPackage {
            cpv: p.cpv,
            build_id: p.build_id,
            path: p.path,
        })
        .collect()
}

impl Actor for ReleaseManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Leftovers of a snapshot or a removal that a stop interrupted.
        let runner = self.runner.clone();
        let log = self.log.clone();
        ctx.spawn(
            async move {
                if let Err(e) = runner.run(|r| r.clean_leftovers()).await {
                    warn!(log, "cannot remove leftovers in the releases directory"; "error" => e.to_string());
                }
            }
            .into_actor(self),
        );
        if !self.gc_interval.is_zero() {
            ctx.run_interval(self.gc_interval, |_, ctx| {
                ctx.notify(CollectGarbage { dry_run: false });
            });
        }
    }
}

impl Handler<TakeSnapshot> for ReleaseManager {
    type Result = ResponseFuture<Result<SnapshotInfo, ReleaseError>>;
    fn handle(&mut self, msg: TakeSnapshot, _: &mut Self::Context) -> Self::Result {
        let capture = self.capture();
        let (runner, log) = (self.runner.clone(), self.log.clone());
        Box::pin(async move {
            let info = runner
                .run_with(capture, move |r, capture| {
                    let capture = capture.ok_or(ReleaseError::NoIndex)?;
                    let meta = r.take_snapshot(msg.name.as_deref(), &capture, now())?;
                    Ok(snapshot_info(meta, &r.channels()?, Vec::new()))
                })
                .await?;
            info!(log, "binhost snapshot taken"; "name" => &info.name, "packages" => info.packages);
            Ok(info)
        })
    }
}

impl Handler<Tag> for ReleaseManager {
    type Result = ResponseFuture<Result<ChannelInfo, ReleaseError>>;
    fn handle(&mut self, msg: Tag, _: &mut Self::Context) -> Self::Result {
        let (runner, log) = (self.runner.clone(), self.log.clone());
        Box::pin(async move {
            let channel = msg.channel.clone();
            let (state, snapshots) = runner
                .run(move |r| Ok((r.tag(&msg.channel, &msg.snapshot, now())?, r.snapshots()?)))
                .await?;
            let info =
                channel_info(&state, &snapshots).ok_or(ReleaseError::UnknownChannel(channel))?;
            info!(log, "channel tagged"; "channel" => &info.name, "snapshot" => &info.snapshot,
                  "timestamp" => info.timestamp);
            Ok(info)
        })
    }
}

impl Handler<Rollback> for ReleaseManager {
    type Result = ResponseFuture<Result<ChannelInfo, ReleaseError>>;
    fn handle(&mut self, msg: Rollback, _: &mut Self::Context) -> Self::Result {
        let (runner, log) = (self.runner.clone(), self.log.clone());
        Box::pin(async move {
            let channel = msg.channel.clone();
            let (state, snapshots) = runner
                .run(move |r| Ok((r.rollback(&msg.channel, now())?, r.snapshots()?)))
                .await?;
            let info =
                channel_info(&state, &snapshots).ok_or(ReleaseError::UnknownChannel(channel))?;
            warn!(log, "channel rolled back"; "channel" => &info.name, "snapshot" => &info.snapshot,
                  "timestamp" => info.timestamp);
            Ok(info)
        })
    }
}

impl Handler<ListReleases> for ReleaseManager {
    type Result = ResponseFuture<Result<ReleaseList, ReleaseError>>;
    fn handle(&mut self, _: ListReleases, _: &mut Self::Context) -> Self::Result {
        let runner = self.runner.clone();
        Box::pin(runner.run(|r| {
            let snapshots = r.snapshots()?;
            let channels = r.channels()?;
            let why = retention::plan_snapshots(&snapshots, &channels, &r.policy, now());
            Ok(ReleaseList {
                channels: channels
                    .iter()
                    .filter_map(|c| channel_info(c, &snapshots))
                    .collect(),
                snapshots: snapshots
                    .into_iter()
                    .zip(why)
                    .map(|(m, (_, why))| snapshot_info(m, &channels, why))
                    .collect(),
            })
        }))
    }
}

impl Handler<DiffSnapshots> for ReleaseManager {
    type Result = ResponseFuture<Result<DiffReport, ReleaseError>>;
    fn handle(&mut self, msg: DiffSnapshots, _: &mut Self::Context) -> Self::Result {
        let runner = self.runner.clone();
        Box::pin(runner.run(move |r| {
            let d = r.diff(&msg.from, &msg.to)?;
            Ok(DiffReport {
                from: msg.from,
                to: msg.to,
                added: diff_packages(d.added),
                removed: diff_packages(d.removed),
                changed: diff_packages(d.changed),
            })
        }))
    }
}

impl Handler<CollectGarbage> for ReleaseManager {
    type Result = ResponseFuture<Result<GcReport, ReleaseError>>;
    fn handle(&mut self, msg: CollectGarbage, _: &mut Self::Context) -> Self::Result {
        let capture = self.capture();
        let (runner, log) = (self.runner.clone(), self.log.clone());
        Box::pin(async move {
            let dry_run = msg.dry_run;
            let report = runner
                .run_with(capture, move |r, capture| {
                    let live: Option<(HashSet<String>, HashSet<String>)> = capture.map(|c| {
                        let listed = c.items.into_iter().map(|i| i.path).collect();
                        (listed, c.dropped.into_iter().collect())
                    });
                    r.gc(live.as_ref().map(|(l, d)| (l, d)), now(), dry_run)
                })
                .await;
            match &report {
                Ok(rep) if !dry_run && !rep.removed.is_empty() => {
                    info!(log, "binhost retention applied"; "removed" => rep.removed.len(),
                          "waiting" => rep.waiting.len());
                }
                Ok(_) => {}
                Err(e) => warn!(log, "binhost retention failed"; "error" => e.to_string()),
            }
            report
        })
    }
}
