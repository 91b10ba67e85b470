//! The upload command line and what rsync's exit codes mean. One file, from PKGDIR, with
//! `--relative` so it lands as `<upload_dir>/<category>/<file>`; a stall timeout inside
//! rsync (`--timeout`); ssh options where rsync understands them (`-e`), never
//! daemon-only options such as `--contimeout` over ssh (seed bug #2); no `--partial` or
//! `--inplace`, so a killed transfer never leaves a half file under the final name.

use crate::config::drone::UploadConfig;
use crate::config::{target_kind, TargetKind};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// argv of the upload of `rel` (relative to PKGDIR, where rsync runs) into
/// `<target>/<upload_dir>/`.
pub fn upload_argv(cfg: &UploadConfig, target: &str, upload_dir: &str, rel: &str) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        "rsync".into(),
        "-a".into(),
        format!("--timeout={}", cfg.stall_timeout_s),
        "--relative".into(),
        "--stats".into(),
    ];
    if target_kind(target) == TargetKind::Ssh {
        let mut ssh = vec!["ssh".to_string()];
        ssh.extend(cfg.ssh_options.iter().cloned());
        if let Some(id) = &cfg.ssh_identity {
            ssh.push("-i".into());
            ssh.push(id.display().to_string());
        }
        argv.push("-e".into());
        argv.push(ssh.join(" "));
    }
    argv.extend(cfg.rsync_options.iter().cloned());
    argv.push(format!("./{rel}"));
    argv.push(format!("{}/{}/", target.trim_end_matches('/'), upload_dir));
    argv
}

/// Longest control socket path: a Unix socket path has at most 107 bytes, and ssh binds a
/// temporary name 17 bytes longer before renaming it into place.
const MAX_CONTROL_PATH: usize = 88;
/// Uploads sharing one master connection at most (sshd's `MaxSessions` is 10 by default);
/// more go over their own connection.
pub const MAX_SHARED_UPLOADS: usize = 8;

/// An ssh master connection the drone's upload supervisor keeps for a target, and the
/// control socket the uploads reach it through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuxSpec {
    pub control_path: PathBuf,
    /// `ssh … -M -N -o ControlPath=… host`: the master, run in its own process group.
    pub master_argv: Vec<String>,
}

