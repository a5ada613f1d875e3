//! What happens after an attempt: the records that make its outcome durable
//! (attempt log, retry tier or DLQ, ledger), built here and produced by the
//! delivery task before the input offset may be committed.

use herald_core::classify::{ErrorClass, Verdict};
use herald_core::codec::AvroRecord;
use herald_core::envelope::{
    Attempt, AttemptError, AttemptOutcome, DeadLetter, Delivery, DlqReason, LedgerEntry,
    LedgerState,
};
use herald_core::headers as h;
use herald_core::kafka::add_header;
use herald_core::otel::TraceHeaders;
use herald_core::retry::{NextStep, RetryPolicy};
use herald_core::topics::TopicNames;
use rdkafka::message::OwnedHeaders;
use std::time::Duration;

/// A record to produce.
pub struct Record {
    pub topic: String,
    /// Explicit partition (the ledger's); otherwise by key.
    pub partition: Option<i32>,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub headers: OwnedHeaders,
}

/// Result of one attempt as seen by the outcome logic.
pub struct AttemptResult {
    pub verdict: Verdict,
    pub latency: Duration,
    /// Response excerpt or transport error text, already truncated.
    pub message: String,
    pub finished_at: i64,
}

/// Where the delivery went.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Delivered,
    Retry { tier: usize, delay: Duration },
    Dead(DlqReason),
}

