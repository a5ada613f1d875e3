//! Distributed tracing: the OTLP exporter, W3C trace context in Kafka
//! headers, and the spans Herald opens per record.
//!
//! Export is off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL; `/v1/traces`
//! is appended) or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL) is set,
//! and `OTEL_SDK_DISABLED` is not `true`. Spans go out as OTLP/HTTP protobuf
//! in batches (`OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`, …);
//! sampling follows `OTEL_TRACES_SAMPLER`, by default the producer's
//! sampled flag. The standard `OTEL_*` variables are read by the SDK itself.
//!
//! With export off, the per-record spans still exist — they carry event id,
//! destination, attempt and trace id into every log line about an event —
//! but have no OpenTelemetry state, and records and requests carry the
//! producer's `traceparent`/`tracestate` unchanged. With export on, each hop
//! writes its own span's context instead, so one event is one trace:
//! producer → router ("process <input>") → adapter attempt ("process <dest
//! topic>", one per attempt, retries chained) → HTTP client span ("POST").

use crate::headers as h;
use crate::kafka::{add_header, header_str};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Status, TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use rdkafka::message::{Message, OwnedHeaders};
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::field::Empty;
use tracing::{info_span, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether spans are exported. Set once, by [`layer`]; when false every
/// helper here skips OpenTelemetry work entirely.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// Whether the environment asks for span export.
pub fn export_configured() -> bool {
    let disabled =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !disabled
        && (env_set("OTEL_EXPORTER_OTLP_ENDPOINT") || env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The OpenTelemetry layer for `service`, or `None` when export is not
/// configured. Keep the provider and shut it down at exit to flush.
pub fn layer<S>(
    service: &str,
) -> anyhow::Result<
    Option<(
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>,
        SdkTracerProvider,
    )>,
>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    if !export_configured() {
        return Ok(None);
    }
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Ok(p) = std::env::var(var) {
            if !p.trim().is_empty() && p.trim() != "http/protobuf" {
                anyhow::bail!("{var}={p}: Herald exports traces over OTLP http/protobuf only");
            }
        }
    }
    let exporter = {
        use opentelemetry_otlp::WithExportConfig as _;
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the OTLP trace exporter: {e}"))?
    };
    let mut resource = Resource::builder();
    if !env_set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name(service.to_string());
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("herald");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false);
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some((layer, provider)))
}

/// The 32-hex-digit trace id of a W3C `traceparent`
/// (`<version>-<trace id>-<parent id>-<flags>`), if well formed.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit())).then_some(trace)
}

/// W3C trace context as carried in Kafka headers and HTTP requests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceHeaders {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

impl TraceHeaders {
    /// The record's `traceparent` (and `tracestate`), if it has one.
    pub fn from_message<M: Message>(m: &M) -> Option<Self> {
        let traceparent = header_str(m, h::TRACEPARENT)?.to_string();
        let tracestate = header_str(m, h::TRACESTATE)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        Some(Self {
            traceparent,
            tracestate,
        })
    }

    /// The 32-hex-digit trace id, if `traceparent` is well formed.
    pub fn trace_id(&self) -> Option<&str> {
        trace_id_of(&self.traceparent)
    }

    /// Appends `traceparent` and, if any, `tracestate`.
    pub fn add_to(&self, hs: OwnedHeaders) -> OwnedHeaders {
        let hs = add_header(hs, h::TRACEPARENT, &self.traceparent);
        match &self.tracestate {
            Some(ts) => add_header(hs, h::TRACESTATE, ts),
            None => hs,
        }
    }

    fn context(&self) -> Context {
        TraceContextPropagator::new().extract(self)
    }
}

impl Extractor for TraceHeaders {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            h::TRACEPARENT => Some(&self.traceparent),
            h::TRACESTATE => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![h::TRACEPARENT, h::TRACESTATE]
    }
}

#[derive(Default)]
struct Collect(Option<String>, Option<String>);

impl Injector for Collect {
    fn set(&mut self, key: &str, value: String) {
        match key {
            h::TRACEPARENT => self.0 = Some(value),
            h::TRACESTATE if !value.is_empty() => self.1 = Some(value),
            _ => {}
        }
    }
}

