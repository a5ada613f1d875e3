//! Every metric Herald exports, defined in one place: names follow
//! `herald_<noun>_<unit>[_total]`, and label values come from fixed sets
//! (destination names from config, error classes, outcomes, tiers), never
//! from error text or event ids. Event types come from producers, so their
//! label is capped ([`BoundedLabel`]).

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    exponential_buckets, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

mod gateway;
pub use gateway::{GatewayMetrics, GATEWAY_OUTCOMES, SIGNATURE_FAILURES};

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

    /// For values a routing config names (event types, tenants): the exact
    /// names always pass; when none are named or a pattern (`user.*`) is
    /// among them, up to `max` more first-seen values pass too; the rest
    /// are `other`.
    pub fn for_config(named: &[String], max: usize) -> Self {
        let exact: HashSet<String> = named.iter().filter(|n| !n.contains('*')).cloned().collect();
        let open = named.len() != exact.len() || named.is_empty();
        let max = exact.len() + if open { max } else { 0 };
        Self {
            seen: Mutex::new(exact),
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

pub(crate) fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

pub(crate) fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

pub(crate) fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

/// Seconds, 1 ms to ~65 s.
pub(crate) fn latency_buckets() -> Vec<f64> {
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
    /// `herald_consumer_lag_seconds{group,topic,partition}`
    pub seconds: OldestUnprocessed,
    /// `herald_consumer_retention_headroom_seconds{group,topic,partition}`,
    /// from a [`crate::lagprobe::LagProbe`].
    pub headroom: RetentionHeadroom,
    /// `herald_topic_retention_seconds{topic}` (time retention, from the
    /// broker), from a lag probe.
    pub retention: GaugeVec,
    /// `herald_consumer_records_expired_unconsumed_total{group,topic}`
    pub expired_unconsumed: IntCounterVec,
    /// `herald_consumer_offset_resets_total{group,topic}`
    pub offset_resets: IntCounterVec,
}

impl LagMetrics {
    pub fn new(r: &Registry) -> Self {
        let seconds = OldestUnprocessed::new();
        r.register(Box::new(seconds.clone()))
            .expect("unique metric");
        let headroom = RetentionHeadroom::new();
        r.register(Box::new(headroom.clone()))
            .expect("unique metric");
        let retention = GaugeVec::new(
            Opts::new(
                "herald_topic_retention_seconds",
                "The topic's time retention (retention.ms) as the lag probe read it from the broker.",
            ),
            &["topic"],
        )
        .expect("valid metric");
        r.register(Box::new(retention.clone()))
            .expect("unique metric");
        Self {
            offsets: gauge(
                r,
                "herald_consumer_lag_offsets",
                "Records between the group's committed offset and the partition's last stable offset, from librdkafka statistics.",
                &["group", "topic", "partition"],
            ),
            seconds,
            headroom,
            retention,
            expired_unconsumed: counter(
                r,
                "herald_consumer_records_expired_unconsumed_total",
                "Records retention deleted before the group consumed them (its committed offset fell below the low watermark).",
                &["group", "topic"],
            ),
            offset_resets: counter(
                r,
                "herald_consumer_offset_resets_total",
                "Times a partition's committed offset fell below the low watermark, so the group's consumer must reset its position (auto.offset.reset).",
                &["group", "topic"],
            ),
        }
    }

    /// Clears the offsets series of every (group, topic) a lag probe does
    /// not measure; the statistics path calls it before refilling them.
    pub fn reset_unprobed_offsets(&self) {
        for fam in self.offsets.collect() {
            for m in fam.get_metric() {
                let label = |name: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_string())
                        .unwrap_or_default()
                };
                let (group, topic) = (label("group"), label("topic"));
                if !self.seconds.is_probed(&group, &topic) {
                    let _ = self.offsets.remove_label_values(&[
                        group.as_str(),
                        topic.as_str(),
                        label("partition").as_str(),
                    ]);
                }
            }
        }
    }
}

