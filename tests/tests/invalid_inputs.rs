//! Hostile input end to end, on the real broker: a few hundred random and
//! damaged records (seeded) among valid events in all three encodings,
//! produced with a plain producer. Every input record must land exactly
//! once, either routed or on `<prefix>.invalid` with a reason, and every
//! valid event must reach its destination.
//!
//! The router's dedupe is off here: damaged copies of one event keep its
//! identity, and dropping them as duplicates (correct in production) would
//! hide whether each record was accounted for.

use herald_core::codec::AvroRecord;
use herald_core::envelope::{Delivery, Event};
use herald_core::headers as h;
use herald_devtools::{Behaviour, Sink};
use herald_e2e::{wait_until, Dest, Pipeline, SECRET};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(180);
const VALID: usize = 120;
const JUNK: usize = 360;

/// One record to produce, and what the test knows about it.
struct Input {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    /// The event id, when the record is a valid event.
    valid_id: Option<String>,
    /// Whether it can only be invalid (tombstone, deep nesting, …).
    must_be_invalid: bool,
    kind: &'static str,
}

fn event(id: String, rng: &mut StdRng) -> Event {
    let types = ["user.signed_up", "payment.failed", "subscription.started"];
    Event {
        id,
        source: "/fuzz".into(),
        r#type: types[rng.random_range(0..types.len())].into(),
        time: rng
            .random_bool(0.5)
            .then(|| "2026-11-23T10:00:00.123Z".to_string()),
        subject: Some(format!("cus_{}", rng.random_range(0..20))),
        tenant: rng.random_bool(0.3).then(|| "acme".to_string()),
        data: serde_json::json!({"n": rng.random_range(0..1000), "note": "fuzz"}).to_string(),
    }
}

/// The three encodings: structured JSON, binary mode (`ce_*` headers), Avro.
fn encode(e: &Event, encoding: usize) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    match encoding {
        0 => {
            let v = serde_json::json!({
                "specversion": "1.0", "id": e.id, "source": e.source, "type": e.r#type,
                "time": e.time, "subject": e.subject, "tenant": e.tenant,
                "data": serde_json::from_str::<serde_json::Value>(&e.data).unwrap(),
            });
            (v.to_string().into_bytes(), vec![])
        }
        1 => {
            let mut hs = vec![
                ("ce_specversion".to_string(), b"1.0".to_vec()),
                ("ce_id".to_string(), e.id.clone().into_bytes()),
                ("ce_source".to_string(), e.source.clone().into_bytes()),
                ("ce_type".to_string(), e.r#type.clone().into_bytes()),
            ];
            if let Some(t) = &e.time {
                hs.push(("ce_time".to_string(), t.clone().into_bytes()));
            }
            (e.data.clone().into_bytes(), hs)
        }
        _ => (e.to_avro().unwrap(), vec![]),
    }
}

/// Avro's zig-zag varint of a long.
fn zigzag(v: i64) -> Vec<u8> {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let n = rng.random_range(0..max);
    (0..n).map(|_| rng.random()).collect()
}

fn random_headers(rng: &mut StdRng) -> Vec<(String, Vec<u8>)> {
    let names = [
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_time",
        "ce_tenant",
        "content-type",
        "traceparent",
        "herald-invalid-reason",
        "x-junk",
    ];
    (0..rng.random_range(0..5))
        .map(|_| {
            let name = names[rng.random_range(0..names.len())].to_string();
            let value = match rng.random_range(0..3) {
                0 => Vec::new(),
                1 => b"payment.failed".to_vec(),
                _ => random_bytes(rng, 40),
            };
            (name, value)
        })
        .collect()
}

/// Damages `bytes` in one of several ways.
fn mutate(bytes: &mut Vec<u8>, rng: &mut StdRng) {
    if bytes.is_empty() {
        bytes.push(rng.random());
        return;
    }
    match rng.random_range(0..4) {
        0 => {
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] ^= 1 << rng.random_range(0..8);
            }
        }
        1 => bytes.truncate(rng.random_range(0..bytes.len())),
        2 => {
            let i = rng.random_range(0..=bytes.len());
            let junk = random_bytes(rng, 12);
            bytes.splice(i..i, junk);
        }
        _ => {
            let i = rng.random_range(0..bytes.len());
            bytes[i] = [0xC0, 0xFF, 0x80][rng.random_range(0..3)];
        }
    }
}

