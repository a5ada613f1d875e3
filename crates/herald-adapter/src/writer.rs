//! The outcome writer: produces the records that make a delivery's outcome
//! durable, in the order that keeps a crash from losing anything — the
//! retry or DLQ record first, the ledger step only once that record is
//! acknowledged (a ledger entry that says "moved on" must never exist
//! without the record it moved on to).
//!
//! Transient produce errors are retried until acknowledged (or the adapter
//! stops: the input offset then stays uncommitted and the record is read
//! again). A record that can never be produced — too large for its topic —
//! does not pin its partition: the attempt log entry is shrunk or dropped,
//! a retry record becomes a dead letter with a truncated history, and a
//! dead letter is truncated until it fits. Each such step is counted and
//! logged.

use crate::outcome::Record;
use herald_core::codec::AvroRecord;
use herald_core::envelope::{DeadLetter, Delivery, DlqReason};
use herald_core::headers as h;
use herald_core::kafka::add_header;
use herald_core::metrics::AdapterMetrics;
use herald_core::topics::TopicNames;
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::{error, warn};

/// History entries a shrunk record keeps (the first and the latest ones).
const KEEP_HISTORY: usize = 3;

pub struct Writer {
    pub producer: FutureProducer,
    pub names: TopicNames,
    pub destination: String,
    pub metrics: AdapterMetrics,
    pub stopping: AtomicBool,
}

/// How producing one record ended.
enum Sent {
    Acked,
    /// It can never be produced as it is.
    Refused(KafkaError),
    /// The adapter is stopping.
    Stopped,
}

/// Whether a produce error can never go away by retrying the same record.
fn is_permanent(e: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        e,
        KafkaError::MessageProduction(
            MessageSizeTooLarge | InvalidRecord | MessageBatchTooLarge | InvalidMessageSize
        )
    )
}

impl Writer {
    /// Produces `records` (as built by `outcome::plan`): the next-step
    /// record and the attempt log entry together, then the ledger step.
    /// Returns whether the outcome is durable (the offset may be committed).
    pub async fn write(&self, records: Vec<Record>) -> bool {
        let ledger_topic = self.names.ledger(&self.destination);
        let (ledger, first): (Vec<Record>, Vec<Record>) =
            records.into_iter().partition(|r| r.topic == ledger_topic);
        let sends = first.into_iter().map(|r| self.write_one(r));
        if !futures::future::join_all(sends)
            .await
            .into_iter()
            .all(|ok| ok)
        {
            return false;
        }
        for r in ledger {
            if !self.write_one(r).await {
                return false;
            }
        }
        true
    }

    /// Produces one record, settling it another way if it can never be
    /// produced as it is.
    async fn write_one(&self, r: Record) -> bool {
        match self.send(&r).await {
            Sent::Acked => true,
            Sent::Stopped => false,
            Sent::Refused(e) => self.settle_refused(r, e).await,
        }
    }

    async fn settle_refused(&self, r: Record, e: KafkaError) -> bool {
        let dest = self.destination.as_str();
        let size = r.value.as_ref().map_or(0, Vec::len);
        self.metrics
            .outcome_records_refused
            .with_label_values(&[dest, self.topic_role(&r.topic)])
            .inc();
        if r.topic == self.names.attempts() {
            // The attempt log is the record of what happened, not the
            // delivery: drop the excerpt rather than the whole entry.
            error!(topic = %r.topic, bytes = size, error = %e, "Attempt log entry refused by Kafka; it is left out of the delivery log.");
            return true;
        }
        if r.topic == self.names.dlq(dest) {
            return self.dead_letter_shrunk(r, e).await;
        }
        if let Some(delivery) = r.value.as_deref().and_then(|v| Delivery::from_avro(v).ok()) {
            // A retry record: dead-letter the delivery instead, its history cut.
            error!(topic = %r.topic, bytes = size, error = %e, event_id = %delivery.event.id,
                "Retry record refused by Kafka; dead-lettering the delivery with a truncated history.");
            let why = format!("retry record refused by {}: {e}", r.topic);
            let hs = add_header(
                r.headers.clone(),
                h::DLQ_REASON,
                DlqReason::Permanent.as_str(),
            );
            let hs = replace_header(hs, h::ERROR_MESSAGE, &why);
            let dl = DeadLetter {
                delivery,
                reason: DlqReason::Permanent.as_str().to_string(),
                dead_at: herald_core::time::now_ms(),
            };
            let rec = Record {
                partition: None,
                topic: self.names.dlq(dest),
                key: r.key,
                value: Some(dl.to_avro().expect("dead letters encode")),
                headers: hs,
            };
            return Box::pin(self.write_one(rec)).await;
        }
        // A ledger step or an undecodable record: nothing smaller to write.
        error!(topic = %r.topic, bytes = size, error = %e, "Outcome record refused by Kafka and cannot be shrunk; settled without it.");
        true
    }

