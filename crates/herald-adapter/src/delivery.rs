//! One delivery task: attempt the record over HTTP (or settle it without an
//! attempt when it expired, or cannot be decoded), plan the outcome, and
//! write it durably. The task marks its offset finished in the shared
//! offset tracker itself, so a revoke can wait for in-flight work.

use crate::circuit;
use crate::exchange;
use crate::kinds::RequestBuilder;
use crate::ledger::{Ledger, Step};
use crate::offsets::OffsetTracker;
use crate::outcome::{self, AttemptResult, Next, Record};
use crate::writer::Writer;
use futures::FutureExt;
use herald_core::classify::{ErrorClass, Verdict};
use herald_core::codec::AvroRecord;
use herald_core::envelope::{Delivery, DlqReason};
use herald_core::headers as h;
use herald_core::identity;
use herald_core::kafka::{add_header, header_str};
use herald_core::metrics::{AdapterMetrics, BoundedLabel};
use herald_core::otel::{self, TraceHeaders};
use herald_core::retry::RetryPolicy;
use herald_core::time::{compact_duration, now_ms};
use herald_core::topics::TopicNames;
use rand::SeedableRng;
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn, Instrument, Span};

/// A received record, decoded once.
pub struct Received {
    pub msg: OwnedMessage,
    /// The delivery, or why it cannot be decoded.
    pub delivery: Result<Delivery, String>,
    /// The event's identity key (ledger key).
    pub identity: String,
    /// Attempts made before this record (`herald-attempt`).
    pub attempts_made: i32,
}

impl Received {
    pub fn new(msg: OwnedMessage, identity_fields: &[String]) -> Self {
        let delivery = match msg.payload().map(Delivery::from_avro) {
            Some(Ok(d)) => Ok(d),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("record has no value".to_string()),
        };
        let identity = match &delivery {
            Ok(d) => identity_key(d, identity_fields),
            Err(_) => String::new(),
        };
        let attempts_made = match &delivery {
            Ok(d) => d.attempts,
            Err(_) => header_str(&msg, h::ATTEMPT)
                .and_then(|a| a.parse().ok())
                .unwrap_or(0),
        };
        Self {
            msg,
            delivery,
            identity,
            attempts_made,
        }
    }
}

/// The event's identity as the router computes it (falls back to `source`
/// + `id` if the configured fields are missing, which the router refuses).
pub fn identity_key(d: &Delivery, fields: &[String]) -> String {
    let needs_data = fields.iter().any(|f| f.starts_with("data"));
    let data = if needs_data {
        serde_json::from_str(&d.event.data).unwrap_or(serde_json::Value::Null)
    } else {
        serde_json::Value::Null
    };
    let id = identity::identity(&d.event, &data, fields).unwrap_or_else(|| {
        identity::identity(&d.event, &data, &["source".into(), "id".into()])
            .expect("source and id are always present")
    });
    identity::key(id)
}

/// Everything a delivery task needs, shared by all of them.
pub struct Deliverer {
    pub names: TopicNames,
    pub destination: String,
    /// Consumer group, for the attempt spans.
    pub group: String,
    pub policy: RetryPolicy,
    pub client: reqwest::Client,
    pub request: Box<dyn RequestBuilder>,
    pub writer: Writer,
    pub metrics: AdapterMetrics,
    /// Bounded `event_type` and `tenant` label values
    /// ([`BoundedLabel::for_config`] over the destination's route).
    pub event_types: BoundedLabel,
    pub tenants: BoundedLabel,
    pub offsets: Arc<Mutex<OffsetTracker>>,
    /// Steps restored from the ledger; updated with this process's own.
    pub ledger: Arc<Mutex<Ledger>>,
}

impl Deliverer {
    fn recorded(&self, m: &OwnedMessage, identity: &str, step: Step) {
        self.ledger
            .lock()
            .expect("ledger lock")
            .update(m.partition(), identity, step);
    }
}

/// Frees a concurrency slot when dropped — after the HTTP attempt, or when
/// the task ends early (poison record, panic) — and reports what the
/// attempt said about the destination, so the circuit breaker and the
/// adaptive limit react at once rather than after the outcome writes.
pub struct Slot {
    tx: mpsc::UnboundedSender<SlotReport>,
    report: SlotReport,
}

#[derive(Debug, Clone, Copy)]
pub struct SlotReport {
    pub health: circuit::Health,
    pub latency: Duration,
    /// Whether the concurrency limit was reached when the attempt started.
    pub saturated: bool,
}

