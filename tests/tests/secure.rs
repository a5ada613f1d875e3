//! The pipeline against a SASL_SSL listener: SCRAM-SHA-512 credentials (the
//! password by secret reference), TLS verified against a CA made by
//! `scripts/kafka.sh` with keytool. Router, adapters, the CLI and the
//! gateway all connect through it; a wrong password or a plaintext client
//! gets nowhere.

use herald_core::kafka::{apply_topics, topic_plan};
use herald_devtools::{Behaviour, Sink};
use herald_e2e::{signed, wait_until, Dest, Pipeline, SecureKafka, StopKafka};
use std::collections::HashSet;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

/// `herald-bench`, built (debug) if needed.
fn bench_bin() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| herald_e2e::repo_root().join("target"));
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", "herald-bench", "--bin", "herald-bench"])
            .current_dir(herald_e2e::repo_root())
            .status()
            .expect("cargo build");
    assert!(status.success(), "building herald-bench failed");
    target.join("debug/herald-bench")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_against_a_sasl_ssl_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kafka = SecureKafka::start(dir.path());
    let _stop = StopKafka(dir.path().to_path_buf());
    let sink = Sink::start(vec![
        ("/ok".into(), signed(Behaviour::healthy())),
        ("/reject".into(), signed(Behaviour::status(400))),
    ])
    .await
    .unwrap();
    let mut p = Pipeline::new(
        "secure",
        vec![
            Dest::new("ok", sink.url("/ok")),
            Dest::new("reject", sink.url("/reject")),
        ],
    )
    .await;
    let password_ref = format!("file:{}", kafka.password_file);
    p.replace_kafka_section(&kafka.kafka_toml(&password_ref));
    assert_eq!(p.config.kafka.bootstrap_servers, kafka.bootstrap);
    // Topics through the secure listener (the admin client authenticates).
    apply_topics(&p.config, &topic_plan(&p.config))
        .await
        .expect("creating topics over SASL_SSL");

    p.start_all();
    let n = 200;
    let ids: HashSet<String> = p
        .produce_events(n, "subscription.started")
        .await
        .into_iter()
        .collect();
    wait_until("every event delivered over SASL_SSL", LONG, || {
        sink.stats("/ok").unique_delivered >= n as u64
    })
    .await;
    let mut dead = Vec::new();
    let deadline = std::time::Instant::now() + LONG;
    while dead.len() < n {
        dead = p.dead_letters("reject").await;
        assert!(
            std::time::Instant::now() < deadline,
            "{} dead letters",
            dead.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let dead_ids: HashSet<String> = dead
        .iter()
        .map(|(d, _)| d.delivery.event.id.clone())
        .collect();
    assert_eq!(dead_ids, ids, "every 400 dead-lettered once");
    assert_eq!(sink.stats("/ok").duplicate_deliveries, 0);

    // The CLI with the same config.
    let list = p.cli(&["--json", "dlq", "list", "--destination", "reject"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), n);
    let apply = p.cli(&["topics", "apply"]);
    assert!(
        apply.status.success(),
        "{}",
        String::from_utf8_lossy(&apply.stderr)
    );

    // The benchmark's smoke run through the same listener (every scenario
    // but the broker's ceiling, whose Java perf tools take Java settings).
    let bench_out = dir.path().join("bench");
    let status = std::process::Command::new(bench_bin())
        .args([
            "--quick",
            "--kafka-config",
            p.config_path.to_str().unwrap(),
            "--out",
        ])
        .arg(&bench_out)
        .arg("--bin-dir")
        .arg(herald_e2e::bin("herald-router").parent().unwrap())
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .status()
        .expect("running herald-bench");
    let json = std::fs::read_to_string(bench_out.join("benchmarks.json")).unwrap_or_default();
    assert!(
        status.success(),
        "herald-bench --quick over SASL_SSL failed:\n{json}"
    );
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(r["errors"].as_array().map(Vec::len), Some(0), "{json}");
    for figure in [
        &r["router"]["sides"]["router"]["rate"]["median"],
        &r["adapter"]["levels"][0]["sides"]["adapter"]["rate"]["median"],
        &r["gateway"]["gateway"][0]["requests_per_s"],
    ] {
        assert!(figure.as_f64().is_some_and(|x| x > 0.0), "{json}");
    }

    // A wrong password is refused by the broker: the CLI fails. (librdkafka
    // reports the SASL failure on the client's main queue, which an admin
    // client does not poll: the CLI sees its operation time out.)
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&p.config_path)
        .unwrap()
        .replace(&password_ref, "not-the-password");
    std::fs::write(&bad, text).unwrap();
    let out = std::process::Command::new(herald_e2e::bin("herald"))
        .args(["--config", bad.to_str().unwrap(), "topics", "apply"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a wrong password must not work");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("created"), "{text}");
}

/// `herald config check` names a missing certificate and an unresolvable
/// password reference, by key.
#[test]
fn config_check_names_missing_certificates_and_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let check = |toml: &str| {
        std::fs::write(&path, toml).unwrap();
        let out = std::process::Command::new(herald_e2e::bin("herald"))
            .args(["--config", path.to_str().unwrap(), "config", "check"])
            .env_remove("HERALD_TEST_NO_SUCH_PASSWORD")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = check(
        "[kafka]\nclient = { \"security.protocol\" = \"SASL_SSL\", \"ssl.ca.location\" = \"/nonexistent/ca.pem\" }\n",
    );
    assert!(
        err.contains("kafka.client.\"ssl.ca.location\"") && err.contains("/nonexistent/ca.pem"),
        "{err}"
    );
    let err = check(
        "[kafka]\nclient_secrets = { \"sasl.password\" = \"env:HERALD_TEST_NO_SUCH_PASSWORD\" }\n",
    );
    assert!(
        err.contains("kafka.client_secrets.\"sasl.password\"")
            && err.contains("HERALD_TEST_NO_SUCH_PASSWORD"),
        "{err}"
    );
}