/// The context to write on records or requests made under `span`: the
/// span's own when it is exported, else `incoming` unchanged.
pub fn outgoing(span: &Span, incoming: Option<&TraceHeaders>) -> Option<TraceHeaders> {
    if enabled() && !span.is_disabled() {
        let cx = span.context();
        if cx.span().span_context().is_valid() {
            let mut c = Collect::default();
            TraceContextPropagator::new().inject_context(&cx, &mut c);
            if let Some(traceparent) = c.0 {
                return Some(TraceHeaders {
                    traceparent,
                    tracestate: c.1,
                });
            }
        }
    }
    incoming.cloned()
}

/// Parents `span` on `incoming` (a new trace when there is none), adds the
/// OpenTelemetry-only attributes and records `trace_id` for the logs.
/// Nothing is read or allocated for a span no layer wants.
fn start<M: Message>(span: &Span, m: &M, group: &str) {
    if span.is_disabled() {
        return;
    }
    if enabled() {
        let parent = TraceHeaders::from_message(m)
            .map(|t| t.context())
            .unwrap_or_default();
        let _ = span.set_parent(parent);
        for kv in messaging_attributes(m, group) {
            span.set_attribute(kv.key, kv.value);
        }
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            span.record("trace_id", tracing::field::display(sc.trace_id()));
            return;
        }
    }
    if let Some(id) = header_str(m, h::TRACEPARENT).and_then(trace_id_of) {
        span.record("trace_id", id);
    }
}

/// Messaging attributes of a consumer span per the OpenTelemetry semantic
/// conventions for Kafka.
fn messaging_attributes<M: Message>(m: &M, group: &str) -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.system", "kafka"),
        KeyValue::new("messaging.operation.type", "process"),
        KeyValue::new("messaging.operation.name", "process"),
        KeyValue::new("messaging.destination.name", m.topic().to_string()),
        KeyValue::new(
            "messaging.destination.partition.id",
            m.partition().to_string(),
        ),
        KeyValue::new("messaging.kafka.offset", m.offset()),
        KeyValue::new("messaging.consumer.group.name", group.to_string()),
    ]
}

/// The router's span for one input record, a child of the producer's
/// context. Enter it while routing the record: outputs written under it
/// carry its context.
pub fn route_span<M: Message>(m: &M, group: &str) -> Span {
    let span = if enabled() {
        info_span!(
            "route",
            otel.name = format!("process {}", m.topic()),
            otel.kind = "consumer",
            topic = m.topic(),
            partition = m.partition(),
            offset = m.offset(),
            event_id = Empty,
            trace_id = Empty,
        )
    } else {
        info_span!(
            "route",
            topic = m.topic(),
            partition = m.partition(),
            offset = m.offset(),
            event_id = Empty,
            trace_id = Empty,
        )
    };
    start(&span, m, group);
    span
}

/// The adapter's span for one delivery attempt of record `m`, a child of the
/// record's context (the router's span, or the previous attempt's).
pub fn attempt_span<M: Message>(m: &M, group: &str, destination: &str) -> Span {
    let span = if enabled() {
        info_span!(
            "attempt",
            otel.name = format!("process {}", m.topic()),
            otel.kind = "consumer",
            event_id = Empty,
            destination,
            attempt = Empty,
            trace_id = Empty,
        )
    } else {
        info_span!(
            "attempt",
            event_id = Empty,
            destination,
            attempt = Empty,
            trace_id = Empty
        )
    };
    start(&span, m, group);
    span
}

/// The gateway's span for one inbound request: a server span that continues
/// the provider's `traceparent` when it sent one, else starts a trace.
/// Records written under it carry its context ([`outgoing`]).
pub fn inbound_span(source: &str, incoming: Option<&TraceHeaders>) -> Span {
    let span = if enabled() {
        info_span!(
            "inbound",
            otel.name = format!("POST /webhooks/{source}"),
            otel.kind = "server",
            source,
            event_id = Empty,
            trace_id = Empty,
        )
    } else {
        info_span!("inbound", source, event_id = Empty, trace_id = Empty)
    };
    if enabled() && !span.is_disabled() {
        let _ = span.set_parent(incoming.map(TraceHeaders::context).unwrap_or_default());
        span.set_attribute("http.request.method", "POST");
        span.set_attribute("http.route", "/webhooks/{source}");
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            span.record("trace_id", tracing::field::display(sc.trace_id()));
        }
    } else if let Some(id) = incoming.and_then(TraceHeaders::trace_id) {
        span.record("trace_id", id);
    }
    span
}

