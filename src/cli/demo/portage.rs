//! `build-swarm demo --builder portage`: the demo with real Portage instead of the stand-in
//! builder. The set is the shipped demo repository (`portage/repo`, planned with Portage's
//! resolver), every drone builds with real emerge in its own throwaway configuration
//! (`scripts/portage-env`) taking dependencies from the orchestrator's `/binhost/`, and at
//! the end a clean Portage client installs the whole set from there. Needs the checkout
//! (the repository and the script) and Portage from PyPI (`scripts/install-deps portage`).

use super::swarm::DemoError;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// What the demo asks Portage to plan: the demo repository's packages (with what they
/// pull in), not the `swarm-broken` ones.
pub fn atoms() -> Vec<String> {
    let mut v = vec!["=swarm-apps/app-1.0".to_string()];
    v.extend((0..24).map(|i| format!("=swarm-extra/extra{i:02}-1.0")));
    v
}

/// Where the demo finds Portage, the repository and `scripts/portage-env`.
pub struct Portage {
    pub venv: PathBuf,
    pub repo: PathBuf,
    script: PathBuf,
}

/// Where scripts/install-deps puts Portage: `$BUILD_SWARM_PORTAGE_VENV`, else
/// `${XDG_CACHE_HOME:-~/.cache}/build-swarm/portage-venv`.
pub fn venv_path() -> PathBuf {
    std::env::var_os("BUILD_SWARM_PORTAGE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                });
            cache.join("build-swarm/portage-venv")
        })
}

impl Portage {
    pub fn find() -> Result<Portage, DemoError> {
        let checkout = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let venv = venv_path();
        if !venv.join("bin/emerge").is_file() {
            return Err(DemoError::Missing(format!(
                "no Portage in {}: run scripts/install-deps portage",
                venv.display()
            )));
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(DemoError::Missing(
                "--builder portage builds and installs as root (Portage without its portage user)"
                    .into(),
            ));
        }
        let repo = checkout.join("portage/repo");
        let script = checkout.join("scripts/portage-env");
        if !repo.is_dir() || !script.is_file() {
            return Err(DemoError::Missing(format!(
                "--builder portage runs from the build-swarm checkout ({} is gone)",
                checkout.display()
            )));
        }
        Ok(Portage { venv, repo, script })
    }

    /// A throwaway configuration under `dir` (with `binhost`: fetching from it; with
    /// `verify_key`: trusting that key and verifying every package's signature).
    pub fn env(
        &self,
        dir: &Path,
        binhost: Option<&str>,
        verify_key: Option<&Path>,
    ) -> Result<PathBuf, DemoError> {
        let mut c = std::process::Command::new(&self.script);
        c.arg(dir).args(["--repo"]).arg(&self.repo);
        if let Some(b) = binhost {
            c.args(["--binhost", b]);
        }
        if let Some(k) = verify_key {
            c.arg("--verify-key").arg(k);
        }
        let out = c
            .output()
            .map_err(|e| DemoError::Start(format!("cannot run {}: {e}", self.script.display())))?;
        if !out.status.success() {
            return Err(DemoError::Start(format!(
                "portage-env: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(dir.to_path_buf())
    }

    /// A new Ed25519 signing key for the demo's orchestrator (made with GnuPG, which
    /// Portage needs anyway), exported to `dir/signing-key.asc`; its path. GnuPG's agent
    /// is stopped again, so nothing is left running.
    pub fn signing_key(&self, dir: &Path) -> Result<PathBuf, DemoError> {
        let home = dir.join("gnupg");
        std::fs::create_dir_all(&home)
            .map_err(|e| DemoError::Start(format!("creating {}: {e}", home.display())))?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700));
        }
        let key = dir.join("signing-key.asc");
        let uid = "build-swarm demo <demo@build-swarm.invalid>";
        let script = format!(
            "set -e; export GNUPGHOME='{h}'; \
             gpg --batch --quiet --passphrase '' --quick-gen-key '{uid}' ed25519 sign never; \
             gpg --batch --armor --export-secret-keys demo@build-swarm.invalid > '{k}'; \
             gpgconf --kill all",
            h = home.display(),
            k = key.display()
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| DemoError::Start(format!("making a signing key with gpg: {e}")))?;
        if !out.status.success() {
            return Err(DemoError::Start(format!(
                "making a signing key with gpg (scripts/install-deps portage installs it): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(key)
    }

    /// Runs `script` in `env`'s environment; its standard output.
    async fn sh(&self, env: &Path, script: &str, what: &str) -> Result<String, DemoError> {
        let full = format!(". '{}/env.sh'; {script}", env.display());
        let out = tokio::process::Command::new("sh")
            .args(["-c", &full])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| DemoError::Start(format!("{what}: {e}")))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(5).collect();
            return Err(DemoError::Start(format!(
                "{what} failed: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The demo set, planned by Portage's resolver in `env` (every dependency edge).
    pub async fn plan(&self, env: &Path) -> Result<String, DemoError> {
        let python = self.venv.join("bin/python3");
        let helper = env.join("plan.py");
        std::fs::write(&helper, crate::cli::plan::HELPER)
            .map_err(|e| DemoError::Start(format!("writing {}: {e}", helper.display())))?;
        let atoms: Vec<String> = atoms().iter().map(|a| format!("'{a}'")).collect();
        self.sh(
            env,
            &format!(
                "exec '{}' '{}' --emptytree {}",
                python.display(),
                helper.display(),
                atoms.join(" ")
            ),
            "planning the demo set with Portage",
        )
        .await
    }

    /// The drones' build command in `env`: dependencies from the binhost, the package
    /// itself built (what config/drone.toml recommends).
    pub fn build_command(env: &Path) -> Vec<String> {
        let emerge = env.join("bin/emerge").display().to_string();
        [
            emerge.as_str(),
            "--oneshot",
            "--buildpkg",
            "--usepkg",
            "--getbinpkg",
            "--usepkg-exclude",
            "{category}/{name}",
            "--quiet-build=y",
            "={atom}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// A clean client in `env` installs `atoms` from the binhost only; how many of them
    /// are installed afterwards. (Any GnuPG agent verifying signatures started is stopped.)
    pub async fn install(&self, env: &Path, atoms: &[String]) -> Result<usize, DemoError> {
        let args: Vec<String> = atoms.iter().map(|a| format!("'={a}'")).collect();
        let installed = self
            .sh(
                env,
                &format!(
                    "'{}/bin/emerge' --getbinpkgonly --oneshot --quiet {}",
                    env.display(),
                    args.join(" ")
                ),
                "installing the set from the binhost",
            )
            .await;
        if env.join("gnupg").is_dir() {
            let _ = std::process::Command::new("gpgconf")
                .args(["--homedir"])
                .arg(env.join("gnupg"))
                .args(["--kill", "all"])
                .stdin(Stdio::null())
                .output();
        }
        installed?;
        Ok(atoms
            .iter()
            .filter(|a| {
                let pf = a.split('/').nth(1).unwrap_or_default();
                let name = pf.rsplit_once('-').map_or(pf, |(n, _)| n);
                env.join(format!("root/usr/share/{name}/{name}.txt"))
                    .is_file()
            })
            .count())
    }
}
