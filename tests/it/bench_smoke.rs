//! `swarm-bench` in `--smoke` mode: every subcommand runs (tiny sizes, seconds) against
//! the real programs and prints one JSON line with its figures. Not a timed test: the
//! figures are only checked to be there and to make sense, never against targets.

use serde_json::Value;
use std::process::Command;

const BENCH: &str = env!("CARGO_BIN_EXE_swarm-bench");

fn run(args: &[&str]) -> Value {
    // The orchestrator and the drone are built beside swarm-bench for the tests.
    let _ = (
        env!("CARGO_BIN_EXE_swarm-orchestrator"),
        env!("CARGO_BIN_EXE_swarm-drone"),
    );
    let out = Command::new(BENCH)
        .args(args)
        .output()
        .expect("run swarm-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "swarm-bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one JSON line expected: {stdout}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {}", lines[0]))
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("`{key}` missing or not a number in {v}"))
}

fn has_machine(v: &Value) {
    let m = v.get("machine").expect("machine");
    assert!(
        m.get("nproc").and_then(Value::as_u64).unwrap_or(0) >= 1,
        "{m}"
    );
    assert!(m.get("cpu").and_then(Value::as_str).is_some(), "{m}");
    assert!(m.get("mem_mb").and_then(Value::as_u64).is_some(), "{m}");
}

#[test]
fn schedule_smoke() {
    let v = run(&["schedule", "--smoke"]);
    assert_eq!(v["bench"], "schedule");
    for key in [
        "makespan_s",
        "lower_bound_s",
        "ratio",
        "fifo_makespan_s",
        "fifo_ratio",
        "critical_path_s",
        "total_work_s",
        "overhead_s_per_package",
    ] {
        assert!(num(&v, key) >= 0.0, "{key}: {v}");
    }
    // A schedule can never beat its lower bound.
    assert!(num(&v, "ratio") >= 0.99, "{v}");
    assert!(num(&v, "fifo_ratio") >= 0.99, "{v}");
    assert_eq!(num(&v, "built"), num(&v, "packages"), "{v}");
    has_machine(&v);
}

#[test]
fn schedule_learn_smoke() {
    let v = run(&["schedule", "--smoke", "--learn"]);
    assert_eq!(v["bench"], "schedule-learn");
    for key in ["first_run_ratio", "second_run_ratio"] {
        assert!(num(&v, key) >= 0.99, "{key}: {v}");
    }
    // Both runs built the whole graph (the second: the same names, new versions).
    assert_eq!(num(&v, "built"), 2.0 * num(&v, "packages"), "{v}");
    assert_eq!(v["estimates_given"], false);
    has_machine(&v);
}

#[test]
fn graph_is_a_valid_package_set() {
    let out = Command::new(BENCH)
        .args(["graph", "--packages", "1200"])
        .output()
        .expect("run swarm-bench graph");
    assert!(out.status.success());
    let set =
        build_swarm::domain::package_set::parse_package_set(&String::from_utf8_lossy(&out.stdout))
            .expect("the generated graph is a valid JSON package set");
    assert_eq!(set.packages.len(), 1200);
}

#[test]
fn throughput_smoke() {
    let v = run(&["throughput", "--smoke"]);
    assert_eq!(v["bench"], "throughput");
    for key in ["cycles_per_s", "healthz_per_s", "ratio", "cycles"] {
        assert!(num(&v, key) > 0.0, "{key}: {v}");
    }
    assert_eq!(num(&v, "errors"), 0.0, "{v}");
    // Every acknowledged completion is in the state.
    assert_eq!(num(&v, "built"), num(&v, "acknowledged"), "{v}");
    has_machine(&v);
}

#[test]
fn throughput_smoke_with_and_without_the_index() {
    let v = run(&["throughput", "--smoke", "--compare-index"]);
    assert_eq!(v["index"], true);
    for key in ["cycles_per_s", "cycles_per_s_index_off", "index_on_share"] {
        assert!(num(&v, key) > 0.0, "{key}: {v}");
    }
    assert_eq!(num(&v, "errors"), 0.0, "{v}");
}

#[test]
fn throughput_smoke_signed_and_unsigned() {
    let v = run(&["throughput", "--smoke", "--compare-signing"]);
    assert_eq!(v["signing"], true);
    for key in ["cycles_per_s", "cycles_per_s_unsigned", "signed_share"] {
        assert!(num(&v, key) > 0.0, "{key}: {v}");
    }
    assert_eq!(num(&v, "errors"), 0.0, "{v}");
    assert_eq!(num(&v, "built"), num(&v, "acknowledged"), "{v}");
}

#[test]
fn sign_and_snapshot_smoke() {
    let v = run(&["sign", "--smoke"]);
    assert_eq!(v["benchmark"], "sign");
    let small = &v["by_payload_bytes"]["16384"];
    assert!(
        num(small, "ms_p50") > 0.0 && num(small, "ms_p99") >= num(small, "ms_p50"),
        "{v}"
    );
    let v = run(&["snapshot", "--smoke"]);
    assert_eq!(v["benchmark"], "snapshot");
    assert_eq!(num(&v, "files"), 500.0, "{v}");
    // Hard links: the snapshot's own bytes are far below the package data it holds.
    assert!(
        num(&v, "snapshot_own_bytes") < num(&v, "package_bytes"),
        "{v}"
    );
}

#[test]
fn index_smoke() {
    let v = run(&["index", "--smoke"]);
    assert_eq!(v["bench"], "index");
    let at = &v["at"][0];
    assert!(
        num(at, "p50_ms") > 0.0 && num(at, "p99_ms") >= num(at, "p50_ms"),
        "{v}"
    );
    assert!(num(at, "published") >= 50.0, "{v}");
    assert_eq!(num(&v, "errors"), 0.0, "{v}");
    has_machine(&v);
}

#[test]
fn scale_smoke() {
    let v = run(&["scale", "--smoke"]);
    assert_eq!(v["bench"], "scale");
    for key in [
        "rss_mb",
        "heartbeats_per_s",
        "heartbeat_cpu_share",
        "claim_p50_ms",
        "claim_p99_ms",
        "restart_to_first_claim_s",
    ] {
        assert!(num(&v, key) > 0.0, "{key}: {v}");
    }
    assert_eq!(num(&v, "errors"), 0.0, "{v}");
    has_machine(&v);
}

#[test]
fn transfer_smoke() {
    let v = run(&["transfer", "--smoke"]);
    assert_eq!(v["bench"], "transfer");
    if let Some(why) = v.get("skipped") {
        // Like the multi-host tests: needs root; in CI a skip is a failure.
        assert!(
            std::env::var("CI").is_err(),
            "transfer benchmark cannot run in CI: {why}"
        );
        eprintln!("SKIPPED: transfer benchmark: {why}");
        return;
    }
    let sizes = v["sizes"].as_array().expect("sizes");
    assert!(!sizes.is_empty());
    for s in sizes {
        assert!(num(s, "rsync_ratio") > 0.9, "{s}");
        assert!(num(s, "wire_ratio") > 0.9, "{s}");
    }
    for key in ["drone_ms_p50", "bare_rsync_ms_p50", "drone_reuse_ms_p50"] {
        assert!(num(&v, key) > 0.0, "{key}: {v}");
    }
    has_machine(&v);
}