impl Slot {
    pub fn new(tx: mpsc::UnboundedSender<SlotReport>, saturated: bool) -> Self {
        let report = SlotReport {
            health: circuit::Health::Neutral,
            latency: Duration::ZERO,
            saturated,
        };
        Self { tx, report }
    }

    /// Frees the slot with what the attempt showed.
    fn release(mut self, health: circuit::Health, latency: Duration) {
        self.report.health = health;
        self.report.latency = latency;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = self.tx.send(self.report);
    }
}

/// What a task does with its record.
pub enum Work {
    /// Attempt it over HTTP, holding a concurrency slot.
    Attempt(Slot),
    /// Dead-letter it as expired without an attempt.
    Expire(String),
}

/// Starts a task for one record. `done` hears once it is finished (its
/// outcome durable or abandoned).
pub fn spawn(d: Arc<Deliverer>, r: Received, work: Work, done: mpsc::UnboundedSender<()>) {
    tokio::spawn(async move {
        let tp = (r.msg.topic().to_string(), r.msg.partition());
        let offset = r.msg.offset();
        let span = otel::attempt_span(&r.msg, &d.group, &d.destination);
        let durable = std::panic::AssertUnwindSafe(run(&d, r, work).instrument(span))
            .catch_unwind()
            .await;
        match durable {
            Ok(true) => d.offsets.lock().expect("offsets lock").finish(&tp, offset),
            // Not durable: the offset stays uncommitted.
            Ok(false) => d.offsets.lock().expect("offsets lock").abandon(&tp, offset),
            Err(_) => {
                d.offsets.lock().expect("offsets lock").abandon(&tp, offset);
                error!(topic = %tp.0, partition = tp.1, offset, "A delivery task panicked; the record will be re-delivered after restart.")
            }
        }
        let _ = done.send(());
    });
}

async fn run(d: &Deliverer, r: Received, work: Work) -> bool {
    let Received {
        msg,
        delivery,
        identity,
        ..
    } = r;
    let key = msg.key().map(<[u8]>::to_vec).unwrap_or_default();
    let delivery = match delivery {
        Ok(dl) => dl,
        Err(why) => {
            otel::record_error(&Span::current(), ErrorClass::Schema.as_str());
            return dead_letter_poison(d, &msg, key, &why).await;
        }
    };
    match work {
        Work::Attempt(slot) => attempt(d, &msg, delivery, key, &identity, slot).await,
        Work::Expire(why) => expire(d, &msg, delivery, key, &identity, &why).await,
    }
}

/// Records of `m`'s partition go to the same ledger partition.
fn pin_ledger(d: &Deliverer, m: &OwnedMessage, records: &mut [Record]) {
    let ledger_topic = d.names.ledger(&d.destination);
    for r in records.iter_mut().filter(|r| r.topic == ledger_topic) {
        r.partition = Some(m.partition());
    }
}

async fn expire(
    d: &Deliverer,
    m: &OwnedMessage,
    delivery: Delivery,
    key: Vec<u8>,
    identity: &str,
    why: &str,
) -> bool {
    let event_id = delivery.event.id.clone();
    let trace = otel::outgoing(&Span::current(), TraceHeaders::from_message(m).as_ref());
    let mut records = outcome::plan_expired(
        &d.names,
        delivery,
        key,
        identity,
        trace.as_ref(),
        why,
        now_ms(),
    );
    pin_ledger(d, m, &mut records);
    if !d.writer.write(records).await {
        return false;
    }
    d.recorded(m, identity, Step::Other);
    d.metrics
        .dead_lettered
        .with_label_values(&[&d.destination, DlqReason::Expired.as_str()])
        .inc();
    warn!(
        event_id,
        reason = why,
        "Delivery expired before it could be attempted; dead-lettered."
    );
    true
}