/// `herald_consumer_retention_headroom_seconds`: per partition, how long
/// until retention may delete the record at the group's committed position
/// (`timestamp + retention.ms - now`; the whole retention when the group is
/// caught up). Negative once that record is past retention. Computed at
/// scrape time, so it keeps falling while the group is stuck.
#[derive(Clone)]
pub struct RetentionHeadroom {
    gauge: GaugeVec,
    /// (group, topic, partition) -> (retention ms, timestamp of the record
    /// at the committed position; `None` when caught up).
    heads: Arc<Mutex<Heads>>,
}

type Heads = HashMap<(String, String, i32), (i64, Option<i64>)>;

impl RetentionHeadroom {
    fn new() -> Self {
        let gauge = GaugeVec::new(
            Opts::new(
                "herald_consumer_retention_headroom_seconds",
                "Time until retention may delete the record at the group's committed position (the whole retention when caught up), per partition.",
            ),
            &["group", "topic", "partition"],
        )
        .expect("valid metric");
        Self {
            gauge,
            heads: Arc::default(),
        }
    }

    /// `retention_ms` of `None` (no time retention) stops reporting the
    /// partition.
    pub fn set(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        retention_ms: Option<i64>,
        head_ts: Option<i64>,
    ) {
        let key = (group.to_string(), topic.to_string(), partition);
        let mut heads = self.heads.lock().expect("headroom lock");
        match retention_ms {
            Some(r) => heads.insert(key, (r, head_ts)),
            None => heads.remove(&key),
        };
    }
}

impl Collector for RetentionHeadroom {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now = crate::time::now_ms();
        let heads = self.heads.lock().expect("headroom lock");
        self.gauge.reset();
        for ((group, topic, partition), (retention, head)) in heads.iter() {
            let ms = crate::lagprobe::headroom_ms(*retention, *head, now);
            self.gauge
                .with_label_values(&[group.as_str(), topic.as_str(), &partition.to_string()])
                .set(ms as f64 / 1000.0);
        }
        self.gauge.collect()
    }
}

/// `herald_consumer_lag_seconds`: per partition, the age of the oldest
/// record the service has read but not finished (the one holding back the
/// committed offset), or 0 when nothing is unfinished.
///
/// Services record *since when* a record has been waiting; the age is
/// computed at scrape time, so it keeps growing while a service is stuck
/// (a blocked transaction, a hung destination) instead of freezing at the
/// last value it happened to set.
#[derive(Clone)]
pub struct OldestUnprocessed {
    gauge: GaugeVec,
    since: Arc<Mutex<WaitingSince>>,
    /// (group, topic) pairs a lag probe measures: the probe's values win,
    /// and the service's own `set`/`remove` calls for them are ignored.
    probed: Arc<Mutex<HashSet<(String, String)>>>,
}

/// (group, topic, partition) -> waiting since (ms since the epoch).
type WaitingSince = HashMap<(String, String, i32), Option<i64>>;

impl OldestUnprocessed {
    fn new() -> Self {
        let gauge = GaugeVec::new(
            Opts::new(
                "herald_consumer_lag_seconds",
                "Age of the oldest record read but not yet finished (0 when none), per partition.",
            ),
            &["group", "topic", "partition"],
        )
        .expect("valid metric");
        Self {
            gauge,
            since: Arc::default(),
            probed: Arc::default(),
        }
    }

    /// Hands `group`'s series for `topics` to a lag probe (see
    /// [`crate::lagprobe`]): from now on only [`Self::set_probed`] changes them.
    pub fn hand_to_probe(&self, group: &str, topics: &[String]) {
        let mut p = self.probed.lock().expect("lag lock");
        for t in topics {
            p.insert((group.to_string(), t.clone()));
        }
    }

    /// Whether a lag probe measures `group` on `topic`.
    pub fn is_probed(&self, group: &str, topic: &str) -> bool {
        self.probed
            .lock()
            .expect("lag lock")
            .contains(&(group.to_string(), topic.to_string()))
    }

    /// The lag probe's value: the record at the committed position has been
    /// waiting since `since_ms`; `None` when the group is caught up.
    pub fn set_probed(&self, group: &str, topic: &str, partition: i32, since_ms: Option<i64>) {
        self.since
            .lock()
            .expect("lag lock")
            .insert((group.to_string(), topic.to_string(), partition), since_ms);
    }

