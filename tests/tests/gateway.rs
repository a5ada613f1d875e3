//! The inbound gateway on a real broker: signatures made by the providers'
//! own libraries (tests/py/webhook_cases.py), records as the router reads
//! them, a provider's retries routed once, limits, and a Kafka outage during
//! a burst (no 2xx for anything not written).

use herald_core::codec::AvroRecord;
use herald_core::envelope::Delivery;
use herald_e2e::{header, own_kafka, python, wait_until, Dest, Pipeline, StopKafka};
use rdkafka::message::Message;
use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const STANDARD_OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STANDARD_NEW: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// `[sources.*]` for every scheme, each with two secrets (a rotation).
fn sources_toml() -> String {
    format!(
        r#"
[gateway]
max_body_bytes = 4096
ack_timeout = "3s"

[sources.stripe]
scheme = "stripe"
secrets = ["whsec_stripe_old", "whsec_stripe_new"]

[sources.standard]
scheme = "standard-webhooks"
secrets = ["{STANDARD_OLD}", "{STANDARD_NEW}"]

[sources.github]
scheme = "github"
secrets = ["gh-old", "gh-new"]

[sources.shopify]
scheme = "shopify"
secrets = ["shop-old", "shop-new"]

# Slack's request signing, spelled out with the generic scheme.
[sources.slack]
scheme = "hmac"
secrets = ["slack-old", "slack-new"]
id = "body:/event_id"
type = ["body:/event/type"]
type_prefix = "slack"
rate_limit = {{ per_second = 1000.0, burst = 1000 }}
[sources.slack.hmac]
header = "X-Slack-Signature"
prefix = "v0="
signed = "v0:{{timestamp}}:{{body}}"
timestamp_header = "X-Slack-Request-Timestamp"
"#
    )
}

fn secrets_json() -> String {
    serde_json::json!({
        "stripe": ["whsec_stripe_old", "whsec_stripe_new"],
        "standard": [STANDARD_OLD, STANDARD_NEW],
        "github": ["gh-old", "gh-new"],
        "shopify": ["shop-old", "shop-new"],
        "slack": ["slack-old", "slack-new"],
    })
    .to_string()
}

#[derive(serde::Deserialize, Debug)]
struct Case {
    name: String,
    source: String,
    headers: BTreeMap<String, String>,
    body: String,
    status: u16,
    reason: Option<String>,
    key: Option<usize>,
    id: Option<String>,
}

fn cases(run: &str) -> Vec<Case> {
    let out = Command::new(python())
        .arg(herald_e2e::repo_root().join("tests/py/webhook_cases.py"))
        .arg(secrets_json())
        .arg(run)
        .output()
        .expect("running webhook_cases.py");
    assert!(
        out.status.success(),
        "webhook_cases.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cases are JSON")
}

async fn post(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    source: &str,
    headers: &BTreeMap<String, String>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut req = client
        .post(format!("http://{addr}/webhooks/{source}"))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.send().await.expect("gateway answers")
}

