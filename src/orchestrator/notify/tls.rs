//! TLS for https webhooks: whom a `[[notify]]` entry trusts — the system's trust store
//! (`/etc/ssl/certs`, or `SSL_CERT_FILE`/`SSL_CERT_DIR`), or only the certificates in
//! its `ca_file` — and the HTTP client that connects with it. Read once at start; an
//! entry that would trust nothing stops the start naming its key.

use crate::config::notify::NotifyConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
pub use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key} {path}: cannot read certificates from it: {source}")]
    CaFile {
        key: String,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{key} {path}: no usable certificate in it (PEM `CERTIFICATE` blocks expected)")]
    NoCertificate { key: String, path: PathBuf },
    #[error(
        "{key}: no trusted certificates found in the system's store ({detail}); install \
         ca-certificates, set SSL_CERT_FILE, or give this entry a `ca_file`"
    )]
    NoSystemRoots { key: String, detail: String },
    #[error("{key}: cannot set up TLS: {source}")]
    Rustls {
        key: String,
        #[source]
        source: rustls::Error,
    },
}

/// The certificates in `path` (PEM), for an entry's `ca_file` (`key` names it in errors).
pub fn ca_file_roots(key: &str, path: &Path) -> Result<RootCertStore, TlsError> {
    let fail = |source| TlsError::CaFile {
        key: key.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(fail)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    // One that cannot be a trust anchor is left out; a file without any usable one is
    // refused.
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(certs);
    if roots.is_empty() {
        return Err(TlsError::NoCertificate {
            key: key.to_string(),
            path: path.to_path_buf(),
        });
    }
    Ok(roots)
}

/// A TLS client configuration trusting `roots` (ring's crypto, TLS 1.2 and 1.3, HTTP/1.1).
pub fn client_config(key: &str, roots: RootCertStore) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            key: key.to_string(),
            source,
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The system's trusted certificates; `key` (the first entry that needs them) names the
/// config key in the error when there are none.
pub fn system_roots(key: &str) -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let detail = match found.errors.first() {
            Some(e) => e.to_string(),
            None => "it is empty".to_string(),
        };
        return Err(TlsError::NoSystemRoots {
            key: key.to_string(),
            detail,
        });
    }
    Ok(roots)
}

/// Each `[[notify]]` entry's TLS configuration (`None` but for an https webhook); the
/// system's trust store is read once, if an entry needs it.
pub fn for_entries(sinks: &[NotifyConfig]) -> Result<Vec<Option<Arc<ClientConfig>>>, TlsError> {
    let mut system: Option<RootCertStore> = None;
    let mut out = Vec::with_capacity(sinks.len());
    for (i, sink) in sinks.iter().enumerate() {
        if !sink.is_https() {
            out.push(None);
            continue;
        }
        let (key, roots) = match &sink.ca_file {
            Some(path) => {
                let key = format!("notify[{i}].ca_file");
                let roots = ca_file_roots(&key, path)?;
                (key, roots)
            }
            None => {
                let key = format!("notify[{i}].url");
                let roots = match &system {
                    Some(r) => r.clone(),
                    None => system.insert(system_roots(&key)?).clone(),
                };
                (key, roots)
            }
        };
        out.push(Some(client_config(&key, roots)?));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused_naming_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let e = ca_file_roots("notify[0].ca_file", &path).expect_err("refused");
        assert_eq!(
            e.to_string(),
            format!(
                "notify[0].ca_file {}: no usable certificate in it (PEM `CERTIFICATE` blocks expected)",
                path.display()
            )
        );
        let missing = dir.path().join("none.pem");
        let e = ca_file_roots("notify[0].ca_file", &missing)
            .expect_err("refused")
            .to_string();
        assert!(
            e.starts_with(&format!(
                "notify[0].ca_file {}: cannot read certificates from it",
                missing.display()
            )),
            "{e}"
        );
    }
}
