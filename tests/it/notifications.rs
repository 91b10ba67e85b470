//! `[[notify]]` against a real receiver: a local HTTP server that refuses each event's
//! first attempts and is down while the real orchestrator binary is killed and started
//! again. Every event arrives (deduplicated by `id`), with the same body on every
//! attempt, the bearer token from the environment, and a drone's events in order.

use crate::common::*;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use build_swarm::client::ApiClient;
use build_swarm::domain::FailureKind;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Attempts refused per event before one is taken.
const REFUSE_FIRST: u32 = 2;

#[derive(Default)]
struct Inbox {
    attempts: HashMap<String, u32>,
    /// The body of each id's first attempt (every retry must carry the same).
    bodies: HashMap<String, String>,
    /// Accepted events, deduplicated by id, in the order they were accepted.
    accepted: Vec<serde_json::Value>,
    bad_token: u32,
    changed_body: u32,
}

type Shared = Arc<Mutex<Inbox>>;

async fn hook(inbox: web::Data<Shared>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let text = String::from_utf8_lossy(&body).to_string();
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return HttpResponse::BadRequest().finish();
    };
    let id = v["id"].as_str().unwrap_or_default().to_string();
    let mut inbox = inbox.lock();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok());
    if auth != Some("Bearer hook-secret") {
        inbox.bad_token += 1;
        return HttpResponse::Unauthorized().finish();
    }
    let first = inbox
        .bodies
        .entry(id.clone())
        .or_insert(text.clone())
        .clone();
    if first != text {
        inbox.changed_body += 1;
    }
    let n = inbox.attempts.entry(id.clone()).or_default();
    *n += 1;
    if *n <= REFUSE_FIRST {
        return HttpResponse::ServiceUnavailable().finish();
    }
    if !inbox.accepted.iter().any(|a| a["id"] == id.as_str()) {
        inbox.accepted.push(v);
    }
    HttpResponse::NoContent().finish()
}

fn receiver(inbox: Shared, port: u16) -> actix_web::dev::ServerHandle {
    let data = web::Data::new(inbox);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/hook", web::post().to(hook))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", port))
    .expect("bind the receiver")
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    handle
}

fn write_config(dir: &Path, port: u16, hook_port: u16) -> std::path::PathBuf {
    let extra = format!(
        r#"[policy]
build_failure_drones = 1

[[notify]]
url = "http://127.0.0.1:{hook_port}/hook"
bearer_token_env = "NOTIFY_TEST_TOKEN"
retry_s = 0.2
max_retry_s = 0.5
max_attempts = 1000
"#
    );
    write_orchestrator_config(dir, port, "notify-test", 2, &extra)
}

fn start(config: &Path) -> Child {
    Command::new(ORCH_BIN)
        .arg("--config")
        .arg(config)
        .env("NOTIFY_TEST_TOKEN", "hook-secret")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn orchestrator")
}

async fn wait_healthy(url: &str) {
    let c = ApiClient::with_timeout(url, None, Duration::from_secs(2));
    wait_for(20, "the orchestrator to come up", || async {
        c.healthz().await.is_ok()
    })
    .await;
}

fn accepted(inbox: &Shared, event: &str, subject: &str) -> Option<serde_json::Value> {
    inbox
        .lock()
        .accepted
        .iter()
        .find(|v| {
            v["event"] == event
                && (v["drone"] == subject || v["atom"] == subject || subject.is_empty())
        })
        .cloned()
}

async fn wait_accepted(inbox: &Shared, event: &str, subject: &str) -> serde_json::Value {
    eventually(
        &format!("{event} {subject} to be delivered"),
        Duration::from_secs(30),
        || async { accepted(inbox, event, subject) },
    )
    .await
}