/// `name{labels} value` lines of the gateway's /metrics, by name+labels.
async fn metrics(p: &Pipeline) -> HashMap<String, f64> {
    let admin = p.admin_addr("gateway").await;
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_from_the_providers_libraries() {
    let mut p = Pipeline::new("gw-signatures", vec![]).await;
    p.append_config(&sources_toml());
    let addr = p.start_gateway().await;
    let cases = cases(&p.prefix);
    assert_eq!(cases.len(), 30, "every scheme's cases");
    let client = reqwest::Client::new();
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut accepted = HashMap::new();
    for c in &cases {
        let mut headers = c.headers.clone();
        headers.insert("traceparent".into(), traceparent.into());
        let resp = post(&client, addr, &c.source, &headers, c.body.clone()).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, c.status, "{}: {text}", c.name);
        if status == 401 {
            let reason = c.reason.as_deref().expect("a refusal names its reason");
            assert!(text.contains(reason), "{}: {text} (want {reason})", c.name);
        }
        if let Some(id) = &c.id {
            accepted.insert(id.clone(), c);
        }
    }
    // Every accepted request is on the input topic: body bytes untouched,
    // CloudEvents binary-mode headers, the provider's trace continued.
    let records = p.read(&p.input()).await;
    assert_eq!(
        records.len(),
        accepted.len(),
        "one record per 2xx, none for a 401"
    );
    for m in &records {
        let id = header(m, "ce_id").expect("ce_id");
        let c = accepted
            .get(&id)
            .unwrap_or_else(|| panic!("unexpected record {id}"));
        assert_eq!(
            m.payload(),
            Some(c.body.as_bytes()),
            "{}: body untouched",
            c.name
        );
        assert_eq!(header(m, "ce_specversion").as_deref(), Some("1.0"));
        assert_eq!(
            header(m, "ce_source"),
            Some(format!("/sources/{}", c.source)),
            "{}",
            c.name
        );
        let ty = header(m, "ce_type").expect("ce_type");
        let want = match c.source.as_str() {
            "stripe" => "stripe.customer.subscription.created",
            "standard" => "invoice.paid",
            "github" => "github.issues.opened",
            "shopify" => "shopify.orders/create",
            "slack" => "slack.app_mention",
            other => panic!("{other}"),
        };
        assert_eq!(ty, want, "{}", c.name);
        assert!(
            header(m, "traceparent")
                .is_some_and(|t| t.contains("0af7651916cd43dd8448eb211c80319c")),
            "{}: the provider's trace continues",
            c.name
        );
        match c.source.as_str() {
            "stripe" => assert_eq!(
                m.key(),
                Some(format!("cus_{}_{}", p.prefix, &id[id.rfind('_').unwrap() + 1..]).as_bytes()),
                "keyed by the customer"
            ),
            "github" => {
                assert_eq!(m.key(), Some(&b"acme/api"[..]));
                assert_eq!(header(m, "x-github-hook-id").as_deref(), Some("42"));
            }
            "shopify" => assert_eq!(
                header(m, "x-shopify-shop-domain").as_deref(),
                Some("acme.myshopify.com")
            ),
            _ => {}
        }
    }
    // The metrics say which key verified and why the rest were refused.
    let m = metrics(&p).await;
    for src in ["stripe", "standard", "github", "shopify", "slack"] {
        for key in [0, 1] {
            let want = cases
                .iter()
                .filter(|c| c.source == src && c.key == Some(key))
                .count() as f64;
            let got = m
                .get(&format!(
                    "herald_gateway_signature_key_total{{key=\"{key}\",source=\"{src}\"}}"
                ))
                .copied()
                .unwrap_or(0.0);
            assert_eq!(got, want, "{src} key {key}");
        }
        for reason in ["missing", "malformed", "stale", "mismatch"] {
            let want = cases
                .iter()
                .filter(|c| c.source == src && c.reason.as_deref() == Some(reason))
                .count() as f64;
            let got = m[&format!(
                "herald_gateway_signature_failures_total{{reason=\"{reason}\",source=\"{src}\"}}"
            )];
            assert_eq!(got, want, "{src} {reason}");
        }
    }
    assert!(p.stop_gateway(), "SIGTERM: the gateway drains and exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_unknown_routes_and_unroutable_payloads() {
    let mut p = Pipeline::new("gw-limits", vec![]).await;
    p.append_config(&sources_toml().replace(
        "rate_limit = { per_second = 1000.0, burst = 1000 }",
        "rate_limit = { per_second = 0.5, burst = 2 }",
    ));
    let addr = p.start_gateway().await;
    let client = reqwest::Client::new();
    let none = BTreeMap::new();
    // No route without a source, no GET, no unknown source.
    let r = client
        .get(format!("http://{addr}/webhooks/stripe"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(
        post(&client, addr, "nope", &none, "{}")
            .await
            .status()
            .as_u16(),
        404
    );
    let r = client.post(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // Over max_body_bytes: 413, declared or streamed.
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(5000));
    assert_eq!(
        post(&client, addr, "stripe", &none, big.clone())
            .await
            .status()
            .as_u16(),
        413
    );
    assert_eq!(chunked_post(addr, "stripe", big.as_bytes()).await, 413);
    // Rate limit: the burst passes (to the signature check), then 429 with
    // Retry-After.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = post(&client, addr, "slack", &none, "{}").await;
        if r.status().as_u16() == 429 {
            let ra: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=2).contains(&ra), "Retry-After {ra}");
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 429, 429]);
    // A verified request that cannot be an event (no id) is written anyway;
    // the router sends it to the invalid topic with the reason.
    let body = r#"{"type":"invoice.paid"}"#;
    let t = herald_core::time::now_ms() / 1000;
    let sig = {
        use hmac::{Hmac, Mac};
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(b"whsec_stripe_old").unwrap();
        m.update(format!("{t}.{body}").as_bytes());
        m.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let hs = BTreeMap::from([("stripe-signature".to_string(), format!("t={t},v1={sig}"))]);
    assert_eq!(
        post(&client, addr, "stripe", &hs, body)
            .await
            .status()
            .as_u16(),
        200
    );
    p.start_router();
    let invalid = p.config.topic_names().invalid();
    let deadline = Instant::now() + Duration::from_secs(60);
    let found = loop {
        let found = p.read(&invalid).await;
        if !found.is_empty() {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "the id-less record never reached the invalid topic"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(found[0].payload(), Some(body.as_bytes()));
    assert!(
        header(&found[0], "herald-error-message").is_some_and(|m| m.contains("id")),
        "reason names the id"
    );
    let m = metrics(&p).await;
    assert_eq!(
        m["herald_gateway_accepted_invalid_total{source=\"stripe\"}"],
        1.0
    );
    assert_eq!(
        m["herald_gateway_requests_total{outcome=\"too_large\",source=\"stripe\"}"],
        2.0
    );
    assert_eq!(
        m["herald_gateway_requests_total{outcome=\"rate_limited\",source=\"slack\"}"],
        2.0
    );
    assert_eq!(
        m["herald_gateway_requests_total{outcome=\"unknown_source\",source=\"unknown\"}"],
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_retrying_a_delivery_is_routed_once() {
    let mut p = Pipeline::new(
        "gw-retries",
        vec![Dest::new("crm", "http://127.0.0.1:9/x".into())
            .with("route = { event_types = [\"stripe.*\"] }")],
    )
    .await;
    p.append_config(&sources_toml());
    let addr = p.start_gateway().await;
    p.start_router();
    let client = reqwest::Client::new();
    let ids: Vec<String> = (0..5).map(|i| format!("evt_{}_{i}", p.prefix)).collect();
    // Stripe retries a delivery it saw no 2xx for with a fresh signature
    // (new timestamp); here every event is delivered three times.
    for round in 0..3 {
        for id in &ids {
            let body = serde_json::json!({
                "id": id, "type": "invoice.paid",
                "data": {"object": {"customer": format!("cus_{id}"), "round": round}},
            })
            .to_string();
            let t = herald_core::time::now_ms() / 1000 - round;
            let sig = stripe_sig("whsec_stripe_new", t, &body);
            let hs = BTreeMap::from([("Stripe-Signature".to_string(), sig)]);
            assert_eq!(
                post(&client, addr, "stripe", &hs, body)
                    .await
                    .status()
                    .as_u16(),
                200
            );
        }
    }
    let dest = p.config.topic_names().dest("crm");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let routed = p.routed_ids("crm").await;
        if ids.iter().all(|i| routed.contains_key(i)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every event routed: {routed:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let any copy that would follow arrive before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let routed = p.routed_ids("crm").await;
    for id in &ids {
        assert_eq!(routed[id], 1, "{id} routed once though received 3 times");
    }
    assert_eq!(
        p.read(&p.input()).await.len(),
        15,
        "all 15 requests written"
    );
    let first = p.read(&dest).await;
    let d = Delivery::from_avro(first[0].payload().unwrap()).unwrap();
    assert_eq!(d.event.source, "/sources/stripe");
    assert!(d.event.r#type == "stripe.invoice.paid");
}

/// A POST with a chunked body (no Content-Length): the limit must hold
/// while streaming too. Returns the status code.
async fn chunked_post(addr: std::net::SocketAddr, source: &str, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /webhooks/{source} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(1000) {
        let _ = s
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await;
        let _ = s.write_all(chunk).await;
        let _ = s.write_all(b"\r\n").await;
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp).await;
    let text = String::from_utf8_lossy(&resp);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn stripe_sig(secret: &str, t: i64, body: &str) -> String {
    let out = Command::new(python())
        .args([
            "-c",
            "import sys, stripe; print(stripe.WebhookSignature.generate_signature_header(sys.argv[1], sys.argv[2], int(sys.argv[3])))",
            body,
            secret,
            &t.to_string(),
        ])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// (event id, status, Retry-After) of one request.
type Answered = (String, u16, Option<String>);

/// Kafka dies during a burst: requests during the outage get 503 with
/// Retry-After, and every request answered 2xx is on the topic afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_down_during_a_burst_loses_no_acknowledged_request() {
    let kafka_dir = tempfile::tempdir().expect("temp dir");
    let addr = own_kafka(kafka_dir.path(), "start");
    let _stop = StopKafka(kafka_dir.path().to_path_buf());
    let shared = herald_e2e::bootstrap();
    let mut p = Pipeline::new("gw-outage", vec![]).await;
    let text = std::fs::read_to_string(&p.config_path)
        .unwrap()
        .replace(&shared, &addr);
    std::fs::write(&p.config_path, text).unwrap();
    p.append_config(&sources_toml().replace(
        "ack_timeout = \"3s\"",
        "ack_timeout = \"2s\"\nretry_after = \"7s\"",
    ));
    assert_eq!(p.config.kafka.bootstrap_servers, addr);
    herald_core::kafka::apply_topics(&p.config, &herald_core::kafka::topic_plan(&p.config))
        .await
        .expect("topics on the test's broker");
    let gw = p.start_gateway().await;
    let results: Arc<Mutex<Vec<Answered>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // 8 senders, each posting signed Standard Webhooks requests back to back.
    let mut senders = Vec::new();
    for s in 0..8 {
        let (results, stop, prefix) = (results.clone(), stop.clone(), p.prefix.clone());
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap();
            let key = herald_core::signature::SigningKey::parse(STANDARD_OLD).unwrap();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("msg_{prefix}_{s}_{n}");
                n += 1;
                let body = serde_json::json!({"type": "order.paid", "data": {"n": n}}).to_string();
                let ts = herald_core::time::now_ms() / 1000;
                let hs = BTreeMap::from([
                    ("webhook-id".to_string(), id.clone()),
                    ("webhook-timestamp".to_string(), ts.to_string()),
                    (
                        "webhook-signature".to_string(),
                        key.sign(&id, ts, body.as_bytes()),
                    ),
                ]);
                let r = post(&client, gw, "standard", &hs, body).await;
                let ra = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                results.lock().unwrap().push((id, r.status().as_u16(), ra));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let pid: i32 = std::fs::read_to_string(kafka_dir.path().join("broker.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    #[allow(unsafe_code)]
    let _ = unsafe { libc::kill(pid, libc::SIGKILL) };
    let down_at = results.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let restarted = Instant::now();
    assert_eq!(own_kafka(kafka_dir.path(), "start"), addr);
    // Keep sending until 2xx are back for a few seconds.
    wait_until(
        "2xx again after the broker restart",
        Duration::from_secs(90),
        || {
            let r = results.lock().unwrap();
            r.iter().rev().take(20).filter(|x| x.1 == 200).count() == 20
        },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    let results = results.lock().unwrap().clone();
    let ok: Vec<&String> = results
        .iter()
        .filter(|r| r.1 == 200)
        .map(|r| &r.0)
        .collect();
    let unavailable: Vec<_> = results.iter().filter(|r| r.1 == 503).collect();
    let other: Vec<_> = results
        .iter()
        .filter(|r| r.1 != 200 && r.1 != 503)
        .collect();
    eprintln!(
        "{} requests: {} answered 2xx, {} answered 503 ({} before the kill); back {:?} after the restart",
        results.len(),
        ok.len(),
        unavailable.len(),
        down_at,
        restarted.elapsed()
    );
    assert!(other.is_empty(), "only 2xx and 503: {other:?}");
    assert!(
        !unavailable.is_empty(),
        "requests during the outage got 503"
    );
    assert!(
        unavailable.iter().all(|r| r.2.as_deref() == Some("7")),
        "every 503 carries Retry-After"
    );
    let written: std::collections::HashSet<String> = p
        .read(&p.input())
        .await
        .iter()
        .filter_map(|m| header(m, "ce_id"))
        .collect();
    let lost: Vec<_> = ok.iter().filter(|id| !written.contains(**id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged requests missing: {lost:?}",
        lost.len()
    );
}
