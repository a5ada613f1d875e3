//! The dashboards and alert rules in `deploy/` against a real Prometheus.
//!
//! A pipeline delivers events to a healthy, a flaky and a permanently
//! failing (400) destination, with duplicates, invalid and unrouted input
//! mixed in, so every series the dashboards and alerts use exists. A real
//! Prometheus (Debian's `prometheus` package, which `.ci/run` installs)
//! scrapes the router, the adapters, the gateway and the delivery log
//! (`herald-log`) and loads `deploy/prometheus/alerts.yml`;
//! then every dashboard panel query, every template variable query and every
//! alert expression is evaluated through its HTTP API. A query that does not
//! parse, or returns no series, fails the test. `promtool` (same package)
//! checks the rules and config and runs the alert unit tests.
//!
//! The test fails — it does not skip — when Prometheus is not installed.

use herald_devtools::{Behaviour, Sink};
use herald_e2e::{repo_root, signed, Dest, Pipeline, SECRET};
use rdkafka::producer::FutureRecord;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
/// What `$__rate_interval` becomes: several 1 s scrapes.
const RATE_INTERVAL: &str = "20s";
/// The destination the per-destination dashboard is evaluated for: the
/// flaky one has every kind of series (retries, failures, dead letters).
const DASHBOARD_DESTINATION: &str = "flaky";

fn installed(path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.exists(),
        "{path} is missing: this test needs a real Prometheus. Install the Debian package `prometheus` \
         (apt-get install prometheus; .ci/run does it)."
    );
    p
}

/// A Prometheus server on 127.0.0.1 with its own temporary storage, killed
/// on drop.
struct Prometheus {
    child: Child,
    dir: tempfile::TempDir,
    url: String,
    http: reqwest::Client,
}

impl Prometheus {
    async fn start(config: &str) -> Self {
        let bin = installed(PROMETHEUS);
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        // Free a port for Prometheus (it cannot report a port-0 bind).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        let p = Self {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = p.http.get(format!("{}/-/ready", p.url)).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus did not become ready:\n{}",
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    async fn get(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let url =
            reqwest::Url::parse_with_params(&format!("{}{path}", self.url), params).expect("url");
        let body = self
            .http
            .get(url)
            .send()
            .await
            .expect("Prometheus answers")
            .text()
            .await
            .expect("body");
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("Prometheus answered non-JSON ({e}): {body}"))
    }

    /// The result vector of an instant query, or Prometheus's error.
    async fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let v = self.get("/api/v1/query", &[("query", promql)]).await;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        match &v["data"]["result"] {
            Value::Array(a) => Ok(a.clone()),
            other => Ok(vec![other.clone()]), // scalar or string result
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One query to evaluate, with where it came from.
struct Query {
    origin: String,
    promql: String,
}

/// Substitutes the Grafana variables the dashboards use.
fn grafana_substitute(expr: &str) -> String {
    let out = expr
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("${destination}", DASHBOARD_DESTINATION)
        .replace("$destination", DASHBOARD_DESTINATION);
    assert!(
        !out.contains("$__") && !out.contains("${"),
        "unsubstituted Grafana variable in {expr}"
    );
    out
}

/// Every panel target and template variable query of one dashboard file.
fn dashboard_queries(path: &Path) -> Vec<Query> {
    let file = path.file_name().unwrap().to_string_lossy().to_string();
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read dashboard"))
        .unwrap_or_else(|e| panic!("{file} is not JSON: {e}"));
    assert!(
        d["uid"].as_str().is_some_and(|u| !u.is_empty()),
        "{file}: dashboard uid"
    );
    let mut out = Vec::new();
    fn panels(list: &Value, file: &str, out: &mut Vec<Query>) {
        for p in list.as_array().into_iter().flatten() {
            if p["type"] == "row" {
                panels(&p["panels"], file, out);
                continue;
            }
            let title = p["title"].as_str().unwrap_or("?");
            let targets = p["targets"]
                .as_array()
                .unwrap_or_else(|| panic!("{file}: panel {title} has no targets"));
            assert!(!targets.is_empty(), "{file}: panel {title} has no targets");
            for t in targets {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{file}: panel {title} has a target without expr"));
                out.push(Query {
                    origin: format!("{file} / {title} [{}]", t["refId"].as_str().unwrap_or("?")),
                    promql: grafana_substitute(expr),
                });
            }
        }
    }
    panels(&d["panels"], &file, &mut out);
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or_else(|| v["query"].as_str())
            .expect("variable query");
        // label_values(metric, label): the series that carry the label.
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| {
                panic!(
                    "{file}: variable {} uses an unsupported query {q}",
                    v["name"]
                )
            });
        let (metric, label) = inner.rsplit_once(',').expect("label_values(metric, label)");
        out.push(Query {
            origin: format!("{file} / variable ${}", v["name"].as_str().unwrap_or("?")),
            promql: format!("group by ({}) ({})", label.trim(), metric.trim()),
        });
    }
    out
}

