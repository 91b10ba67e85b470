//! Whom an https client trusts: the system's trust store (`/etc/ssl/certs`, or
//! `SSL_CERT_FILE`/`SSL_CERT_DIR` as OpenSSL reads them), or the certificates of one PEM
//! file; and the rustls configuration (ring's crypto, TLS 1.2 and 1.3) that connects
//! with it. Used by the API clients (drone, CLI, gateway) and https webhooks.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
pub use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read certificates from it: {source}")]
    CaFile {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path}: no usable certificate in it (PEM `CERTIFICATE` blocks expected)")]
    NoCertificate { path: PathBuf },
    #[error(
        "no trusted certificates in the system's store ({detail}); install ca-certificates \
         or point SSL_CERT_FILE at a PEM file"
    )]
    NoSystemRoots { detail: String },
    #[error("cannot set up TLS: {0}")]
    Rustls(#[source] rustls::Error),
}

/// A [`TlsError`] of the URL or file under a config key (start-up refuses with it).
#[derive(Debug, thiserror::Error)]
#[error("{key}: {source}")]
pub struct KeyTlsError {
    pub key: String,
    #[source]
    pub source: Arc<TlsError>,
}

/// Whether `url` needs TLS.
pub fn is_https(url: &str) -> bool {
    url.starts_with("https://")
}

/// The certificates in the PEM file `path` (a private CA, a self-signed server).
pub fn ca_file_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let fail = |source| TlsError::CaFile {
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
            path: path.to_path_buf(),
        });
    }
    Ok(roots)
}

/// The system's trusted certificates (reads files: call it off the event loop, or once).
pub fn system_roots() -> Result<RootCertStore, TlsError> {
    roots_of(rustls_native_certs::load_native_certs())
}

fn roots_of(found: rustls_native_certs::CertificateResult) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let detail = match found.errors.first() {
            Some(e) => e.to_string(),
            None => "it is empty".to_string(),
        };
        return Err(TlsError::NoSystemRoots { detail });
    }
    Ok(roots)
}

/// A TLS client configuration trusting `roots` (HTTP/1.1 only).
pub fn client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The configuration trusting the system's store, read once per process: by
/// [`preload`] at start, or else by the first https client.
pub fn system_client_config() -> Result<Arc<ClientConfig>, Arc<TlsError>> {
    static SYSTEM: OnceLock<Result<Arc<ClientConfig>, Arc<TlsError>>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| system_roots().and_then(client_config).map_err(Arc::new))
        .clone()
}

/// Reads the system's store now if any of `urls` (config key, URL) is https, so a program
/// that could trust nothing stops at start naming the key, instead of failing every call
/// later. Reads files: call it before serving, or off the event loop.
pub fn preload<'a>(urls: impl IntoIterator<Item = (String, &'a str)>) -> Result<(), KeyTlsError> {
    match urls.into_iter().find(|(_, url)| is_https(url)) {
        Some((key, _)) => system_client_config()
            .map(|_| ())
            .map_err(|source| KeyTlsError { key, source }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let e = ca_file_roots(&path).expect_err("refused");
        assert_eq!(
            e.to_string(),
            format!(
                "{}: no usable certificate in it (PEM `CERTIFICATE` blocks expected)",
                path.display()
            )
        );
        // A system store without certificates (as SSL_CERT_FILE = that file would be).
        let found = rustls_native_certs::load_certs_from_paths(Some(&path), None);
        let e = roots_of(found).expect_err("refused").to_string();
        assert!(
            e.starts_with("no trusted certificates in the system's store"),
            "{e}"
        );
        let missing = dir.path().join("none.pem");
        let e = ca_file_roots(&missing).expect_err("refused").to_string();
        assert!(
            e.starts_with(&format!(
                "{}: cannot read certificates from it",
                missing.display()
            )),
            "{e}"
        );
    }
}