    /// The oldest unfinished record of a partition has been waiting since
    /// `since_ms`; `None` when the partition has nothing unfinished.
    /// Ignored for topics a lag probe measures.
    pub fn set(&self, group: &str, topic: &str, partition: i32, since_ms: Option<i64>) {
        if self.is_probed(group, topic) {
            return;
        }
        self.since
            .lock()
            .expect("lag lock")
            .insert((group.to_string(), topic.to_string(), partition), since_ms);
    }

    /// Stops reporting a partition (it was revoked; its new owner reports it).
    /// Ignored for topics a lag probe measures (every replica reports them).
    pub fn remove(&self, group: &str, topic: &str, partition: i32) {
        if self.is_probed(group, topic) {
            return;
        }
        self.since.lock().expect("lag lock").remove(&(
            group.to_string(),
            topic.to_string(),
            partition,
        ));
    }

    /// Replaces everything reported for `group` with `parts` (topics a lag
    /// probe measures excepted).
    pub fn replace(
        &self,
        group: &str,
        parts: impl IntoIterator<Item = (String, i32, Option<i64>)>,
    ) {
        let probed = self.probed.lock().expect("lag lock").clone();
        let is_probed = |t: &str| probed.contains(&(group.to_string(), t.to_string()));
        let mut m = self.since.lock().expect("lag lock");
        m.retain(|(g, t, _), _| g != group || is_probed(t));
        for (topic, partition, since) in parts {
            if !is_probed(&topic) {
                m.insert((group.to_string(), topic, partition), since);
            }
        }
    }
}

impl Collector for OldestUnprocessed {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now = crate::time::now_ms();
        // Held until the gauge is read, so concurrent scrapes do not see
        // each other's half-filled gauge.
        let since = self.since.lock().expect("lag lock");
        self.gauge.reset();
        for ((group, topic, partition), since) in since.iter() {
            let age = since.map_or(0, |t| (now - t).max(0));
            self.gauge
                .with_label_values(&[group.as_str(), topic.as_str(), &partition.to_string()])
                .set(age as f64 / 1000.0);
        }
        self.gauge.collect()
    }
}

#[derive(Clone)]
pub struct RouterMetrics {
    pub registry: Registry,
    /// Every input record, valid or not; exported from start-up so that
    /// "nothing arrives" shows as a flat line rather than no data.
    pub records_read: IntCounter,
    pub received: IntCounterVec,
    pub routed: IntCounterVec,
    pub unrouted: IntCounterVec,
    pub deduplicated: IntCounterVec,
    pub invalid: IntCounterVec,
    pub transactions: IntCounterVec,
    pub batch_duration: HistogramVec,
    pub lag: LagMetrics,
    /// Dedupe restores that did not finish (routing went on without them).
    pub dedupe_restore_failures: IntCounter,
    /// Schema Registry lookups by outcome (fetched, not_found, unavailable,
    /// refused).
    pub schema_lookups: IntCounterVec,
    /// How long the current batch has waited for an unreachable schema
    /// registry; 0 when it is not waiting.
    pub registry_wait: IntGauge,
}