fn junk(i: usize, rng: &mut StdRng) -> Input {
    let base = event(format!("mut-{i}"), rng);
    let mut input = Input {
        key: rng.random_bool(0.8).then(|| random_bytes(rng, 16)),
        value: None,
        headers: vec![],
        valid_id: None,
        must_be_invalid: false,
        kind: "",
    };
    match i % 9 {
        0 => {
            input.kind = "random bytes";
            input.value = Some(random_bytes(rng, 400));
            input.headers = random_headers(rng);
        }
        1 => {
            input.kind = "tombstone";
            input.must_be_invalid = true;
        }
        2 | 3 => {
            input.kind = "mutated event";
            let (mut v, hs) = encode(&base, rng.random_range(0..3));
            mutate(&mut v, rng);
            input.value = Some(v);
            input.headers = hs;
        }
        4 => {
            input.kind = "huge Avro length";
            let (mut v, _) = encode(&base, 2);
            let at = rng.random_range(10..v.len());
            let huge = zigzag([i64::MAX, 1 << 40, 500_000_000, -7][rng.random_range(0..4)]);
            let end = (at + huge.len()).min(v.len());
            v.splice(at..end, huge);
            input.value = Some(v);
        }
        5 => {
            input.kind = "deep nesting";
            input.must_be_invalid = true;
            let depth = rng.random_range(200..20_000);
            let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            input.value = Some(
                format!(
                    r#"{{"id":"{}","source":"/fuzz","type":"t.deep","data":{nested}}}"#,
                    base.id
                )
                .into_bytes(),
            );
        }
        6 => {
            input.kind = "invalid UTF-8";
            input.must_be_invalid = true;
            let (v, hs) = encode(&base, 0);
            let mut v = v;
            let q = v.iter().position(|b| *b == b'"').unwrap();
            v.insert(q + 1, 0xFF);
            input.value = Some(v);
            input.headers = hs;
        }
        7 => {
            input.kind = "damaged binary mode";
            let (v, hs) = encode(&base, 1);
            let mut hs: Vec<_> = hs.into_iter().filter(|_| rng.random_bool(0.6)).collect();
            hs.extend(random_headers(rng));
            let mut v = v;
            if rng.random_bool(0.5) {
                mutate(&mut v, rng);
            }
            input.value = Some(v);
            input.headers = hs;
        }
        _ => {
            input.kind = "contract broken";
            input.must_be_invalid = true;
            let broken = match rng.random_range(0..4) {
                0 => serde_json::json!({"id": base.id, "source": "/fuzz"}),
                1 => serde_json::json!({"id": base.id, "source": "/fuzz", "type": "a b"}),
                2 => {
                    serde_json::json!({"id": base.id, "source": "/fuzz", "type": "t.x", "time": "yesterday"})
                }
                _ => serde_json::json!({"id": "x".repeat(300), "source": "/fuzz", "type": "t.x"}),
            };
            input.value = Some(broken.to_string().into_bytes());
        }
    }
    input
}

