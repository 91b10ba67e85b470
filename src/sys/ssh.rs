//! Building an ssh command line for a drone's host: the CLI's `<drone> ssh` and `restart`
//! and the orchestrator's self-healing ladder both use it. ssh joins whatever follows the
//! host into one line for the remote user's shell, so the remote argv is quoted for that
//! shell ([`quote`]): each argument arrives as given. A host that could pass for an ssh
//! option is refused.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    #[error("the drone has no host to ssh to")]
    NoHost,
    #[error("the drone's host `{0}` is not a host name; refusing to pass it to ssh")]
    NotAHost(String),
}

/// `[user@]host`, refusing what ssh would read as an option or split on.
pub fn target(user: Option<&str>, host: &str) -> Result<String, SshError> {
    let host = host.trim();
    if host.is_empty() {
        return Err(SshError::NoHost);
    }
    if host.starts_with('-') || host.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(SshError::NotAHost(host.to_string()));
    }
    Ok(match user {
        Some(u) => format!("{u}@{host}"),
        None => host.to_string(),
    })
}

/// `ssh_command… -- [user@]host 'cmd…'`: the `--` stops ssh reading options anywhere after
/// it; `cmd` goes as one line, each argument quoted for the remote shell.
pub fn argv(
    ssh_command: &[String],
    user: Option<&str>,
    host: &str,
    cmd: &[String],
) -> Result<Vec<String>, SshError> {
    let mut argv = ssh_command.to_vec();
    if argv.is_empty() {
        argv.push("ssh".into());
    }
    argv.push("--".into());
    argv.push(target(user, host)?);
    if !cmd.is_empty() {
        let line: Vec<String> = cmd.iter().map(|a| quote(a)).collect();
        argv.push(line.join(" "));
    }
    Ok(argv)
}

/// `arg` as one word for a POSIX shell: unchanged when it has nothing the shell would
/// read (`=` is quoted: a first word `A=b` would be an assignment), else in single
/// quotes (a `'` inside as `'\''`). A pipeline is one argument to `sh -c`.
pub fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@%+:,./-".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn ssh_gets_an_argv_with_the_user_and_a_safe_host() {
        assert_eq!(
            argv(
                &s(&["ssh"]),
                Some("root"),
                "100.64.0.18",
                &s(&["tail", "-20", "a b"])
            )
            .unwrap(),
            s(&["ssh", "--", "root@100.64.0.18", "tail -20 'a b'"])
        );
        assert_eq!(
            quote("kill -9 $(cat p); it's"),
            "'kill -9 $(cat p); it'\\''s'"
        );
        assert_eq!(quote(""), "''");
        assert_eq!(
            argv(&s(&["ssh", "-i", "k"]), None, "h.lan", &[]).unwrap(),
            s(&["ssh", "-i", "k", "--", "h.lan"])
        );
        assert_eq!(argv(&[], None, "h", &[]).unwrap(), s(&["ssh", "--", "h"]));
        assert_eq!(target(None, " "), Err(SshError::NoHost));
        for bad in ["-oProxyCommand=x", "a b", "a\nb"] {
            assert!(argv(&s(&["ssh"]), None, bad, &[]).is_err(), "{bad:?}");
        }
    }
}