/// A producer's span for sending one event to `topic`: the root of the
/// event's trace, named and described per the OpenTelemetry messaging
/// conventions for Kafka ("send <topic>"). Write its context on the record
/// ([`outgoing`]) so the router's span is its child; keep it until the
/// broker acknowledges the record ([`record_sent`], or [`record_error`]).
/// A disabled span when export is off.
pub fn producer_span(topic: &str, event_id: Option<&str>, key: Option<&str>) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = info_span!(
        parent: None,
        "produce",
        otel.name = format!("send {topic}"),
        otel.kind = "producer",
    );
    if span.is_disabled() {
        return span;
    }
    span.set_attribute("messaging.system", "kafka");
    span.set_attribute("messaging.operation.type", "send");
    span.set_attribute("messaging.operation.name", "send");
    span.set_attribute("messaging.destination.name", topic.to_string());
    if let Some(id) = event_id {
        span.set_attribute("messaging.message.id", id.to_string());
        span.set_attribute("cloudevents.event_id", id.to_string());
    }
    if let Some(k) = key {
        span.set_attribute("messaging.kafka.message.key", k.to_string());
    }
    span
}

/// Records where the broker wrote the record sent under a
/// [`producer_span`].
pub fn record_sent(span: &Span, partition: i32, offset: i64) {
    if enabled() {
        span.set_attribute("messaging.destination.partition.id", partition.to_string());
        span.set_attribute("messaging.kafka.offset", offset);
    }
}

/// Records which event `span` (a route or attempt span) is about.
pub fn record_event(span: &Span, event_id: &str, attempt: Option<i32>) {
    span.record("event_id", event_id);
    if let Some(a) = attempt {
        span.record("attempt", a);
    }
    if enabled() {
        span.set_attribute("messaging.message.id", event_id.to_string());
    }
}

/// Marks `span` failed with a low-cardinality `error.type` (Herald's error
/// class, or an HTTP status code).
pub fn record_error(span: &Span, error_type: &str) {
    if enabled() {
        span.set_attribute("error.type", error_type.to_string());
        span.set_status(Status::error(error_type.to_string()));
    }
}

/// An HTTP client span named after the method, or a disabled span when
/// export is off (it would carry nothing the logs need). `url` must already
/// be free of credentials and query.
pub fn http_client_span(method: &str, url: &str, host: Option<&str>, port: Option<u16>) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = info_span!("http", otel.name = method, otel.kind = "client");
    span.set_attribute("http.request.method", method.to_string());
    span.set_attribute("url.full", url.to_string());
    if let Some(h) = host {
        span.set_attribute("server.address", h.to_string());
    }
    if let Some(p) = port {
        span.set_attribute("server.port", i64::from(p));
    }
    span
}

/// Records the response status; 4xx and 5xx mark a client span failed.
pub fn record_http_status(span: &Span, status: u16) {
    if enabled() {
        span.set_attribute("http.response.status_code", i64::from(status));
        if status >= 400 {
            record_error(span, &status.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_headers_parse_and_write() {
        let t = TraceHeaders {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: Some("vendor=x".into()),
        };
        assert_eq!(t.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        let cx = t.context();
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_state().header(), "vendor=x");
        let m = rdkafka::message::OwnedMessage::new(
            None,
            None,
            "t".into(),
            rdkafka::Timestamp::NotAvailable,
            0,
            0,
            Some(t.add_to(OwnedHeaders::new())),
        );
        assert_eq!(TraceHeaders::from_message(&m), Some(t));
        let bad = TraceHeaders {
            traceparent: "00-xyz-1-01".into(),
            tracestate: None,
        };
        assert_eq!(bad.trace_id(), None);
    }

    #[test]
    fn without_export_the_incoming_context_passes_through() {
        let t = TraceHeaders {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: None,
        };
        assert_eq!(outgoing(&Span::none(), Some(&t)), Some(t));
        assert_eq!(outgoing(&Span::none(), None), None);
    }
}