    /// A dead letter that does not fit: cut the history, then the event's
    /// data, until it does. The last resort keeps the event's identity and
    /// the reason, so the loss is explicit and searchable.
    async fn dead_letter_shrunk(&self, r: Record, e: KafkaError) -> bool {
        let Some(mut dl) = r
            .value
            .as_deref()
            .and_then(|v| DeadLetter::from_avro(v).ok())
        else {
            error!(topic = %r.topic, error = %e, "Dead letter refused by Kafka and undecodable; settled without it.");
            return true;
        };
        let event_id = dl.delivery.event.id.clone();
        for step in 0..3 {
            match step {
                0 => shrink_history(&mut dl.delivery),
                1 => {
                    let keep = dl.delivery.event.data.len().min(4096);
                    let mut cut = keep;
                    while !dl.delivery.event.data.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    dl.delivery.event.data.truncate(cut);
                }
                _ => dl.delivery.event.data.clear(),
            }
            let hs = replace_header(
                r.headers.clone(),
                h::TRUNCATED,
                if step == 0 { "history" } else { "data" },
            );
            let rec = Record {
                partition: None,
                topic: r.topic.clone(),
                key: r.key.clone(),
                value: Some(dl.to_avro().expect("dead letters encode")),
                headers: hs,
            };
            match self.send(&rec).await {
                Sent::Acked => {
                    warn!(
                        event_id,
                        truncated = if step == 0 { "history" } else { "data" },
                        "Dead letter written truncated (it did not fit the DLQ topic)."
                    );
                    return true;
                }
                Sent::Stopped => return false,
                Sent::Refused(_) => {}
            }
        }
        error!(event_id, error = %e, "Dead letter refused by Kafka even truncated; the event is settled without a dead letter.");
        true
    }

    fn topic_role(&self, topic: &str) -> &'static str {
        if topic == self.names.attempts() {
            "attempts"
        } else if topic == self.names.dlq(&self.destination) {
            "dlq"
        } else if topic == self.names.ledger(&self.destination) {
            "ledger"
        } else {
            "retry"
        }
    }

    async fn send(&self, r: &Record) -> Sent {
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut fr = FutureRecord::to(&r.topic)
                .key(&r.key)
                .headers(r.headers.clone());
            if let Some(v) = &r.value {
                fr = fr.payload(v);
            }
            if let Some(p) = r.partition {
                fr = fr.partition(p);
            }
            match self.producer.send(fr, Duration::from_secs(30)).await {
                Ok(_) => return Sent::Acked,
                Err((e, _)) if is_permanent(&e) => return Sent::Refused(e),
                Err((e, _)) => {
                    if self.stopping.load(Ordering::Acquire) {
                        return Sent::Stopped;
                    }
                    error!(topic = %r.topic, error = %e, "Could not write a delivery outcome; retrying.");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// Keeps the first and the latest history entries, messages cut short.
fn shrink_history(d: &mut Delivery) {
    let n = d.history.len();
    if n > KEEP_HISTORY {
        let latest = d.history.split_off(n - (KEEP_HISTORY - 1));
        d.history.truncate(1);
        d.history.extend(latest);
    }
    for e in &mut d.history {
        e.message = h::truncate(&e.message, 256);
    }
}

/// `hs` with `key` set to `value` (any earlier value of `key` dropped).
fn replace_header(hs: OwnedHeaders, key: &str, value: &str) -> OwnedHeaders {
    let mut out = OwnedHeaders::new();
    for x in hs.iter().filter(|x| x.key != key) {
        out = out.insert(x);
    }
    add_header(out, key, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::envelope::{AttemptError, Event};

    #[test]
    fn shrinking_keeps_first_and_latest_attempts() {
        let mut d = Delivery {
            event: Event {
                id: "e".into(),
                source: "/s".into(),
                r#type: "t".into(),
                time: None,
                subject: None,
                tenant: None,
                data: "{}".into(),
            },
            destination: "d".into(),
            attempts: 6,
            routed_at: 0,
            first_attempt_at: None,
            due_at: 0,
            origin_topic: "o".into(),
            origin_partition: 0,
            origin_offset: 0,
            history: (1..=6)
                .map(|a| AttemptError {
                    attempt: a,
                    at: 0,
                    error_class: "http-5xx".into(),
                    status: Some(503),
                    message: "x".repeat(2000),
                })
                .collect(),
            produced_at: None,
        };
        shrink_history(&mut d);
        let kept: Vec<i32> = d.history.iter().map(|e| e.attempt).collect();
        assert_eq!(kept, [1, 5, 6]);
        assert!(d.history.iter().all(|e| e.message.len() <= 260));
    }

    #[test]
    fn only_size_and_record_errors_are_permanent() {
        assert!(is_permanent(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
        )));
        assert!(!is_permanent(&KafkaError::MessageProduction(
            RDKafkaErrorCode::QueueFull
        )));
        assert!(!is_permanent(&KafkaError::MessageProduction(
            RDKafkaErrorCode::NotLeaderForPartition
        )));
    }

    #[test]
    fn replacing_a_header_keeps_the_others() {
        let hs = add_header(add_header(OwnedHeaders::new(), "a", "1"), "b", "2");
        let hs = replace_header(hs, "a", "3");
        let got: Vec<(String, String)> = hs
            .iter()
            .map(|x| {
                (
                    x.key.to_string(),
                    String::from_utf8_lossy(x.value.unwrap()).into_owned(),
                )
            })
            .collect();
        assert_eq!(got, [("b".into(), "2".into()), ("a".into(), "3".into())]);
    }
}
