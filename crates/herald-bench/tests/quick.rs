//! Smoke test: `herald-bench --quick` against the real broker runs every
//! scenario and every one produces numbers. It checks that the bench works,
//! not how fast anything is. Without a broker it fails; it never skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// `KAFKA_BOOTSTRAP_SERVERS`, or the local broker from `scripts/kafka.sh`.
fn bootstrap() -> String {
    if let Ok(b) = std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        if !b.trim().is_empty() {
            return b;
        }
    }
    let out = Command::new(repo_root().join("scripts/kafka.sh"))
        .arg("start")
        .stderr(Stdio::inherit())
        .output()
        .expect("running scripts/kafka.sh start");
    assert!(
        out.status.success(),
        "scripts/kafka.sh start failed: the bench smoke test needs a real Kafka broker"
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .last()
        .expect("an address")
        .trim()
        .to_string()
}

/// The release service binaries when they are built, else debug ones
/// (built here if needed).
fn bin_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let has = |d: &Path| {
        ["herald-router", "herald-adapter", "herald-gateway"]
            .iter()
            .all(|b| d.join(b).exists())
    };
    let release = target.join("release");
    if has(&release) {
        return release;
    }
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--bins",
            "-p",
            "herald-router",
            "-p",
            "herald-adapter",
            "-p",
            "herald-gateway",
        ])
        .current_dir(repo_root())
        .status()
        .expect("running cargo build");
    assert!(status.success(), "building the service binaries failed");
    target.join("debug")
}

fn median(v: &serde_json::Value) -> f64 {
    v["median"].as_f64().unwrap_or(f64::NAN)
}

#[test]
fn quick_run_measures_every_scenario() {
    let out = tempfile::tempdir().expect("temp dir");
    let status = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .arg("--quick")
        .arg("--out")
        .arg(out.path())
        .arg("--bin-dir")
        .arg(bin_dir())
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap())
        .status()
        .expect("running herald-bench");
    let json = std::fs::read_to_string(out.path().join("benchmarks.json"))
        .expect("benchmarks.json written");
    assert!(
        status.success(),
        "herald-bench --quick failed; results:\n{json}"
    );
    let r: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let positive = |what: &str, x: f64| {
        assert!(
            x.is_finite() && x > 0.0,
            "{what} has no figure: {x}\n{json}"
        )
    };

    assert_eq!(r["errors"].as_array().map(Vec::len), Some(0), "{json}");
    assert!(r["machine"]["logical_cpus"].as_u64().unwrap_or(0) >= 1);

    for side in ["router", "copy-txn", "copy"] {
        positive(
            &format!("router scenario, {side}"),
            median(&r["router"]["sides"][side]["rate"]),
        );
    }
    let levels = r["adapter"]["levels"].as_array().expect("adapter levels");
    assert_eq!(levels.len(), 3, "concurrency 1, 16 and 64");
    for l in levels {
        for side in ["adapter", "http-loop"] {
            positive(
                &format!("adapter scenario, {side} at {}", l["concurrency"]),
                median(&l["sides"][side]["rate"]),
            );
        }
    }
    let rates = r["latency"].as_array().expect("latency results");
    assert!(!rates.is_empty());
    for rate in rates {
        for p in ["p50_ms", "p99_ms", "p999_ms"] {
            positive(
                &format!("latency {p} at {}", rate["rate"]),
                median(&rate["latency"][p]),
            );
        }
    }
    positive("isolation p99 ratio", median(&r["isolation"]["p99_ratio"]));
    for side in ["gateway", "raw"] {
        let reps = r["gateway"][side].as_array().expect("gateway repetitions");
        assert!(!reps.is_empty(), "gateway scenario, {side}: no repetition");
        for k in ["requests_per_s", "p99_ms", "cpu_s_per_1k", "paced_p99_ms"] {
            positive(
                &format!("gateway scenario, {side} {k}"),
                reps[0][k].as_f64().unwrap_or(f64::NAN),
            );
        }
    }
    let peer = &r["peer"];
    for side in ["adapter", "peer", "http-loop"] {
        positive(
            &format!("peer scenario throughput, {side}"),
            median(&peer["throughput"][side]["rate"]),
        );
        positive(
            &format!("peer scenario CPU, {side}"),
            median(&peer["throughput"][side]["cpu_s_per_million"]),
        );
    }
    for run in ["faults", "kill"] {
        for side in ["adapter", "peer"] {
            let o = &peer[run][side];
            let n = |k: &str| {
                o[k].as_u64()
                    .unwrap_or_else(|| panic!("{run} {side} {k}: {o}"))
            };
            assert_eq!(
                n("delivered") + n("dead_lettered") + n("lost"),
                n("events"),
                "{run}, {side}: every event is counted once: {o}"
            );
            positive(&format!("{run} {side} requests"), n("requests") as f64);
        }
        // Herald's guarantee; the peer's figures are reported, not judged.
        assert_eq!(
            peer[run]["adapter"]["lost"], 0,
            "{run}: Herald lost events: {peer}"
        );
    }
    let dead = peer["faults"]["adapter"]["dead_lettered"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        dead > 0,
        "30% 503 with three attempts dead-letters some events: {peer}"
    );
    for l in peer["latency"].as_array().expect("peer latency") {
        positive(
            "peer latency p50",
            l["latency"]["p50_ms"].as_f64().unwrap_or(f64::NAN),
        );
    }
    let footprint = &r["footprint"];
    for (rate, services) in footprint["at_rate"]
        .as_object()
        .expect("footprint per rate")
    {
        let services = services.as_object().expect("services");
        assert_eq!(services.len(), 4, "router and three adapters at {rate}");
        for (name, f) in services {
            positive(&format!("peak RSS of {name}"), median(&f["peak_rss_mb"]));
            positive(&format!("CPU of {name}"), median(&f["cpu_s_per_million"]));
        }
    }
    positive("producer perf", median(&r["broker"]["producer"]));
    positive("consumer perf", median(&r["broker"]["consumer"]));
    assert!(
        r["ratios"].as_object().is_some_and(|m| m.len() >= 10),
        "{json}"
    );

    let md =
        std::fs::read_to_string(out.path().join("benchmarks.md")).expect("benchmarks.md written");
    for heading in [
        "## Machine",
        "## Parameters",
        "## 1. Router",
        "## 2. Adapter",
        "## 3. End-to-end",
        "## 4. Isolation",
        "## 5. Footprint",
        "## 6. Broker",
        "## 7. The peer",
    ] {
        assert!(md.contains(heading), "benchmarks.md lacks {heading}");
    }
    assert!(
        !md.contains("{{"),
        "a placeholder in notes.md names no figure:\n{md}"
    );
}
