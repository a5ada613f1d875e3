//! `herald-gateway`'s metrics: requests by source and outcome, why
//! signatures failed, which of a source's keys verified, and how long the
//! acknowledgement (Kafka's, then the provider's 2xx) took.

use super::{counter, gauge, histogram};
use prometheus::{exponential_buckets, HistogramVec, IntCounterVec, IntGaugeVec, Registry};

/// Every `outcome` label of `herald_gateway_requests_total`.
pub const GATEWAY_OUTCOMES: [&str; 9] = [
    // 2xx: written and acknowledged by Kafka.
    "accepted",
    // 401: signature missing, malformed, stale or wrong.
    "unauthorized",
    // 404: no such source.
    "unknown_source",
    // 413: body over gateway.max_body_bytes.
    "too_large",
    // 429: over the source's rate limit.
    "rate_limited",
    // 503: over gateway.max_in_flight.
    "overloaded",
    // 503: Kafka did not acknowledge within gateway.ack_timeout.
    "unavailable",
    // 408: the request took longer than gateway.request_timeout.
    "timeout",
    // 4xx: not a POST, or a body that could not be read.
    "bad_request",
];

/// Every `reason` label of `herald_gateway_signature_failures_total`.
pub const SIGNATURE_FAILURES: [&str; 4] = ["missing", "malformed", "stale", "mismatch"];

#[derive(Clone)]
pub struct GatewayMetrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub signature_failures: IntCounterVec,
    /// Verified requests by the index of the key that verified them: while
    /// a provider rotates, traffic moving from key 0 to key 1 shows it.
    pub signature_keys: IntCounterVec,
    pub ack_duration: HistogramVec,
    pub in_flight: IntGaugeVec,
    /// Accepted records whose payload will not make a valid event (no id,
    /// not JSON…): the router sends them to the invalid topic.
    pub accepted_invalid: IntCounterVec,
}

impl GatewayMetrics {
    /// `sources`: each source's name and number of secrets (their series
    /// start at 0).
    pub fn new<'a>(sources: impl IntoIterator<Item = (&'a str, usize)>) -> Self {
        let r = Registry::new();
        let m = Self {
            requests: counter(
                &r,
                "herald_gateway_requests_total",
                "Inbound webhook requests by source and outcome.",
                &["source", "outcome"],
            ),
            signature_failures: counter(
                &r,
                "herald_gateway_signature_failures_total",
                "Requests refused with 401 by source and reason (missing, malformed, stale, mismatch).",
                &["source", "reason"],
            ),
            signature_keys: counter(
                &r,
                "herald_gateway_signature_key_total",
                "Verified requests by source and the index of the secret that verified them.",
                &["source", "key"],
            ),
            ack_duration: histogram(
                &r,
                "herald_gateway_ack_duration_seconds",
                "From request received to the 2xx answer: body read, verified, acknowledged by Kafka.",
                &["source"],
                exponential_buckets(0.0005, 2.0, 16).expect("valid buckets"),
            ),
            in_flight: gauge(
                &r,
                "herald_gateway_in_flight_requests",
                "Requests being handled.",
                &[],
            ),
            accepted_invalid: counter(
                &r,
                "herald_gateway_accepted_invalid_total",
                "Accepted requests whose payload is not a valid event (the router sends them to the invalid topic), by source.",
                &["source"],
            ),
            registry: r,
        };
        for (s, keys) in sources {
            for k in 0..keys {
                m.signature_keys.with_label_values(&[s, &k.to_string()]);
            }
            for o in GATEWAY_OUTCOMES {
                m.requests.with_label_values(&[s, o]);
            }
            for reason in SIGNATURE_FAILURES {
                m.signature_failures.with_label_values(&[s, reason]);
            }
            m.ack_duration.with_label_values(&[s]);
            m.accepted_invalid.with_label_values(&[s]);
        }
        m.in_flight.with_label_values(&[] as &[&str]);
        m
    }
}