/// The master for uploads to `target`, when `reuse_connections` is on and the target is
/// reached over ssh; `None` otherwise, or when `state_dir` is too long (or has spaces or
/// quotes) for a control socket — then every upload opens its own connection as before.
pub fn mux_spec(cfg: &UploadConfig, state_dir: &Path, target: &str) -> Option<MuxSpec> {
    if !cfg.reuse_connections || target_kind(target) != TargetKind::Ssh {
        return None;
    }
    let (host, _) = target.split_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.starts_with('-') {
        return None;
    }
    let mut ssh: Vec<String> = cfg.ssh_options.clone();
    if let Some(id) = &cfg.ssh_identity {
        ssh.push("-i".into());
        ssh.push(id.display().to_string());
    }
    // One socket per destination and ssh settings.
    let mut h = Sha256::new();
    h.update(host.as_bytes());
    for o in &ssh {
        h.update([0u8]);
        h.update(o.as_bytes());
    }
    let tag = crate::sys::digest::hex(&h.finalize()[..6]);
    let control_path = state_dir.join("ssh").join(format!("cm-{tag}"));
    let shown = control_path.display().to_string();
    if shown.len() > MAX_CONTROL_PATH
        || shown.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"' || c == '\\')
    {
        return None;
    }
    let mut master_argv = vec!["ssh".to_string()];
    master_argv.extend(ssh);
    master_argv.extend(
        [
            "-M",
            "-N",
            "-o",
            &format!("ControlPath={shown}"),
            "-o",
            "ControlPersist=no",
            "--",
            host,
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    Some(MuxSpec {
        control_path,
        master_argv,
    })
}

/// `argv` of an upload made to go through the master at `control_path`: its ssh never
/// becomes a master itself (`ControlMaster=no`), and connects on its own when the socket
/// does not answer.
pub fn with_control_path(argv: &[String], control_path: &Path) -> Vec<String> {
    let mut out = argv.to_vec();
    if let Some(i) = out.iter().position(|a| a == "-e") {
        if let Some(e) = out.get_mut(i + 1) {
            e.push_str(&format!(
                " -o ControlMaster=no -o ControlPath={}",
                control_path.display()
            ));
        }
    }
    out
}

/// A readable reason for rsync's exit code.
pub fn exit_reason(code: Option<i32>) -> String {
    let what = match code {
        Some(0) => "success",
        Some(1) => "syntax or usage error (an rsync option this rsync does not accept?)",
        Some(2) => "protocol incompatibility",
        Some(3) => {
            "errors selecting input/output files or directories (does the upload target exist?)"
        }
        Some(4) => "requested action not supported",
        Some(5) => "error starting the client-server protocol",
        Some(10) => "error in socket I/O",
        Some(11) => "error in file I/O (disk full on the receiving side?)",
        Some(12) => "error in the rsync protocol data stream (connection lost?)",
        Some(13) => "errors with program diagnostics",
        Some(14) => "error in IPC code",
        Some(20) => "received SIGUSR1 or SIGINT",
        Some(23) => "partial transfer due to error",
        Some(24) => "partial transfer: source files vanished",
        Some(25) => "--max-delete limit stopped deletions",
        Some(30) => "stall timeout: no data moved within --timeout",
        Some(35) => "timeout waiting for daemon connection",
        Some(255) => {
            "ssh failed (host unreachable, authentication refused, or the connection dropped)"
        }
        Some(_) => "unexpected error",
        None => "killed by a signal",
    };
    match code {
        Some(c) => format!("rsync exit {c}: {what}"),
        None => format!("rsync {what}"),
    }
}

/// `Total bytes sent: 1,234` from `--stats` output.
pub fn bytes_sent(stats: &str) -> Option<u64> {
    stats.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("Total bytes sent:")?;
        rest.trim().replace([',', '.'], "").parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_upload_of_one_file() {
        let cfg = UploadConfig::default();
        let argv = upload_argv(
            &cfg,
            "root@orch:/var/staging/",
            "lease-7",
            "app-misc/foo-1.0.gpkg.tar",
        );
        assert_eq!(argv[0], "rsync");
        assert!(argv.contains(&"--timeout=300".to_string()));
        assert!(argv.contains(&"--relative".to_string()));
        let e = argv.iter().position(|a| a == "-e").unwrap();
        assert_eq!(
            argv[e + 1],
            "ssh -o ConnectTimeout=30 -o ServerAliveInterval=30 -o BatchMode=yes"
        );
        assert_eq!(argv[argv.len() - 2], "./app-misc/foo-1.0.gpkg.tar");
        assert_eq!(argv[argv.len() - 1], "root@orch:/var/staging/lease-7/");
        assert!(!argv
            .iter()
            .any(|a| a.contains("partial") || a.contains("inplace") || a.contains("contimeout")));
    }

    #[test]
    fn local_upload_has_no_ssh() {
        let argv = upload_argv(
            &UploadConfig::default(),
            "/srv/staging",
            "lease-1",
            "a/b-1.tbz2",
        );
        assert!(!argv.contains(&"-e".to_string()));
        assert_eq!(argv.last().unwrap(), "/srv/staging/lease-1/");
    }

    #[test]
    fn shared_connections_only_over_ssh_and_never_as_master() {
        let cfg = UploadConfig {
            reuse_connections: true,
            ..UploadConfig::default()
        };
        let state = Path::new("/var/lib/build-swarm-drone");
        assert!(mux_spec(&cfg, state, "/srv/staging").is_none());
        let off = UploadConfig {
            reuse_connections: false,
            ..UploadConfig::default()
        };
        assert!(mux_spec(&off, state, "root@orch:/s").is_none());
        let spec = mux_spec(&cfg, state, "root@orch:/s").unwrap();
        assert!(spec
            .control_path
            .starts_with("/var/lib/build-swarm-drone/ssh/"));
        assert_eq!(spec.master_argv.last().unwrap(), "root@orch");
        assert!(spec.master_argv.contains(&"-M".to_string()));
        assert!(spec.master_argv.contains(&"ControlPersist=no".to_string()));
        let argv = upload_argv(&cfg, "root@orch:/s", "lease-1", "a/b-1.tbz2");
        let shared = with_control_path(&argv, &spec.control_path);
        let e = shared.iter().position(|a| a == "-e").unwrap();
        assert!(shared[e + 1].ends_with(&format!(
            "-o ControlMaster=no -o ControlPath={}",
            spec.control_path.display()
        )));
        let long = Path::new(
            "/a/very/long/state/directory/that/leaves/no/room/for/a/control/socket/path/at/all",
        );
        assert!(mux_spec(&cfg, long, "root@orch:/s").is_none());
        assert!(mux_spec(&cfg, Path::new("/with space"), "root@orch:/s").is_none());
    }

    #[test]
    fn exit_codes_read_well() {
        assert!(exit_reason(Some(30)).contains("stall timeout"));
        assert!(exit_reason(Some(255)).contains("ssh"));
        assert!(exit_reason(Some(23)).contains("partial"));
        assert!(exit_reason(Some(12)).contains("data stream"));
        assert!(exit_reason(None).contains("signal"));
    }

    #[test]
    fn stats_are_read() {
        let out = "Number of files: 2\nTotal bytes sent: 1,048,901\nTotal bytes received: 35\n";
        assert_eq!(bytes_sent(out), Some(1_048_901));
    }
}