/// Decides the next step and builds every record that records it.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    names: &TopicNames,
    policy: &RetryPolicy,
    mut delivery: Delivery,
    key: Vec<u8>,
    identity: &str,
    trace: Option<&TraceHeaders>,
    result: &AttemptResult,
    rng: &mut impl rand::Rng,
) -> (Next, Vec<Record>) {
    let dest = delivery.destination.clone();
    let attempt_no = delivery.attempts + 1;
    let now = result.finished_at;
    let first = *delivery.first_attempt_at.get_or_insert(now);
    delivery.attempts = attempt_no;

    let (next, class, status) = match &result.verdict {
        Verdict::Success { status } => (Next::Delivered, None, Some(*status)),
        Verdict::Failure {
            class,
            disposition,
            status,
            retry_after,
        } => {
            let next = match disposition {
                herald_core::classify::Disposition::Permanent => Next::Dead(DlqReason::Permanent),
                herald_core::classify::Disposition::Retryable => {
                    match policy.next(
                        attempt_no as u32,
                        delivery.age_origin(now),
                        now,
                        *retry_after,
                        rng,
                    ) {
                        NextStep::Retry {
                            tier,
                            delay,
                            due_at,
                        } => {
                            delivery.due_at = due_at;
                            Next::Retry { tier, delay }
                        }
                        NextStep::Exhausted => Next::Dead(DlqReason::Exhausted),
                    }
                }
            };
            (next, Some(*class), *status)
        }
    };
    if let Some(class) = class {
        delivery.history.push(AttemptError {
            attempt: attempt_no,
            at: now,
            error_class: class.as_str().to_string(),
            status: status.map(i32::from),
            message: result.message.clone(),
        });
    }

    let state_headers = |hs: OwnedHeaders, d: &Delivery| {
        let mut hs = hs;
        if let Some(t) = trace {
            hs = t.add_to(hs);
        }
        hs = add_header(hs, h::CE_ID, &d.event.id);
        hs = add_header(hs, h::CE_TYPE, &d.event.r#type);
        hs = add_header(hs, h::ATTEMPT, &d.attempts.to_string());
        hs = add_header(hs, h::FIRST_ATTEMPT_AT, &first.to_string());
        hs = add_header(hs, h::ORIGINAL_TOPIC, &d.origin_topic);
        hs = add_header(hs, h::ORIGINAL_PARTITION, &d.origin_partition.to_string());
        hs = add_header(hs, h::ORIGINAL_OFFSET, &d.origin_offset.to_string());
        if let Some(c) = class {
            hs = error_headers(hs, c, status, &result.message);
        }
        hs
    };

    let mut records = Vec::with_capacity(3);
    let next_topic = match &next {
        Next::Delivered => None,
        Next::Retry { delay, .. } => {
            let topic = names.retry(&dest, *delay);
            let hs = add_header(
                state_headers(OwnedHeaders::new(), &delivery),
                h::DUE_AT,
                &delivery.due_at.to_string(),
            );
            records.push(Record {
                partition: None,
                topic: topic.clone(),
                key: key.clone(),
                value: Some(delivery.to_avro().expect("deliveries encode")),
                headers: hs,
            });
            Some(topic)
        }
        Next::Dead(reason) => {
            let topic = names.dlq(&dest);
            let hs = add_header(
                state_headers(OwnedHeaders::new(), &delivery),
                h::DLQ_REASON,
                reason.as_str(),
            );
            let dl = DeadLetter {
                delivery: delivery.clone(),
                reason: reason.as_str().to_string(),
                dead_at: now,
            };
            records.push(Record {
                partition: None,
                topic: topic.clone(),
                key: key.clone(),
                value: Some(dl.to_avro().expect("dead letters encode")),
                headers: hs,
            });
            Some(topic)
        }
    };

    let outcome = match next {
        Next::Delivered => AttemptOutcome::Delivered,
        Next::Retry { .. } => AttemptOutcome::Retry,
        Next::Dead(_) => AttemptOutcome::DeadLettered,
    };
    let attempt = Attempt {
        event_id: delivery.event.id.clone(),
        event_type: delivery.event.r#type.clone(),
        destination: dest.clone(),
        attempt: attempt_no,
        at: now,
        outcome: outcome.as_str().to_string(),
        error_class: class.map(|c| c.as_str().to_string()),
        status: status.map(i32::from),
        latency_ms: result.latency.as_millis() as i64,
        excerpt: (!result.message.is_empty()).then(|| result.message.clone()),
        next_topic,
        trace_id: trace.and_then(TraceHeaders::trace_id).map(str::to_string),
    };
    records.push(Record {
        partition: None,
        topic: names.attempts(),
        key: delivery.event.id.as_bytes().to_vec(),
        value: Some(attempt.to_avro().expect("attempts encode")),
        headers: state_headers(OwnedHeaders::new(), &delivery),
    });
    // The event's latest step, compacted by identity: terminal states, and
    // retries too, so a successor skips copies the chain has moved past.
    let state = match &next {
        Next::Delivered => LedgerState::Delivered,
        Next::Retry { .. } => LedgerState::Retrying,
        Next::Dead(DlqReason::Expired) => LedgerState::Expired,
        Next::Dead(_) => LedgerState::DeadLettered,
    };
    records.push(ledger_record(names, &delivery, identity, state, now));
    (next, records)
}

/// The ledger record of an event's latest step (partition set by the
/// caller: ledger partition N covers delivery partition N).
pub fn ledger_record(
    names: &TopicNames,
    delivery: &Delivery,
    identity: &str,
    state: LedgerState,
    at: i64,
) -> Record {
    let entry = LedgerEntry {
        identity: identity.to_string(),
        event_id: delivery.event.id.clone(),
        source: delivery.event.source.clone(),
        state,
        attempts: delivery.attempts,
        at,
    };
    Record {
        partition: None,
        topic: names.ledger(&delivery.destination),
        key: identity.as_bytes().to_vec(),
        value: Some(entry.to_avro().expect("ledger entries encode")),
        headers: OwnedHeaders::new(),
    }
}

/// The records that settle a delivery without an attempt: its age budget
/// ran out, or its record is about to outlive the topic's retention.
pub fn plan_expired(
    names: &TopicNames,
    mut delivery: Delivery,
    key: Vec<u8>,
    identity: &str,
    trace: Option<&TraceHeaders>,
    why: &str,
    now: i64,
) -> Vec<Record> {
    delivery.history.push(AttemptError {
        attempt: delivery.attempts,
        at: now,
        error_class: "expired".to_string(),
        status: None,
        message: why.to_string(),
    });
    let mut hs = OwnedHeaders::new();
    if let Some(t) = trace {
        hs = t.add_to(hs);
    }
    hs = add_header(hs, h::CE_ID, &delivery.event.id);
    hs = add_header(hs, h::CE_TYPE, &delivery.event.r#type);
    hs = add_header(hs, h::ATTEMPT, &delivery.attempts.to_string());
    hs = add_header(hs, h::ORIGINAL_TOPIC, &delivery.origin_topic);
    hs = add_header(
        hs,
        h::ORIGINAL_PARTITION,
        &delivery.origin_partition.to_string(),
    );
    hs = add_header(hs, h::ORIGINAL_OFFSET, &delivery.origin_offset.to_string());
    hs = add_header(hs, h::DLQ_REASON, DlqReason::Expired.as_str());
    hs = add_header(
        hs,
        h::ERROR_MESSAGE,
        &h::truncate(why, h::MAX_ERROR_MESSAGE),
    );
    let ledger = ledger_record(names, &delivery, identity, LedgerState::Expired, now);
    let dl = DeadLetter {
        delivery,
        reason: DlqReason::Expired.as_str().to_string(),
        dead_at: now,
    };
    vec![
        Record {
            partition: None,
            topic: names.dlq(&dl.delivery.destination),
            key,
            value: Some(dl.to_avro().expect("dead letters encode")),
            headers: hs,
        },
        ledger,
    ]
}

/// `herald-error-class`, `-status`, `-message`.
pub fn error_headers(
    hs: OwnedHeaders,
    class: ErrorClass,
    status: Option<u16>,
    message: &str,
) -> OwnedHeaders {
    let mut hs = add_header(hs, h::ERROR_CLASS, class.as_str());
    if let Some(s) = status {
        hs = add_header(hs, h::ERROR_STATUS, &s.to_string());
    }
    add_header(
        hs,
        h::ERROR_MESSAGE,
        &h::truncate(message, h::MAX_ERROR_MESSAGE),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::classify::{classify_status, classify_transport, TransportError};
    use herald_core::envelope::Event;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use rdkafka::message::Headers;

    fn delivery(attempts: i32) -> Delivery {
        Delivery {
            event: Event {
                id: "e1".into(),
                source: "/s".into(),
                r#type: "payment.failed".into(),
                time: None,
                subject: None,
                tenant: None,
                data: "{}".into(),
            },
            destination: "crm".into(),
            attempts,
            routed_at: 0,
            first_attempt_at: (attempts > 0).then_some(1_000),
            due_at: 0,
            origin_topic: "events".into(),
            origin_partition: 0,
            origin_offset: 5,
            history: vec![],
            produced_at: None,
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            tiers: vec![Duration::from_secs(1), Duration::from_secs(5)],
            max_attempts: 3,
            max_age: Duration::from_secs(3600),
            jitter: 0.0,
        }
    }

    fn run(d: Delivery, verdict: Verdict) -> (Next, Vec<Record>) {
        let r = AttemptResult {
            verdict,
            latency: Duration::from_millis(3),
            message: "boom".into(),
            finished_at: 2_000,
        };
        let trace = TraceHeaders {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: Some("v=1".into()),
        };
        plan(
            &TopicNames::new("herald"),
            &policy(),
            d,
            b"k".to_vec(),
            "0123456789abcdef0123456789abcdef",
            Some(&trace),
            &r,
            &mut StdRng::seed_from_u64(1),
        )
    }

    fn topics(rs: &[Record]) -> Vec<&str> {
        rs.iter().map(|r| r.topic.as_str()).collect()
    }

    #[test]
    fn success_logs_attempt_and_ledger() {
        let (next, rs) = run(delivery(0), classify_status(204, None));
        assert_eq!(next, Next::Delivered);
        assert_eq!(topics(&rs), ["herald.attempts", "herald.dest.crm.ledger"]);
        let a = Attempt::from_avro(rs[0].value.as_ref().unwrap()).unwrap();
        assert_eq!((a.outcome.as_str(), a.attempt), ("delivered", 1));
        assert_eq!(
            a.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }

    #[test]
    fn retryable_climbs_the_ladder_then_dead_letters() {
        let (next, rs) = run(delivery(0), classify_transport(TransportError::Timeout));
        assert_eq!(
            next,
            Next::Retry {
                tier: 0,
                delay: Duration::from_secs(1)
            }
        );
        assert_eq!(
            topics(&rs),
            [
                "herald.dest.crm.retry.1s",
                "herald.attempts",
                "herald.dest.crm.ledger"
            ]
        );
        let step = LedgerEntry::decode_any(rs[2].value.as_ref().unwrap()).unwrap();
        assert_eq!((step.state, step.attempts), (LedgerState::Retrying, 1));
        assert_eq!(rs[2].key, b"0123456789abcdef0123456789abcdef");
        let d = Delivery::from_avro(rs[0].value.as_ref().unwrap()).unwrap();
        assert_eq!(
            (d.attempts, d.due_at, d.first_attempt_at),
            (1, 3_000, Some(2_000))
        );
        assert_eq!(d.history[0].error_class, "timeout");

        let (next, _) = run(delivery(1), classify_status(503, None));
        assert_eq!(
            next,
            Next::Retry {
                tier: 1,
                delay: Duration::from_secs(5)
            }
        );
        let (next, rs) = run(delivery(2), classify_status(503, None));
        assert_eq!(next, Next::Dead(DlqReason::Exhausted));
        assert_eq!(
            topics(&rs),
            [
                "herald.dest.crm.dlq",
                "herald.attempts",
                "herald.dest.crm.ledger"
            ]
        );
        let dl = DeadLetter::from_avro(rs[0].value.as_ref().unwrap()).unwrap();
        assert_eq!(dl.reason, "exhausted");
        assert_eq!(dl.delivery.attempts, 3);
    }

    #[test]
    fn permanent_goes_straight_to_dlq() {
        let (next, rs) = run(delivery(0), classify_status(400, None));
        assert_eq!(next, Next::Dead(DlqReason::Permanent));
        let dlq = &rs[0];
        let reason = dlq.headers.iter().find(|x| x.key == h::DLQ_REASON).unwrap();
        assert_eq!(reason.value, Some(&b"permanent"[..]));
        let status = dlq
            .headers
            .iter()
            .find(|x| x.key == h::ERROR_STATUS)
            .unwrap();
        assert_eq!(status.value, Some(&b"400"[..]));
        let m = rdkafka::message::OwnedMessage::new(
            None,
            None,
            dlq.topic.clone(),
            rdkafka::Timestamp::NotAvailable,
            0,
            0,
            Some(dlq.headers.clone()),
        );
        let trace = TraceHeaders::from_message(&m).expect("DLQ record carries the trace context");
        assert_eq!(trace.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(trace.tracestate.as_deref(), Some("v=1"));
    }

    #[test]
    fn retry_after_skips_to_covering_tier() {
        let (next, _) = run(
            delivery(0),
            classify_status(429, Some(Duration::from_secs(4))),
        );
        assert_eq!(
            next,
            Next::Retry {
                tier: 1,
                delay: Duration::from_secs(5)
            }
        );
    }
}
