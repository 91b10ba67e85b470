//! The CLI's errors: each one is printed as one sentence (`build-swarm: <sentence>`) and
//! maps to an exit code (0 ok, 1 error, 2 usage, 3 drone name did not match).

use super::matching::MatchError;
use crate::client::ClientError;
use crate::config::ConfigError;

/// Something went wrong; nothing more to print than the message.
pub const EXIT_ERROR: i32 = 1;
/// A command line clap refused (clap's own code).
pub const EXIT_USAGE: i32 = 2;
/// A drone name matched no drone, or several.
pub const EXIT_NO_MATCH: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("cannot reach the swarm; tried {}", .tried.join(", "))]
    Unreachable { tried: Vec<String> },
    #[error("cannot reach {url}: {message}")]
    Lost { url: String, message: String },
    #[error("the token was refused by {url}; check --token, BUILD_SWARM_TOKEN or `token` in the config file")]
    TokenRefused { url: String },
    #[error("{url} wants a token and none is configured; set --token, BUILD_SWARM_TOKEN or `token` in the config file")]
    TokenMissing { url: String },
    /// The server's own sentence (a 400 or 404 answer: bad input, unknown atom or drone).
    #[error("{0}")]
    Refused(String),
    #[error("{url} answered HTTP {status}: {message}")]
    Http {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url} gave an answer this CLI does not understand ({message}); is it a build-swarm orchestrator or gateway?")]
    Decode { url: String, message: String },
    #[error("{0}")]
    Match(#[from] MatchError),
    #[error(transparent)]
    Ssh(#[from] crate::sys::ssh::SshError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// A request that cannot be carried out as asked (no host to ssh to, …).
    #[error("{0}")]
    Invalid(String),
    /// A command that ran and reported failure (ssh, a finished set with failures).
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Match(_) => EXIT_NO_MATCH,
            _ => EXIT_ERROR,
        }
    }

    /// Turns a client error into a sentence; `have_token` tells a refused token from a
    /// missing one.
    pub fn from_client(e: ClientError, have_token: bool) -> CliError {
        match e {
            ClientError::Unreachable { url, message } => CliError::Lost { url, message },
            ClientError::Unauthorized { url } if have_token => CliError::TokenRefused { url },
            ClientError::Unauthorized { url } => CliError::TokenMissing { url },
            ClientError::Status {
                status: 400 | 404 | 409 | 413 | 422,
                message,
                ..
            } => CliError::Refused(message),
            ClientError::Status {
                url,
                status,
                message,
            } => CliError::Http {
                url,
                status,
                message,
            },
            ClientError::Decode { url, message } => CliError::Decode { url, message },
        }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> CliError {
        CliError::Io {
            what: what.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_read_as_sentences() {
        let e = CliError::from_client(
            ClientError::Unauthorized {
                url: "http://o:8080/api/v1/packages".into(),
            },
            true,
        );
        assert!(e.to_string().starts_with("the token was refused"), "{e}");
        let e = CliError::from_client(
            ClientError::Unauthorized {
                url: "http://o:8080/x".into(),
            },
            false,
        );
        assert!(e.to_string().contains("none is configured"), "{e}");
        let e = CliError::from_client(
            ClientError::Status {
                url: "u".into(),
                status: 404,
                message: "`a/b-1` is not in this orchestrator's package set".into(),
            },
            true,
        );
        assert_eq!(
            e.to_string(),
            "`a/b-1` is not in this orchestrator's package set"
        );
        assert_eq!(e.exit_code(), EXIT_ERROR);
        let e = CliError::Unreachable {
            tried: vec![
                "gateway http://a (refused)".into(),
                "orchestrator http://b (refused)".into(),
            ],
        };
        assert!(e.to_string().contains("http://a") && e.to_string().contains("http://b"));
    }
}
