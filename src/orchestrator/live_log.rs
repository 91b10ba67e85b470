//! One build attempt's output as the orchestrator keeps it while it runs (docs/design.md,
//! "Live build logs"): numbered lines in a bounded ring, appended from the drone's chunks
//! (a chunk sent twice adds nothing), read from any line on. The
//! [`crate::actors::orchestrator::build_logs::BuildLogs`] actor keeps one per lease.

use std::collections::VecDeque;

/// Lines kept per attempt, and their bytes.
pub const MAX_LINES: usize = 4_000;
pub const MAX_BYTES: usize = 256 * 1024;
/// A longer line is cut to this many bytes.
pub const MAX_LINE: usize = 1024;

#[derive(Debug, Default)]
pub struct Ring {
    lines: VecDeque<String>,
    /// The number of `lines[0]`.
    first: u64,
    bytes: usize,
    /// The drone said output was skipped, or lines it sent did not follow on.
    pub gap: bool,
}

/// What a reader gets.
#[derive(Debug, PartialEq)]
pub struct Read {
    pub first: u64,
    pub lines: Vec<String>,
    pub next: u64,
    /// Lines between the asked one and `first` are gone.
    pub gap: bool,
}

impl Ring {
    /// The number the next line will have.
    pub fn next(&self) -> u64 {
        self.first + self.lines.len() as u64
    }

    /// Appends `lines` numbered from `first`; those before [`Ring::next`] were taken
    /// already. Returns the new `next`.
    pub fn append(&mut self, first: u64, lines: Vec<String>) -> u64 {
        let next = self.next();
        if first > next {
            // Lines the drone never got through: the first after them starts anew.
            self.gap = true;
            self.lines.clear();
            self.bytes = 0;
            self.first = first;
        }
        let skip = self.next().saturating_sub(first) as usize;
        for mut l in lines.into_iter().skip(skip) {
            if l.len() > MAX_LINE {
                let mut cut = MAX_LINE;
                while !l.is_char_boundary(cut) {
                    cut -= 1;
                }
                l.truncate(cut);
            }
            self.bytes += l.len();
            self.lines.push_back(l);
        }
        while self.lines.len() > MAX_LINES || self.bytes > MAX_BYTES {
            match self.lines.pop_front() {
                Some(l) => {
                    self.bytes -= l.len();
                    self.first += 1;
                }
                None => break,
            }
        }
        self.next()
    }

    /// Lines from `after` on (None: everything kept), at most `max`.
    pub fn read(&self, after: Option<u64>, max: usize) -> Read {
        let from = after.unwrap_or(self.first).max(self.first);
        let gap = after.is_some_and(|a| a < self.first);
        let skip = (from - self.first) as usize;
        let lines: Vec<String> = self.lines.iter().skip(skip).take(max).cloned().collect();
        Read {
            first: from.min(self.next()),
            next: from.min(self.next()) + lines.len() as u64,
            lines,
            gap,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(from: u64, n: u64) -> Vec<String> {
        (from..from + n).map(|i| format!("line {i}")).collect()
    }

    #[test]
    fn a_chunk_sent_twice_adds_nothing_and_reads_go_on_where_they_stopped() {
        let mut r = Ring::default();
        assert_eq!(r.append(0, lines(0, 3)), 3);
        assert_eq!(r.append(0, lines(0, 3)), 3, "resent");
        assert_eq!(r.append(2, lines(2, 3)), 5, "overlapping");
        let a = r.read(None, 100);
        assert_eq!((a.first, a.next, a.lines.len(), a.gap), (0, 5, 5, false));
        let b = r.read(Some(4), 100);
        assert_eq!(b.lines, ["line 4"]);
        assert_eq!(r.read(Some(5), 100).lines.len(), 0);
    }

    #[test]
    fn the_ring_is_bounded_and_a_reader_behind_it_is_told_of_the_gap() {
        let mut r = Ring::default();
        r.append(0, lines(0, MAX_LINES as u64 + 10));
        let all = r.read(None, usize::MAX);
        assert_eq!(all.first, 10);
        assert_eq!(all.lines.len(), MAX_LINES);
        let late = r.read(Some(3), 5);
        assert!(late.gap);
        assert_eq!(late.first, 10);
        assert_eq!(late.next, 15);
        r.append(MAX_LINES as u64 + 10, vec!["x".repeat(5000)]);
        assert_eq!(
            r.read(Some(MAX_LINES as u64 + 10), 1).lines[0].len(),
            MAX_LINE
        );
    }

    #[test]
    fn lines_that_never_arrived_are_a_gap() {
        let mut r = Ring::default();
        r.append(0, lines(0, 2));
        r.append(10, lines(10, 2));
        assert!(r.gap);
        assert_eq!(r.read(None, 10).first, 10);
    }
}
