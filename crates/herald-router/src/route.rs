//! Routing one input record: decode, validate, match rules, build outputs.
//! Pure apart from metrics, so it is tested without a broker.

use crate::dedupe::{key as dedupe_key, Dedupe};
use crate::invalid::invalid_output;
pub use crate::invalid::Settled;
use herald_core::codec::{decode_input, AvroRecord};
use herald_core::config::Config;
use herald_core::envelope::Delivery;
use herald_core::headers as h;
use herald_core::identity::{identity, missing_field};
use herald_core::kafka::{add_header, header_str};
use herald_core::metrics::{BoundedLabel, RouterMetrics};
use herald_core::otel::{self, TraceHeaders};
use herald_core::registry::WriterSchemas;
use herald_core::time::now_ms;
use rdkafka::message::{Headers, Message, OwnedHeaders};
use tracing::debug;

pub use herald_core::headers::ORIGINAL_SIZE;

/// One record the router writes.
pub struct Output {
    pub topic: String,
    /// Explicit partition (dedupe changelog); otherwise by key.
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: OwnedHeaders,
}

impl Output {
    /// Bytes librdkafka counts against `message.max.bytes`, about: value,
    /// key and headers.
    pub fn size(&self) -> usize {
        self.value.len() + self.key.as_ref().map_or(0, Vec::len) + headers_size(&self.headers)
    }
}

pub(crate) fn headers_size(hs: &OwnedHeaders) -> usize {
    hs.iter()
        .map(|x| x.key.len() + x.value.map_or(0, <[u8]>::len) + 8)
        .sum()
}

/// Decides every output of one input record.
pub fn route_record<M: Message>(
    config: &Config,
    m: &M,
    metrics: &RouterMetrics,
    event_types: &BoundedLabel,
    dedupe: Option<&mut Dedupe>,
) -> Vec<Output> {
    let none = WriterSchemas::default();
    route_record_settled(config, m, metrics, event_types, &none, dedupe, None)
}

