//! Running one build: `build_command` as argv (never through a shell) with its placeholders
//! filled, in its own process group, stdout and stderr into a per-package log file. The
//! whole group is killed on `build_timeout_s`, after `build_idle_timeout_s` without output,
//! or on cancel; and once the build exits, anything it left running is killed too.

use crate::sys::process::{group_command, guard_group, signal_group, tail_utf8};
use crate::wire::orchestrator::WorkAssignment;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Bytes of build output kept for the failure report.
pub const LOG_TAIL: usize = 8 * 1024;
/// After the build exits, output still arriving from leftovers is read for this long.
const DRAIN: Duration = Duration::from_secs(2);

/// `build_command` with `{atom}`, `{category}`, `{name}`, `{version}`, `{pkgdir}` filled in.
pub fn fill_placeholders(argv: &[String], w: &WorkAssignment, pkgdir: &Path) -> Vec<String> {
    argv.iter()
        .map(|a| {
            a.replace("{atom}", &w.atom)
                .replace("{category}", &w.category)
                .replace("{name}", &w.name)
                .replace("{version}", &w.version)
                .replace("{pkgdir}", &pkgdir.display().to_string())
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct BuildSpec {
    pub argv: Vec<String>,
    pub log_path: PathBuf,
    pub total: Duration,
    pub idle: Duration,
    /// Where to record the build's process group while it runs (see `leftovers`).
    pub record: Option<PathBuf>,
    /// Where its output goes live ([`crate::drone::live_output`]): never waited for;
    /// what does not fit is skipped (and said so in the stream).
    pub output: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BuildEnd {
    Exited {
        code: Option<i32>,
    },
    TimedOut,
    Idle,
    Cancelled,
    /// The command could not be started at all (a drone problem, not the package's).
    NotStarted(String),
}

impl BuildEnd {
    pub fn describe(&self, spec: &BuildSpec) -> String {
        match self {
            BuildEnd::Exited { code: Some(0) } => "build succeeded".into(),
            BuildEnd::Exited { code: Some(c) } => {
                format!("`{}` exited with status {c}", spec.argv.join(" "))
            }
            BuildEnd::Exited { code: None } => {
                format!("`{}` was killed by a signal", spec.argv.join(" "))
            }
            BuildEnd::TimedOut => format!(
                "build ran longer than build_timeout_s ({} s) and was killed",
                spec.total.as_secs()
            ),
            BuildEnd::Idle => format!(
                "build printed nothing for build_idle_timeout_s ({} s), considered hung and killed",
                spec.idle.as_secs()
            ),
            BuildEnd::Cancelled => "build cancelled".into(),
            BuildEnd::NotStarted(e) => e.clone(),
        }
    }
}

async fn read_some(
    r: &mut Option<impl AsyncReadExt + Unpin>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match r.as_mut() {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Hands output to the live forwarder without ever waiting: when its channel is full
/// the bytes are counted, and a line saying how many were skipped goes first once there
/// is room again.
#[derive(Default)]
struct LiveSend {
    skipped: u64,
}

impl LiveSend {
    fn send(&mut self, tx: &tokio::sync::mpsc::Sender<Vec<u8>>, bytes: &[u8]) {
        if self.skipped > 0 {
            let note = format!(
                "\n[build-swarm: {} bytes of output were not sent live (the orchestrator fell behind); the drone's log file has them]\n",
                self.skipped
            );
            if tx.try_send(note.into_bytes()).is_err() {
                self.skipped += bytes.len() as u64;
                return;
            }
            self.skipped = 0;
        }
        if tx.try_send(bytes.to_vec()).is_err() {
            self.skipped += bytes.len() as u64;
        }
    }
}

/// Runs the build to its end. Returns how it ended and the tail of its output.
pub async fn run_build(spec: &BuildSpec, mut cancel: oneshot::Receiver<()>) -> (BuildEnd, String) {
    if let Some(dir) = spec.log_path.parent() {
        let _ = tokio::fs::create_dir_all(dir).await;
    }
    let mut log = tokio::fs::File::create(&spec.log_path).await.ok();
    let mut cmd = match group_command(&spec.argv) {
        Ok(c) => c,
        Err(e) => return (BuildEnd::NotStarted(e.to_string()), String::new()),
    };
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let msg = format!(
                "cannot start build command `{}`: {e}",
                spec.argv.first().map(String::as_str).unwrap_or("")
            );
            return (BuildEnd::NotStarted(msg), String::new());
        }
    };
    let pid = child.id().unwrap_or(0);
    // If the drone dies (even by SIGKILL), the build's whole group dies with it; the
    // leftover record below is the second line, for a guard that died too.
    let _guard = guard_group(pid).ok();
    if let Some(path) = &spec.record {
        let _ = crate::drone::leftovers::record(path, pid, &spec.argv.join(" "));
    }
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let mut tail: VecDeque<u8> = VecDeque::with_capacity(LOG_TAIL);
    let start = Instant::now();
    let mut last_output = Instant::now();
    let mut exited_at: Option<Instant> = None;
    let mut end: Option<BuildEnd> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut buf_out = vec![0u8; 16 * 1024];
    let mut buf_err = vec![0u8; 16 * 1024];
    let mut live = LiveSend::default();
    loop {
        let chunk: Option<Vec<u8>> = tokio::select! {
            r = read_some(&mut out, &mut buf_out) => match r {
                Ok(0) | Err(_) => { out = None; None }
                Ok(n) => Some(buf_out[..n].to_vec()),
            },
            r = read_some(&mut err, &mut buf_err) => match r {
                Ok(0) | Err(_) => { err = None; None }
                Ok(n) => Some(buf_err[..n].to_vec()),
            },
            st = child.wait(), if exited_at.is_none() => {
                exited_at = Some(Instant::now());
                end = Some(BuildEnd::Exited { code: st.ok().and_then(|s| s.code()) });
                None
            },
            _ = tick.tick() => {
                if exited_at.is_none() {
                    if start.elapsed() >= spec.total {
                        end = Some(BuildEnd::TimedOut);
                        break;
                    }
                    if last_output.elapsed() >= spec.idle {
                        end = Some(BuildEnd::Idle);
                        break;
                    }
                }
                None
            },
            _ = &mut cancel, if exited_at.is_none() => {
                end = Some(BuildEnd::Cancelled);
                break;
            },
        };
        if let Some(bytes) = chunk {
            last_output = Instant::now();
            if let Some(f) = log.as_mut() {
                let _ = f.write_all(&bytes).await;
            }
            if let Some(tx) = &spec.output {
                live.send(tx, &bytes);
            }
            for b in bytes {
                if tail.len() == LOG_TAIL {
                    tail.pop_front();
                }
                tail.push_back(b);
            }
        }
        if let Some(t) = exited_at {
            if (out.is_none() && err.is_none()) || t.elapsed() >= DRAIN {
                break;
            }
        }
    }
    // Whatever the build started dies with it: timeouts, cancels, and leftovers after exit.
    signal_group(pid, libc::SIGKILL);
    if let Some(path) = &spec.record {
        crate::drone::leftovers::forget(path);
    }
    if exited_at.is_none() {
        let _ = child.wait().await;
    }
    if let Some(f) = log.as_mut() {
        if let Some(e) = &end {
            if !matches!(e, BuildEnd::Exited { .. }) {
                let _ = f
                    .write_all(format!("\n[swarm-drone] {}\n", e.describe(spec)).as_bytes())
                    .await;
            }
        }
        let _ = f.flush().await;
    }
    let tail: Vec<u8> = tail.into_iter().collect();
    (
        end.unwrap_or(BuildEnd::Cancelled),
        tail_utf8(&tail, LOG_TAIL),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, script: &str, total: u64, idle_ms: u64) -> BuildSpec {
        BuildSpec {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            log_path: dir.join("logs/x.log"),
            total: Duration::from_secs(total),
            idle: Duration::from_millis(idle_ms),
            record: None,
            output: None,
        }
    }

    #[actix_web::test]
    async fn output_nobody_takes_live_never_holds_the_build_up() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let s = BuildSpec {
            output: Some(tx),
            ..spec(
                dir.path(),
                "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done",
                30,
                10_000,
            )
        };
        let (_keep, cancel) = oneshot::channel::<()>();
        let t0 = std::time::Instant::now();
        let (end, tail) = run_build(&s, cancel).await;
        assert_eq!(end, BuildEnd::Exited { code: Some(0) });
        assert!(tail.contains("line 2999"), "{tail}");
        assert!(t0.elapsed() < Duration::from_secs(20));
        // The one chunk that fit; the rest was skipped, not waited for.
        assert!(rx.try_recv().is_ok());
        let log = std::fs::read_to_string(dir.path().join("logs/x.log")).unwrap();
        assert_eq!(log.lines().count(), 3000, "the log file has every line");
    }

    #[actix_web::test]
    async fn output_goes_to_the_log_and_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(
            dir.path(),
            "echo compiling; echo 'oops' >&2; exit 2",
            10,
            5000,
        );
        let (_tx, rx) = oneshot::channel();
        let (end, tail) = run_build(&s, rx).await;
        assert_eq!(end, BuildEnd::Exited { code: Some(2) });
        assert!(tail.contains("compiling") && tail.contains("oops"));
        let log = std::fs::read_to_string(&s.log_path).unwrap();
        assert!(log.contains("compiling"));
    }

    #[actix_web::test]
    async fn a_silent_build_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let script = format!(
            "echo start; sleep 1000 & echo $! > {}; wait",
            pidfile.display()
        );
        let s = spec(dir.path(), &script, 60, 700);
        let (_tx, rx) = oneshot::channel();
        let t0 = std::time::Instant::now();
        let (end, _) = run_build(&s, rx).await;
        assert_eq!(end, BuildEnd::Idle);
        assert!(t0.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            crate::sys::process::tests::gone_within(pid, Duration::from_secs(3)),
            "the build's child survived"
        );
        assert!(std::fs::read_to_string(&s.log_path)
            .unwrap()
            .contains("considered hung"));
    }

    #[actix_web::test]
    async fn cancel_and_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(
            dir.path(),
            "while true; do echo tick; sleep 0.1; done",
            1,
            5000,
        );
        let (_tx, rx) = oneshot::channel();
        assert_eq!(run_build(&s, rx).await.0, BuildEnd::TimedOut);
        let (tx, rx) = oneshot::channel();
        let s = spec(
            dir.path(),
            "while true; do echo tick; sleep 0.1; done",
            60,
            5000,
        );
        actix_web::rt::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = tx.send(());
        });
        assert_eq!(run_build(&s, rx).await.0, BuildEnd::Cancelled);
    }

    #[actix_web::test]
    async fn a_missing_program_is_not_a_build_failure() {
        let dir = tempfile::tempdir().unwrap();
        let s = BuildSpec {
            argv: vec!["/nonexistent/emerge".into()],
            ..spec(dir.path(), "", 1, 1000)
        };
        let (_tx, rx) = oneshot::channel();
        assert!(matches!(run_build(&s, rx).await.0, BuildEnd::NotStarted(_)));
    }

    #[test]
    fn placeholders() {
        let w = WorkAssignment {
            lease: 1,
            epoch: 1,
            atom: "app-misc/foo-1.0".into(),
            category: "app-misc".into(),
            name: "foo".into(),
            version: "1.0".into(),
            upload_dir: "lease-1".into(),
        };
        let argv: Vec<String> = [
            "emerge",
            "={atom}",
            "{category}/{name}:{version}",
            "{pkgdir}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            fill_placeholders(&argv, &w, Path::new("/pkg")),
            vec!["emerge", "=app-misc/foo-1.0", "app-misc/foo:1.0", "/pkg"]
        );
    }
}
