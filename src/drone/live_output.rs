//! A running build's output on its way to the orchestrator (docs/design.md, "Live build
//! logs"), without actix: the byte stream cut into numbered lines ([`LineSplitter`]), the
//! lines not yet taken ([`Pending`], bounded: when the orchestrator falls behind the
//! oldest are dropped, never the build slowed), and the forwarder that posts them in
//! chunks ([`forward`]).

use crate::client::ApiClient;
use crate::wire::orchestrator::{LeaseId, OutputChunk};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::mpsc;

/// A line longer than this is cut (the rest starts the next line).
pub const MAX_LINE: usize = 1024;
/// Lines waiting to be sent, at most.
pub const MAX_PENDING: usize = 4_000;
/// Lines per POST, at most; one POST per [`BATCH`] while the build runs, so a reader
/// is woken for every chunk and the orchestrator's ring (4,000 lines) never takes more
/// at once than a reader can follow.
pub const MAX_POST: usize = 2_000;
/// Bytes of line text per POST, at most (its JSON stays far below the orchestrator's
/// 1 MiB body limit even when every byte needs escaping; the orchestrator keeps 256 KiB
/// of lines per attempt).
pub const MAX_POST_BYTES: usize = 96 * 1024;
/// Output is gathered this long before it is sent.
pub const BATCH: Duration = Duration::from_millis(250);

/// Bytes in, whole lines out.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                out.push(self.take());
            } else {
                self.partial.push(b);
                if self.partial.len() >= MAX_LINE {
                    out.push(self.take());
                }
            }
        }
        out
    }

    /// The last line, when the output did not end with a newline.
    pub fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.partial)
            .trim_end_matches('\r')
            .to_string();
        self.partial.clear();
        line
    }
}

/// Numbered lines not yet taken by the orchestrator.
#[derive(Debug, Default)]
pub struct Pending {
    lines: VecDeque<String>,
    /// The number of `lines[0]`.
    first: u64,
}

impl Pending {
    pub fn push(&mut self, line: String) {
        self.lines.push_back(line);
        if self.lines.len() > MAX_PENDING {
            self.lines.pop_front();
            self.first += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The next POST's chunk: at most `max_lines` lines and [`MAX_POST_BYTES`] of text
    /// (at least one line).
    pub fn chunk(&self, epoch: u64, max_lines: usize) -> Option<OutputChunk> {
        let mut bytes = 0;
        let lines: Vec<String> = self
            .lines
            .iter()
            .take(max_lines.max(1))
            .take_while(|l| {
                bytes += l.len() + 1;
                bytes <= MAX_POST_BYTES || bytes == l.len() + 1
            })
            .cloned()
            .collect();
        (!lines.is_empty()).then_some(OutputChunk {
            epoch,
            first: self.first,
            lines,
        })
    }

    /// Every line before `next` is taken.
    pub fn taken(&mut self, next: u64) {
        while self.first < next && self.lines.pop_front().is_some() {
            self.first += 1;
        }
    }
}

/// Posts the output arriving on `rx` as lines of `lease` until `rx` closes (the build
/// ended) and everything is sent, or the orchestrator refuses the lease: one chunk per
/// [`BATCH`] while the build runs (at most 8,000 lines a second; beyond that the oldest
/// pending lines are dropped), the rest at once when it has ended. A failed POST is
/// tried again a second later (three times once the build has ended).
pub async fn forward(
    mut rx: mpsc::Receiver<Vec<u8>>,
    client: ApiClient,
    lease: LeaseId,
    epoch: u64,
) {
    let mut split = LineSplitter::default();
    let mut pending = Pending::default();
    let mut open = true;
    let mut failures = 0;
    // Lines per POST; halved when the orchestrator says a body is too large.
    let mut max_lines = MAX_POST;
    loop {
        if open {
            // The first bytes (or at once when lines wait), then whatever follows
            // within BATCH.
            let mut deadline = (!pending.is_empty()).then(|| tokio::time::Instant::now() + BATCH);
            loop {
                let next = match deadline {
                    None => rx.recv().await,
                    Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                        Ok(v) => v,
                        Err(_) => break,
                    },
                };
                match next {
                    Some(bytes) => {
                        for l in split.push(&bytes) {
                            pending.push(l);
                        }
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + BATCH);
                    }
                    None => {
                        open = false;
                        if let Some(l) = split.finish() {
                            pending.push(l);
                        }
                        break;
                    }
                }
            }
        }
        while let Some(chunk) = pending.chunk(epoch, max_lines) {
            match client.output(lease, &chunk).await {
                Ok(ack) => {
                    pending.taken(ack.next);
                    failures = 0;
                    if open {
                        break;
                    }
                }
                Err(e) if e.status() == Some(413) && max_lines > 1 => max_lines /= 2,
                // The lease is over, another drone's or of another epoch: nobody wants it.
                Err(e) if e.status().is_some_and(|s| (400..500).contains(&s)) => return,
                Err(_) => {
                    failures += 1;
                    if !open && failures >= 3 {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
        if !open && pending.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_become_lines_across_reads_and_long_lines_are_cut() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"one\r\ntw"), ["one"]);
        assert_eq!(s.push(b"o\nthree"), ["two"]);
        assert_eq!(s.finish().as_deref(), Some("three"));
        assert_eq!(s.finish(), None);
        let long = vec![b'x'; MAX_LINE + 5];
        let lines = s.push(&long);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(s.finish().map(|l| l.len()), Some(5));
    }

    #[test]
    fn pending_lines_are_numbered_bounded_and_dropped_once_taken() {
        let mut p = Pending::default();
        for i in 0..(MAX_PENDING + 10) {
            p.push(format!("l{i}"));
        }
        let c = p.chunk(3, MAX_POST).unwrap();
        assert_eq!((c.epoch, c.first, c.lines.len()), (3, 10, MAX_POST));
        assert_eq!(c.lines[0], "l10");
        p.taken(10 + MAX_POST as u64);
        assert_eq!(p.chunk(3, MAX_POST).unwrap().first, 10 + MAX_POST as u64);
        p.taken(u64::MAX);
        assert!(p.is_empty() && p.chunk(3, MAX_POST).is_none());
        // Long lines: the chunk stops at MAX_POST_BYTES of text.
        for _ in 0..500 {
            p.push("y".repeat(MAX_LINE));
        }
        let c = p.chunk(3, MAX_POST).unwrap();
        assert_eq!(c.lines.len(), MAX_POST_BYTES / (MAX_LINE + 1));
        assert!(serde_json::to_vec(&c).unwrap().len() < 1024 * 1024);
    }
}
