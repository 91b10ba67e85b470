//! Logging is set up exactly once per process, in `main`, and the root logger is passed
//! down. (The seed's Python swarm added its handler twice and printed every line twice;
//! here there is one drain per process and nothing else adds one.)

use parking_lot::Mutex;
use slog::{o, Drain, Level, Logger};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

pub fn parse_level(s: &str) -> Option<Level> {
    match s.trim().to_ascii_lowercase().as_str() {
        "trace" => Some(Level::Trace),
        "debug" => Some(Level::Debug),
        "info" => Some(Level::Info),
        "warn" | "warning" => Some(Level::Warning),
        "error" => Some(Level::Error),
        "critical" | "crit" => Some(Level::Critical),
        _ => None,
    }
}

/// A root logger writing one line per event to `writer`.
pub fn logger_to<W: Write + Send + 'static>(
    writer: W,
    level: Level,
    program: &'static str,
) -> Logger {
    let decorator = slog_term::PlainSyncDecorator::new(writer);
    let drain = slog_term::FullFormat::new(decorator)
        .use_original_order()
        .build()
        .filter_level(level)
        .fuse();
    Logger::root(drain, o!("program" => program))
}

/// The root logger of a daemon: standard error, or a file when one is configured.
pub fn root_logger(level: &str, file: Option<&Path>, program: &'static str) -> io::Result<Logger> {
    let level = parse_level(level).unwrap_or(Level::Info);
    Ok(match file {
        Some(path) => logger_to(open_log_file(path)?, level, program),
        None => logger_to(io::stderr(), level, program),
    })
}

/// Opens a log file for appending, making its directory first.
fn open_log_file(path: &Path) -> io::Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// The last log lines of a process, for a drone to send with its heartbeats. Each line
/// enters once; `drain` hands them over once.
#[derive(Clone, Default)]
pub struct LogTap {
    lines: Arc<Mutex<std::collections::VecDeque<String>>>,
}

/// Lines kept while the orchestrator cannot be reached.
const TAP_LINES: usize = 500;

impl LogTap {
    fn push(&self, line: String) {
        let mut l = self.lines.lock();
        if l.len() >= TAP_LINES {
            l.pop_front();
        }
        l.push_back(line);
    }
    /// Takes every line collected so far.
    pub fn drain(&self) -> Vec<String> {
        self.lines.lock().drain(..).collect()
    }
    /// Gives lines back (a heartbeat that did not get through), in front of newer ones.
    pub fn restore(&self, lines: Vec<String>) {
        let mut l = self.lines.lock();
        for line in lines.into_iter().rev() {
            if l.len() >= TAP_LINES {
                break;
            }
            l.push_front(line);
        }
    }
}

/// Writes to `inner` and copies each complete line into a [`LogTap`].
pub struct TeeWriter<W> {
    inner: W,
    tap: LogTap,
    partial: Vec<u8>,
}

impl<W: Write> TeeWriter<W> {
    pub fn new(inner: W, tap: LogTap) -> Self {
        TeeWriter {
            inner,
            tap,
            partial: Vec::new(),
        }
    }
}

impl<W: Write> Write for TeeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        for &b in &buf[..n] {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                self.tap.push(line);
            } else if self.partial.len() < 8192 {
                self.partial.push(b);
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The root logger of a drone: to its file (or standard error) and, line by line, to `tap`.
pub fn tapped_logger(
    level: &str,
    file: Option<&Path>,
    program: &'static str,
    tap: LogTap,
) -> io::Result<Logger> {
    let level = parse_level(level).unwrap_or(Level::Info);
    Ok(match file {
        Some(path) => logger_to(TeeWriter::new(open_log_file(path)?, tap), level, program),
        None => logger_to(TeeWriter::new(io::stderr(), tap), level, program),
    })
}

/// A writer that keeps everything in memory, for tests that read what was logged.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
    pub fn logger(&self, level: Level) -> Logger {
        logger_to(self.clone(), level, "test")
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slog::info;

    #[test]
    fn one_event_gives_one_line() {
        let cap = Capture::default();
        let log = cap.logger(Level::Info);
        let child = log.new(o!("actor" => "queue"));
        info!(child, "package published"; "atom" => "app-misc/foo-1.0");
        let text = cap.text();
        assert_eq!(text.matches("package published").count(), 1, "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[test]
    fn the_tap_gets_each_line_once() {
        let tap = LogTap::default();
        let cap = Capture::default();
        let log = logger_to(TeeWriter::new(cap.clone(), tap.clone()), Level::Info, "t");
        info!(log, "uploading"; "atom" => "a/b-1");
        info!(log, "uploaded");
        let lines = tap.drain();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("uploading") && lines[1].contains("uploaded"));
        assert!(tap.drain().is_empty());
        assert_eq!(cap.text().lines().count(), 2);
    }

    #[test]
    fn levels_parse() {
        assert_eq!(parse_level("WARNING"), Some(Level::Warning));
        assert_eq!(parse_level("loud"), None);
    }
}
