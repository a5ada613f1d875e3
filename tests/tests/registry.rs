//! Input in the Confluent wire format, end to end on the real broker: events
//! produced by the Python `confluent-kafka` client's `AvroSerializer` (not by
//! Herald), whose writer schemas it registers over HTTP with a Schema
//! Registry, are routed and delivered — with writers one version older and
//! one newer than Herald's `schemas/event.avsc`. Then the registry's faults:
//! an outage shorter than `schema_registry.outage_hold` holds the batch and
//! loses nothing; a longer one sends the records of an unseen schema id to
//! `herald.invalid` (reason `registry`) and the rest flows; an id the
//! registry does not know is invalid (reason `decode`).
//!
//! The registry is `herald_devtools::registry::TestRegistry`, an in-memory
//! server speaking the registry's REST API: no Schema Registry server could
//! be installed on the build machines (see the README's "Schema Registry").

use herald_core::codec::{AvroRecord, EVENT_AVSC};
use herald_core::envelope::{Delivery, Event};
use herald_core::headers as h;
use herald_core::registry::{frame, value_subject};
use herald_devtools::registry::TestRegistry;
use herald_devtools::{Behaviour, Sink};
use herald_e2e::{header, python, signed, wait_until, Dest, Pipeline, SECRET};
use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

async fn pipeline(test: &str, registry: &TestRegistry, extra: &str) -> (Pipeline, Sink) {
    let mut healthy = Behaviour::healthy();
    healthy.secret = Some(SECRET.to_string());
    let sink = Sink::start(vec![("/a".to_string(), healthy)])
        .await
        .unwrap();
    let mut p = Pipeline::new(test, vec![Dest::new("a", sink.url("/a"))]).await;
    p.append_config(&format!(
        "[schema_registry]\nurl = \"{}\"\n{extra}",
        registry.url()
    ));
    (p, sink)
}

/// Runs tests/py/avro_producer.py; the ids it produced.
fn produce_with_serializer(
    p: &Pipeline,
    registry: &TestRegistry,
    variant: &str,
    n: usize,
    auth: Option<&str>,
) -> Vec<String> {
    let out = Command::new(python())
        .arg(herald_e2e::repo_root().join("tests/py/avro_producer.py"))
        .args([
            &herald_e2e::bootstrap(),
            &p.input(),
            &registry.url(),
            variant,
            &p.prefix,
            &n.to_string(),
        ])
        .args(auth)
        .output()
        .expect("running avro_producer.py");
    assert!(
        out.status.success(),
        "avro_producer.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ids as JSON")
}

fn event(id: &str) -> Event {
    Event {
        id: id.into(),
        source: "/billing".into(),
        r#type: "subscription.started".into(),
        time: None,
        subject: Some("cus_9".into()),
        tenant: None,
        data: r#"{"plan":"team"}"#.into(),
    }
}

/// An event framed with schema `id`, written with Herald's Event schema.
fn framed(id: u32, event_id: &str) -> Vec<u8> {
    let mut body = Vec::new();
    Event::writer()
        .write_ser(&mut body, &event(event_id))
        .unwrap();
    frame(id, &body)
}