impl RouterMetrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let records_read = IntCounter::new(
            "herald_router_records_read_total",
            "Records read from the input topic, valid or not.",
        )
        .expect("valid metric");
        r.register(Box::new(records_read.clone()))
            .expect("unique metric");
        let dedupe_restore_failures = IntCounter::new(
            "herald_router_dedupe_restore_failures_total",
            "Dedupe state restores from the changelog that did not finish.",
        )
        .expect("valid metric");
        r.register(Box::new(dedupe_restore_failures.clone()))
            .expect("unique metric");
        let registry_wait = IntGauge::new(
            "herald_router_registry_wait_seconds",
            "How long the current batch has waited for an unreachable schema registry (0: not waiting).",
        )
        .expect("valid metric");
        r.register(Box::new(registry_wait.clone()))
            .expect("unique metric");
        let m = Self {
            records_read,
            dedupe_restore_failures,
            registry_wait,
            schema_lookups: counter(
                &r,
                "herald_router_registry_lookups_total",
                "Schema Registry lookups of writer schema ids, by outcome.",
                &["outcome"],
            ),
            received: counter(
                &r,
                "herald_router_events_received_total",
                "Valid events read from the input topic.",
                &["event_type"],
            ),
            routed: counter(
                &r,
                "herald_router_deliveries_routed_total",
                "Deliveries produced onto destination topics.",
                &["destination"],
            ),
            unrouted: counter(
                &r,
                "herald_router_events_unrouted_total",
                "Valid events no destination's rules matched.",
                &["event_type"],
            ),
            deduplicated: counter(
                &r,
                "herald_router_events_deduplicated_total",
                "Events dropped as copies of one seen within the dedupe window.",
                &["event_type"],
            ),
            invalid: counter(
                &r,
                "herald_router_events_invalid_total",
                "Input records sent to the invalid topic.",
                &["reason"],
            ),
            transactions: counter(
                &r,
                "herald_router_transactions_total",
                "Router transactions by outcome (commit, abort).",
                &["outcome"],
            ),
            batch_duration: histogram(
                &r,
                "herald_router_batch_duration_seconds",
                "Time to route one batch, transaction commit included.",
                &[],
                latency_buckets(),
            ),
            lag: LagMetrics::new(&r),
            registry: r,
        };
        // Known label values start at 0, so rates and ratios exist before
        // the first abort.
        for outcome in ["commit", "abort"] {
            m.transactions.with_label_values(&[outcome]);
        }
        for outcome in ["fetched", "not_found", "unavailable", "refused"] {
            m.schema_lookups.with_label_values(&[outcome]);
        }
        // Decode reasons at 0 from start-up: an alert on the first invalid
        // record of a reason sees it as an increase, not a new series.
        for reason in crate::codec::INVALID_REASONS {
            m.invalid.with_label_values(&[reason]);
        }
        m.batch_duration.with_label_values(&[] as &[&str]);
        m
    }
}

/// `herald-log`'s metrics.
#[derive(Clone)]
pub struct LogMetrics {
    pub registry: Registry,
    /// Records indexed by kind (routed, attempt, dead, action, undecodable).
    pub indexed: IntCounterVec,
    /// Pairs in flight past their budget at the last periodic reconcile.
    pub stragglers: IntGauge,
}

impl LogMetrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let stragglers = IntGauge::new(
            "herald_log_reconcile_straggling_deliveries",
            "(event, destination) pairs routed in log.reconcile_window (default: the longest destination budget + 1h) and still in flight past their destination's retry budget, at the last periodic reconcile.",
        )
        .expect("valid metric");
        r.register(Box::new(stragglers.clone()))
            .expect("unique metric");
        let m = Self {
            indexed: counter(
                &r,
                "herald_log_indexed_records_total",
                "Records herald-log read into its index, by kind (routed, attempt, dead, action; undecodable: skipped).",
                &["kind"],
            ),
            stragglers,
            registry: r,
        };
        for k in ["routed", "attempt", "dead", "action", "undecodable"] {
            m.indexed.with_label_values(&[k]);
        }
        m
    }
}

