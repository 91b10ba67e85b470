//! `build-swarm plan [EMERGE ARGS…]` and `submit --plan EMERGE ARGS…`: Portage's own
//! resolver on this host plans the set. A Python helper shipped inside this binary
//! ([`HELPER`], `plan.py`) runs with the Python the `emerge` on PATH uses (its shebang) or
//! `--portage-python`, with this host's configuration from the environment as emerge
//! would (PORTAGE_CONFIGROOT, ROOT, PORTAGE_REPOSITORIES, …), and prints a JSON package
//! set: every package to build, with its build- and run-time dependencies inside the set
//! and `estimate_s` from this host's emerge.log.

use super::error::CliError;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The Portage-side helper.
pub const HELPER: &str = include_str!("plan.py");

/// The Python to run the helper with: `explicit`, else the interpreter of the `emerge`
/// found on PATH.
pub fn portage_python(explicit: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let emerge = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("emerge"))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| {
            CliError::Invalid(
                "no `emerge` on PATH: run plan where Portage is, or give --portage-python".into(),
            )
        })?;
    let text = std::fs::read(&emerge)
        .map_err(|e| CliError::io(format!("cannot read {}", emerge.display()), e))?;
    let first = text.split(|b| *b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    if let Some(interp) = shebang_python(&first) {
        return Ok(PathBuf::from(interp));
    }
    // Gentoo's emerge is python-exec's wrapper (not a script): the python3 that imports
    // Portage is the one.
    let imports = std::process::Command::new("python3")
        .args(["-c", "import _emerge.depgraph"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if imports {
        return Ok(PathBuf::from("python3"));
    }
    Err(CliError::Invalid(format!(
        "{} is not a Python script and python3 cannot import Portage; give --portage-python",
        emerge.display()
    )))
}

/// The Python interpreter of a `#!` line (`#!/usr/bin/python3.12`, `#!/usr/bin/env
/// python3`), if it names one.
pub fn shebang_python(line: &str) -> Option<String> {
    let rest = line.strip_prefix("#!")?.trim();
    let mut words = rest.split_whitespace();
    let first = words.next()?;
    let interp = if first.ends_with("/env") {
        words.find(|w| !w.starts_with('-'))?
    } else {
        first
    };
    let name = interp.rsplit('/').next().unwrap_or(interp);
    name.starts_with("python").then(|| interp.to_string())
}

/// The planned set (JSON), checked to be a valid package set.
pub async fn plan(python: &Path, emerge_args: &[String]) -> Result<String, CliError> {
    let out = tokio::process::Command::new(python)
        .arg("-c")
        .arg(HELPER)
        .args(emerge_args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| CliError::io(format!("cannot run {}", python.display()), e))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let why = stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("plan: "))
            .map(str::to_string)
            .unwrap_or_else(|| {
                let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
                format!(
                    "the Portage helper failed ({}): {}",
                    out.status,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )
            });
        return Err(CliError::Failed(why));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    crate::domain::parse_package_set(&text)
        .map_err(|e| CliError::Failed(format!("the planned set is not valid: {e}")))?;
    Ok(text)
}

/// `build-swarm plan`: the set on standard output, a one-line summary on standard error.
pub async fn run(python: Option<&Path>, emerge_args: &[String]) -> Result<(), CliError> {
    let python = portage_python(python)?;
    let text = plan(&python, emerge_args).await?;
    print!("{text}");
    if let Ok(set) = crate::domain::parse_package_set(&text) {
        let edges: usize = set.packages.iter().map(|p| p.deps.len()).sum();
        let estimated = set
            .packages
            .iter()
            .filter(|p| p.estimate_s.is_some())
            .count();
        eprintln!(
            "build-swarm: planned {} packages, {edges} dependencies, {estimated} with an estimate from emerge.log",
            set.packages.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_python_of_a_shebang() {
        assert_eq!(
            shebang_python("#!/usr/bin/python3.12").as_deref(),
            Some("/usr/bin/python3.12")
        );
        assert_eq!(
            shebang_python("#!/usr/bin/env -S python3 -u").as_deref(),
            Some("python3")
        );
        assert_eq!(shebang_python("#!/bin/sh"), None);
        assert_eq!(shebang_python("echo"), None);
    }
}