/// [`route_record`], where `settled` names a record whose outputs failed
/// for good on an earlier try: it goes to the invalid topic.
#[allow(clippy::too_many_arguments)]
pub fn route_record_settled<M: Message>(
    config: &Config,
    m: &M,
    metrics: &RouterMetrics,
    event_types: &BoundedLabel,
    schemas: &WriterSchemas,
    dedupe: Option<&mut Dedupe>,
    settled: Option<&Settled>,
) -> Vec<Output> {
    let names = config.topic_names();
    let max = config.router.max_event_bytes;
    if let Some(s) = settled {
        return vec![invalid_output(
            config,
            m,
            metrics,
            s.reason,
            "produce",
            &s.message,
            max,
            s.keep_bytes,
        )];
    }
    let origin = |hs: OwnedHeaders| {
        let hs = add_header(hs, h::ORIGINAL_TOPIC, m.topic());
        let hs = add_header(hs, h::ORIGINAL_PARTITION, &m.partition().to_string());
        add_header(hs, h::ORIGINAL_OFFSET, &m.offset().to_string())
    };
    let event = match decode_input(m.payload(), |n| header_str(m, n), schemas) {
        Ok(e) => e,
        Err(invalid) => {
            let msg = invalid.message();
            return vec![invalid_output(
                config,
                m,
                metrics,
                invalid.reason(),
                "schema",
                &msg,
                max,
                usize::MAX,
            )];
        }
    };
    let data: serde_json::Value =
        serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null);
    // Without its identity fields an event would share one identity with
    // every other such event, and dedupe would drop all but the first.
    let Some(id) = identity(&event, &data, &config.router.identity) else {
        let field = missing_field(&event, &data, &config.router.identity).unwrap_or("?");
        let msg = format!("identity field `{field}` (router.identity) is missing or null");
        return vec![invalid_output(
            config,
            m,
            metrics,
            "identity",
            "schema",
            &msg,
            max,
            usize::MAX,
        )];
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
    let key = m
        .key()
        .map(<[u8]>::to_vec)
        .or_else(|| event.subject.as_ref().map(|s| s.as_bytes().to_vec()))
        .unwrap_or_else(|| event.id.as_bytes().to_vec());
    let routed_at = now_ms();
    let mut outputs = Vec::new();
    let mut dests = Vec::new();
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
            produced_at: m.timestamp().to_millis(),
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
        let out = Output {
            topic: names.dest(dest),
            partition: None,
            key: Some(key.clone()),
            value,
            headers: origin(hs),
        };
        // Checked before producing: a record over the producer's or topic's
        // limit would fail the whole transaction, again on every retry.
        if out.size() > max {
            let msg = format!(
                "the delivery for {dest} would be {} bytes, over router.max_event_bytes ({max})",
                out.size()
            );
            return vec![invalid_output(
                config,
                m,
                metrics,
                "too-large",
                "size",
                &msg,
                max,
                usize::MAX,
            )];
        }
        outputs.push(out);
        dests.push(dest);
    }
    if let Some(dedupe) = dedupe {
        if dedupe.check(m.partition(), id, routed_at) {
            metrics
                .deduplicated
                .with_label_values(&[&event_types.get(&event.r#type)])
                .inc();
            debug!(event_id = %event.id, "Duplicate event within the dedupe window; dropped.");
            return Vec::new();
        }
        outputs.insert(
            0,
            Output {
                topic: names.dedupe_changelog(),
                partition: Some(m.partition()),
                key: Some(dedupe_key(id).into_bytes()),
                value: routed_at.to_string().into_bytes(),
                headers: OwnedHeaders::new(),
            },
        );
    }
    for dest in dests {
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
        let out = route_record_settled(
            &c,
            &m,
            &RouterMetrics::new(),
            &BoundedLabel::new(10),
            &WriterSchemas::default(),
            None,
            None,
        );
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
            route_record_settled(
                &c,
                &m,
                &RouterMetrics::new(),
                &BoundedLabel::new(10),
                &WriterSchemas::default(),
                None,
                None
            )
            .len(),
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
        let first = route_record_settled(
            &c,
            &m,
            &metrics,
            &BoundedLabel::new(10),
            &WriterSchemas::default(),
            Some(&mut d),
            None,
        );
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
        let again = route_record_settled(
            &c,
            &m,
            &metrics,
            &BoundedLabel::new(10),
            &WriterSchemas::default(),
            Some(&mut d),
            None,
        );
        assert!(again.is_empty());
        assert_eq!(
            metrics
                .deduplicated
                .with_label_values(&["payment.failed"])
                .get(),
            1
        );
    }

    fn reason_of(out: &[Output]) -> Option<String> {
        out[0]
            .headers
            .iter()
            .find(|x| x.key == h::INVALID_REASON)
            .and_then(|x| x.value)
            .map(|v| String::from_utf8_lossy(v).to_string())
    }

    #[test]
    fn missing_identity_fields_go_to_invalid_not_to_dedupe() {
        let mut c = config();
        c.router.identity = vec!["type".into(), "data.order_id".into()];
        let metrics = RouterMetrics::new();
        let mut d = Dedupe::new(std::time::Duration::from_secs(60), 100);
        for id in ["e1", "e2"] {
            let v = format!(r#"{{"id":"{id}","source":"/s","type":"payment.failed","data":{{}}}}"#);
            let out = route_record_settled(
                &c,
                &msg(v.as_bytes(), None),
                &metrics,
                &BoundedLabel::new(10),
                &WriterSchemas::default(),
                Some(&mut d),
                None,
            );
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].topic, "herald.invalid");
            assert_eq!(reason_of(&out).as_deref(), Some("identity"));
        }
        assert_eq!(metrics.invalid.with_label_values(&["identity"]).get(), 2);
        let ok = br#"{"id":"e3","source":"/s","type":"payment.failed","data":{"order_id":1}}"#;
        let out = route_record_settled(
            &c,
            &msg(ok, None),
            &metrics,
            &BoundedLabel::new(10),
            &WriterSchemas::default(),
            Some(&mut d),
            None,
        );
        assert_eq!(out.len(), 3, "mark + two destinations");
    }

    #[test]
    fn an_event_too_large_to_deliver_goes_to_invalid_truncated() {
        let mut c = config();
        c.router.max_event_bytes = 10_000;
        let metrics = RouterMetrics::new();
        let big = format!(
            r#"{{"id":"e1","source":"/s","type":"payment.failed","data":{{"x":"{}"}}}}"#,
            "a".repeat(20_000)
        );
        let mut d = Dedupe::new(std::time::Duration::from_secs(60), 100);
        let out = route_record_settled(
            &c,
            &msg(big.as_bytes(), None),
            &metrics,
            &BoundedLabel::new(10),
            &WriterSchemas::default(),
            Some(&mut d),
            None,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].topic, "herald.invalid");
        assert_eq!(reason_of(&out).as_deref(), Some("too-large"));
        assert!(out[0].size() <= 10_000, "{}", out[0].size());
        assert!(big.as_bytes().starts_with(&out[0].value));
        d.commit();
        assert_eq!(d.entries(), 0, "no dedupe mark for an event not routed");
        // A record settled after a refused produce goes to invalid as is.
        let s = Settled {
            reason: "too-large",
            message: "refused".into(),
            keep_bytes: 100,
        };
        let ok = br#"{"id":"e3","source":"/s","type":"payment.failed","data":{}}"#;
        let out = route_record_settled(
            &c,
            &msg(ok, None),
            &metrics,
            &BoundedLabel::new(10),
            &WriterSchemas::default(),
            None,
            Some(&s),
        );
        assert_eq!((out.len(), out[0].topic.as_str()), (1, "herald.invalid"));
        assert_eq!(out[0].value.len(), ok.len().min(100));
    }

    #[test]
    fn invalid_goes_to_invalid_topic_with_reason() {
        let metrics = RouterMetrics::new();
        let out = route_record_settled(
            &config(),
            &msg(b"\xff\xfegarbage", None),
            &metrics,
            &BoundedLabel::new(10),
            &WriterSchemas::default(),
            None,
            None,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].topic, "herald.invalid");
        assert_eq!(out[0].value, b"\xff\xfegarbage");
        let reason = out[0]
            .headers
            .iter()
            .find(|x| x.key == h::INVALID_REASON)
            .unwrap();
        assert_eq!(reason.value, Some(&b"decode"[..]));
        assert_eq!(metrics.invalid.with_label_values(&["decode"]).get(), 1);
    }
}
