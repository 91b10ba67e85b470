//! The binhost index says which published packages a live index lists: their dependents
//! may go now (docs/design.md, "The binhost index").

use super::PackageQueue;
use crate::actors::orchestrator::messages::Indexed;
use actix::prelude::*;

impl Handler<Indexed> for PackageQueue {
    type Result = ();
    fn handle(&mut self, msg: Indexed, ctx: &mut Self::Context) {
        let n = self.graph.len() as u32;
        let mut released = false;
        for pkg in msg.pkgs.into_iter().filter(|p| *p < n) {
            released |= self.graph.mark_indexed(pkg);
        }
        if released {
            // The dependents' new states go with the next batch.
            self.flush(ctx);
        }
    }
}