/// One attempt and its durable outcome. Returns whether the offset may be
/// committed.
async fn attempt(
    d: &Deliverer,
    m: &OwnedMessage,
    delivery: Delivery,
    key: Vec<u8>,
    identity: &str,
    slot: Slot,
) -> bool {
    // The attempt span (see `spawn`); its context goes on the HTTP
    // request's parent and on every record written about this attempt.
    let span = Span::current();
    otel::record_event(&span, &delivery.event.id, Some(delivery.attempts + 1));
    let trace = otel::outgoing(&span, TraceHeaders::from_message(m).as_ref());
    let started = Instant::now();
    let (verdict, message) =
        exchange::attempt(&d.client, d.request.as_ref(), &delivery, trace.as_ref()).await;
    let latency = started.elapsed();
    // The destination is done with us; the outcome write needs no slot.
    slot.release(exchange::health_of(&verdict), latency);
    let finished_at = now_ms();
    let dest = d.destination.as_str();
    d.metrics
        .delivery_duration
        .with_label_values(&[dest])
        .observe(latency.as_secs_f64());
    if let Verdict::Failure { class, .. } = &verdict {
        otel::record_error(&span, class.as_str());
    }
    let result = AttemptResult {
        verdict,
        latency,
        message,
        finished_at,
    };
    // End to end: from when the producer wrote the event, when the input
    // record's timestamp is known; from routing otherwise.
    let since = delivery
        .produced_at
        .filter(|t| *t > 0)
        .unwrap_or(delivery.routed_at);
    let event_type = d.event_types.get(&delivery.event.r#type);
    let tenant = match &delivery.event.tenant {
        Some(t) => d.tenants.get(t),
        None => "none".to_string(),
    };
    let event_id = delivery.event.id.clone();
    let attempt_no = delivery.attempts + 1;
    let (next, mut records) = {
        let mut rng = rand::rngs::StdRng::from_os_rng();
        outcome::plan(
            &d.names,
            &d.policy,
            delivery,
            key,
            identity,
            trace.as_ref(),
            &result,
            &mut rng,
        )
    };
    pin_ledger(d, m, &mut records);
    if !d.writer.write(records).await {
        return false;
    }
    d.recorded(
        m,
        identity,
        match &next {
            Next::Delivered => Step::Delivered,
            Next::Retry { .. } => Step::Retrying(attempt_no),
            Next::Dead(_) => Step::Other,
        },
    );
    let class = match &result.verdict {
        Verdict::Success { .. } => "none",
        Verdict::Failure { class, .. } => class.as_str(),
    };
    let outcome = match &next {
        Next::Delivered => "delivered",
        Next::Retry { .. } => "retry",
        Next::Dead(_) => "dead-lettered",
    };
    d.metrics
        .attempts_by_event
        .with_label_values(&[dest, &event_type, &tenant, outcome])
        .inc();
    match &next {
        Next::Delivered => {
            d.metrics
                .attempts
                .with_label_values(&[dest, "delivered", class])
                .inc();
            d.metrics
                .end_to_end
                .with_label_values(&[dest])
                .observe((finished_at - since).max(0) as f64 / 1000.0);
            debug!(event_id, attempt = attempt_no, "Delivered.");
        }
        Next::Retry { delay, .. } => {
            d.metrics
                .attempts
                .with_label_values(&[dest, "retry", class])
                .inc();
            d.metrics
                .retries_scheduled
                .with_label_values(&[dest, &compact_duration(*delay)])
                .inc();
            debug!(event_id, attempt = attempt_no, error_class = class, tier = %compact_duration(*delay), "Attempt failed; retry scheduled.");
        }
        Next::Dead(reason) => {
            d.metrics
                .attempts
                .with_label_values(&[dest, "dead-lettered", class])
                .inc();
            d.metrics
                .dead_lettered
                .with_label_values(&[dest, reason.as_str()])
                .inc();
            info!(
                event_id,
                attempt = attempt_no,
                error_class = class,
                reason = reason.as_str(),
                "Delivery dead-lettered."
            );
        }
    }
    true
}

async fn dead_letter_poison(d: &Deliverer, m: &OwnedMessage, key: Vec<u8>, why: &str) -> bool {
    warn!(
        topic = m.topic(),
        partition = m.partition(),
        offset = m.offset(),
        error = why,
        "Undecodable delivery record; dead-lettering it as poison."
    );
    let mut hs = OwnedHeaders::new();
    if let Some(t) = otel::outgoing(&Span::current(), TraceHeaders::from_message(m).as_ref()) {
        hs = t.add_to(hs);
    }
    hs = add_header(hs, h::DLQ_REASON, DlqReason::Poison.as_str());
    hs = outcome::error_headers(hs, ErrorClass::Schema, None, why);
    hs = add_header(hs, h::ORIGINAL_TOPIC, m.topic());
    hs = add_header(hs, h::ORIGINAL_PARTITION, &m.partition().to_string());
    hs = add_header(hs, h::ORIGINAL_OFFSET, &m.offset().to_string());
    let rec = Record {
        partition: None,
        topic: d.names.dlq(&d.destination),
        key,
        value: m.payload().map(<[u8]>::to_vec),
        headers: hs,
    };
    let ok = d.writer.write(vec![rec]).await;
    if ok {
        d.metrics
            .dead_lettered
            .with_label_values(&[&d.destination, DlqReason::Poison.as_str()])
            .inc();
    }
    ok
}
