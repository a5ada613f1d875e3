//! Every metric Herald exports, defined in one place: names follow
//! `herald_<noun>_<unit>[_total]`, and label values come from fixed sets
//! (destination names from config, error classes, outcomes, tiers), never
//! from error text or event ids. Event types come from producers, so their
//! label is capped ([`BoundedLabel`]).

use prometheus::{
    exponential_buckets, Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::collections::HashSet;
use std::sync::Mutex;

/// Label value used once a bounded label has seen its maximum of values.
pub const OTHER: &str = "other";

/// Caps the number of distinct values a label may take.
pub struct BoundedLabel {
    seen: Mutex<HashSet<String>>,
    max: usize,
}

impl BoundedLabel {
    pub fn new(max: usize) -> Self {
        Self {
            seen: Mutex::new(HashSet::new()),
            max,
        }
    }

    /// `value` itself while there is room or it was seen before, else `other`.
    pub fn get(&self, value: &str) -> String {
        let mut seen = self.seen.lock().expect("label set lock");
        if seen.contains(value) {
            return value.to_string();
        }
        if seen.len() < self.max {
            seen.insert(value.to_string());
            return value.to_string();
        }
        OTHER.to_string()
    }
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

/// Seconds, 1 ms to ~65 s.
fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.001, 2.0, 17).expect("valid buckets")
}

/// Seconds, 10 ms to ~5.8 h: end-to-end includes retry delays.
fn end_to_end_buckets() -> Vec<f64> {
    exponential_buckets(0.01, 3.0, 14).expect("valid buckets")
}

/// Consumer lag, shared by the router and adapters.
#[derive(Clone)]
pub struct LagMetrics {
    /// `herald_consumer_lag_offsets{group,topic,partition}`
    pub offsets: IntGaugeVec,
}

impl LagMetrics {
    pub fn new(r: &Registry) -> Self {
        Self {
            offsets: gauge(
                r,
                "herald_consumer_lag_offsets",
                "Records between the group's committed offset (or position) and the partition's high watermark, from librdkafka statistics.",
                &["group", "topic", "partition"],
            ),
        }
    }
}

#[derive(Clone)]
pub struct RouterMetrics {
    pub registry: Registry,
    pub received: IntCounterVec,
    pub routed: IntCounterVec,
    pub unrouted: IntCounterVec,
    pub invalid: IntCounterVec,
    pub transactions: IntCounterVec,
    pub batch_duration: HistogramVec,
    pub lag: LagMetrics,
}

impl RouterMetrics {
    pub fn new() -> Self {
        let r = Registry::new();
        Self {
            received: counter(&r, "herald_router_events_received_total", "Valid events read from the input topic.", &["event_type"]),
            routed: counter(&r, "herald_router_deliveries_routed_total", "Deliveries produced onto destination topics.", &["destination"]),
            unrouted: counter(&r, "herald_router_events_unrouted_total", "Valid events no destination's rules matched.", &["event_type"]),
            invalid: counter(&r, "herald_router_events_invalid_total", "Input records sent to the invalid topic.", &["reason"]),
            transactions: counter(&r, "herald_router_transactions_total", "Router transactions by outcome (commit, abort).", &["outcome"]),
            batch_duration: histogram(&r, "herald_router_batch_duration_seconds", "Time to route one batch, transaction commit included.", &[], latency_buckets()),
            lag: LagMetrics::new(&r),
            registry: r,
        }
    }
}

impl Default for RouterMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone)]
pub struct AdapterMetrics {
    pub registry: Registry,
    /// outcome: delivered, retry, dead-lettered; error_class: a class or `none`.
    pub attempts: IntCounterVec,
    pub delivery_duration: HistogramVec,
    pub end_to_end: HistogramVec,
    pub retries_scheduled: IntCounterVec,
    pub dead_lettered: IntCounterVec,
    pub in_flight: IntGaugeVec,
    pub waiting: IntGaugeVec,
    pub lag: LagMetrics,
}

impl AdapterMetrics {
    pub fn new() -> Self {
        let r = Registry::new();
        Self {
            attempts: counter(&r, "herald_adapter_attempts_total", "Delivery attempts by outcome and error class.", &["destination", "outcome", "error_class"]),
            delivery_duration: histogram(&r, "herald_adapter_delivery_duration_seconds", "Duration of one HTTP delivery attempt.", &["destination"], latency_buckets()),
            end_to_end: histogram(&r, "herald_adapter_end_to_end_seconds", "From routing to successful delivery, retries included.", &["destination"], end_to_end_buckets()),
            retries_scheduled: counter(&r, "herald_adapter_retries_scheduled_total", "Deliveries moved to a retry tier.", &["destination", "tier"]),
            dead_lettered: counter(&r, "herald_adapter_dead_lettered_total", "Deliveries moved to the DLQ, by reason.", &["destination", "reason"]),
            in_flight: gauge(&r, "herald_adapter_in_flight", "Deliveries currently being attempted.", &["destination"]),
            waiting: gauge(&r, "herald_adapter_retry_waiting", "Retry-tier records held in memory until due.", &["destination"]),
            lag: LagMetrics::new(&r),
            registry: r,
        }
    }
}

impl Default for AdapterMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("text encoding cannot fail");
    String::from_utf8(buf).expect("prometheus text is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_label_caps_values() {
        let l = BoundedLabel::new(2);
        assert_eq!(l.get("a"), "a");
        assert_eq!(l.get("b"), "b");
        assert_eq!(l.get("c"), OTHER);
        assert_eq!(l.get("a"), "a");
    }

    #[test]
    fn names_follow_the_convention() {
        for reg in [RouterMetrics::new().registry, AdapterMetrics::new().registry] {
            for fam in reg.gather() {
                let n = fam.name();
                assert!(n.starts_with("herald_"), "{n}");
            }
        }
        let m = AdapterMetrics::new();
        m.attempts.with_label_values(&["d", "delivered", "none"]).inc();
        let text = render(&m.registry);
        assert!(text.contains("herald_adapter_attempts_total{destination=\"d\",error_class=\"none\",outcome=\"delivered\"} 1"), "{text}");
    }
}