#[actix_web::test]
async fn every_event_arrives_once_per_id_in_order_through_failures_and_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox: Shared = Arc::default();
    let hook_port = free_port();
    let mut hook_handle = receiver(inbox.clone(), hook_port);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config = write_config(dir.path(), port, hook_port);
    let mut orch = start(&config);
    wait_healthy(&url).await;
    let staging = dir.path().join("staging");
    let drone =
        |name: &str| SimDrone::new(ApiClient::new(&url, Some(DRONE.into())), name, &staging);
    let (d1, d2) = (drone("d1"), drone("d2"));
    d1.register(1).await.expect("register d1");
    d2.register(1).await.expect("register d2");
    // d2 stays online (heartbeats) until the receiver is down; d1 does not heartbeat.
    let d2_alive = std::rc::Rc::new(std::cell::Cell::new(true));
    let beat = {
        let (alive, d2) = (d2_alive.clone(), drone("d2"));
        actix_web::rt::spawn(async move {
            while alive.get() {
                let _ = d2.heartbeat(vec![], vec![]).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    ApiClient::new(&url, Some(ADMIN.into()))
        .submit(b"dev-libs/broken-1\napp-misc/fine-1\n".to_vec())
        .await
        .expect("submit");

    // A package fails for good; the other is built: the set is finished.
    let w1 = d1.claim().await.expect("claim").expect("work for d1");
    let w2 = d2.claim().await.expect("claim").expect("work for d2");
    let (broken, fine) = if w1.atom.starts_with("dev-libs/broken") {
        (w1, w2)
    } else {
        (w2, w1)
    };
    d1.fail(
        &broken,
        FailureKind::Build,
        "emerge exited with 1",
        "error: x",
    )
    .await
    .expect("fail the broken package");
    let done = d1.upload_and_complete(&fine).await;
    assert!(done.is_ok(), "{done:?}");
    let failed = wait_accepted(&inbox, "package_failed", "dev-libs/broken-1").await;
    assert!(
        failed["reason"]
            .as_str()
            .unwrap_or("")
            .contains("emerge exited with 1"),
        "{failed}"
    );
    let finished = wait_accepted(&inbox, "set_finished", "").await;
    assert_eq!(finished["counts"]["built"], 1, "{finished}");
    assert_eq!(finished["counts"]["failed"], 1, "{finished}");
    assert_eq!(finished["orchestrator"], "notify-test");

    // d1 misses its heartbeats, then comes back.
    let offline1 = wait_accepted(&inbox, "drone_offline", "d1").await;
    d1.register(1).await.expect("d1 back");
    let back1 = wait_accepted(&inbox, "recovered", "d1").await;
    assert_eq!(back1["recovers"], "drone_offline");
    assert_eq!(back1["recovers_id"], offline1["id"]);

    // The receiver goes down; d2's offline event waits in the outbox while the
    // orchestrator is killed outright and started again.
    hook_handle.stop(true).await;
    d2_alive.set(false);
    let _ = beat.await;
    let log = dir.path().join("orchestrator.log");
    eventually(
        "d2's offline event while the receiver is down",
        Duration::from_secs(30),
        || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains("drone_offline:d2").then_some(())
        },
    )
    .await;
    // Saved before its first attempt; attempts fail while the receiver is down.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(accepted(&inbox, "drone_offline", "d2").is_none());
    orch.kill().await.expect("kill the orchestrator");
    let mut orch = start(&config);
    wait_healthy(&url).await;
    hook_handle = receiver(inbox.clone(), hook_port);
    let offline2 = wait_accepted(&inbox, "drone_offline", "d2").await;
    d2.register(1).await.expect("d2 back");
    let back2 = wait_accepted(&inbox, "recovered", "d2").await;
    assert_eq!(
        back2["recovers_id"], offline2["id"],
        "the open alert survived the restart"
    );

    {
        let inbox = inbox.lock();
        assert_eq!(
            inbox.bad_token, 0,
            "every attempt carried the bearer token from the environment"
        );
        assert_eq!(inbox.changed_body, 0, "every retry carried the same body");
        let mut ids: Vec<&str> = inbox
            .accepted
            .iter()
            .filter_map(|v| v["id"].as_str())
            .collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "one accepted event per id");
        for v in &inbox.accepted {
            let id = v["id"].as_str().unwrap_or_default();
            assert!(
                inbox.attempts[id] > REFUSE_FIRST,
                "{id} was retried until accepted"
            );
        }
        // Per drone, in the order it happened: offline, then its recovery.
        for d in ["d1", "d2"] {
            let events: Vec<&str> = inbox
                .accepted
                .iter()
                .filter(|v| v["drone"] == d)
                .filter_map(|v| v["event"].as_str())
                .collect();
            assert_eq!(
                &events[..2],
                ["drone_offline", "recovered"],
                "{d}: {events:?}"
            );
        }
    }
    hook_handle.stop(true).await;
    let _ = orch.kill().await;
}
