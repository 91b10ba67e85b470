//! Child processes that can always be stopped: each runs in its own process group, and
//! stopping it signals the whole group (the program and everything it started, e.g.
//! rsync's ssh), never just the direct child.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("empty command line")]
    Empty,
    #[error("cannot start `{program}`: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("`{program}` did not finish within {secs} s and was killed")]
    TimedOut { program: String, secs: u64 },
    #[error("waiting for `{program}`: {source}")]
    Wait { program: String, source: io::Error },
    #[error("`{program}` printed more than {limit} bytes and was killed")]
    TooMuchOutput { program: String, limit: usize },
}

/// Sends `signal` to the process group led by `pid`. Errors (the group is gone) are
/// ignored: the point is that nothing of it is left.
pub fn signal_group(pid: u32, signal: libc::c_int) {
    if pid == 0 || pid > i32::MAX as u32 {
        return;
    }
    // SAFETY: killpg has no memory-safety preconditions; a stale pgid only yields ESRCH.
    unsafe {
        libc::killpg(pid as libc::pid_t, signal);
    }
}

/// SIGTERM to the group, a short grace, then SIGKILL to the group.
pub async fn terminate_group(child: &mut Child, grace: Duration) {
    let Some(pid) = child.id() else { return };
    signal_group(pid, libc::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        signal_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    // Children that ignored SIGTERM while the leader exited still get the KILL.
    signal_group(pid, libc::SIGKILL);
}

/// A command ready to spawn in its own process group, stdin closed.
pub fn group_command(argv: &[String]) -> Result<Command, ProcessError> {
    let (program, args) = argv.split_first().ok_or(ProcessError::Empty)?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    Ok(cmd)
}

/// The state letter (`R`, `S`, `Z`, …) and the process group of `pid`, from /proc.
pub fn state_and_group(pid: u32) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" that ends the command name: state ppid pgrp ...
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.to_string();
    let pgrp = fields.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

/// The name a group guard's `sh` runs as (`$0`), to find it in a process list.
pub const GUARD_NAME: &str = "swarm-group-guard";

/// Kills a process group if this process dies first, however it dies (`kill -9` too): a
/// small `sh` in a group of its own waits on a pipe that only this process holds open;
/// when the pipe closes while the guard still lives, it kills the group. Dropping the
/// guard dismisses it (the guard is killed before its pipe closes).
pub struct GroupGuard {
    /// Declared first: dropped (and so killed) before the pipe below closes.
    _guard: Child,
    _pipe: tokio::process::ChildStdin,
}

/// Starts a guard for the process group `pgid` (see [`GroupGuard`]).
pub fn guard_group(pgid: u32) -> io::Result<GroupGuard> {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        r#"read _ ; kill -s KILL -- "-$1" 2>/dev/null"#,
        GUARD_NAME,
        &pgid.to_string(),
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .process_group(0)
    .kill_on_drop(true);
    let mut guard = cmd.spawn()?;
    let pipe = guard
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("the guard has no pipe"))?;
    Ok(GroupGuard {
        _guard: guard,
        _pipe: pipe,
    })
}

#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// The last bytes of stdout and stderr together.
    pub output_tail: String,
}

/// Starts `argv` in its own group with stdout and stderr piped (and stdin, when
/// `stdin`); its program name too.
fn spawn_piped(argv: &[String], stdin: bool) -> Result<(String, Child), ProcessError> {
    let program = argv.first().cloned().unwrap_or_default();
    let mut cmd = group_command(argv)?;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin {
        cmd.stdin(Stdio::piped());
    }
    let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        program: program.clone(),
        source,
    })?;
    Ok((program, child))
}

/// Runs `argv` to completion or kills its whole group after `timeout`.
pub async fn run_with_timeout(
    argv: &[String],
    timeout: Duration,
) -> Result<Finished, ProcessError> {
    run_with_input(argv, None, timeout).await
}

/// As [`run_with_timeout`], writing `input` to its standard input (then closing it; a
/// program that does not read it all is not an error).
pub async fn run_with_input(
    argv: &[String],
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<Finished, ProcessError> {
    let (program, mut child) = spawn_piped(argv, input.is_some())?;
    let mut stdin = child.stdin.take();
    let feed = async {
        use tokio::io::AsyncWriteExt;
        if let (Some(w), Some(bytes)) = (stdin.as_mut(), input) {
            let _ = w.write_all(bytes).await;
        }
        drop(stdin);
    };
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let collect = async {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let ra = async {
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_end(&mut a).await;
            }
        };
        let rb = async {
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_end(&mut b).await;
            }
        };
        tokio::join!(ra, rb);
        a.extend_from_slice(&b);
        a
    };
    let run = async {
        let (_, bytes, status) = tokio::join!(feed, collect, child.wait());
        (bytes, status)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok((bytes, status)) => {
            let status = status.map_err(|source| ProcessError::Wait {
                program: program.clone(),
                source,
            })?;
            Ok(Finished {
                status,
                output_tail: tail_utf8(&bytes, 4096),
            })
        }
        Err(_) => {
            terminate_group(&mut child, Duration::from_secs(2)).await;
            Err(ProcessError::TimedOut {
                program,
                secs: timeout.as_secs(),
            })
        }
    }
}

