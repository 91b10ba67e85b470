//! How far the set is: noticing that it is finished (`set_finished`, told once per set)
//! and the progress samples the timeline shows (every [`PROGRESS_EVERY`], a day kept),
//! and answering `GetTimeline` with them.

use super::graph::PackageGraph;
use super::{timeline, views, GetTimeline, PackageQueue};
use crate::domain::PackageState;
use crate::orchestrator::notify::Event;
use crate::wire::orchestrator::ProgressSample;
use actix::prelude::*;
use slog::info;
use std::time::Duration;

/// How often progress is sampled for the timeline, and how many samples are kept.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(30);
const PROGRESS_KEPT: usize = 2880;

/// Whether every package is built (and indexed), failed or blocked, and there is one.
pub(super) fn set_finished(g: &PackageGraph) -> bool {
    use PackageState::*;
    !g.is_empty()
        && g.unindexed() == 0
        && [Waiting, Queued, Building, Uploading]
            .iter()
            .all(|s| g.count(*s) == 0)
}

impl PackageQueue {
    /// Where the set stands now (a timeline progress sample).
    fn progress_now(&self) -> ProgressSample {
        let c = views::counts(&self.graph);
        ProgressSample {
            t: crate::sys::clock::unix_now(),
            done: c.built + c.failed + c.blocked,
            total: c.total,
            eta_s: self.eta_now(),
        }
    }

    pub(super) fn sample_progress(&mut self) {
        let s = self.progress_now();
        self.progress.push_back(s);
        if self.progress.len() > PROGRESS_KEPT {
            self.progress.pop_front();
        }
    }

    /// Every package is built, failed or blocked: `set_finished` (once per set).
    pub(super) fn note_progress(&mut self) {
        let finished = set_finished(&self.graph);
        if finished && !self.finished_told {
            let counts = views::counts(&self.graph);
            info!(self.log, "set finished"; "built" => counts.built, "failed" => counts.failed, "blocked" => counts.blocked);
            self.tell(Event::set_finished(counts));
        }
        self.finished_told = finished;
    }
}

impl Handler<GetTimeline> for PackageQueue {
    type Result = MessageResult<GetTimeline>;
    fn handle(&mut self, msg: GetTimeline, _: &mut Self::Context) -> Self::Result {
        MessageResult(timeline::timeline(
            &self.leases,
            &self.graph,
            &self.progress,
            self.progress_now(),
            (msg.from, msg.to),
            msg.limit,
            msg.fit,
        ))
    }
}
