//! Each https `[[notify]]` entry's TLS configuration: the certificates of its `ca_file`,
//! or the system's trust store ([`crate::sys::tls`]). Read at start; an entry that would
//! trust nothing stops the start naming its key.

use crate::config::notify::NotifyConfig;
use crate::sys::tls::{self, ClientConfig, RootCertStore, TlsError};
use std::sync::Arc;

/// Why an entry's TLS configuration cannot be made, naming its config key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {source}")]
pub struct EntryTlsError {
    pub key: String,
    #[source]
    pub source: TlsError,
}

/// Each entry's TLS configuration (`None` but for an https webhook); the system's store
/// is read once, if an entry needs it. Reads files: run it off the event loop.
pub fn for_entries(
    sinks: &[NotifyConfig],
) -> Result<Vec<Option<Arc<ClientConfig>>>, EntryTlsError> {
    let mut system: Option<RootCertStore> = None;
    let mut out = Vec::with_capacity(sinks.len());
    for (i, sink) in sinks.iter().enumerate() {
        if !sink.is_https() {
            out.push(None);
            continue;
        }
        let (key, roots) = match &sink.ca_file {
            Some(path) => (format!("notify[{i}].ca_file"), tls::ca_file_roots(path)),
            None => {
                let roots = match &system {
                    Some(r) => Ok(r.clone()),
                    None => tls::system_roots().map(|r| system.insert(r).clone()),
                };
                (format!("notify[{i}].url"), roots)
            }
        };
        let config = roots
            .and_then(tls::client_config)
            .map_err(|source| EntryTlsError { key, source })?;
        out.push(Some(config));
    }
    Ok(out)
}

/// An HTTP client for one entry: plain http, or https with `tls`.
pub fn http_client(tls: Option<Arc<ClientConfig>>) -> awc::Client {
    match tls {
        Some(config) => awc::Client::builder()
            .connector(awc::Connector::new().rustls_0_23(config))
            .finish(),
        None => awc::Client::default(),
    }
}
