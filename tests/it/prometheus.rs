//! The metrics against Prometheus itself: `promtool` checks the alert rules and the
//! example configuration; a real Prometheus server scrapes the orchestrator (OpenMetrics
//! from `prometheus-client`), a real drone's `[metrics] listen` and the exposition the
//! orchestrator wrote before the switch (tests/fixtures/metrics-before-prometheus-client.txt,
//! the hand-written text format 0.0.4), evaluates config/prometheus/alerts.yml, and runs
//! every query of the Grafana dashboard in config/grafana/.

use crate::common::*;
use actix_web::{web, App, HttpResponse, HttpServer};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Prometheus and promtool, or a skip (a failure in CI).
fn prometheus() -> Option<(PathBuf, PathBuf)> {
    match (tool("prometheus"), tool("promtool")) {
        (Some(p), Some(t)) => Some((p, t)),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "prometheus and promtool are missing in CI: scripts/install-deps must install them"
            );
            eprintln!(
                "SKIPPED: Prometheus test needs prometheus and promtool (scripts/install-deps)"
            );
            None
        }
    }
}

#[test]
fn promtool_accepts_the_alert_rules_and_the_example_configuration() {
    let Some((_, promtool)) = prometheus() else {
        return;
    };
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["check", "config", "prometheus.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(&args)
            .current_dir("config/prometheus")
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Serves `text` at `/metrics` as the text format 0.0.4 (the exposition before the switch).
fn serve_fixture(text: String) -> (u16, actix_web::dev::ServerHandle) {
    let port = free_port();
    let server = HttpServer::new(move || {
        let text = text.clone();
        App::new().route(
            "/metrics",
            web::get().to(move || {
                let text = text.clone();
                async move {
                    HttpResponse::Ok()
                        .content_type("text/plain; version=0.0.4; charset=utf-8")
                        .body(text)
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", port))
    .expect("bind")
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (port, handle)
}

struct Prom {
    url: String,
    http: awc::Client,
}

impl Prom {
    /// The JSON answer; `null` while Prometheus is not up or not ready yet.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> serde_json::Value {
        let req = self
            .http
            .get(format!("{}{path}", self.url))
            .query(&query)
            .expect("query string");
        let Ok(mut resp) = req.send().await else {
            return serde_json::Value::Null;
        };
        // Not JSON while it starts ("Service Unavailable").
        let body = resp.body().limit(16 << 20).await.unwrap_or_default();
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
    }

    async fn query(&self, expr: &str) -> serde_json::Value {
        self.get("/api/v1/query", &[("query", expr)]).await
    }

    async fn names(&self, job: &str) -> BTreeSet<String> {
        let m = format!("{{job=\"{job}\"}}");
        let v = self
            .get("/api/v1/label/__name__/values", &[("match[]", m.as_str())])
            .await;
        v["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str())
                    .filter(|n| n.starts_with("build_swarm_"))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[actix_web::test]
async fn prometheus_scrapes_both_expositions_evaluates_the_alerts_and_runs_the_dashboard() {
    let Some((prometheus, _)) = prometheus() else {
        return;
    };
    if !require_rsync() {
        return;
    }
    let app = spawn_app(|_| {}).await;
    let drone_metrics = free_port();
    let cfg = drone_config(
        app.dir.path(),
        "d1",
        &app.url,
        "",
        &format!("[metrics]\nlisten = \"127.0.0.1:{drone_metrics}\"\n"),
    );
    let _drone = spawn_drone(&cfg, &[("STANDIN_SECONDS", "0.2"), ("STANDIN_KB", "64")]);
    app.admin()
        .submit(b"app-misc/scraped-1.0\n".to_vec())
        .await
        .expect("submit");
    let before = std::fs::read_to_string("tests/fixtures/metrics-before-prometheus-client.txt")
        .expect("fixture");
    let (before_port, before_server) = serve_fixture(before);

    let dir = app.dir.path();
    let orch_port = app.url.rsplit(':').next().expect("port");
    let rules = std::fs::canonicalize("config/prometheus/alerts.yml").expect("rules");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\nscrape_configs:\n\
         \x20 - job_name: build-swarm-orchestrator\n    static_configs:\n      - targets: [\"127.0.0.1:{orch_port}\"]\n\
         \x20 - job_name: build-swarm-drones\n    static_configs:\n      - targets: [\"127.0.0.1:{drone_metrics}\"]\n\
         \x20 - job_name: before\n    static_configs:\n      - targets: [\"127.0.0.1:{before_port}\"]\n",
        rules = rules.display()
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("config");
    let prom_port = free_port();
    let _prom = tokio::process::Command::new(&prometheus)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log"))
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus starts");
    let prom = Prom {
        url: format!("http://127.0.0.1:{prom_port}"),
        http: awc::Client::builder()
            .timeout(Duration::from_secs(5))
            .finish(),
    };
    let log = || std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();

    // Every target scraped and parsed (up == 1), the drone's build counted.
    eventually(
        "Prometheus scraping all three targets",
        Duration::from_secs(60),
        || async {
            let v = prom.query("sum(up)").await;
            (v["data"]["result"][0]["value"][1] == "3").then_some(())
        },
    )
    .await;
    eventually("the drone's build in its metrics", Duration::from_secs(60), || async {
        let v = prom
            .query("build_swarm_drone_builds_total{outcome=\"built\"} * on() group_left() (build_swarm_drone_rsync_exits_total{code=\"0\"} > 0)")
            .await;
        (v["data"]["result"][0]["value"][1] == "1").then_some(())
    })
    .await;

    // The same names before and after the switch (the new ones are additions).
    let old = prom.names("before").await;
    let new = prom.names("build-swarm-orchestrator").await;
    assert!(old.len() > 20, "{old:?}");
    let lost: Vec<_> = old.difference(&new).collect();
    assert!(
        lost.is_empty(),
        "names lost in the switch: {lost:?}\nnew: {new:?}"
    );
    let drone_names = prom.names("build-swarm-drones").await;
    assert!(
        drone_names.contains("build_swarm_drone_upload_bytes_total"),
        "{drone_names:?}"
    );

    // Every alert rule evaluates without error.
    let rules_state = eventually("every rule evaluated", Duration::from_secs(30), || async {
        let v = prom.get("/api/v1/rules", &[]).await;
        let rules: Vec<serde_json::Value> = v["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        (rules.len() == 6 && rules.iter().all(|r| r["health"] != "unknown")).then_some(rules)
    })
    .await;
    for r in &rules_state {
        assert_eq!(r["health"], "ok", "{r}\n{}", log());
    }

    // Every query of the Grafana dashboard runs, on metrics that exist.
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("config/grafana/build-swarm.json").expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    assert_eq!(dash["uid"], "build-swarm");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 12);
    // Exported only while there is something to say (an ETA, a mismatched drone).
    let sometimes = ["build_swarm_eta_seconds", "build_swarm_drone_mismatched"];
    let known: BTreeSet<String> = new
        .union(&drone_names)
        .cloned()
        .chain(sometimes.iter().map(|s| s.to_string()))
        .collect();
    let mut queries = 0;
    for p in panels {
        assert!(
            p["title"].is_string() && p["gridPos"]["w"].is_number(),
            "{p}"
        );
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            for name in metric_names(expr) {
                assert!(
                    known.contains(&name),
                    "{}: {name} is not exported\n{known:?}",
                    p["title"]
                );
            }
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("\"$job\"", "\".+\"")
                .replace("\"$drone_job\"", "\".+\"");
            let v = prom.query(&expr).await;
            assert_eq!(v["status"], "success", "{}: {expr}: {v}", p["title"]);
            queries += 1;
        }
    }
    assert!(queries >= 18);
    for var in dash["templating"]["list"].as_array().expect("variables") {
        if let Some(q) = var["definition"].as_str() {
            for name in metric_names(q) {
                assert!(known.contains(&name), "variable {}: {name}", var["name"]);
            }
        }
    }
    before_server.stop(true).await;
}

/// The metric names (`build_swarm_…`) in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("build_swarm_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}
