//! https against real TLS servers: certificates made by the `openssl` program, servers on
//! rustls. Webhooks: an entry whose `ca_file` holds the receiver's CA gets its events, as
//! does one trusting the system's store (`SSL_CERT_FILE`); one that trusts another CA
//! never reaches the receiver and keeps retrying; a `ca_file` without certificates stops
//! the start naming the key. The API: a client and the `build-swarm` CLI reach an
//! orchestrator behind a TLS-terminating proxy, and refuse one whose certificate they do
//! not trust.

use crate::common::*;
use build_swarm::config::notify::NotifyConfig;
use build_swarm::orchestrator::Orchestrator;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// `openssl` (installed by scripts/install-deps), or a skip (a failure in CI).
fn require_openssl() -> bool {
    let have = std::process::Command::new("openssl")
        .arg("version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var("CI").is_err(),
            "openssl is missing in CI: scripts/install-deps must install it"
        );
        eprintln!("SKIPPED: openssl is not installed (run scripts/install-deps)");
    }
    have
}

/// Runs `openssl` with `args` (split at spaces) in `dir`.
fn openssl(dir: &Path, args: &str) {
    let out = std::process::Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA `<name>-ca.pem`; with `server`, also a certificate for 127.0.0.1 it signed
/// (`<name>-server.pem`, key `<name>-server.key`).
fn make_ca(dir: &Path, name: &str, server: bool) -> PathBuf {
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(
        dir,
        &format!(
            "req -x509 {ec} -days 2 -subj /CN={name}-ca -keyout {name}-ca.key -out {name}-ca.pem"
        ),
    );
    if server {
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write extensions");
        let srv = format!("{name}-server");
        openssl(
            dir,
            &format!("req {ec} -subj /CN=localhost -keyout {srv}.key -out {srv}.csr"),
        );
        openssl(
            dir,
            &format!(
                "x509 -req -in {srv}.csr -CA {name}-ca.pem -CAkey {name}-ca.key -CAcreateserial \
                 -days 2 -extfile server.ext -out {srv}.pem"
            ),
        );
    }
    dir.join(format!("{name}-ca.pem"))
}

/// Certificates for every test in this process: the servers' CA (which `SSL_CERT_FILE`
/// names, as the system's store), a server certificate for 127.0.0.1 it signed, and a
/// second CA that signed nothing here. `None` without openssl (outside CI).
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki() -> Option<&'static Pki> {
    static PKI: std::sync::OnceLock<Option<Pki>> = std::sync::OnceLock::new();
    PKI.get_or_init(|| {
        if !require_openssl() {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let ca = make_ca(&dir, "servers", true);
        let other_ca = make_ca(&dir, "other", false);
        // Read once per process, by the first https client or webhook without a ca_file.
        std::env::set_var("SSL_CERT_FILE", &ca);
        std::env::remove_var("SSL_CERT_DIR");
        Some(Pki {
            ca,
            other_ca,
            cert: dir.join("servers-server.pem"),
            key: dir.join("servers-server.key"),
        })
    })
    .as_ref()
}

/// The TLS side of a server with the test certificate.
fn acceptor(pki: &Pki) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.cert)
        .expect("read cert")
        .collect::<Result<_, _>>()
        .expect("parse cert");
    let key = PrivateKeyDer::from_pem_file(&pki.key).expect("read key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Accepts TLS connections on a new port of 127.0.0.1 and hands each to `serve`.
async fn tls_server<F, Fut>(pki: &Pki, serve: F) -> u16
where
    F: Fn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let acceptor = acceptor(pki);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let serve = Arc::new(serve);
    actix_web::rt::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, serve) = (acceptor.clone(), serve.clone());
            actix_web::rt::spawn(async move {
                // A client that refuses the certificate ends here.
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve(tls).await;
                }
            });
        }
    });
    port
}

/// What the receiver was sent: (path, Authorization header, body), one per request.
type Received = Arc<Mutex<Vec<(String, String, String)>>>;

/// An https webhook receiver answering every request 204.
async fn receiver(pki: &Pki) -> (u16, Received) {
    let received = Received::default();
    let seen = received.clone();
    let port = tls_server(pki, move |mut tls| {
        let seen = seen.clone();
        async move {
            if let Some(req) = read_request(&mut tls).await {
                seen.lock().push(req);
                let _ = tls
                    .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            }
        }
    })
    .await;
    (port, received)
}

/// A TLS-terminating proxy in front of 127.0.0.1:`to` (as nginx would be).
async fn proxy(pki: &Pki, to: u16) -> u16 {
    tls_server(pki, move |mut tls| async move {
        if let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
        }
    })
    .await
}

