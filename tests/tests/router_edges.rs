//! The router at its edges: events too large to deliver, ids that cannot be
//! headers, missing identity fields, rebalances, broker outages, restarts
//! and the default instance name. Real broker, real router binary.

#![allow(unsafe_code)] // kill(2) for SIGTERM of router processes.

use herald_core::codec::AvroRecord;
use herald_core::config::Config;
use herald_core::envelope::Delivery;
use herald_core::headers as h;
use herald_core::kafka::{apply_topics, client_config, topic_plan};
use herald_e2e::{bin, header, own_kafka, wait_until, Dest, Pipeline, StopKafka};
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
        // HERALD_ROUTER_BIN runs these tests against another build (e.g. the
        // router before a fix, to see a test fail).
        let program = std::env::var_os("HERALD_ROUTER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| bin("herald-router"));
        let mut cmd = Command::new(program);
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
    let p = Pipeline::new(
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
    let mut r = Router::start(&p.config_path, p.dir.path().join("r.log"), &[], &[]);
    let config = p.config.clone();
    let mut routed = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ids.iter().all(|i| routed.contains_key(i)) {
        assert!(
            Instant::now() < deadline,
            "normal events not routed: {routed:?}\n{}",
            r.log()
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
    r.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_unsafe_ids_and_missing_identity_fields_go_to_invalid() {
    let p = Pipeline::new("ids", vec![Dest::new("all", "http://127.0.0.1:9/x".into())]).await;
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
    let mut r = Router::start(
        &p.config_path,
        p.dir.path().join("r.log"),
        &[("HERALD__ROUTER__IDENTITY", r#"["type", "data.order_id"]"#)],
        &[],
    );
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
    r.kill();
}

/// Log text without ANSI colour codes.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Produces `ids` as structured events, spread over keys.
async fn produce_ids(producer: &FutureProducer, topic: &str, ids: &[String]) {
    let sends = ids.iter().enumerate().map(|(i, id)| {
        let value = event(id, serde_json::json!({"n": i}));
        let key = format!("cus_{}", i % 17);
        async move { produce_json(producer, topic, &key, &value).await }
    });
    futures::future::join_all(sends).await;
}

/// Waits until every id is on `topic`; then asserts each is there once.
async fn assert_routed_once(config: &Config, topic: &str, ids: &[String], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let routed = ids_on(config, topic).await;
        if ids.iter().all(|i| routed.contains_key(i)) {
            let twice: Vec<_> = routed.iter().filter(|(_, n)| **n > 1).collect();
            if !twice.is_empty() {
                // Copies in the input, or the router's own?
                let mut input: HashMap<String, Vec<(i32, i64)>> = HashMap::new();
                for m in herald_core::kafka::read_topic_to_end(config, &config.topics.input)
                    .await
                    .expect("reading input")
                {
                    let v: serde_json::Value =
                        serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_default();
                    if let Some(id) = v["id"].as_str() {
                        input
                            .entry(id.into())
                            .or_default()
                            .push((m.partition(), m.offset()));
                    }
                }
                let mut origins: HashMap<String, Vec<i64>> = HashMap::new();
                for m in herald_core::kafka::read_topic_to_end(config, topic)
                    .await
                    .expect("reading topic")
                {
                    let d = Delivery::from_avro(m.payload().expect("value")).expect("delivery");
                    origins.entry(d.event.id).or_default().push(d.origin_offset);
                }
                let detail: Vec<_> = twice
                    .iter()
                    .map(|(id, _)| (id, &input[*id], &origins[*id]))
                    .collect();
                panic!("routed more than once (id, input coordinates, delivery origin offsets): {detail:?}");
            }
            assert_eq!(routed.len(), ids.len(), "unexpected ids routed");
            return;
        }
        let missing = ids.iter().filter(|i| !routed.contains_key(*i)).count();
        assert!(
            Instant::now() < deadline,
            "{missing} of {} events not routed after {timeout:?}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_instance_name_is_the_os_host_name_and_a_killed_router_resumes_at_once() {
    let p = Pipeline::new(
        "hostname",
        vec![Dest::new("all", "http://127.0.0.1:9/x".into())],
    )
    .await;
    let (cfg, config) = derived_config(&p, "no-txn-id.toml", |t| {
        t.lines()
            .filter(|l| !l.starts_with("transactional_id"))
            .collect::<Vec<_>>()
            .join("\n")
    })
    .await;
    assert!(config.router.transactional_id.is_none());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("host name");
    let expected = format!("{}.{}", config.topic_names().router_group(), host.trim());
    let dest = config.topic_names().dest("all");
    let producer = p.producer();
    let mut r = Router::start(&cfg, p.dir.path().join("r1.log"), &[], &["HOSTNAME"]);
    let first = ids("one", 20);
    produce_ids(&producer, &p.input(), &first).await;
    assert_routed_once(&config, &dest, &first, Duration::from_secs(90)).await;
    let log = plain(&r.log());
    assert!(
        log.lines().any(|l| l.contains("Router started.")
            && l.contains(&format!("transactional_id={expected} "))),
        "no start line with transactional_id={expected}:\n{log}"
    );
    // SIGKILL, new events, restart: same instance name, so the new process
    // fences the old transaction and gets the partitions back at once.
    r.kill();
    let second = ids("two", 20);
    produce_ids(&producer, &p.input(), &second).await;
    let t0 = Instant::now();
    let mut r2 = Router::start(&cfg, p.dir.path().join("r2.log"), &[], &["HOSTNAME"]);
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    assert_routed_once(&config, &dest, &all, Duration::from_secs(90)).await;
    let log = plain(&r2.log());
    let line = log
        .lines()
        .find(|l| l.contains("first transaction committed"))
        .unwrap_or_default()
        .to_string();
    println!(
        "restart after SIGKILL: all events routed {} ms after the restart (test's view); router: {line}",
        t0.elapsed().as_millis()
    );
    assert!(!line.is_empty(), "router logs its first commit:\n{log}");
    assert!(r2.alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_joining_and_leaving_route_each_event_exactly_once() {
    let p = Pipeline::new(
        "churn",
        vec![Dest::new("all", "http://127.0.0.1:9/x".into())],
    )
    .await;
    let a = Router::start(
        &p.config_path,
        p.dir.path().join("router-a.log"),
        &[("HERALD__ROUTER__DEDUPE_WINDOW", "0s")],
        &[],
    );
    let config = p.config.clone();
    let input = p.input();
    let producer = p.producer();
    let all = ids("churn", 1500);
    let feeder = {
        let all = all.clone();
        let producer = producer.clone();
        let input = input.clone();
        tokio::spawn(async move {
            for chunk in all.chunks(50) {
                produce_ids(&producer, &input, chunk).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    for k in 0..4 {
        let id = format!("{}.router-b{k}", p.prefix);
        let mut b = Router::start(
            &p.config_path,
            p.dir.path().join(format!("router-b{k}.log")),
            &[
                ("HERALD__ROUTER__TRANSACTIONAL_ID", id.as_str()),
                ("HERALD__ROUTER__DEDUPE_WINDOW", "0s"),
            ],
            &[],
        );
        tokio::time::sleep(Duration::from_secs(4)).await;
        if k % 2 == 0 {
            b.terminate();
        } else {
            b.kill();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    feeder.await.expect("feeder");
    let dest = config.topic_names().dest("all");
    assert_routed_once(&config, &dest, &all, Duration::from_secs(180)).await;
    let log = plain(&a.log());
    println!(
        "rebalance drops: {}",
        log.matches("Assignment changed while reading a batch")
            .count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_restore_reads_only_the_window_and_still_drops_copies() {
    let p = Pipeline::new(
        "restore",
        vec![Dest::new("all", "http://127.0.0.1:9/x".into())],
    )
    .await;
    let changelog = p.config.topic_names().dedupe_changelog();
    let producer = p.producer();
    // Old marks on every partition: outside the 10 min window, yet inside
    // the changelog's 1 h retention (older ones are deleted by the broker
    // within seconds, and then there is nothing left to skip).
    let old = herald_core::time::now_ms() - 30 * 60 * 1000;
    let mut sends = Vec::new();
    for part in 0..p.config.topics.partitions {
        for _ in 0..1000 {
            let key = format!("{:032x}", rand::random::<u128>());
            let producer = producer.clone();
            let changelog = changelog.clone();
            sends.push(async move {
                producer
                    .send(
                        FutureRecord::to(&changelog)
                            .partition(part)
                            .key(&key)
                            .payload(&old.to_string())
                            .timestamp(old),
                        Duration::from_secs(30),
                    )
                    .await
                    .map_err(|(e, _)| e)
                    .expect("produce mark");
            });
        }
    }
    futures::future::join_all(sends).await;
    let start = |n: usize| {
        Router::start(
            &p.config_path,
            p.dir.path().join(format!("restore-{n}.log")),
            &[("RUST_LOG", "info")],
            &[],
        )
    };
    let mut r = start(1);
    let dest = p.config.topic_names().dest("all");
    let first = ids("dup", 30);
    produce_ids(&producer, &p.input(), &first).await;
    assert_routed_once(&p.config, &dest, &first, Duration::from_secs(90)).await;
    r.kill();
    let r2 = start(2);
    // Copies of the same events after the restart: dropped.
    produce_ids(&producer, &p.input(), &first).await;
    wait_until("router caught up", Duration::from_secs(90), || {
        p.router_caught_up()
    })
    .await;
    assert_routed_once(&p.config, &dest, &first, Duration::from_secs(10)).await;
    let log = plain(&r2.log());
    let restored: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Restored dedupe state"))
        .collect();
    let field = |l: &str, k: &str| -> i64 {
        l.split(&format!("{k}="))
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1)
    };
    let skipped: i64 = restored
        .iter()
        .map(|l| field(l, "skipped_before_window"))
        .sum();
    let loaded: i64 = restored.iter().map(|l| field(l, "identities")).sum();
    println!("restores: {restored:?} (skipped {skipped}, loaded {loaded})");
    assert!(
        skipped >= 3000,
        "old marks are skipped, not read: {restored:?}"
    );
    assert!(loaded < 3000, "only the window's marks load: {restored:?}");
    assert!(!log.contains("Could not restore dedupe state"), "{log}");
}

/// Whether the router's /readyz answers 200.
async fn ready(addr: &str) -> bool {
    match reqwest::get(format!("http://{addr}/readyz")).await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

/// Item 6: the router rides out a 90 s broker outage — alive, not ready
/// meanwhile, nothing lost. Known limit (README): the batch in flight when
/// the broker dies can be routed twice; the test prints how many were.
/// Run by hand (`cargo test -p herald-e2e --test router_edges -- --ignored`):
/// under CI load the router has been seen to stop routing for minutes after
/// the broker restarts (its clients time out on metadata) — open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "flaky under CI load: the router sometimes stops routing after the broker restarts (open); run with --ignored"]
async fn router_rides_out_a_broker_outage_without_loss() {
    let kafka_dir = tempfile::tempdir().expect("temp dir");
    let addr = own_kafka(kafka_dir.path(), "start");
    let _stop = StopKafka(kafka_dir.path().to_path_buf());
    let p = Pipeline::new(
        "outage",
        vec![Dest::new("all", "http://127.0.0.1:9/x".into())],
    )
    .await;
    let shared = herald_e2e::bootstrap();
    let (cfg, config) = derived_config(&p, "outage.toml", |t| t.replace(&shared, &addr)).await;
    assert_eq!(config.kafka.bootstrap_servers, addr);
    let dest = config.topic_names().dest("all");
    let input = config.topics.input.clone();
    let mut r = Router::start(
        &cfg,
        p.dir.path().join("router.log"),
        &[("RUST_LOG", "info,herald_router=debug")],
        &[],
    );
    let admin = {
        let mut found = None;
        wait_until("router serves /readyz", Duration::from_secs(30), || {
            let log = plain(&r.log());
            found = log
                .lines()
                .find(|l| l.contains("Serving /metrics"))
                .and_then(|l| l.split("addr=").nth(1))
                .map(|a| a.trim().to_string());
            found.is_some()
        })
        .await;
        found.expect("admin address")
    };
    // Records queued while the broker is away are delivered when it is back.
    let producer: FutureProducer = client_config(&config)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "600000")
        // No copies in the input from the test's own retries.
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let before = ids("before", 200);
    produce_ids(&producer, &input, &before[..100]).await;
    assert_routed_once(&config, &dest, &before[..100], Duration::from_secs(90)).await;
    assert!(ready(&admin).await, "ready before the outage");
    // Kill the broker while events keep coming.
    let feeder = {
        let (producer, input, rest) = (producer.clone(), input.clone(), before[100..].to_vec());
        tokio::spawn(async move {
            for chunk in rest.chunks(10) {
                produce_ids(&producer, &input, chunk).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid: i32 = std::fs::read_to_string(kafka_dir.path().join("broker.pid"))
        .expect("broker pid")
        .trim()
        .parse()
        .expect("pid");
    let _ = unsafe { libc::kill(pid, libc::SIGKILL) };
    let down = Instant::now();
    let mut saw_not_ready = false;
    while down.elapsed() < Duration::from_secs(90) {
        if !ready(&admin).await {
            saw_not_ready = true;
        }
        assert!(r.alive(), "router exited during the outage:\n{}", r.log());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let again = own_kafka(kafka_dir.path(), "start");
    assert_eq!(again, addr, "a restarted broker keeps its port");
    let after = ids("after", 100);
    produce_ids(&producer, &input, &after).await;
    feeder.await.expect("feeder");
    let all: Vec<String> = before.iter().chain(&after).cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(240);
    let routed = loop {
        let routed = ids_on(&config, &dest).await;
        if all.iter().all(|i| routed.contains_key(i)) {
            break routed;
        }
        let missing = all.iter().filter(|i| !routed.contains_key(*i)).count();
        if Instant::now() >= deadline {
            // Open: once in several runs the router never resumes (its
            // consumer and lag probe time out reading the group's committed
            // offsets). Show the broker's side of it.
            let txn_id = config.router.transactional_id.clone().unwrap_or_default();
            let group = config.topic_names().router_group();
            println!(
                "{}",
                broker_diagnostics(kafka_dir.path(), &addr, &txn_id, &group)
            );
            panic!(
                "{missing} of {} events not routed after the outage",
                all.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(routed.len(), all.len(), "unexpected ids routed");
    let twice = routed.values().filter(|n| **n > 1).count();
    println!("outage: events routed twice (the batch in flight at the kill): {twice}");
    assert!(r.alive(), "router still running");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(&admin).await {
        assert!(
            Instant::now() < deadline,
            "not ready again after the outage"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        saw_not_ready,
        "/readyz said not ready while the router could not route"
    );
    println!(
        "outage: 90 s; all {} events routed; recovery lines: {:?}",
        all.len(),
        plain(&r.log())
            .lines()
            .filter(|l| l.contains("Transactional producer ready") || l.contains("Resuming"))
            .count()
    );
    r.terminate();
}

/// What the broker says about open transactions and the router's group,
/// and the tail of its log: for a failure that cannot be reproduced at will.
fn broker_diagnostics(dir: &Path, addr: &str, txn_id: &str, group: &str) -> String {
    let tool = |args: &[&str]| -> String {
        let out = Command::new(herald_e2e::repo_root().join("scripts/kafka.sh"))
            .arg("tool")
            .args(args)
            .env("HERALD_KAFKA_DIR", dir)
            .env_remove("KAFKA_BOOTSTRAP_SERVERS")
            .output();
        match out {
            Ok(o) => format!(
                "$ {}\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("$ {}: {e}", args.join(" ")),
        }
    };
    let txns = "org.apache.kafka.tools.TransactionsCommand";
    let groups = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
    let log = std::fs::read_to_string(dir.join("broker.log")).unwrap_or_default();
    let tail: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    [
        tool(&[txns, "--bootstrap-server", addr, "list"]),
        tool(&[
            txns,
            "--bootstrap-server",
            addr,
            "describe",
            "--transactional-id",
            txn_id,
        ]),
        tool(&[
            txns,
            "--bootstrap-server",
            addr,
            "find-hanging",
            "--broker-id",
            "1",
        ]),
        tool(&[
            groups,
            "--bootstrap-server",
            addr,
            "--describe",
            "--group",
            group,
            "--offsets",
        ]),
        format!(
            "---- broker.log WARN/ERROR (last 60) ----\n{}",
            tail[tail.len().saturating_sub(60)..].join("\n")
        ),
    ]
    .join("\n")
}