/// Turns an alert expression into one that returns its whole input: every
/// comparison gets the `bool` modifier, so `x > 5` yields every series of
/// `x` (0 or 1) instead of only those over the threshold. Comparisons inside
/// label matchers (`{…}`) and strings are left alone.
fn with_bool_comparisons(expr: &str) -> String {
    let b = expr.as_bytes();
    let (mut out, mut i, mut braces, mut quote) = (String::new(), 0, 0usize, None::<u8>);
    while i < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            out.push(c as char);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1] as char);
                i += 2;
                continue;
            }
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            b'"' | b'\'' | b'`' => quote = Some(c),
            b'{' => braces += 1,
            b'}' => braces = braces.saturating_sub(1),
            _ => {}
        }
        let two = &expr[i..(i + 2).min(b.len())];
        let op = if braces > 0 {
            None
        } else if [">=", "<=", "==", "!="].contains(&two) {
            Some(two)
        } else if c == b'>' || c == b'<' {
            Some(&expr[i..i + 1])
        } else {
            None
        };
        if let Some(op) = op {
            out.push_str(op);
            i += op.len();
            if !expr[i..].trim_start().starts_with("bool") {
                out.push_str(" bool");
            }
            continue;
        }
        out.push(c as char);
        i += 1;
    }
    out
}