/// One HTTP/1.1 request: its path, Authorization header and body.
async fn read_request(
    tls: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Option<(String, String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tls.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let path = head.split_whitespace().nth(1)?.to_string();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let len: usize = header("content-length").parse().ok()?;
    while buf.len() < head_end + len {
        let n = tls.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
    Some((path, header("authorization"), body))
}

fn entry(url: String, ca_file: Option<PathBuf>) -> NotifyConfig {
    NotifyConfig {
        url: Some(url),
        ca_file,
        bearer_token: Some("tls-secret".into()),
        events: vec!["set_finished".into()],
        retry_s: 0.2,
        max_retry_s: 0.5,
        max_attempts: 1000,
        ..NotifyConfig::default()
    }
}

#[actix_web::test]
async fn an_https_webhook_is_reached_only_through_the_ca_it_trusts() {
    let Some(pki) = pki() else {
        return;
    };
    let (ca, other_ca) = (pki.ca.clone(), pki.other_ca.clone());
    let (port, received) = receiver(pki).await;
    let trusted = format!("https://127.0.0.1:{port}/trusted");
    let untrusted = format!("https://127.0.0.1:{port}/untrusted");
    let system = format!("https://127.0.0.1:{port}/system");
    let app = spawn_app(|c| {
        c.notify = vec![
            entry(trusted.clone(), Some(ca.clone())),
            entry(untrusted.clone(), Some(other_ca.clone())),
            entry(system.clone(), None),
        ]
    })
    .await;
    app.register("d1", 1).await;
    app.submit("app-misc/a-1\n").await;
    let w = app.claim("d1").await;
    assert!(app.upload_and_complete(&w).await.accepted);

    let mut got = eventually(
        "set_finished to reach the receiver twice",
        Duration::from_secs(20),
        || async { Some(received.lock().clone()).filter(|r| r.len() >= 2) },
    )
    .await;
    got.sort();
    assert_eq!(got[0].0, "/system");
    assert_eq!(got[1].0, "/trusted");
    assert_eq!(got[0].2, got[1].2, "the same event to both");
    let (_, auth, body) = &got[1];
    assert_eq!(auth, "Bearer tls-secret");
    let v: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(v["event"], "set_finished", "{v}");
    assert_eq!(v["counts"]["built"], 1, "{v}");

    // The other entry trusts a CA that did not sign the receiver's certificate: it is
    // refused in the handshake (nothing sent) and retried, saying why.
    eventually(
        "the untrusted entry's failures to be logged",
        Duration::from_secs(20),
        || async {
            let logs = app.logs.text();
            logs.lines()
                .filter(|l| l.contains("notification not delivered") && l.contains(&untrusted))
                .nth(1)
                .map(str::to_string)
        },
    )
    .await;
    let logs = app.logs.text();
    assert!(
        logs.lines()
            .any(|l| l.contains(&untrusted) && l.contains("UnknownIssuer")),
        "{logs}"
    );
    assert_eq!(received.lock().len(), 2, "{:?}", received.lock());
    app.stop().await;
}

#[actix_web::test]
async fn a_ca_file_that_holds_no_certificate_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    let mut cfg = test_config(dir.path());
    cfg.notify = vec![entry("https://127.0.0.1:9/hook".into(), Some(ca.clone()))];
    cfg.validate().expect("valid");
    let logs = build_swarm::sys::logging::Capture::default();
    let e = match Orchestrator::start(cfg.clone(), logs.logger(slog::Level::Debug), false).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("started without a certificate to trust"),
    };
    assert_eq!(
        e,
        format!(
            "notify[0].ca_file: {}: no usable certificate in it (PEM `CERTIFICATE` blocks expected)",
            ca.display()
        )
    );
    assert!(
        !cfg.state_dir.exists(),
        "nothing is made before the refusal"
    );
    // A CA file for a plain http webhook is a configuration error.
    cfg.notify[0].url = Some("http://127.0.0.1:9/hook".into());
    assert_eq!(
        cfg.validate().expect_err("refused").to_string(),
        "config key `notify[0].ca_file`: only an https webhook (`url = \"https://…\"`) uses a CA file"
    );
}

#[actix_web::test]
async fn clients_reach_an_orchestrator_behind_tls_and_refuse_one_they_do_not_trust() {
    let Some(pki) = pki() else {
        return;
    };
    let app = spawn_app(|_| {}).await;
    let port: u16 = app
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the orchestrator's port");
    let https = format!("https://127.0.0.1:{}", proxy(pki, port).await);

    // The client the drone, the CLI and the gateway use (trusting SSL_CERT_FILE).
    let admin = build_swarm::client::ApiClient::new(&https, Some(ADMIN.into()));
    let r = admin
        .submit(b"app-misc/a-1\napp-misc/b-1\n".to_vec())
        .await
        .expect("a set submitted over https");
    assert_eq!(r.added, 2, "{r:?}");

    // The CLI, trusting the servers' CA, then only another CA.
    let home = tempfile::tempdir().expect("tempdir");
    let cli = |ca: &Path| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_build-swarm"))
            .args(["--orchestrator", &https, "--token", ADMIN, "status"])
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("xdg"))
            .env("SSL_CERT_FILE", ca)
            .env_remove("SSL_CERT_DIR")
            .env_remove("BUILD_SWARM_GATEWAY")
            .env_remove("BUILD_SWARM_ORCHESTRATOR")
            .env_remove("BUILD_SWARM_TOKEN")
            .kill_on_drop(true)
            .output()
    };
    let out = cli(&pki.ca).await.expect("run build-swarm");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("Progress  0% (0/2)"), "{stdout}");

    let out = cli(&pki.other_ca).await.expect("run build-swarm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&https) && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    app.stop().await;
}