/// What [`run_capture`] got.
#[derive(Debug)]
pub struct Captured {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// The last bytes of stderr.
    pub stderr_tail: String,
}

/// Runs `argv` to completion keeping its stdout (at most `limit` bytes: more, and its
/// group is killed), or kills its whole group after `timeout`.
pub async fn run_capture(
    argv: &[String],
    timeout: Duration,
    limit: usize,
) -> Result<Captured, ProcessError> {
    let (program, mut child) = spawn_piped(argv, false)?;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let pid = child.id().unwrap_or(0);
    let read = async {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let ra = async {
            if let Some(o) = out.as_mut() {
                // One byte past the limit tells "too much" from "exactly the limit".
                let _ = o.take(limit as u64 + 1).read_to_end(&mut stdout).await;
                if stdout.len() > limit {
                    // It would block on a full pipe: stop it now (stderr then ends too).
                    signal_group(pid, libc::SIGKILL);
                }
            }
        };
        let rb = async {
            if let Some(e) = err.as_mut() {
                let mut buf = [0u8; 8192];
                while let Ok(n) = e.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    stderr.extend_from_slice(&buf[..n]);
                    if stderr.len() > 64 * 1024 {
                        stderr.drain(..stderr.len() - 4096);
                    }
                }
            }
        };
        tokio::join!(ra, rb);
        (stdout, stderr)
    };
    // One deadline for reading and waiting together.
    let deadline = tokio::time::Instant::now() + timeout;
    let (stdout, stderr) = match tokio::time::timeout_at(deadline, read).await {
        Ok(v) => v,
        Err(_) => {
            terminate_group(&mut child, Duration::from_secs(2)).await;
            return Err(ProcessError::TimedOut {
                program,
                secs: timeout.as_secs(),
            });
        }
    };
    if stdout.len() > limit {
        terminate_group(&mut child, Duration::from_secs(2)).await;
        return Err(ProcessError::TooMuchOutput { program, limit });
    }
    let status = match tokio::time::timeout_at(deadline, child.wait()).await {
        Ok(s) => s.map_err(|source| ProcessError::Wait {
            program: program.clone(),
            source,
        })?,
        Err(_) => {
            terminate_group(&mut child, Duration::from_secs(2)).await;
            return Err(ProcessError::TimedOut {
                program,
                secs: timeout.as_secs(),
            });
        }
    };
    Ok(Captured {
        status,
        stdout,
        stderr_tail: tail_utf8(&stderr, 2048),
    })
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C): how a program learns it should stop.
pub async fn stop_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The last `max` bytes of `bytes` as text, cut on a character boundary.
pub fn tail_utf8(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    let text = String::from_utf8_lossy(&bytes[start..]);
    text.trim_start_matches('\u{fffd}').to_string()
}

/// The last `max` bytes of a string, cut on a character boundary.
pub fn tail_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[actix_web::test]
    async fn captures_output_and_status() {
        let f = run_with_timeout(
            &argv(&["sh", "-c", "echo hello; echo oops >&2; exit 3"]),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(f.status.code(), Some(3));
        assert!(f.output_tail.contains("hello") && f.output_tail.contains("oops"));
    }

    #[actix_web::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let err = run_with_timeout(&argv(&["sh", "-c", &script]), Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(matches!(err, ProcessError::TimedOut { .. }), "{err}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild (sleep) must be gone too: reaped by init or a zombie at most
        // (a loaded machine may take a moment to finish a SIGKILL).
        assert!(
            gone_within(pid, Duration::from_secs(3)),
            "grandchild {pid} survived its group being killed: {:?}",
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
        );
    }

    /// Whether `pid` is dead (or a zombie) within `limit`.
    pub fn gone_within(pid: i32, limit: Duration) -> bool {
        let t0 = std::time::Instant::now();
        loop {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false);
            if !alive {
                return true;
            }
            if t0.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn tails_cut_on_char_boundaries() {
        assert_eq!(tail_str("héllo", 4), "llo");
        assert_eq!(tail_utf8("héllo".as_bytes(), 4), "llo");
    }
}
