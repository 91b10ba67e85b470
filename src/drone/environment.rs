//! The drone's build environment (docs/design.md, "Environments"): its
//! `environment_command`'s `KEY=VALUE` lines, what it has (cores, memory, free disk in
//! PKGDIR and PORTAGE_TMPDIR) and its declared capabilities — collected at start, every
//! `environment_check_s` and after a sync, reported to the orchestrator when it changed.
//! Never fails: a command that fails or hangs becomes the report's `error`.

use crate::config::DroneConfig;
use crate::domain::environment::{parse_output, DroneEnvironment, Resources, MAX_OUTPUT_BYTES};
use crate::sys::process::{run_capture, run_with_timeout, tail_str};
use std::path::Path;
use std::time::Duration;

/// What collecting needs from the configuration.
#[derive(Debug, Clone)]
pub struct Collect {
    pub command: Vec<String>,
    pub timeout: Duration,
    pub capabilities: Vec<String>,
    pub pkgdir: std::path::PathBuf,
}

impl Collect {
    pub fn from_config(cfg: &DroneConfig) -> Self {
        Collect {
            command: cfg.environment_command.clone(),
            timeout: Duration::from_secs(cfg.environment_timeout_s),
            capabilities: cfg.capabilities.clone(),
            pkgdir: cfg.pkgdir.clone(),
        }
    }
}

/// Runs the environment command and looks at the machine.
pub async fn collect(c: &Collect) -> DroneEnvironment {
    let mut env = DroneEnvironment {
        capabilities: c.capabilities.clone(),
        ..DroneEnvironment::default()
    };
    if !c.command.is_empty() {
        match run_capture(&c.command, c.timeout, MAX_OUTPUT_BYTES).await {
            Ok(out) if out.status.success() => {
                match parse_output(&String::from_utf8_lossy(&out.stdout)) {
                    Ok((keys, repos)) => {
                        env.fingerprint = keys;
                        env.repos = repos;
                    }
                    Err(e) => env.error = Some(format!("environment_command printed {e}")),
                }
            }
            Ok(out) => {
                env.error = Some(format!(
                    "environment_command exited with {}: {}",
                    out.status,
                    tail_str(out.stderr_tail.trim(), 512)
                ))
            }
            Err(e) => env.error = Some(format!("environment_command: {e}")),
        }
    }
    // What the orchestrator would refuse (an empty repository name, too many keys) is
    // this drone's error, not a refused heartbeat.
    if let Err(e) = env.check() {
        env.fingerprint.clear();
        env.repos.clear();
        env.error = Some(format!("environment_command: {e}"));
    }
    let tmpdir = env
        .fingerprint
        .get("PORTAGE_TMPDIR")
        .map(|t| std::path::PathBuf::from(t.as_str()))
        .unwrap_or_else(|| "/var/tmp".into());
    let pkgdir = c.pkgdir.clone();
    env.resources = actix_web::rt::task::spawn_blocking(move || resources(&pkgdir, &tmpdir))
        .await
        .unwrap_or_default();
    env
}

/// Cores, memory and free disk (MB; 0 when unknown).
fn resources(pkgdir: &Path, tmpdir: &Path) -> Resources {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024);
    Resources {
        cores,
        memory_mb,
        pkgdir_free_mb: free_mb(pkgdir),
        tmpdir_free_mb: free_mb(tmpdir),
    }
}

/// Free space for an unprivileged writer where `dir` is (or its nearest existing parent).
fn free_mb(dir: &Path) -> u64 {
    let mut dir = dir;
    while !dir.exists() {
        match dir.parent() {
            Some(p) => dir = p,
            None => return 0,
        }
    }
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs fills the zeroed struct; the path is NUL-terminated.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return 0;
    }
    (s.f_bavail as u64).saturating_mul(s.f_frsize as u64) / (1024 * 1024)
}

/// Runs the `sync_command` (killed after `timeout`): `Ok` or why it failed.
pub async fn sync(argv: &[String], timeout: Duration) -> Result<(), String> {
    match run_with_timeout(argv, timeout).await {
        Ok(f) if f.status.success() => Ok(()),
        Ok(f) => Err(format!(
            "sync_command exited with {}: {}",
            f.status,
            tail_str(f.output_tail.trim(), 512)
        )),
        Err(e) => Err(format!("sync_command: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect_with(argv: &[&str], timeout_ms: u64) -> Collect {
        Collect {
            command: argv.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_millis(timeout_ms),
            capabilities: vec!["big-mem".into()],
            pkgdir: std::env::temp_dir(),
        }
    }

    #[actix_web::test]
    async fn a_command_that_prints_keys_is_read_and_resources_are_known() {
        let c = collect_with(
            &[
                "sh",
                "-c",
                "echo CHOST=x; echo \"CFLAGS='-O2 -pipe'\"; echo REPO_REVISION/g=abc",
            ],
            10_000,
        );
        let env = collect(&c).await;
        assert_eq!(env.error, None);
        assert_eq!(env.fingerprint["CFLAGS"], "-O2 -pipe");
        assert_eq!(env.repos["g"].revision, "abc");
        assert_eq!(env.capabilities, ["big-mem"]);
        assert!(env.resources.cores >= 1 && env.resources.memory_mb > 0);
        assert!(env.resources.pkgdir_free_mb > 0);
    }

    #[actix_web::test]
    async fn failing_hanging_or_flooding_commands_become_the_reports_error() {
        let env = collect(&collect_with(
            &["sh", "-c", "echo oops >&2; exit 3"],
            10_000,
        ))
        .await;
        let e = env.error.expect("error");
        assert!(e.contains("exit status: 3") && e.contains("oops"), "{e}");
        let started = std::time::Instant::now();
        let env = collect(&collect_with(&["sh", "-c", "sleep 30"], 300)).await;
        assert!(env.error.expect("error").contains("did not finish"));
        assert!(started.elapsed() < Duration::from_secs(10));
        // 10 MB of USE flags: refused at once, not after the timeout.
        let started = std::time::Instant::now();
        let env = collect(&collect_with(
            &[
                "sh",
                "-c",
                "printf 'USE='; head -c 10000000 /dev/zero | tr '\\0' 'u'",
            ],
            30_000,
        ))
        .await;
        assert!(env.error.expect("error").contains("printed more than"));
        assert!(started.elapsed() < Duration::from_secs(10));
        let env = collect(&collect_with(&["sh", "-c", "echo not a pair"], 10_000)).await;
        assert!(env.error.expect("error").contains("is not KEY=VALUE"));
        let env = collect(&collect_with(&["/nonexistent/program"], 10_000)).await;
        assert!(env.error.expect("error").contains("cannot start"));
        // An empty command: no fingerprint, no error.
        let env = collect(&collect_with(&[], 10_000)).await;
        assert_eq!(env.error, None);
        assert!(env.fingerprint.is_empty());
    }
}
