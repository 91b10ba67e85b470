//! Sending one event to one `[[notify]]` entry: a POST to its webhook or a run of its
//! program with the body on standard input. Success is a 2xx answer or exit status 0.

use crate::config::notify::NotifyConfig;
use crate::sys::process::{run_with_input, ProcessError};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("POST {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("POST {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error(transparent)]
    Command(#[from] ProcessError),
    #[error("`{program}` exited with {status}: {output}")]
    CommandFailed {
        program: String,
        status: String,
        output: String,
    },
}

/// Sends `body` (the event's JSON, event id `id`) once.
pub async fn deliver(
    http: &awc::Client,
    sink: &NotifyConfig,
    token: Option<&str>,
    id: &str,
    body: &str,
) -> Result<(), DeliveryError> {
    let timeout = Duration::from_secs(sink.timeout_s);
    match &sink.url {
        Some(url) => {
            let mut req = http
                .post(url)
                .timeout(timeout)
                .insert_header(("Content-Type", "application/json"))
                .insert_header(("Idempotency-Key", id));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp =
                req.send_body(body.to_string())
                    .await
                    .map_err(|e| DeliveryError::Unreachable {
                        url: url.clone(),
                        message: e.to_string(),
                    })?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(DeliveryError::Status {
                    url: url.clone(),
                    status: resp.status().as_u16(),
                })
            }
        }
        None => {
            let f = run_with_input(&sink.command, Some(body.as_bytes()), timeout).await?;
            if f.status.success() {
                Ok(())
            } else {
                Err(DeliveryError::CommandFailed {
                    program: sink.command.first().cloned().unwrap_or_default(),
                    status: f.status.to_string(),
                    output: crate::sys::process::tail_str(f.output_tail.trim(), 500).to_string(),
                })
            }
        }
    }
}
