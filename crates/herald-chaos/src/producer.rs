//! The product backend: a plain rdkafka producer (not Herald's producer
//! config, no transactions, idempotence off as many applications run it)
//! writing the workload at a steady rate, re-sending what fails the way an
//! application with an outbox would, so broker kills can add copies.

use crate::plan::Plan;
use crate::workload::{encode, planned, Kind};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the producer did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ProduceStats {
    /// Distinct records (one per sequence number), by kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Deliberate second copies of valid events (same id, key and bytes).
    pub copies: u64,
    /// Sends that failed and were sent again (each may have landed twice).
    pub resends: u64,
    /// A few of the errors behind those resends.
    pub errors: Vec<String>,
    pub seconds: f64,
    pub config: Vec<(String, String)>,
}

fn producer(bootstrap: &str) -> anyhow::Result<(FutureProducer, Vec<(String, String)>)> {
    let settings = [
        ("bootstrap.servers", bootstrap),
        ("enable.idempotence", "false"),
        ("acks", "all"),
        ("linger.ms", "5"),
        // Outlive a broker restart instead of failing the send.
        ("message.timeout.ms", "120000"),
        // The oversized events are about 1 MB.
        ("message.max.bytes", "2097152"),
        ("partitioner", "murmur2_random"),
    ];
    let mut c = ClientConfig::new();
    for (k, v) in settings {
        c.set(k, v);
    }
    let shown = settings
        .iter()
        .filter(|(k, _)| *k != "bootstrap.servers")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok((c.create()?, shown))
}

/// Sends one record until Kafka acknowledges it.
async fn send_until_acked(
    p: FutureProducer,
    topic: String,
    key: Vec<u8>,
    value: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    resends: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
) {
    loop {
        let mut hs = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in &headers {
            hs = hs.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let rec = FutureRecord::to(&topic)
            .key(&key)
            .payload(&value)
            .headers(hs);
        match p.send(rec, Duration::from_secs(60)).await {
            Ok(_) => return,
            Err((e, _)) => {
                resends.fetch_add(1, Ordering::Relaxed);
                {
                    let mut errs = errors.lock().expect("errors lock");
                    if errs.len() < 5 {
                        errs.push(e.to_string());
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Produces the whole workload of `plan` to `topic`, spread over
/// `plan.produce_for`; returns when every record is acknowledged.
pub async fn produce(
    bootstrap: &str,
    topic: &str,
    plan: &Plan,
    run: &str,
) -> anyhow::Result<ProduceStats> {
    let (p, config) = producer(bootstrap)?;
    let started = Instant::now();
    let resends = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let mut stats = ProduceStats {
        config,
        ..Default::default()
    };
    let mut tasks = Vec::new();
    // Copies go out 50 records after their original: close enough to be on
    // the same partition inside the dedupe window, far enough to be in
    // another batch of the router.
    let mut copies: VecDeque<(u64, u64)> = VecDeque::new();
    let spawn = |seq: u64, tasks: &mut Vec<_>| {
        let pl = planned(plan, run, seq);
        let (key, value, headers) = encode(&pl);
        tasks.push(tokio::spawn(send_until_acked(
            p.clone(),
            topic.to_string(),
            key,
            value,
            headers,
            resends.clone(),
            errors.clone(),
        )));
        pl
    };
    let total = plan.events;
    let mut next = 0u64;
    while next < total || !copies.is_empty() {
        let frac = started.elapsed().as_secs_f64() / plan.produce_for.as_secs_f64().max(0.001);
        let due = ((frac * total as f64) as u64).min(total);
        while next < due {
            let pl = spawn(next, &mut tasks);
            *stats.by_kind.entry(kind_name(pl.kind)).or_default() += 1;
            if pl.copied {
                copies.push_back((next + 50, next));
            }
            next += 1;
        }
        while copies
            .front()
            .is_some_and(|(at, _)| *at <= next || next >= total)
        {
            let (_, seq) = copies.pop_front().expect("front exists");
            spawn(seq, &mut tasks);
            stats.copies += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in tasks {
        t.await?;
    }
    stats.resends = resends.load(Ordering::Relaxed);
    stats.errors = errors.lock().expect("errors lock").clone();
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

pub fn kind_name(k: Kind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
