//! Each https `[[notify]]` entry's TLS configuration: the certificates of its `ca_file`,
//! or the system's trust store ([`crate::sys::tls`], shared with the API clients). Read
//! at start; an entry that would trust nothing stops the start naming its key.

use crate::config::notify::NotifyConfig;
use crate::sys::tls::{self, ClientConfig, KeyTlsError};
use std::sync::Arc;

/// Each entry's TLS configuration (`None` but for an https webhook). Reads files: run it
/// off the event loop.
pub fn for_entries(sinks: &[NotifyConfig]) -> Result<Vec<Option<Arc<ClientConfig>>>, KeyTlsError> {
    let mut out = Vec::with_capacity(sinks.len());
    for (i, sink) in sinks.iter().enumerate() {
        if !sink.is_https() {
            out.push(None);
            continue;
        }
        let config = match &sink.ca_file {
            Some(path) => tls::ca_file_roots(path)
                .and_then(tls::client_config)
                .map_err(|e| KeyTlsError {
                    key: format!("notify[{i}].ca_file"),
                    source: Arc::new(e),
                })?,
            None => tls::system_client_config().map_err(|source| KeyTlsError {
                key: format!("notify[{i}].url"),
                source,
            })?,
        };
        out.push(Some(config));
    }
    Ok(out)
}

/// An HTTP client for one entry: plain http, or https with `tls`. A redirect is an
/// answer like any other (not 2xx: not delivered), never followed: awc would turn the
/// POST into a GET without the event, or send it on to another scheme.
pub fn http_client(tls: Option<Arc<ClientConfig>>) -> awc::Client {
    let connector = match tls {
        Some(config) => awc::Connector::new().rustls_0_23(config),
        None => awc::Connector::new(),
    };
    awc::Client::builder()
        .disable_redirects()
        .connector(connector)
        .finish()
}