impl Default for LogMetrics {
    fn default() -> Self {
        Self::new()
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
    /// Attempts by outcome per event type and tenant (bounded labels).
    pub attempts_by_event: IntCounterVec,
    pub delivery_duration: HistogramVec,
    pub end_to_end: HistogramVec,
    pub retries_scheduled: IntCounterVec,
    pub dead_lettered: IntCounterVec,
    pub in_flight: IntGaugeVec,
    pub circuit_state: IntGaugeVec,
    pub concurrency_limit: IntGaugeVec,
    pub rate_limit_waits: IntCounterVec,
    pub redeliveries_suppressed: IntCounterVec,
    pub waiting: IntGaugeVec,
    /// Records in each retry tier not yet finished by the adapter group.
    pub retry_depth: IntGaugeVec,
    /// Records retained on the DLQ topic.
    pub dlq_depth: IntGaugeVec,
    /// Offset commits the broker refused (retried on the next tick).
    pub commit_failures: IntCounterVec,
    /// Outcome records Kafka refused for good (too large), by record role.
    pub outcome_records_refused: IntCounterVec,
    /// Assigned, flowing partitions that stopped being fetched, by the
    /// action taken (seek, rejoin).
    pub partition_stalls: IntCounterVec,
    pub lag: LagMetrics,
}

impl AdapterMetrics {
    pub fn new() -> Self {
        let r = Registry::new();
        Self {
            attempts: counter(&r, "herald_adapter_attempts_total", "Delivery attempts by outcome and error class.", &["destination", "outcome", "error_class"]),
            attempts_by_event: counter(&r, "herald_adapter_attempts_by_event_total", "Delivery attempts by outcome, event type and tenant (bounded: the values the destination's routing names, or the first seen; the rest `other`).", &["destination", "event_type", "tenant", "outcome"]),
            delivery_duration: histogram(&r, "herald_adapter_delivery_duration_seconds", "Duration of one HTTP delivery attempt.", &["destination"], latency_buckets()),
            end_to_end: histogram(&r, "herald_adapter_end_to_end_seconds", "From the event's production (the input record's timestamp; routing, for deliveries routed before it was carried) to successful delivery, retries included.", &["destination"], end_to_end_buckets()),
            retries_scheduled: counter(&r, "herald_adapter_retries_scheduled_total", "Deliveries moved to a retry tier.", &["destination", "tier"]),
            dead_lettered: counter(&r, "herald_adapter_dead_lettered_total", "Deliveries moved to the DLQ, by reason.", &["destination", "reason"]),
            in_flight: gauge(&r, "herald_adapter_in_flight_deliveries", "Deliveries currently being attempted.", &["destination"]),
            concurrency_limit: gauge(&r, "herald_adapter_concurrency_limit_deliveries", "Current adaptive limit of deliveries in flight (the configured concurrency is its ceiling).", &["destination"]),
            circuit_state: gauge(&r, "herald_adapter_circuit_state", "Circuit breaker state: 0 closed, 1 half-open (probing), 2 open (deliveries paused).", &["destination"]),
            rate_limit_waits: counter(&r, "herald_adapter_rate_limit_waits_total", "Times a delivery had to wait for the destination's rate limit.", &["destination"]),
            redeliveries_suppressed: counter(&r, "herald_adapter_redeliveries_suppressed_total", "Records skipped because the ledger shows the event already delivered (after a crash or rebalance).", &["destination"]),
            waiting: gauge(&r, "herald_adapter_retry_waiting_records", "Retry-tier records held in memory until due.", &["destination"]),
            retry_depth: gauge(&r, "herald_adapter_retry_depth_records", "Records in a retry tier not yet finished by the destination's adapter group (high watermark minus committed offset).", &["destination", "tier"]),
            dlq_depth: gauge(&r, "herald_adapter_dlq_depth_records", "Records retained on the destination's DLQ topic (high minus low watermark); replay does not remove them, retention does.", &["destination"]),
            commit_failures: counter(&r, "herald_adapter_commit_failures_total", "Offset commits that failed (retried on the next commit tick; finished records may be delivered again if the adapter dies first).", &["destination"]),
            outcome_records_refused: counter(&r, "herald_adapter_outcome_records_refused_total", "Outcome records Kafka refused for good (too large for the topic), by role (retry, dlq, attempts, ledger); each is settled another way (a retry becomes a dead letter, a dead letter is truncated).", &["destination", "record"]),
            partition_stalls: counter(&r, "herald_adapter_partition_stalls_total", "Assigned partitions the adapter let flow that yielded no record for 30 s although one waited at the committed offset (the Kafka client stopped fetching them), by the action taken: seek to the committed offset, or rejoin the group with a new consumer.", &["destination", "action"]),
            lag: LagMetrics::new(&r),
            registry: r,
        }
    }
}

impl AdapterMetrics {
    /// Creates the series whose label values are known at start-up, at 0:
    /// a destination's first dead letter or retry then shows as an
    /// increase, and success ratios exist before the first success.
    /// `concurrency` seeds the adaptive limit gauge with its ceiling.
    pub fn init_destination(&self, destination: &str, tiers: &[String], concurrency: usize) {
        self.concurrency_limit
            .with_label_values(&[destination])
            .set(concurrency as i64);
        self.attempts
            .with_label_values(&[destination, "delivered", "none"]);
        for reason in crate::envelope::DlqReason::ALL {
            self.dead_lettered
                .with_label_values(&[destination, reason.as_str()]);
        }
        for tier in tiers {
            self.retries_scheduled
                .with_label_values(&[destination, tier.as_str()]);
            self.retry_depth
                .with_label_values(&[destination, tier.as_str()]);
        }
        self.dlq_depth.with_label_values(&[destination]);
        self.delivery_duration.with_label_values(&[destination]);
        self.end_to_end.with_label_values(&[destination]);
        self.in_flight.with_label_values(&[destination]);
        self.waiting.with_label_values(&[destination]);
        // Closed until the breaker says otherwise.
        self.circuit_state.with_label_values(&[destination]);
        self.rate_limit_waits.with_label_values(&[destination]);
        self.redeliveries_suppressed
            .with_label_values(&[destination]);
        self.commit_failures.with_label_values(&[destination]);
        for action in ["seek", "rejoin"] {
            self.partition_stalls
                .with_label_values(&[destination, action]);
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
    use prometheus::proto::MetricType;
    use std::collections::BTreeSet;

    #[test]
    fn bounded_label_caps_values() {
        let l = BoundedLabel::new(2);
        assert_eq!(l.get("a"), "a");
        assert_eq!(l.get("b"), "b");
        assert_eq!(l.get("c"), OTHER);
        assert_eq!(l.get("a"), "a");
    }

    #[test]
    fn config_bounded_labels_keep_named_values_and_cap_the_rest() {
        let named = BoundedLabel::for_config(&["order.created".into(), "payment.failed".into()], 2);
        assert_eq!(named.get("order.created"), "order.created");
        assert_eq!(
            named.get("user.signed_up"),
            OTHER,
            "closed set: only the named"
        );
        let open = BoundedLabel::for_config(&["order.created".into(), "user.*".into()], 2);
        assert_eq!(open.get("user.a"), "user.a");
        assert_eq!(open.get("user.b"), "user.b");
        assert_eq!(
            open.get("user.c"),
            OTHER,
            "pattern: the first 2 seen, then other"
        );
        assert_eq!(
            open.get("order.created"),
            "order.created",
            "named always pass"
        );
        let any = BoundedLabel::for_config(&[], 1);
        assert_eq!(any.get("acme"), "acme");
        assert_eq!(any.get("globex"), OTHER);
    }

    #[test]
    fn names_follow_the_convention() {
        for reg in touched() {
            for fam in reg.gather() {
                let n = fam.name();
                assert!(n.starts_with("herald_"), "{n}");
                // `_state`: an enumerated gauge (circuit state), documented values.
                let unit = [
                    "_seconds",
                    "_offsets",
                    "_records",
                    "_deliveries",
                    "_requests",
                    "_state",
                ];
                match fam.get_field_type() {
                    MetricType::COUNTER => {
                        assert!(n.ends_with("_total"), "{n}: counters end in _total")
                    }
                    _ => assert!(
                        unit.iter().any(|u| n.ends_with(u)),
                        "{n}: name ends in a unit {unit:?}"
                    ),
                }
            }
        }
        let m = AdapterMetrics::new();
        m.attempts
            .with_label_values(&["d", "delivered", "none"])
            .inc();
        let text = render(&m.registry);
        assert!(text.contains("herald_adapter_attempts_total{destination=\"d\",error_class=\"none\",outcome=\"delivered\"} 1"), "{text}");
    }

    fn any_labels(desc: &[&Desc]) -> Vec<&'static str> {
        vec!["x"; desc[0].variable_labels.len()]
    }

    fn counter(v: &IntCounterVec) {
        v.with_label_values(&any_labels(&v.desc())).inc();
    }

    fn gauge(v: &IntGaugeVec) {
        v.with_label_values(&any_labels(&v.desc())).set(1);
    }

    fn histogram(v: &HistogramVec) {
        v.with_label_values(&any_labels(&v.desc())).observe(0.1);
    }

    fn lag(l: &LagMetrics) {
        let LagMetrics {
            offsets,
            seconds,
            headroom,
            retention,
            expired_unconsumed,
            offset_resets,
        } = l;
        gauge(offsets);
        seconds.set("g", "t", 0, Some(crate::time::now_ms()));
        headroom.set("g", "t", 0, Some(1_000), None);
        retention.with_label_values(&["t"]).set(1.0);
        counter(expired_unconsumed);
        counter(offset_resets);
    }

    /// Both registries with a series in every metric. The structs are
    /// destructured without `..`, so a new field does not compile until it
    /// is touched here — and then the table test sees it.
    fn touched() -> Vec<Registry> {
        let r = RouterMetrics::new();
        let RouterMetrics {
            registry: _,
            records_read,
            received,
            deduplicated,
            routed,
            unrouted,
            invalid,
            transactions,
            batch_duration,
            lag: router_lag,
            dedupe_restore_failures,
            schema_lookups,
            registry_wait,
        } = &r;
        records_read.inc();
        dedupe_restore_failures.inc();
        registry_wait.set(1);
        for c in [
            schema_lookups,
            received,
            deduplicated,
            routed,
            unrouted,
            invalid,
            transactions,
        ] {
            counter(c);
        }
        histogram(batch_duration);
        lag(router_lag);
        let a = AdapterMetrics::new();
        let AdapterMetrics {
            registry: _,
            attempts,
            attempts_by_event,
            delivery_duration,
            end_to_end,
            retries_scheduled,
            dead_lettered,
            in_flight,
            circuit_state,
            concurrency_limit,
            rate_limit_waits,
            redeliveries_suppressed,
            waiting,
            retry_depth,
            dlq_depth,
            commit_failures,
            outcome_records_refused,
            partition_stalls,
            lag: adapter_lag,
        } = &a;
        for c in [
            attempts,
            attempts_by_event,
            retries_scheduled,
            dead_lettered,
            rate_limit_waits,
            redeliveries_suppressed,
            commit_failures,
            outcome_records_refused,
            partition_stalls,
        ] {
            counter(c);
        }
        for h in [delivery_duration, end_to_end] {
            histogram(h);
        }
        for g in [
            in_flight,
            circuit_state,
            concurrency_limit,
            waiting,
            retry_depth,
            dlq_depth,
        ] {
            gauge(g);
        }
        lag(adapter_lag);
        let g = GatewayMetrics::new([("s", 1)]);
        let l = LogMetrics::new();
        let LogMetrics {
            registry: _,
            indexed,
            stragglers,
        } = &l;
        counter(indexed);
        stragglers.set(1);
        vec![r.registry, a.registry, g.registry, l.registry]
    }

    /// (name, type, sorted labels) of every metric the services export.
    fn exported() -> BTreeSet<(String, String, Vec<String>)> {
        let mut out = BTreeSet::new();
        for reg in touched() {
            for fam in reg.gather() {
                let kind = match fam.get_field_type() {
                    MetricType::COUNTER => "counter",
                    MetricType::GAUGE => "gauge",
                    MetricType::HISTOGRAM => "histogram",
                    other => panic!("{}: unexpected type {other:?}", fam.name()),
                };
                for m in fam.get_metric() {
                    let mut labels: Vec<String> =
                        m.get_label().iter().map(|l| l.name().to_string()).collect();
                    labels.sort();
                    out.insert((fam.name().to_string(), kind.to_string(), labels));
                }
            }
        }
        out
    }

    /// Rows of the table in docs/metrics.md: `| `name` | type | `a`, `b` | meaning |`.
    fn documented() -> BTreeSet<(String, String, Vec<String>)> {
        let doc = include_str!("../../../../docs/metrics.md");
        let mut out = BTreeSet::new();
        for line in doc.lines() {
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            if cells.len() < 4 || !cells[0].starts_with("`herald_") {
                continue;
            }
            let name = cells[0].trim_matches('`').to_string();
            let mut labels: Vec<String> = cells[2]
                .split(',')
                .map(|l| l.trim().trim_matches('`').to_string())
                .filter(|l| !l.is_empty() && l != "—" && l != "-")
                .collect();
            labels.sort();
            assert!(
                out.insert((name.clone(), cells[1].to_string(), labels)),
                "{name} is listed twice in docs/metrics.md"
            );
        }
        out
    }

    #[test]
    fn docs_metrics_table_matches_the_code() {
        let (code, doc) = (exported(), documented());
        let missing: Vec<_> = code.difference(&doc).collect();
        let stale: Vec<_> = doc.difference(&code).collect();
        assert!(
            missing.is_empty() && stale.is_empty(),
            "docs/metrics.md and the registered metrics disagree.\nIn the code but not the table (name, type, labels): {missing:#?}\nIn the table but not the code: {stale:#?}"
        );
    }

    #[test]
    fn lag_seconds_is_computed_at_scrape_time() {
        let m = RouterMetrics::new();
        m.lag
            .seconds
            .set("g", "t", 0, Some(crate::time::now_ms() - 5_000));
        m.lag.seconds.set("g", "t", 1, None);
        let text = render(&m.registry);
        let value = |p: &str| -> f64 {
            let prefix = format!(
                "herald_consumer_lag_seconds{{group=\"g\",partition=\"{p}\",topic=\"t\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .unwrap_or_else(|| panic!("{text}"))
                .parse()
                .unwrap()
        };
        assert!((5.0..60.0).contains(&value("0")), "{text}");
        assert_eq!(value("1"), 0.0);
        m.lag.seconds.replace("g", [("t".to_string(), 2, None)]);
        let text = render(&m.registry);
        assert!(
            !text.contains("partition=\"0\"") && text.contains("partition=\"2\""),
            "{text}"
        );
    }

    /// Once a lag probe measures a topic, the service's own lag calls for
    /// it are ignored (the probe's committed-position values win) and the
    /// statistics path keeps its hands off the probe's offsets.
    #[test]
    fn a_probed_topic_belongs_to_the_probe() {
        let m = AdapterMetrics::new();
        let lag = &m.lag;
        lag.seconds.hand_to_probe("g", &["t".to_string()]);
        lag.seconds
            .set_probed("g", "t", 0, Some(crate::time::now_ms() - 10_000));
        lag.seconds.set("g", "t", 0, None);
        lag.seconds.remove("g", "t", 0);
        lag.seconds.set("g", "other", 0, None);
        lag.offsets.with_label_values(&["g", "t", "0"]).set(7);
        lag.offsets.with_label_values(&["g", "other", "0"]).set(3);
        lag.reset_unprobed_offsets();
        lag.headroom.set(
            "g",
            "t",
            0,
            Some(60_000),
            Some(crate::time::now_ms() - 10_000),
        );
        lag.headroom.set("g", "t", 1, Some(60_000), None);
        let text = render(&m.registry);
        let value = |metric: &str, topic: &str, p: &str| -> Option<f64> {
            let prefix = format!("{metric}{{group=\"g\",partition=\"{p}\",topic=\"{topic}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .map(|v| v.parse().unwrap())
        };
        let age = value("herald_consumer_lag_seconds", "t", "0").unwrap();
        assert!((10.0..60.0).contains(&age), "{text}");
        assert_eq!(
            value("herald_consumer_lag_seconds", "other", "0"),
            Some(0.0)
        );
        assert_eq!(value("herald_consumer_lag_offsets", "t", "0"), Some(7.0));
        assert_eq!(value("herald_consumer_lag_offsets", "other", "0"), None);
        // 60 s retention, record 10 s old: at most 50 s left; caught up: 60 s.
        let h = value("herald_consumer_retention_headroom_seconds", "t", "0").unwrap();
        assert!((0.0..=50.0).contains(&h), "{text}");
        assert_eq!(
            value("herald_consumer_retention_headroom_seconds", "t", "1"),
            Some(60.0)
        );
    }

    #[test]
    fn known_series_start_at_zero() {
        let a = AdapterMetrics::new();
        a.init_destination("d", &["1s".to_string()], 16);
        let text = render(&a.registry);
        for s in [
            "herald_adapter_dead_lettered_total{destination=\"d\",reason=\"permanent\"} 0",
            "herald_adapter_retries_scheduled_total{destination=\"d\",tier=\"1s\"} 0",
            "herald_adapter_attempts_total{destination=\"d\",error_class=\"none\",outcome=\"delivered\"} 0",
            "herald_adapter_circuit_state{destination=\"d\"} 0",
            "herald_adapter_rate_limit_waits_total{destination=\"d\"} 0",
        ] {
            assert!(text.contains(s), "{s} missing from:\n{text}");
        }
        let text = render(&RouterMetrics::new().registry);
        assert!(
            text.contains("herald_router_records_read_total 0"),
            "{text}"
        );
        assert!(
            text.contains("herald_router_transactions_total{outcome=\"abort\"} 0"),
            "{text}"
        );
    }
}