/// Herald's event schema with another doc string: the same record to a
/// reader, a new schema (and id) to the registry.
fn variant_of_event_schema(tag: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(EVENT_AVSC).unwrap();
    v["doc"] = serde_json::json!(format!("variant {tag}"));
    v.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn serializer_events_with_older_and_newer_writer_schemas_are_delivered() {
    let registry = TestRegistry::start_with_basic_auth("herald", "sr-pass")
        .await
        .unwrap();
    let (mut p, sink) = pipeline(
        "registry-evolution",
        &registry,
        "username = \"herald\"\npassword = \"env:HERALD_TEST_SR_PASSWORD\"\n",
    )
    .await;
    p.env
        .push(("HERALD_TEST_SR_PASSWORD".into(), "sr-pass".into()));
    p.start_all();
    let auth = Some("herald:sr-pass");
    let mut ids = Vec::new();
    for variant in ["current", "older", "newer"] {
        ids.extend(produce_with_serializer(&p, &registry, variant, 20, auth));
    }
    let want: HashSet<String> = ids.iter().cloned().collect();
    wait_until("every serializer-produced event is delivered", LONG, || {
        sink.delivered_ids("/a").is_superset(&want)
    })
    .await;

    // What the router decoded, field by field, per writer schema.
    let dest = p.config.topic_names().dest("a");
    let deliveries: Vec<Delivery> = p
        .read(&dest)
        .await
        .iter()
        .map(|m| Delivery::from_avro(rdkafka::Message::payload(m).unwrap()).unwrap())
        .collect();
    assert_eq!(deliveries.len(), ids.len(), "one delivery per event");
    for d in &deliveries {
        let e = &d.event;
        let variant = e.id.rsplit('-').nth(1).unwrap();
        let data: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(data["variant"], variant, "{e:?}");
        assert_eq!(
            (e.r#type.as_str(), e.source.as_str()),
            ("subscription.started", "/billing")
        );
        assert_eq!(e.time.as_deref(), Some("2026-12-08T10:00:00Z"));
        let tenant = (variant != "older").then_some("acme");
        assert_eq!(e.tenant.as_deref(), tenant, "{e:?}");
        // The input record's timestamp rides along for end-to-end latency.
        assert!(
            d.produced_at.is_some_and(|t| t > 0 && t <= d.routed_at),
            "{d:?}"
        );
    }
    assert!(p.read(&p.config.topic_names().invalid()).await.is_empty());
    // Three writer schemas, each looked up once by the router.
    assert_eq!(registry.lookups_by_id(), 3, "{}", p.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_outages_hold_then_settle_and_unknown_ids_are_invalid() {
    let registry = TestRegistry::start().await.unwrap();
    let (mut p, sink) = pipeline("registry-faults", &registry, "outage_hold = \"6s\"\n").await;
    p.start_all();
    let subject = value_subject(&p.input());
    let invalid_topic = p.config.topic_names().invalid();

    // A short outage: the batch waits for the registry, nothing is lost.
    let z = registry.register(&subject, &variant_of_event_schema("z"));
    registry.set_down(true);
    let short: Vec<String> = (0..3).map(|i| format!("{}-short-{i}", p.prefix)).collect();
    for id in &short {
        p.produce_raw(&framed(z, id), None).await;
    }
    wait_until("the router reports the unreachable registry", LONG, || {
        p.logs().contains("Cannot reach the schema registry")
    })
    .await;
    registry.set_down(false);
    let want: HashSet<String> = short.iter().cloned().collect();
    wait_until(
        "events held during a short outage are delivered",
        LONG,
        || sink.delivered_ids("/a").is_superset(&want),
    )
    .await;

    // An outage longer than outage_hold: the unseen id's records go to the
    // invalid topic; records that need no lookup keep flowing.
    let y = registry.register(&subject, &variant_of_event_schema("y"));
    registry.set_down(true);
    let held: Vec<String> = (0..3).map(|i| format!("{}-held-{i}", p.prefix)).collect();
    for id in &held {
        p.produce_raw(&framed(y, id), None).await;
    }
    let flowing = p.produce_events(3, "subscription.started").await;
    let want: HashSet<String> = flowing.iter().cloned().collect();
    wait_until("JSON events flow after the hold", LONG, || {
        sink.delivered_ids("/a").is_superset(&want)
    })
    .await;
    let invalid = p.read(&invalid_topic).await;
    assert_eq!(invalid.len(), 3, "{}", p.logs());
    for m in &invalid {
        assert_eq!(header(m, h::INVALID_REASON).as_deref(), Some("registry"));
        let msg = header(m, h::ERROR_MESSAGE).unwrap();
        assert!(
            msg.contains(&format!("schema id {y}")) && msg.contains("503"),
            "{msg}"
        );
        let value = rdkafka::Message::payload(m).unwrap();
        assert_eq!(
            &value[..5],
            &frame(y, &[])[..],
            "the original record is kept"
        );
    }
    assert!(
        !held.iter().any(|id| sink.delivered_ids("/a").contains(id)),
        "records with an unresolved schema are not delivered"
    );

    // Back up: the same id resolves once its unavailability, settled for
    // outage_hold (6 s) after the hold, has lapsed.
    registry.set_down(false);
    tokio::time::sleep(Duration::from_secs(7)).await;
    let after: Vec<String> = (0..3).map(|i| format!("{}-after-{i}", p.prefix)).collect();
    for id in &after {
        p.produce_raw(&framed(y, id), None).await;
    }
    // An id the registry never issued.
    p.produce_raw(&framed(9_999, "unknown-id"), None).await;
    let want: HashSet<String> = after.iter().cloned().collect();
    wait_until("the id resolves once the registry is back", LONG, || {
        sink.delivered_ids("/a").is_superset(&want)
    })
    .await;
    let mut unknown = Vec::new();
    wait_until("the unknown id is invalid", LONG, || {
        let rt = tokio::runtime::Handle::current();
        unknown = tokio::task::block_in_place(|| rt.block_on(p.read(&invalid_topic)))
            .into_iter()
            .filter(|m| header(m, h::INVALID_REASON).as_deref() == Some("decode"))
            .collect();
        !unknown.is_empty()
    })
    .await;
    let msg = header(&unknown[0], h::ERROR_MESSAGE).unwrap();
    assert!(msg.contains("40403"), "{msg}");

    let addr = p.admin_addr("router").await;
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for outcome in ["fetched", "unavailable", "not_found"] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("herald_router_registry_lookups_total")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .unwrap_or_else(|| panic!("no {outcome} series:\n{metrics}"));
        let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n >= 1.0, "{line}");
    }
    assert!(metrics.contains("herald_router_events_invalid_total{reason=\"registry\"} 3"));

    // The records the long outage sent to the invalid topic are replayed
    // to the input topic, and now reach the destination: nothing was lost.
    let dry = p.cli(&[
        "--json",
        "invalid",
        "replay",
        "--reason",
        "registry",
        "--dry-run",
    ]);
    let dry: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(dry["would_replay"], 3, "{dry}");
    assert!(
        !held.iter().any(|id| sink.delivered_ids("/a").contains(id)),
        "a dry run produces nothing"
    );
    let out = p.cli(&["invalid", "replay", "--reason", "registry"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: HashSet<String> = held.iter().cloned().collect();
    wait_until("replayed records are delivered", LONG, || {
        sink.delivered_ids("/a").is_superset(&want)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn herald_records_are_registry_framed_and_read_by_a_registry_aware_consumer() {
    let registry = TestRegistry::start().await.unwrap();
    let sink = Sink::start(vec![
        ("/a".to_string(), signed(Behaviour::healthy())),
        ("/b".to_string(), Behaviour::status(400)),
    ])
    .await
    .unwrap();
    let mut p = Pipeline::new(
        "registry-output",
        vec![
            Dest::new("a", sink.url("/a")),
            Dest::new("b", sink.url("/b")),
        ],
    )
    .await;
    p.append_config(&format!(
        "[schema_registry]\nurl = \"{}\"\n\n[output]\nformat = \"registry\"\n",
        registry.url()
    ));
    p.start_all();
    let ids = p.produce_events(10, "subscription.started").await;
    let want: HashSet<String> = ids.iter().cloned().collect();
    wait_until("events reach destination a", LONG, || {
        sink.delivered_ids("/a").is_superset(&want)
    })
    .await;

    // Every Herald record is framed with the id registered for its topic.
    let names = p.config.topic_names();
    let attempts_topic = names.attempts();
    let attempt_id = registry.register(
        &value_subject(&attempts_topic),
        herald_core::codec::ATTEMPT_AVSC,
    );
    let delivery_id = registry.register(
        &value_subject(&names.dest("a")),
        herald_core::codec::DELIVERY_AVSC,
    );
    for (topic, id) in [
        (names.dest("a"), delivery_id),
        (attempts_topic.clone(), attempt_id),
    ] {
        let records = p.read(&topic).await;
        assert!(!records.is_empty(), "{topic}");
        for m in &records {
            let v = rdkafka::Message::payload(m).unwrap();
            assert_eq!(&v[..5], &frame(id, &[])[..], "{topic} is registry-framed");
        }
    }

    // The adapter of b read its framed deliveries and dead-lettered them
    // (400: permanent); the CLI reads the framed dead letters.
    let mut listed = serde_json::Value::Null;
    wait_until("the CLI lists b's dead letters", LONG, || {
        let out = p.cli(&["--json", "dlq", "list", "--destination", "b"]);
        listed = serde_json::from_slice(&out.stdout).unwrap_or_default();
        listed.as_array().is_some_and(|a| a.len() == 10)
    })
    .await;
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["reason"] == "permanent" && e["last_status"] == 400));

    // A consumer that is not Herald reads the attempts through the registry.
    let out = Command::new(python())
        .arg(herald_e2e::repo_root().join("tests/py/avro_consumer.py"))
        .args([
            &herald_e2e::bootstrap(),
            &attempts_topic,
            &registry.url(),
            "20",
        ])
        .output()
        .expect("running avro_consumer.py");
    assert!(
        out.status.success(),
        "avro_consumer.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let attempts: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let seen: HashSet<(String, String)> = attempts
        .iter()
        .map(|a| {
            (
                a["event_id"].as_str().unwrap().to_string(),
                a["destination"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for id in &ids {
        for d in ["a", "b"] {
            assert!(
                seen.contains(&(id.clone(), d.to_string())),
                "{id} {d}: {attempts:?}"
            );
        }
    }

    // `herald schemas check --registry` compares Herald's schemas with what
    // its subjects hold.
    let out = p.cli(&["--json", "schemas", "check", "--registry"]);
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{checks:?}");
    let attempts_subject = value_subject(&attempts_topic);
    assert!(
        checks.iter().any(|c| c["schema"] == "attempt.avsc"
            && c["against"].as_str().unwrap().contains(&attempts_subject)
            && c["compatible"] == true),
        "{checks:?}"
    );
}
