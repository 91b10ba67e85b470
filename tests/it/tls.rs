//! https against real TLS servers: certificates made by the `openssl` program, servers on
//! rustls, and the real programs as processes (whose `SSL_CERT_FILE` stands for the
//! system's store; the test process's own environment is never changed).
//!
//! Webhooks: an entry whose `ca_file` holds the receiver's CA gets its events, one that
//! trusts another CA never reaches the receiver and keeps retrying, a `ca_file` without
//! certificates stops the start naming the key. Every https URL through the system's
//! store: an orchestrator's webhook, a drone building through a TLS-terminating proxy,
//! the CLI (refusing an unknown CA and a certificate for another name), and a drone that
//! could trust nothing stopping at start.

use crate::common::*;
use build_swarm::client::ApiClient;
use build_swarm::config::notify::NotifyConfig;
use build_swarm::orchestrator::Orchestrator;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

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

/// A server certificate and its key, signed by [`Pki::ca`].
struct ServerCert {
    cert: PathBuf,
    key: PathBuf,
}

/// One test's certificates: a CA, server certificates it signed (for 127.0.0.1, and for
/// another name only), and a second CA that signed nothing here. Removed with the test.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    server: ServerCert,
    wrong_name: ServerCert,
}

impl Pki {
    /// `None` without openssl (outside CI).
    fn new() -> Option<Pki> {
        if !require_program("openssl", "version") {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        for ca in ["ca", "other-ca"] {
            openssl(
                d,
                &format!("req -x509 {ec} -days 2 -subj /CN={ca} -keyout {ca}.key -out {ca}.pem"),
            );
        }
        let server = |name: &str, san: &str| {
            std::fs::write(
                d.join(format!("{name}.ext")),
                format!(
                    "subjectAltName={san}\nbasicConstraints=CA:FALSE\n\
                     keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
                ),
            )
            .expect("write extensions");
            openssl(
                d,
                &format!("req {ec} -subj /CN={name} -keyout {name}.key -out {name}.csr"),
            );
            openssl(
                d,
                &format!(
                    "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                     -extfile {name}.ext -out {name}.pem"
                ),
            );
            ServerCert {
                cert: d.join(format!("{name}.pem")),
                key: d.join(format!("{name}.key")),
            }
        };
        let (server, wrong_name) = (
            server("server", "IP:127.0.0.1,DNS:localhost"),
            server("elsewhere", "DNS:elsewhere.test"),
        );
        Some(Pki {
            ca: d.join("ca.pem"),
            other_ca: d.join("other-ca.pem"),
            server,
            wrong_name,
            _dir: dir,
        })
    }
}

/// The TLS side of a server with `cert`.
fn acceptor(cert: &ServerCert) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert.cert)
        .expect("read cert")
        .collect::<Result<_, _>>()
        .expect("parse cert");
    let key = PrivateKeyDer::from_pem_file(&cert.key).expect("read key");
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
async fn tls_server<F, Fut>(cert: &ServerCert, serve: F) -> u16
where
    F: Fn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let acceptor = acceptor(cert);
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
async fn receiver(cert: &ServerCert) -> (u16, Received) {
    let received = Received::default();
    let seen = received.clone();
    let port = tls_server(cert, move |mut tls| {
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

/// The first request `received` got (waiting for it).
async fn first_request(received: &Received, what: &str) -> (String, String, String) {
    eventually(what, Duration::from_secs(20), || async {
        received.lock().first().cloned()
    })
    .await
}

/// A TLS-terminating proxy in front of 127.0.0.1:`to` (as nginx would be).
async fn proxy(cert: &ServerCert, to: u16) -> u16 {
    tls_server(cert, move |mut tls| async move {
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
    let Some(pki) = Pki::new() else {
        return;
    };
    let (port, received) = receiver(&pki.server).await;
    let trusted = format!("https://127.0.0.1:{port}/trusted");
    let untrusted = format!("https://127.0.0.1:{port}/untrusted");
    let app = spawn_app(|c| {
        c.notify = vec![
            entry(trusted.clone(), Some(pki.ca.clone())),
            entry(untrusted.clone(), Some(pki.other_ca.clone())),
        ]
    })
    .await;
    app.register("d1", 1).await;
    app.submit("app-misc/a-1\n").await;
    let w = app.claim("d1").await;
    assert!(app.upload_and_complete(&w).await.accepted);

    let (path, auth, body) = first_request(&received, "set_finished at the receiver").await;
    assert_eq!(path, "/trusted");
    assert_eq!(auth, "Bearer tls-secret");
    let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
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
    assert_eq!(received.lock().len(), 1, "{:?}", received.lock());
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

/// `build-swarm … status` against `url`, trusting the certificates in `ca` (as the system's
/// store); its exit status, stdout and stderr.
async fn cli_status(url: &str, ca: &Path, home: &Path) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_build-swarm"))
        .args(["--orchestrator", url, "--token", ADMIN, "status"])
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("xdg"))
        .env("SSL_CERT_FILE", ca)
        .env_remove("SSL_CERT_DIR")
        .env_remove("BUILD_SWARM_GATEWAY")
        .env_remove("BUILD_SWARM_ORCHESTRATOR")
        .env_remove("BUILD_SWARM_TOKEN")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run build-swarm");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[actix_web::test]
async fn every_https_url_is_trusted_through_the_system_store() {
    let Some(pki) = Pki::new() else {
        return;
    };
    if !require_rsync() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // "The system's store" of every process below: only the test CA.
    let no_dir = d.join("no-cert-dir");
    std::fs::create_dir_all(&no_dir).expect("mkdir");
    let store = [
        ("SSL_CERT_FILE", pki.ca.as_path()),
        ("SSL_CERT_DIR", no_dir.as_path()),
    ];

    // The orchestrator: a webhook without ca_file.
    let (hook_port, received) = receiver(&pki.server).await;
    let port = free_port();
    let config = write_orchestrator_config(
        d,
        port,
        "tls-orch",
        30,
        &format!(
            "[[notify]]\nurl = \"https://127.0.0.1:{hook_port}/system\"\n\
             events = [\"set_finished\"]\nretry_s = 0.2\nmax_retry_s = 0.5\n"
        ),
    );
    let _orch = tokio::process::Command::new(ORCH_BIN)
        .arg("--config")
        .arg(&config)
        .envs(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn orchestrator");
    let plain = ApiClient::with_timeout(
        &format!("http://127.0.0.1:{port}"),
        None,
        Duration::from_secs(2),
    );
    wait_for(20, "the orchestrator to come up", || async {
        plain.healthz().await.is_ok()
    })
    .await;
    let https = format!("https://127.0.0.1:{}", proxy(&pki.server, port).await);

    // A drone that talks to it only through the TLS proxy builds the set.
    let mut drone_env: Vec<(&str, &str)> = vec![("STANDIN_SECONDS", "0.2"), ("STANDIN_KB", "16")];
    let (ca, no_dir_s) = (pki.ca.display().to_string(), no_dir.display().to_string());
    drone_env.extend([
        ("SSL_CERT_FILE", ca.as_str()),
        ("SSL_CERT_DIR", no_dir_s.as_str()),
    ]);
    let _d1 = spawn_drone(&drone_config(d, "d1", &https, "", ""), &drone_env);
    ApiClient::new(&format!("http://127.0.0.1:{port}"), Some(ADMIN.into()))
        .submit(b"app-misc/a-1\napp-misc/b-1\n".to_vec())
        .await
        .expect("submit");
    wait_for(
        60,
        "both packages built by the drone over https",
        || async { plain.status().await.is_ok_and(|s| s.counts.built == 2) },
    )
    .await;
    let (path, _, body) = first_request(&received, "set_finished at the webhook").await;
    assert_eq!(path, "/system");
    assert!(body.contains("\"set_finished\""), "{body}");

    // The CLI: through the store; not with another CA; not to a certificate for another
    // name (the same CA signed it).
    let (ok, stdout, stderr) = cli_status(&https, &pki.ca, d).await;
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("Progress  100% (2/2)"), "{stdout}");
    let (ok, _, stderr) = cli_status(&https, &pki.other_ca, d).await;
    assert!(!ok);
    assert!(
        stderr.contains(&https) && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
    let elsewhere = format!("https://127.0.0.1:{}", proxy(&pki.wrong_name, port).await);
    let (ok, _, stderr) = cli_status(&elsewhere, &pki.ca, d).await;
    assert!(!ok);
    assert!(
        stderr.contains("certificate not valid for name"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A drone whose store holds nothing stops at start, naming the key.
    let empty = d.join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let out = tokio::process::Command::new(DRONE_BIN)
        .arg("--config")
        .arg(drone_config(d, "d2", &https, "", ""))
        .env("SSL_CERT_FILE", &empty)
        .env("SSL_CERT_DIR", &no_dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .expect("the drone to stop at start")
        .expect("run swarm-drone");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("orchestrator: no trusted certificates in the system's store"),
        "{stderr}"
    );
}
