//! Routing one input record: decode, validate, match rules, build outputs.
//! Pure apart from metrics, so it is tested without a broker.

use crate::dedupe::{identity, key as dedupe_key, Dedupe};
use herald_core::codec::{decode_input, AvroRecord};
use herald_core::config::Config;
use herald_core::envelope::Delivery;
use herald_core::headers as h;
use herald_core::kafka::{add_header, header_str};
use herald_core::metrics::{BoundedLabel, RouterMetrics};
use herald_core::otel::{self, TraceHeaders};
use herald_core::time::now_ms;
use rdkafka::message::{Headers, Message, OwnedHeaders};
use tracing::{debug, warn};

/// One record the router writes.
pub struct Output {
    pub topic: String,
    /// Explicit partition (dedupe changelog); otherwise by key.
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: OwnedHeaders,
}

/// Decides every output of one input record.
pub fn route_record<M: Message>(
    config: &Config,
    m: &M,
    metrics: &RouterMetrics,
    event_types: &BoundedLabel,
    dedupe: Option<&mut Dedupe>,
) -> Vec<Output> {
    let names = config.topic_names();
    let origin = |hs: OwnedHeaders| {
        let hs = add_header(hs, h::ORIGINAL_TOPIC, m.topic());
        let hs = add_header(hs, h::ORIGINAL_PARTITION, &m.partition().to_string());
        add_header(hs, h::ORIGINAL_OFFSET, &m.offset().to_string())
    };
    let event = match decode_input(m.payload(), |n| header_str(m, n)) {
        Ok(e) => e,
        Err(invalid) => {
            metrics.invalid.with_label_values(&[invalid.reason()]).inc();
            warn!(
                topic = m.topic(),
                partition = m.partition(),
                offset = m.offset(),
                reason = invalid.reason(),
                "Input record is not a valid event; sending it to the invalid topic."
            );
            // Keep the producer's own headers, then say why.
            let mut hs = OwnedHeaders::new();
            if let Some(orig) = m.headers() {
                for x in orig.iter() {
                    hs = hs.insert(x);
                }
            }
            let hs = add_header(hs, h::INVALID_REASON, invalid.reason());
            let hs = add_header(hs, h::ERROR_CLASS, "schema");
            let hs = add_header(
                hs,
                h::ERROR_MESSAGE,
                &h::truncate(&invalid.message(), h::MAX_ERROR_MESSAGE),
            );
            return vec![Output {
                topic: names.invalid(),
                partition: None,
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().unwrap_or_default().to_vec(),
                headers: origin(hs),
            }];
        }
    };
    metrics
        .received
        .with_label_values(&[&event_types.get(&event.r#type)])
        .inc();
    // Lines logged from here on name the event. Outputs carry the context of
    // the caller's route span (the producer's, unchanged, when not exporting).
    let span = tracing::Span::current();
    otel::record_event(&span, &event.id, None);
    let trace = otel::outgoing(&span, TraceHeaders::from_message(m).as_ref());
    let data: serde_json::Value =
        serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null);
    let key = m
        .key()
        .map(<[u8]>::to_vec)
        .or_else(|| event.subject.as_ref().map(|s| s.as_bytes().to_vec()))
        .unwrap_or_else(|| event.id.as_bytes().to_vec());
    let routed_at = now_ms();
    let mut outputs = Vec::new();
    if let Some(dedupe) = dedupe {
        let id = identity(&event, &data, &config.router.identity);
        if dedupe.check(m.partition(), id, routed_at) {
            metrics
                .deduplicated
                .with_label_values(&[&event_types.get(&event.r#type)])
                .inc();
            debug!(event_id = %event.id, "Duplicate event within the dedupe window; dropped.");
            return outputs;
        }
        outputs.push(Output {
            topic: names.dedupe_changelog(),
            partition: Some(m.partition()),
            key: Some(dedupe_key(id).into_bytes()),
            value: routed_at.to_string().into_bytes(),
            headers: OwnedHeaders::new(),
        });
    }
    for (dest, dc) in &config.destinations {
        if !dc.route.matches(&event, &data) {
            continue;
        }
        let delivery = Delivery {
            event: event.clone(),
            destination: dest.clone(),
            attempts: 0,
            routed_at,
            first_attempt_at: None,
            due_at: 0,
            origin_topic: m.topic().to_string(),
            origin_partition: m.partition(),
            origin_offset: m.offset(),
            history: Vec::new(),
        };
        let value = delivery.to_avro().expect("a decoded event always encodes");
        let mut hs = OwnedHeaders::new();
        if let Some(t) = &trace {
            hs = t.add_to(hs);
        }
        hs = add_header(hs, h::CE_ID, &event.id);
        hs = add_header(hs, h::CE_TYPE, &event.r#type);
        hs = add_header(hs, h::CE_SOURCE, &event.source);
        if let Some(t) = &event.time {
            hs = add_header(hs, h::CE_TIME, t);
        }
        hs = add_header(hs, h::ATTEMPT, "0");
        hs = add_header(hs, h::CONTENT_TYPE, "application/avro");
        outputs.push(Output {
            topic: names.dest(dest),
            partition: None,
            key: Some(key.clone()),
            value,
            headers: origin(hs),
        });
        metrics.routed.with_label_values(&[dest]).inc();
    }
    if outputs.iter().all(|o| o.partition.is_some()) {
        debug!(event_id = %event.id, event_type = %event.r#type, "No destination matched the event.");
        metrics
            .unrouted
            .with_label_values(&[&event_types.get(&event.r#type)])
            .inc();
    }
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{OwnedMessage, Timestamp};

    fn config() -> Config {
        Config::from_toml_with_env(
            r#"
            [destinations.all]
            kind = "webhook"
            url = "http://127.0.0.1:1/a"
            [destinations.billing]
            kind = "webhook"
            url = "http://127.0.0.1:1/b"
            route.event_types = ["payment.*"]
            "#,
            "t",
            std::iter::empty(),
        )
        .unwrap()
    }

    fn msg(value: &[u8], headers: Option<OwnedHeaders>) -> OwnedMessage {
        OwnedMessage::new(
            Some(value.to_vec()),
            Some(b"cus_1".to_vec()),
            "events".into(),
            Timestamp::NotAvailable,
            2,
            7,
            headers,
        )
    }

    #[test]
    fn fans_out_by_rule_and_keeps_key_origin_and_trace() {
        let c = config();
        let hs = add_header(
            OwnedHeaders::new(),
            h::TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        let m = msg(
            br#"{"id":"e1","source":"/s","type":"payment.failed","data":{}}"#,
            Some(hs),
        );
        let out = route_record(&c, &m, &RouterMetrics::new(), &BoundedLabel::new(10), None);
        let topics: Vec<_> = out.iter().map(|o| o.topic.as_str()).collect();
        assert_eq!(topics, ["herald.dest.all", "herald.dest.billing"]);
        for o in &out {
            assert_eq!(o.key.as_deref(), Some(&b"cus_1"[..]));
            let d = Delivery::from_avro(&o.value).unwrap();
            assert_eq!((d.origin_partition, d.origin_offset, d.attempts), (2, 7, 0));
            let find = |k: &str| {
                o.headers
                    .iter()
                    .find(|x| x.key == k)
                    .and_then(|x| x.value)
                    .map(|v| String::from_utf8_lossy(v).to_string())
            };
            assert!(find(h::TRACEPARENT).unwrap().starts_with("00-4bf9"));
            assert_eq!(find(h::ORIGINAL_OFFSET).as_deref(), Some("7"));
            assert_eq!(find(h::CE_ID).as_deref(), Some("e1"));
        }
        let m = msg(
            br#"{"id":"e2","source":"/s","type":"user.signed_up","data":{}}"#,
            None,
        );
        assert_eq!(
            route_record(&c, &m, &RouterMetrics::new(), &BoundedLabel::new(10), None).len(),
            1
        );
    }

    #[test]
    fn duplicates_within_the_window_are_dropped_and_marked_in_the_changelog() {
        let c = config();
        let metrics = RouterMetrics::new();
        let mut d = Dedupe::new(std::time::Duration::from_secs(60), 100);
        let m = msg(
            br#"{"id":"e1","source":"/s","type":"payment.failed","data":{}}"#,
            None,
        );
        let first = route_record(&c, &m, &metrics, &BoundedLabel::new(10), Some(&mut d));
        let topics: Vec<_> = first.iter().map(|o| o.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                "herald.router.dedupe",
                "herald.dest.all",
                "herald.dest.billing"
            ]
        );
        assert_eq!(
            first[0].partition,
            Some(2),
            "changelog partition = input partition"
        );
        d.commit();
        let again = route_record(&c, &m, &metrics, &BoundedLabel::new(10), Some(&mut d));
        assert!(again.is_empty());
        assert_eq!(
            metrics
                .deduplicated
                .with_label_values(&["payment.failed"])
                .get(),
            1
        );
    }

    #[test]
    fn invalid_goes_to_invalid_topic_with_reason() {
        let metrics = RouterMetrics::new();
        let out = route_record(
            &config(),
            &msg(b"\x00\xffgarbage", None),
            &metrics,
            &BoundedLabel::new(10),
            None,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].topic, "herald.invalid");
        assert_eq!(out[0].value, b"\x00\xffgarbage");
        let reason = out[0]
            .headers
            .iter()
            .find(|x| x.key == h::INVALID_REASON)
            .unwrap();
        assert_eq!(reason.value, Some(&b"decode"[..]));
        assert_eq!(metrics.invalid.with_label_values(&["decode"]).get(), 1);
    }
}