fn last_header(m: &OwnedMessage, name: &str) -> Option<String> {
    let hs = m.headers()?;
    hs.iter()
        .filter(|x| x.key == name)
        .last()
        .and_then(|x| x.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_input_lands_routed_or_invalid_exactly_once() {
    let seed: u64 = std::env::var("HERALD_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED);
    eprintln!("HERALD_FUZZ_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let mut healthy = Behaviour::healthy();
    healthy.secret = Some(SECRET.to_string());
    let sink = Sink::start(vec![("/a".to_string(), healthy)])
        .await
        .unwrap();
    let mut p = Pipeline::new("invalid-inputs", vec![Dest::new("a", sink.url("/a"))]).await;
    p.env
        .push(("HERALD__ROUTER__DEDUPE_WINDOW".into(), "0s".into()));

    let mut inputs: Vec<Input> = (0..VALID)
        .map(|i| {
            let e = event(format!("ok-{i}"), &mut rng);
            let (value, headers) = encode(&e, i % 3);
            Input {
                key: Some(e.subject.clone().unwrap().into_bytes()),
                value: Some(value),
                headers,
                valid_id: Some(e.id),
                must_be_invalid: false,
                kind: "valid",
            }
        })
        .collect();
    inputs.extend((0..JUNK).map(|i| junk(i, &mut rng)));
    // Valid and damaged records interleaved.
    for i in (1..inputs.len()).rev() {
        let j = rng.random_range(0..=i);
        inputs.swap(i, j);
    }

    let producer = p.producer();
    let topic = p.input();
    let sends = inputs.iter().map(|input| {
        let mut hs = OwnedHeaders::new();
        for (k, v) in &input.headers {
            hs = hs.insert(Header {
                key: k.as_str(),
                value: Some(v.as_slice()),
            });
        }
        let mut rec = FutureRecord::<[u8], [u8]>::to(&topic).headers(hs);
        if let Some(k) = &input.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = &input.value {
            rec = rec.payload(v.as_slice());
        }
        let producer = producer.clone();
        async move {
            producer
                .send(rec, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| e)
                .expect("produce")
        }
    });
    let positions: Vec<(i32, i64)> = futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|d| (d.partition, d.offset))
        .collect();
    let by_position: HashMap<(i32, i64), usize> = positions
        .iter()
        .enumerate()
        .map(|(i, pos)| (*pos, i))
        .collect();
    assert_eq!(by_position.len(), inputs.len());

    p.start_all();
    wait_until("the router routes every input record", LONG, || {
        p.router_caught_up()
    })
    .await;

    // Where each input record landed: `Ok(())` routed, `Err(reason)` invalid.
    let mut landed: HashMap<usize, Vec<Result<(), String>>> = HashMap::new();
    let names = p.config.topic_names();
    for m in p.read(&names.dest("a")).await {
        let d = Delivery::from_avro(m.payload().expect("value")).expect("delivery decodes");
        let i = by_position[&(d.origin_partition, d.origin_offset)];
        landed.entry(i).or_default().push(Ok(()));
    }
    for m in p.read(&names.invalid()).await {
        let partition: i32 = last_header(&m, h::ORIGINAL_PARTITION)
            .and_then(|v| v.parse().ok())
            .expect("herald-original-partition");
        let offset: i64 = last_header(&m, h::ORIGINAL_OFFSET)
            .and_then(|v| v.parse().ok())
            .expect("herald-original-offset");
        let i = by_position[&(partition, offset)];
        let reason = last_header(&m, h::INVALID_REASON).unwrap_or_default();
        landed.entry(i).or_default().push(Err(reason));
    }

    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for (i, input) in inputs.iter().enumerate() {
        let outs = landed.get(&i).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            outs.len(),
            1,
            "input {i} ({}) must land exactly once, landed {outs:?}",
            input.kind
        );
        match &outs[0] {
            Ok(()) => {
                assert!(
                    !input.must_be_invalid,
                    "input {i} ({}) was routed",
                    input.kind
                );
                *tally.entry("routed".into()).or_default() += 1;
            }
            Err(reason) => {
                assert!(
                    !reason.trim().is_empty(),
                    "input {i} ({}) is invalid without a reason",
                    input.kind
                );
                assert!(
                    input.valid_id.is_none(),
                    "valid input {i} was refused: {reason}"
                );
                *tally.entry(format!("invalid: {reason}")).or_default() += 1;
            }
        }
    }
    eprintln!("{} records: {tally:?}", inputs.len());

    let valid: HashSet<String> = inputs.iter().filter_map(|x| x.valid_id.clone()).collect();
    wait_until("every valid event reaches the destination", LONG, || {
        sink.delivered_ids("/a").is_superset(&valid)
    })
    .await;
}
