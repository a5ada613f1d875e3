//! The router at its edges: events too large to deliver, ids that cannot be
//! headers, missing identity fields, rebalances, broker outages, restarts
//! and the default instance name. Real broker, real router binary.

#![allow(unsafe_code)] // kill(2) for SIGTERM of router processes.

use herald_core::codec::AvroRecord;
use herald_core::config::Config;
use herald_core::envelope::Delivery;
use herald_core::headers as h;
use herald_core::kafka::{apply_topics, client_config, topic_plan};
use herald_e2e::{bin, header, wait_until, Dest, Pipeline};
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A router process this test controls directly (several per test, with
/// their own config or environment).
struct Router {
    child: Option<Child>,
    log: PathBuf,
}

impl Router {
    fn start(config: &Path, log: PathBuf, env: &[(&str, &str)], remove: &[&str]) -> Self {
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(bin("herald-router"));
        cmd.arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(file.try_clone().expect("log fd"))
            .stderr(file)
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        for k in remove {
            cmd.env_remove(k);
        }
        Self {
            child: Some(cmd.spawn().expect("starting herald-router")),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.terminate();
        if std::thread::panicking() {
            eprintln!("==== {} ====\n{}", self.log.display(), self.log());
        }
    }
}

/// A copy of the pipeline's config file with `edit` applied; its topics
/// are created (on the broker the edited config names).
async fn derived_config(
    p: &Pipeline,
    name: &str,
    edit: impl Fn(String) -> String,
) -> (PathBuf, Config) {
    let text = edit(std::fs::read_to_string(&p.config_path).expect("config"));
    let path = p.dir.path().join(name);
    std::fs::write(&path, text).expect("write config");
    let config = Config::load_with_env(Some(&path), std::iter::empty()).expect("valid config");
    apply_topics(&config, &topic_plan(&config))
        .await
        .expect("creating topics");
    (path, config)
}

async fn set_topic_config(config: &Config, topic: &str, key: &str, value: &str) {
    let admin: AdminClient<DefaultClientContext> = client_config(config).create().expect("admin");
    let spec = ResourceSpecifier::Topic(topic);
    let res = admin
        .alter_configs(
            &[AlterConfig::new(spec).set(key, value)],
            &AdminOptions::new(),
        )
        .await
        .expect("alter configs");
    for r in res {
        r.unwrap_or_else(|e| panic!("setting {key} on {topic}: {e:?}"));
    }
}

async fn produce_json(producer: &FutureProducer, topic: &str, key: &str, value: &str) {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(60),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
}

/// A structured CloudEvent, `id` first (so a truncated copy still shows it).
fn event(id: &str, data: serde_json::Value) -> String {
    format!(
        r#"{{"id":{},"specversion":"1.0","source":"/tests","type":"edge.test","data":{data}}}"#,
        serde_json::Value::from(id)
    )
}

/// ce_ids on a destination topic, read_committed, with their counts.
async fn ids_on(config: &Config, topic: &str) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for m in herald_core::kafka::read_topic_to_end(config, topic)
        .await
        .expect("reading topic")
    {
        let d = Delivery::from_avro(m.payload().expect("value")).expect("delivery");
        *out.entry(d.event.id).or_default() += 1;
    }
    out
}

/// Invalid-topic records by their event id (from the original payload),
/// with their reason header.
async fn invalid_reasons(p: &Pipeline) -> Vec<(String, Option<String>, usize, Option<String>)> {
    p.read(&p.config.topic_names().invalid())
        .await
        .into_iter()
        .map(|m| {
            let payload = m.payload().unwrap_or_default();
            (
                String::from_utf8_lossy(&payload[..payload.len().min(200)]).to_string(),
                header(&m, h::INVALID_REASON),
                payload.len(),
                header(&m, h::ORIGINAL_OFFSET),
            )
        })
        .collect()
}

fn random_text(n: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..n)
        .map(|_| CHARS[rand::random::<u32>() as usize % CHARS.len()] as char)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_too_large_to_deliver_go_to_invalid_and_routing_goes_on() {
    let mut p = Pipeline::new(
        "too-large",
        vec![Dest::new("all", "http://127.0.0.1:9/x".into())],
    )
    .await;
    let input = p.input();
    // The broker takes the 1 MB event on the input topic...
    set_topic_config(&p.config, &input, "max.message.bytes", "3000000").await;
    // ...and the destination topic refuses anything over 200 kB, below
    // router.max_event_bytes: only the broker can say no to the 300 kB one.
    let dest = p.config.topic_names().dest("all");
    set_topic_config(&p.config, &dest, "max.message.bytes", "200000").await;
    let producer: FutureProducer = client_config(&p.config)
        .set("message.max.bytes", "3000000")
        .set("compression.type", "none")
        .create()
        .expect("producer");
    let big = event("big", serde_json::json!({"blob": random_text(1_000_000)}));
    let mid = event("mid", serde_json::json!({"blob": random_text(300_000)}));
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = format!("before-{i}");
        produce_json(&producer, &input, "k", &event(&id, serde_json::json!({}))).await;
        ids.push(id);
    }
    produce_json(&producer, &input, "k", &big).await;
    produce_json(&producer, &input, "k", &mid).await;
    for i in 0..5 {
        let id = format!("after-{i}");
        produce_json(&producer, &input, "k", &event(&id, serde_json::json!({}))).await;
        ids.push(id);
    }
    p.start_router();
    let config = p.config.clone();
    let mut routed = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ids.iter().all(|i| routed.contains_key(i)) {
        assert!(
            Instant::now() < deadline,
            "normal events not routed: {routed:?}\n{}",
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        routed = ids_on(&config, &dest).await;
    }
    assert!(ids.iter().all(|i| routed[i] == 1), "{routed:?}");
    assert!(!routed.contains_key("big") && !routed.contains_key("mid"));
    let invalid = invalid_reasons(&p).await;
    for (id, limit) in [("\"big\"", 900 * 1024), ("\"mid\"", 16 * 1024)] {
        let rec = invalid
            .iter()
            .find(|r| r.0.contains(id))
            .unwrap_or_else(|| panic!("{id} not in invalid: {invalid:?}"));
        assert_eq!(rec.1.as_deref(), Some("too-large"), "{id}");
        assert!(rec.2 <= limit, "{id}: payload of {} bytes kept", rec.2);
        assert!(rec.3.is_some(), "original offset header");
    }
    println!(
        "invalid records: {:?}",
        invalid.iter().map(|r| (&r.1, r.2)).collect::<Vec<_>>()
    );
    p.kill_router();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_unsafe_ids_and_missing_identity_fields_go_to_invalid() {
    let mut p = Pipeline::new("ids", vec![Dest::new("all", "http://127.0.0.1:9/x".into())]).await;
    p.env.push((
        "HERALD__ROUTER__IDENTITY".into(),
        r#"["type", "data.order_id"]"#.into(),
    ));
    let producer = p.producer();
    let input = p.input();
    let sends = [
        ("a\nb", serde_json::json!({"order_id": 1})),
        ("x1", serde_json::json!({})),
        ("x2", serde_json::json!({"other": 2})),
        ("y1", serde_json::json!({"order_id": 2})),
        ("y2", serde_json::json!({"order_id": 3})),
        ("y3", serde_json::json!({"order_id": 2})),
    ];
    for (id, data) in &sends {
        produce_json(&producer, &input, "k", &event(id, data.clone())).await;
    }
    p.start_router();
    let dest = p.config.topic_names().dest("all");
    wait_until("router caught up", Duration::from_secs(60), || {
        p.router_caught_up()
    })
    .await;
    let routed = ids_on(&p.config, &dest).await;
    let mut keys: Vec<_> = routed.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["y1", "y2"], "y3 is a copy of y1 by order_id");
    let invalid = invalid_reasons(&p).await;
    let reason = |id: &str| {
        invalid
            .iter()
            .find(|r| r.0.contains(id))
            .and_then(|r| r.1.clone())
    };
    assert_eq!(reason(r#""a\nb""#).as_deref(), Some("id"), "{invalid:?}");
    assert_eq!(
        reason(r#""x1""#).as_deref(),
        Some("identity"),
        "{invalid:?}"
    );
    assert_eq!(
        reason(r#""x2""#).as_deref(),
        Some("identity"),
        "{invalid:?}"
    );
    p.kill_router();
}
