//! Process groups a drone started and has not seen end yet, recorded in
//! `state_dir/running/` (one small file each: the group id and the program). A drone that
//! was killed outright (SIGKILL, OOM) cannot kill its builds' and uploads' process groups
//! itself; the next start finds the records and does, so no orphaned emerge keeps
//! Portage's locks and no stray rsync keeps writing.

use crate::sys::process::signal_group;
use std::path::{Path, PathBuf};

fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("running")
}

/// Where the record of `name` (e.g. `build-17`) lives.
pub fn record_path(state_dir: &Path, name: &str) -> PathBuf {
    dir(state_dir).join(name)
}

/// Notes that process group `pgid` runs `program`. Errors are returned for logging only:
/// a missing record must not stop a build.
pub fn record(path: &Path, pgid: u32, program: &str) -> std::io::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(path, format!("{pgid} {program}\n"))
}

pub fn forget(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// The command line of `pid`, if it is still a process group leader of its own group.
fn leader_cmdline(pid: u32) -> Option<String> {
    let (state, pgrp) = crate::sys::process::state_and_group(pid)?;
    if pgrp != pid || state == "Z" {
        return None;
    }
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&cmd).replace('\0', " "))
}

/// Kills every recorded group that is still running the recorded program (a reused pid
/// running something else is left alone), removes the records, and says what it killed.
pub fn reap(state_dir: &Path) -> Vec<String> {
    let mut killed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir(state_dir)) else {
        return killed;
    };
    for e in entries.flatten() {
        let path = e.path();
        if let Ok(text) = std::fs::read_to_string(&path) {
            let mut parts = text.trim().splitn(2, ' ');
            let pgid = parts.next().and_then(|p| p.parse::<u32>().ok());
            let program = parts.next().unwrap_or("");
            if let Some(pgid) = pgid {
                if leader_cmdline(pgid).is_some_and(|c| !program.is_empty() && c.contains(program))
                {
                    signal_group(pgid, libc::SIGKILL);
                    killed.push(format!("{program} (process group {pgid})"));
                }
            }
        }
        forget(&path);
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_recorded_group_left_behind_is_killed_on_the_next_start() {
        use std::os::unix::process::CommandExt;
        let state = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 123456 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id();
        std::thread::sleep(Duration::from_millis(100));
        record(
            &record_path(state.path(), "build-1"),
            pgid,
            "sleep 123456 & wait",
        )
        .unwrap();
        // A record whose pid now belongs to something else is not killed.
        record(
            &record_path(state.path(), "build-2"),
            std::process::id(),
            "emerge",
        )
        .unwrap();
        let killed = reap(state.path());
        assert_eq!(killed.len(), 1, "{killed:?}");
        let _ = child.wait();
        assert!(crate::sys::process::tests::gone_within(
            pgid as i32,
            Duration::from_secs(3)
        ));
        assert!(
            std::fs::read_dir(dir(state.path()))
                .unwrap()
                .next()
                .is_none(),
            "records removed"
        );
    }
}
