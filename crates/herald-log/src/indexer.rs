//! Reads Herald's topics into the index: the destination topics (what was
//! routed), `herald.attempts`, the DLQs and the operators' actions. The
//! partitions are assigned, not subscribed (one index, one reader), from
//! the positions stored in the index itself; each batch and its positions
//! commit in one SQLite transaction.

use crate::store::{Row, Store};
use herald_core::actions::DlqAction;
use herald_core::codec::AvroRecord;
use herald_core::config::Config;
use herald_core::envelope::{Attempt, DeadLetter, Delivery};
use herald_core::headers as h;
use herald_core::kafka::{client_config, header_str};
use herald_core::metrics::LogMetrics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// What a topic holds.
#[derive(Debug, Clone)]
enum Kind {
    Routed(String),
    Attempts,
    Dlq(String),
    Actions,
}

fn topics(config: &Config) -> Vec<(String, Kind)> {
    let n = config.topic_names();
    let mut out = vec![
        (n.attempts(), Kind::Attempts),
        (n.dlq_actions(), Kind::Actions),
    ];
    for d in config.destinations.keys() {
        out.push((n.dest(d), Kind::Routed(d.clone())));
        out.push((n.dlq(d), Kind::Dlq(d.clone())));
    }
    out
}

/// The row a record gives, or why it gives none.
fn decode(kind: &Kind, m: &BorrowedMessage<'_>) -> Result<Row, String> {
    let v = m.payload().ok_or("no value")?;
    let err = |e: &dyn std::fmt::Display| e.to_string();
    Ok(match kind {
        Kind::Routed(d) => {
            let x = Delivery::from_avro(v).map_err(|e| err(&e))?;
            Row::Routed {
                destination: d.clone(),
                event_id: x.event.id,
                event_type: x.event.r#type,
                tenant: x.event.tenant,
                source: x.event.source,
                routed_at: x.routed_at,
                produced_at: x.produced_at,
            }
        }
        Kind::Attempts => {
            let a = Attempt::from_avro(v).map_err(|e| err(&e))?;
            Row::Attempt {
                destination: a.destination,
                event_id: a.event_id,
                event_type: a.event_type,
                attempt: a.attempt,
                at: a.at,
                outcome: a.outcome,
                error_class: a.error_class,
                status: a.status,
                latency_ms: a.latency_ms,
                excerpt: a.excerpt,
                next_topic: a.next_topic,
                trace_id: a.trace_id,
            }
        }
        Kind::Dlq(d) => match DeadLetter::from_avro(v) {
            Ok(l) => Row::Dead {
                destination: d.clone(),
                event_id: l.delivery.event.id,
                reason: l.reason,
                dead_at: l.dead_at,
                partition: m.partition(),
                offset: m.offset(),
            },
            // A poison letter: the raw record, named by its headers.
            Err(_) => Row::Dead {
                destination: d.clone(),
                event_id: header_str(m, h::CE_ID)
                    .ok_or("poison letter without ce_id")?
                    .to_string(),
                reason: header_str(m, h::DLQ_REASON).unwrap_or("poison").to_string(),
                dead_at: m.timestamp().to_millis().unwrap_or(0),
                partition: m.partition(),
                offset: m.offset(),
            },
        },
        Kind::Actions => Row::Action(serde_json::from_slice::<DlqAction>(v).map_err(|e| err(&e))?),
    })
}

fn kind_label(r: &Row) -> &'static str {
    match r {
        Row::Routed { .. } => "routed",
        Row::Attempt { .. } => "attempt",
        Row::Dead { .. } => "dead",
        Row::Action(_) => "action",
    }
}

/// Indexes until `stop`; `ready` once the assignment is made.
pub fn run(
    config: &Config,
    mut store: Store,
    metrics: &LogMetrics,
    stop: &AtomicBool,
    ready: &herald_core::admin::Readiness,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = client_config(config)
        .set("group.id", format!("{}.log", config.topic_names().prefix()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let kinds: HashMap<String, Kind> = topics(config).into_iter().collect();
    let positions = store.positions()?;
    let mut tpl = TopicPartitionList::new();
    for topic in kinds.keys() {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
        for t in md.topics() {
            if t.error().is_some() {
                warn!(topic, error = ?t.error(), "Topic not readable; not indexed (create it with `herald topics apply`).");
                continue;
            }
            for p in t.partitions() {
                let at = positions
                    .get(&(topic.clone(), p.id()))
                    .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                tpl.add_partition_offset(topic, p.id(), at)?;
            }
        }
    }
    consumer.assign(&tpl)?;
    info!(partitions = tpl.count(), db = %config.log.db, "Indexing.");
    ready.set(true);
    let mut last_expiry = Instant::now() - Duration::from_secs(3600);
    while !stop.load(Ordering::Acquire) {
        let mut rows = Vec::new();
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        let until = Instant::now() + Duration::from_millis(200);
        while rows.len() < 5000 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match consumer.poll(left) {
                Some(Ok(m)) => {
                    let kind = &kinds[m.topic()];
                    match decode(kind, &m) {
                        Ok(r) => rows.push(r),
                        Err(e) => {
                            metrics.indexed.with_label_values(&["undecodable"]).inc();
                            warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e, "Record not indexed.");
                        }
                    }
                    next.insert((m.topic().to_string(), m.partition()), m.offset() + 1);
                }
                Some(Err(e)) => warn!(error = %e, "Consumer error."),
                None => break,
            }
        }
        if !next.is_empty() {
            store.apply(&rows, &next)?;
            for r in &rows {
                metrics.indexed.with_label_values(&[kind_label(r)]).inc();
            }
        }
        if last_expiry.elapsed() > Duration::from_secs(600) {
            let before = herald_core::time::now_ms() - config.log.retention.as_millis() as i64;
            let n = store.expire(before)?;
            if n > 0 {
                info!(rows = n, "Expired index rows older than log.retention.");
            }
            last_expiry = Instant::now();
        }
    }
    info!("Indexer stopped.");
    Ok(())
}
