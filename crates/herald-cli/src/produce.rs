//! `herald produce`: sample events for demos and tests, or events from a
//! JSON-lines file, onto the input topic.
//!
//! Each record carries a W3C `traceparent`. With span export on
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, see [`herald_core::otel`]) it is the
//! context of a producer span exported per event ("send <topic>"), so the
//! event's trace starts here; without, a random one, as an instrumented
//! producer would send.

use herald_core::config::Config;
use herald_core::headers::TRACEPARENT;
use herald_core::kafka::{add_header, producer_config};
use herald_core::otel;
use rand::{Rng, SeedableRng};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Event types the sample generator draws from.
pub const SAMPLE_TYPES: [&str; 6] = [
    "subscription.started",
    "subscription.cancelled",
    "payment.succeeded",
    "payment.failed",
    "user.signed_up",
    "invoice.paid",
];

#[derive(clap::Args)]
pub struct ProduceArgs {
    /// How many sample events to produce (ignored with --file).
    #[arg(short = 'n', long, default_value_t = 10)]
    count: u64,
    /// Events per second; 0 means as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Keep producing until interrupted (with --rate).
    #[arg(long)]
    forever: bool,
    /// Produce the events in this file, one CloudEvents JSON object per line.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Only these event types (comma-separated) for sample events.
    #[arg(long, value_delimiter = ',')]
    types: Vec<String>,
    /// Prefix of sample event ids (ids are <prefix>-<n>), so runs can be told apart.
    #[arg(long)]
    id_prefix: Option<String>,
    /// Random seed for sample events.
    #[arg(long)]
    seed: Option<u64>,
}

pub async fn run(config: &Config, args: ProduceArgs, json: bool) -> anyhow::Result<ExitCode> {
    let producer: FutureProducer = producer_config(config).create()?;
    let topic = config.topics.input.clone();
    let events: Box<dyn Iterator<Item = anyhow::Result<Outgoing>>> = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            let lines: Vec<_> = text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| {
                    let v: serde_json::Value = serde_json::from_str(l).map_err(|e| {
                        anyhow::anyhow!("{} line {}: not JSON: {e}", path.display(), i + 1)
                    })?;
                    let id = v.get("id").and_then(|s| s.as_str());
                    let key = v
                        .get("subject")
                        .and_then(|s| s.as_str())
                        .or(id)
                        .unwrap_or_default()
                        .to_string();
                    Ok(Outgoing {
                        key,
                        id: id.map(str::to_string),
                        value: l.to_string(),
                    })
                })
                .collect();
            Box::new(lines.into_iter())
        }
        None => {
            let types: Vec<String> = if args.types.is_empty() {
                SAMPLE_TYPES.iter().map(|s| s.to_string()).collect()
            } else {
                args.types.clone()
            };
            let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed.unwrap_or_else(rand::random));
            let prefix = args
                .id_prefix
                .clone()
                .unwrap_or_else(|| format!("evt_{:08x}", rand::random::<u32>()));
            let limit = if args.forever { u64::MAX } else { args.count };
            Box::new((0..limit).map(move |i| {
                let (key, value) = sample(&mut rng, &types, &prefix, i);
                Ok(Outgoing {
                    key,
                    id: Some(sample_id(&prefix, i)),
                    value,
                })
            }))
        }
    };
    let started = Instant::now();
    let mut pending = futures::stream::FuturesUnordered::new();
    let (mut sent, mut failed) = (0u64, 0u64);
    let mut tick = (args.rate > 0).then(|| {
        let mut i = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        i
    });
    use futures::StreamExt;
    for ev in events {
        let Outgoing { key, id, value } = ev?;
        if let Some(t) = tick.as_mut() {
            t.tick().await;
        }
        // Ended when the broker has acknowledged the record (or refused it).
        let span = otel::producer_span(
            &topic,
            id.as_deref(),
            (!key.is_empty()).then_some(key.as_str()),
        );
        let headers = match otel::outgoing(&span, None) {
            Some(t) => t.add_to(OwnedHeaders::new()),
            None => add_header(OwnedHeaders::new(), TRACEPARENT, &new_traceparent()),
        };
        let producer = producer.clone();
        let topic = topic.clone();
        pending.push(async move {
            let rec = FutureRecord::to(&topic)
                .key(&key)
                .payload(&value)
                .headers(headers);
            match producer.send(rec, Duration::from_secs(30)).await {
                Ok(d) => {
                    otel::record_sent(&span, d.partition, d.offset);
                    Ok(())
                }
                Err((e, _)) => {
                    let kind = e
                        .rdkafka_error_code()
                        .map_or_else(|| "kafka".to_string(), |c| format!("{c:?}"));
                    otel::record_error(&span, &kind);
                    Err(e)
                }
            }
        });
        while pending.len() >= 10_000 {
            tally(pending.next().await, &mut sent, &mut failed);
        }
        while let Some(r) = futures::FutureExt::now_or_never(pending.next()) {
            if r.is_none() {
                break;
            }
            tally(r, &mut sent, &mut failed);
        }
    }
    while let Some(r) = pending.next().await {
        tally(Some(r), &mut sent, &mut failed);
    }
    let secs = started.elapsed().as_secs_f64();
    if json {
        println!(
            "{}",
            serde_json::json!({"topic": topic, "produced": sent, "failed": failed, "seconds": secs})
        );
    } else {
        println!("produced {sent} events to {topic} in {secs:.1}s ({failed} failed)");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn tally(r: Option<Result<(), rdkafka::error::KafkaError>>, sent: &mut u64, failed: &mut u64) {
    match r {
        Some(Ok(())) => *sent += 1,
        Some(Err(e)) => {
            *failed += 1;
            tracing::error!(error = %e, "Producing an event failed.");
        }
        None => {}
    }
}

/// One record to produce: key, CloudEvents id (if the event has one), value.
struct Outgoing {
    key: String,
    id: Option<String>,
    value: String,
}

/// A random W3C traceparent, as an instrumented producer would send.
fn new_traceparent() -> String {
    let trace: u128 = rand::random::<u128>() | 1;
    let span: u64 = rand::random::<u64>() | 1;
    format!("00-{trace:032x}-{span:016x}-01")
}

const PLANS: [&str; 3] = ["starter", "pro", "enterprise"];

/// The id of sample event `i`.
fn sample_id(prefix: &str, i: u64) -> String {
    format!("{prefix}-{i}")
}

/// One sample CloudEvent (structured JSON) and its key (the customer).
pub fn sample(rng: &mut impl Rng, types: &[String], prefix: &str, i: u64) -> (String, String) {
    let ty = &types[rng.random_range(0..types.len())];
    let customer = format!("cus_{:04}", rng.random_range(0..500));
    let data = match ty.split('.').next().unwrap_or_default() {
        "payment" | "invoice" => {
            serde_json::json!({"customer": customer, "amount": rng.random_range(500..50_000), "currency": "eur"})
        }
        "subscription" => {
            serde_json::json!({"customer": customer, "plan": PLANS[rng.random_range(0..PLANS.len())]})
        }
        _ => serde_json::json!({"customer": customer, "email": format!("{customer}@example.com")}),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ev = serde_json::json!({
        "specversion": "1.0",
        "id": sample_id(prefix, i),
        "source": "/demo/backend",
        "type": ty,
        "time": herald_core::time::rfc3339(now.as_secs()),
        "subject": customer,
        "data": data,
    });
    (customer, ev.to_string())
}