#[test]
fn bool_comparisons() {
    assert_eq!(with_bool_comparisons("sum(x) > 0"), "sum(x) > bool 0");
    assert_eq!(
        with_bool_comparisons(r#"a{job=~"h.*",o!="x"} == 0 or absent(b)"#),
        r#"a{job=~"h.*",o!="x"} == bool 0 or absent(b)"#
    );
    assert_eq!(
        with_bool_comparisons("(a / b) < 0.9 and c >= 20"),
        "(a / b) < bool 0.9 and c >= bool 20"
    );
    assert_eq!(with_bool_comparisons("a > bool 1"), "a > bool 1");
}

fn run(cmd: &Path, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("running promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{} {} failed:\n{text}",
        cmd.display(),
        args.join(" ")
    );
    println!("{} {}: ok", cmd.display(), args.join(" "));
}

#[test]
fn promtool_accepts_the_rules_and_config_and_the_alerts_fire_when_they_should() {
    let promtool = installed(PROMTOOL);
    run(
        &promtool,
        &["check", "rules", "deploy/prometheus/alerts.yml"],
    );
    run(
        &promtool,
        &["check", "config", "deploy/prometheus/prometheus.yml"],
    );
    run(
        &promtool,
        &["test", "rules", "deploy/prometheus/alerts_test.yml"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_evaluate_on_a_real_prometheus() {
    installed(PROMETHEUS);
    let mut flaky = Behaviour::flaky(0.2, 0.2);
    flaky.hang = Duration::from_secs(1);
    let sink = Sink::start(vec![
        ("/ok".into(), signed(Behaviour::healthy())),
        ("/flaky".into(), signed(flaky)),
        ("/bad".into(), signed(Behaviour::status(400))),
    ])
    .await
    .unwrap();
    // `ignored.*` events match no destination (unrouted).
    let routed = "route.event_types = [\"order.*\", \"payment.*\"]\n";
    let mut p = Pipeline::new(
        "observability",
        vec![
            Dest::new("ok", sink.url("/ok")).with(routed),
            Dest::new("flaky", sink.url("/flaky"))
                .with(routed)
                .with("timeout = \"300ms\""),
            Dest::new("bad", sink.url("/bad")).with(routed),
        ],
    )
    .await;
    // The gateway too: its alerts need its series.
    p.append_config(&format!(
        "[sources.sw]\nscheme = \"standard-webhooks\"\nsecrets = [\"{SECRET}\"]\n"
    ));
    p.start_all();
    p.start_gateway().await;
    // The delivery log: its dashboard row and HeraldReconcileStragglers.
    let log = p.start_log(&p.dir.path().join("log.db")).await;
    let gateway = p.admin_addr("gateway").await;
    let router = p.admin_addr("router").await;
    let mut adapters = BTreeMap::new();
    for d in ["ok", "flaky", "bad"] {
        adapters.insert(d, p.admin_addr(d).await);
    }
    println!("admin addresses: router {router}, adapters {adapters:?}, gateway {gateway}, herald-log {log}");

    let targets = |addrs: Vec<String>| {
        addrs
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let config = format!(
        r#"
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {rules}
scrape_configs:
  - job_name: herald-router
    static_configs:
      - targets: [{router}]
  - job_name: herald-adapter
    static_configs:
      - targets: [{adapters}]
  - job_name: herald-gateway
    static_configs:
      - targets: [{gateway}]
  - job_name: herald-log
    static_configs:
      - targets: [{log}]
"#,
        rules = repo_root().join("deploy/prometheus/alerts.yml").display(),
        router = targets(vec![router.to_string()]),
        adapters = targets(adapters.values().map(|a| a.to_string()).collect()),
        gateway = targets(vec![gateway.to_string()]),
        log = targets(vec![log.to_string()]),
    );
    let prom = Prometheus::start(&config).await;
    println!("Prometheus at {}", prom.url);

    // Traffic: a steady stream (with some `ignored.ping` that no destination
    // wants), plus copies (dedupe) and invalid records once.
    let stop = Arc::new(AtomicBool::new(false));
    let stream = {
        let (producer, topic, prefix, stop) =
            (p.producer(), p.input(), p.prefix.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            let mut round = 0u64;
            while !stop.load(Ordering::Acquire) {
                round += 1;
                let types: &[&str] = if round.is_multiple_of(5) {
                    &["order.created", "payment.failed", "ignored.ping"]
                } else {
                    &["order.created", "payment.failed"]
                };
                for t in types {
                    let id = format!("{prefix}-s{n}");
                    let value = serde_json::json!({"specversion": "1.0", "id": id, "source": "/obs", "type": t, "data": {"n": n}}).to_string();
                    let key = format!("cus_{}", n % 10);
                    let _ = producer
                        .send(
                            FutureRecord::to(&topic).key(&key).payload(&value),
                            Duration::from_secs(10),
                        )
                        .await;
                    n += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    p.produce_events(20, "order.created").await;
    p.produce_events(20, "order.created").await; // the same ids again: deduplicated
    for _ in 0..3 {
        p.produce_raw(b"{not json", None).await;
    }

    // Every target up.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = prom.query("up").await.expect("up parses");
        // router, three adapters, gateway, herald-log
        let all_up = up.len() == 6 && up.iter().all(|s| s["value"][1] == "1");
        if all_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every Herald target is up in Prometheus: {up:?}\n{}",
            prom.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let mut queries = Vec::new();
    for name in ["herald-overview.json", "herald-destination.json"] {
        queries.extend(dashboard_queries(
            &repo_root().join("deploy/grafana/dashboards").join(name),
        ));
    }
    let dashboard_count = queries.len();

    // The alert rules as Prometheus loaded them.
    let mut alerts: Vec<(String, String)> = Vec::new();
    let rules = prom.get("/api/v1/rules", &[]).await;
    for g in rules["data"]["groups"].as_array().expect("rule groups") {
        for r in g["rules"].as_array().expect("rules") {
            if r["type"] == "alerting" {
                alerts.push((
                    r["name"].as_str().unwrap().to_string(),
                    r["query"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    for required in [
        "HeraldDeadLetters",
        "HeraldConsumerLagGrowing",
        "HeraldConsumerLagTooOld",
        "HeraldSuccessRatioLow",
        "HeraldNoEventsReceived",
        "HeraldCircuitOpen",
        "HeraldReconcileStragglers",
    ] {
        assert!(
            alerts.iter().any(|(n, _)| n == required),
            "alert {required} not loaded: {alerts:?}"
        );
    }
    for (name, expr) in &alerts {
        queries.push(Query {
            origin: format!("alert {name} (as is)"),
            promql: expr.clone(),
        });
        queries.push(Query {
            origin: format!("alert {name} (inputs, comparisons as bool)"),
            promql: with_bool_comparisons(expr),
        });
    }

    // Wait until every query has series; a parse error fails at once.
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut counts: Vec<usize>;
    loop {
        counts = Vec::new();
        for q in &queries {
            match prom.query(&q.promql).await {
                Ok(series) => counts.push(series.len()),
                Err(e) => panic!("{} does not evaluate: {e}\n  query: {}", q.origin, q.promql),
            }
        }
        // Alert expressions as is return series only while firing; every
        // other query must have some.
        let empty: Vec<&Query> = queries
            .iter()
            .zip(&counts)
            .filter(|(q, n)| **n == 0 && !q.origin.ends_with("(as is)"))
            .map(|(q, _)| q)
            .collect();
        if empty.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let list: Vec<String> = empty
                .iter()
                .map(|q| format!("  {}\n    {}", q.origin, q.promql))
                .collect();
            panic!("these queries still return no series:\n{}", list.join("\n"));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    println!("\nseries per query ({dashboard_count} dashboard queries, {} alerts; $destination = {DASHBOARD_DESTINATION}, $__rate_interval = {RATE_INTERVAL}):", alerts.len());
    for (q, n) in queries.iter().zip(&counts) {
        println!("{n:>4}  {}", q.origin);
    }

    // Prometheus evaluated every rule without error, and the DLQ alert is
    // active: the 400 destination dead-letters everything.
    let rules = prom.get("/api/v1/rules", &[]).await;
    let mut states = Vec::new();
    for g in rules["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(
                r["health"], "ok",
                "rule {} evaluates with an error: {}",
                r["name"], r["lastError"]
            );
            states.push(format!(
                "{}={}",
                r["name"].as_str().unwrap(),
                r["state"].as_str().unwrap_or("?")
            ));
        }
    }
    println!("\nalert states: {}", states.join(", "));
    let active = prom.get("/api/v1/alerts", &[]).await;
    let dlq_alert = active["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| {
            a["labels"]["alertname"] == "HeraldDeadLetters" && a["labels"]["destination"] == "bad"
        });
    assert!(
        dlq_alert,
        "HeraldDeadLetters is not active for the 400 destination: {active}"
    );

    // The depth probe measures the broker: the 400 destination's DLQ holds
    // records, and its depth never exceeds what the topic really holds.
    let deadline = Instant::now() + Duration::from_secs(60);
    let depth = loop {
        let r = prom
            .query(r#"max(herald_adapter_dlq_depth_records{destination="bad"})"#)
            .await
            .expect("depth query");
        let v: f64 = r
            .first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if v > 0.0 {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the DLQ depth of the 400 destination stays 0"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let on_topic = p.dead_letters("bad").await.len() as f64;
    assert!(
        depth <= on_topic,
        "DLQ depth {depth} > {on_topic} records on the topic"
    );
    println!("\nDLQ depth of `bad` in Prometheus: {depth} (the topic holds {on_topic} now)");

    // What `curl /metrics` shows: lag in offsets and in seconds on every service.
    let http = reqwest::Client::new();
    for (service, addr) in
        std::iter::once(("router", router)).chain(adapters.iter().map(|(d, a)| (*d, *a)))
    {
        let text = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let lag: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("herald_consumer_lag_"))
            .collect();
        println!(
            "\n{service} /metrics at {addr}, lag lines:\n{}",
            lag.join("\n")
        );
        assert!(
            lag.iter()
                .any(|l| l.starts_with("herald_consumer_lag_offsets{")),
            "{service}: no lag in offsets:\n{text}"
        );
        assert!(
            lag.iter()
                .any(|l| l.starts_with("herald_consumer_lag_seconds{")),
            "{service}: no lag in seconds:\n{text}"
        );
    }

    stop.store(true, Ordering::Release);
    let _ = stream.await;
    drop(prom);
}
