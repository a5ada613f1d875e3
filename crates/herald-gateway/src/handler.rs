//! The request path: admission (known source, in-flight bound, rate limit),
//! then, within `gateway.request_timeout`: read the body (bounded), verify,
//! build the record, write it and wait for Kafka's acknowledgement. Every
//! answer is counted by source and outcome.

use crate::verify::{self, HeaderLookup};
use crate::{event, Gateway, Source};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use herald_core::headers as h;
use herald_core::kafka::add_header;
use herald_core::otel::{self, TraceHeaders};
use herald_core::time::now_ms;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, warn, Instrument};

pub(crate) fn router(g: Arc<Gateway>) -> Router {
    Router::new()
        .route("/webhooks/{source}", post(handle))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "no such route; POST /webhooks/<source>\n",
            )
        })
        .with_state(g)
}

/// An answer and the outcome label it is counted under.
struct Answer {
    status: StatusCode,
    outcome: &'static str,
    body: String,
    retry_after: Option<Duration>,
}

impl Answer {
    fn new(status: StatusCode, outcome: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            outcome,
            body: serde_json::json!({ "error": message.into() }).to_string(),
            retry_after: None,
        }
    }

    fn retry_after(mut self, d: Duration) -> Self {
        self.retry_after = Some(d);
        self
    }

    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            [("content-type", "application/json")],
            self.body,
        )
            .into_response();
        if let Some(d) = self.retry_after {
            let secs = d.as_secs_f64().ceil().max(1.0) as u64;
            r.headers_mut().insert(
                "retry-after",
                HeaderValue::from_str(&secs.to_string()).expect("digits"),
            );
        }
        r
    }
}

async fn handle(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let Some(src) = g.sources.get(&name) else {
        g.metrics
            .requests
            .with_label_values(&["unknown", "unknown_source"])
            .inc();
        return Answer::new(StatusCode::NOT_FOUND, "unknown_source", "no such source")
            .into_response();
    };
    let answer = admit_and_process(&g, src, &headers, body, started).await;
    g.metrics
        .requests
        .with_label_values(&[name.as_str(), answer.outcome])
        .inc();
    answer.into_response()
}

async fn admit_and_process(
    g: &Gateway,
    src: &Source,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> Answer {
    let name = src.resolved.name.as_str();
    let Ok(_permit) = g.in_flight.clone().try_acquire_owned() else {
        return Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests in flight",
        )
        .retry_after(g.limits.retry_after);
    };
    let gauge = g.metrics.in_flight.with_label_values(&[] as &[&str]);
    gauge.inc();
    let _dec = scopeguard(move || gauge.dec());
    if let Some(bucket) = &src.bucket {
        let mut b = bucket.lock().expect("rate limit lock");
        let now = now_ms();
        if !b.try_take(now) {
            let wait = b.wait(now);
            return Answer::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "over this source's rate limit",
            )
            .retry_after(wait);
        }
    }
    let declared =
        HeaderLookup::get(headers, "content-length").and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > g.limits.max_body_bytes) {
        return too_large(g.limits.max_body_bytes);
    }
    let incoming = HeaderLookup::get(headers, h::TRACEPARENT).map(|tp| TraceHeaders {
        traceparent: tp.to_string(),
        tracestate: HeaderLookup::get(headers, h::TRACESTATE).map(str::to_string),
    });
    let span = otel::inbound_span(name, incoming.as_ref());
    let work = process(g, src, headers, body, incoming, span.clone()).instrument(span.clone());
    let answer = match tokio::time::timeout(g.limits.request_timeout, work).await {
        Ok(a) => a,
        Err(_) => Answer::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the request took longer than gateway.request_timeout",
        ),
    };
    if answer.status.is_success() {
        g.metrics
            .ack_duration
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
    } else if answer.status.is_server_error() {
        otel::record_error(&span, answer.status.as_str());
    }
    answer
}

async fn process(
    g: &Gateway,
    src: &Source,
    headers: &HeaderMap,
    body: Body,
    incoming: Option<TraceHeaders>,
    span: tracing::Span,
) -> Answer {
    let name = src.resolved.name.as_str();
    let body = match axum::body::to_bytes(body, g.limits.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            // axum reports the limit as a boxed http-body-util error.
            let mut too_large = false;
            let mut cause: Option<&dyn std::error::Error> = Some(&e);
            while let Some(c) = cause {
                too_large |= c.to_string().contains("length limit");
                cause = c.source();
            }
            return if too_large {
                self::too_large(g.limits.max_body_bytes)
            } else {
                Answer::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("cannot read the body: {e}"),
                )
            };
        }
    };
    let now_s = now_ms() / 1000;
    match verify::verify(
        &src.resolved.scheme,
        &src.keys,
        headers,
        &body,
        now_s,
        src.resolved.tolerance,
    ) {
        Ok(key) => {
            g.metrics
                .signature_keys
                .with_label_values(&[name, &key.to_string()])
                .inc();
        }
        Err(refusal) => {
            g.metrics
                .signature_failures
                .with_label_values(&[name, refusal.as_str()])
                .inc();
            debug!(
                source = name,
                reason = refusal.as_str(),
                "Refused a request: signature."
            );
            return Answer::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!("signature {}", refusal.as_str()),
            );
        }
    }
    let rec = event::record(
        &src.resolved,
        headers,
        &body,
        &herald_core::time::rfc3339_ms(now_ms()),
    );
    if let Some(id) = &rec.id {
        otel::record_event(&span, id, None);
    }
    if let Some(problem) = &rec.problem {
        g.metrics.accepted_invalid.with_label_values(&[name]).inc();
        warn!(
            source = name,
            problem = problem.as_str(),
            "Accepted a request that is not a valid event; the router will send it to the invalid topic."
        );
    }
    let mut hs = OwnedHeaders::new_with_capacity(rec.headers.len() + 2);
    for (k, v) in &rec.headers {
        hs = add_header(hs, k, v);
    }
    if let Some(t) = otel::outgoing(&span, incoming.as_ref()) {
        hs = t.add_to(hs);
    }
    let mut record = FutureRecord::to(&src.resolved.topic)
        .payload(body.as_ref())
        .headers(hs);
    if let Some(k) = &rec.key {
        record = record.key(k.as_str());
    }
    // librdkafka's message.timeout.ms does not bound a record already sent
    // to a broker that then died (the idempotent producer waits for the
    // connection to fail), so the wait is bounded here too. A record that
    // lands after the 503 is a copy when the provider retries; the router's
    // dedupe window drops it.
    let sent = tokio::time::timeout(
        g.limits.ack_timeout,
        g.producer
            .send(record, Timeout::After(g.limits.ack_timeout)),
    )
    .await;
    let error = match sent {
        Ok(Ok(_)) => {
            return Answer {
                status: StatusCode::OK,
                outcome: "accepted",
                body: serde_json::json!({ "accepted": true, "id": rec.id }).to_string(),
                retry_after: None,
            }
        }
        Ok(Err((e, _))) => e.to_string(),
        Err(_) => "no acknowledgement within gateway.ack_timeout".to_string(),
    };
    warn!(
        source = name,
        error, "Kafka did not acknowledge the record; answering 503 so the provider retries."
    );
    Answer::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the event log is unavailable; retry later",
    )
    .retry_after(g.limits.retry_after)
}

fn too_large(max: usize) -> Answer {
    Answer::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("body over {max} bytes (gateway.max_body_bytes)"),
    )
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
