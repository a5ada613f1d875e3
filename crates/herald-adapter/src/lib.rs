//! The adapter: one process (and consumer group) per destination. It reads
//! the destination topic and its retry tiers, attempts each delivery over
//! HTTP with bounded concurrency, and makes every outcome durable — attempt
//! log, next retry tier or DLQ, ledger — before the record's offset may be
//! committed. Offsets are committed only below the lowest unfinished record.
//!
//! A retry-tier record carries its due time; a tier partition whose head is
//! not yet due is paused and its records held in memory until due.

mod circuit;
mod concurrency;
mod depth;
pub mod kinds;
mod ledger;
mod offsets;
pub mod outcome;
mod ratelimit;

use futures::FutureExt;
use herald_core::admin::{self, Readiness};
use herald_core::classify::{
    classify_status, classify_transport, parse_retry_after, ErrorClass, TransportError, Verdict,
};
use herald_core::codec::AvroRecord;
use herald_core::config::{Config, DestinationConfig};
use herald_core::envelope::{Delivery, DlqReason};
use herald_core::headers as h;
use herald_core::kafka::{add_header, client_config, header_str, producer_config, LagReporter};
use herald_core::metrics::AdapterMetrics;
use herald_core::otel::{self, TraceHeaders};
use herald_core::retry::RetryPolicy;
use herald_core::time::{compact_duration, now_ms};
use herald_core::topics::TopicNames;
use offsets::{OffsetTracker, Tp};
use outcome::{AttemptResult, Next, Record};
use rand::SeedableRng;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientContext, Statistics};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn, Instrument, Span};

/// State shared between the loop and the rebalance callbacks.
#[derive(Default)]
struct Shared {
    offsets: OffsetTracker,
    /// Tier records not yet due, per paused partition, in offset order.
    held: HashMap<Tp, VecDeque<(i64, OwnedMessage)>>,
    /// Events already delivered, for records this adapter may see again.
    ledger: ledger::Ledger,
}

struct AdapterContext {
    shared: Arc<Mutex<Shared>>,
    /// For reading the ledger when partitions are assigned.
    config: Config,
    destination: String,
    lag: LagReporter,
    assigned: Arc<AtomicBool>,
}

impl ClientContext for AdapterContext {
    fn stats(&self, stats: Statistics) {
        self.lag.record(&stats);
    }
}

impl ConsumerContext for AdapterContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let tps: Vec<Tp> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            let commits = {
                let mut s = self.shared.lock().expect("adapter state lock");
                let dest_topic = self.config.topic_names().dest(&self.destination);
                for tp in &tps {
                    s.held.remove(tp);
                    if tp.0 == dest_topic {
                        s.ledger.forget(tp.1);
                    }
                }
                s.offsets.revoke(&tps)
            };
            self.lag.revoked(tpl);
            // Hand over cleanly: commit what is finished before the new
            // owner starts reading. Unfinished records are re-delivered.
            if let Err(e) = commit_list(consumer, &commits, CommitMode::Sync) {
                warn!(error = %e, "Could not commit offsets of revoked partitions.");
            }
            info!(
                partitions = tps.len(),
                "Partitions revoked from the adapter."
            );
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.restore_ledger(consumer, tpl);
            self.lag.assigned(tpl);
            self.assigned.store(true, Ordering::Release);
            info!(
                partitions = tpl.count(),
                "Partitions assigned to the adapter."
            );
        }
    }
}

impl AdapterContext {
    /// Loads the ledger entries that can describe the uncommitted records of
    /// newly assigned partitions. On failure the adapter goes on: at worst
    /// those records are delivered again (receivers de-duplicate on
    /// `webhook-id`).
    fn restore_ledger(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let restored = consumer
            .committed_offsets(tpl.clone(), Duration::from_secs(10))
            .map_err(anyhow::Error::from)
            .and_then(|committed| ledger::restore(&self.config, &self.destination, &committed));
        match restored {
            Ok(found) => {
                let mut s = self.shared.lock().expect("adapter state lock");
                let n: usize = found.values().map(HashSet::len).sum();
                for (partition, ids) in found {
                    s.ledger.load(partition, ids);
                }
                if n > 0 {
                    info!(delivered = n, "Loaded recently delivered events from the ledger; they will not be sent again.");
                }
            }
            Err(e) => {
                warn!(error = %e, "Could not read the ledger; records in flight before this assignment may be delivered twice.")
            }
        }
    }
}

fn commit_list<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    commits: &[(Tp, i64)],
    mode: CommitMode,
) -> rdkafka::error::KafkaResult<()> {
    if commits.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in commits {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    consumer.commit(&tpl, mode)
}

/// Everything a delivery task needs, shared by all of them.
struct Deliverer {
    names: TopicNames,
    destination: String,
    /// Consumer group, for the attempt spans.
    group: String,
    policy: RetryPolicy,
    client: reqwest::Client,
    request: Box<dyn kinds::RequestBuilder>,
    producer: FutureProducer,
    metrics: AdapterMetrics,
    stopping: AtomicBool,
}

/// How many deliveries may have finished their HTTP attempt but not yet
/// made the outcome durable. The concurrency limit bounds only the HTTP
/// attempts (it protects the destination); the outcome writes wait for
/// Kafka acknowledgements (linger plus `acks=all`, milliseconds each), and
/// holding a concurrency slot through them capped throughput at about
/// `concurrency / 8 ms`. This bound keeps memory in check if Kafka slows.
const OUTCOMES_IN_FLIGHT: usize = 1024;

/// Frees a concurrency slot when dropped — after the HTTP attempt, or when
/// the task ends early (poison record, panic) — and reports what the
/// attempt said about the destination, so the circuit breaker and the
/// adaptive limit react at once rather than after the outcome writes.
struct Slot {
    tx: mpsc::UnboundedSender<SlotReport>,
    report: SlotReport,
}

#[derive(Debug, Clone, Copy)]
struct SlotReport {
    health: circuit::Health,
    latency: Duration,
    /// Whether the concurrency limit was reached when the attempt started.
    saturated: bool,
}

impl Slot {
    fn new(tx: mpsc::UnboundedSender<SlotReport>, saturated: bool) -> Self {
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

/// What an attempt's verdict says about the destination's health.
fn health_of(verdict: &Verdict) -> circuit::Health {
    match verdict {
        Verdict::Success { .. } => circuit::Health::Up,
        Verdict::Failure { class, .. } => match class {
            ErrorClass::Timeout
            | ErrorClass::Connect
            | ErrorClass::Http429
            | ErrorClass::Http5xx => circuit::Health::Down,
            _ => circuit::Health::Neutral,
        },
    }
}

/// Sent by a delivery task once its outcome is durable.
struct Done {
    tp: Tp,
    offset: i64,
}

/// Runs the adapter for `destination` until SIGTERM or SIGINT.
pub async fn run(config: Config, destination: String) -> anyhow::Result<()> {
    let dc = config.destination(&destination)?.clone();
    let names = config.topic_names();
    let group = names.adapter_group(&destination);
    let metrics = AdapterMetrics::new();
    let tier_labels: Vec<String> = dc
        .retry
        .tiers
        .iter()
        .map(|d| compact_duration(*d))
        .collect();
    metrics.init_destination(&destination, &tier_labels, dc.concurrency);
    let ready = Readiness::default();
    let addr = admin::serve(
        &config.adapter.listen,
        metrics.registry.clone(),
        ready.clone(),
    )
    .await?;
    info!(%addr, "Serving /metrics, /healthz and /readyz.");

    let shared = Arc::new(Mutex::new(Shared::default()));
    let assigned = Arc::new(AtomicBool::new(false));
    let consumer: StreamConsumer<AdapterContext> = client_config(&config)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("statistics.interval.ms", "5000")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create_with_context(AdapterContext {
            shared: shared.clone(),
            config: config.clone(),
            destination: destination.clone(),
            lag: LagReporter {
                group: group.clone(),
                metrics: metrics.lag.clone(),
                stored_positions: false,
            },
            assigned: assigned.clone(),
        })?;
    let mut topics = vec![names.dest(&destination)];
    topics.extend(dc.retry.tiers.iter().map(|d| names.retry(&destination, *d)));
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs)?;

    let producer: FutureProducer = producer_config(&config).create()?;
    let client = reqwest::Client::builder()
        .timeout(dc.timeout)
        .connect_timeout(dc.timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(dc.concurrency)
        .build()?;
    let deliverer = Arc::new(Deliverer {
        names: names.clone(),
        destination: destination.clone(),
        group: group.clone(),
        policy: dc.retry.policy(),
        client,
        request: kinds::build(&destination, &dc)?,
        producer,
        metrics: metrics.clone(),
        stopping: AtomicBool::new(false),
    });
    info!(destination = %destination, %group, topics = ?topics, concurrency = dc.concurrency, "Adapter started.");
    depth::DepthProbe::new(&config, &destination, &dc, metrics.clone())?.start()?;

    let tiers: HashSet<String> = topics[1..].iter().cloned().collect();
    let result = deliver_loop(
        &config, &dc, &consumer, &shared, &deliverer, &tiers, &ready, &assigned,
    )
    .await;
    ready.set(false);
    // Leave the group now rather than after the session times out.
    consumer.unsubscribe();
    info!("Adapter stopped.");
    result
}

#[allow(clippy::too_many_arguments)]
async fn deliver_loop(
    config: &Config,
    dc: &DestinationConfig,
    consumer: &StreamConsumer<AdapterContext>,
    shared: &Arc<Mutex<Shared>>,
    deliverer: &Arc<Deliverer>,
    tiers: &HashSet<String>,
    ready: &Readiness,
    assigned: &AtomicBool,
) -> anyhow::Result<()> {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let (slot_tx, mut slot_rx) = mpsc::unbounded_channel::<SlotReport>();
    // HTTP attempts in flight, and deliveries whose outcome is not durable yet.
    let mut in_flight = 0usize;
    let mut pending = 0usize;
    let mut ready_queue: VecDeque<OwnedMessage> = VecDeque::new();
    let mut commit_tick = tokio::time::interval(config.adapter.commit_interval);
    commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shutdown = herald_core_shutdown();
    tokio::pin!(shutdown);
    let dest = deliverer.destination.as_str();
    let mut breaker = circuit::Breaker::new(
        dc.circuit.failure_threshold,
        dc.circuit.cooldown,
        dc.circuit.max_cooldown,
    );
    let mut adaptive = concurrency::Adaptive::new(dc.concurrency, dc.adaptive_concurrency);
    let mut bucket = dc.rate_limit.as_ref().map(|rl| {
        let burst = rl.burst.unwrap_or(rl.per_second.ceil() as u32);
        ratelimit::TokenBucket::new(rl.per_second, burst, now_ms())
    });

    loop {
        ready.set(assigned.load(Ordering::Acquire));
        // Start whatever is ready while the breaker and the rate limit allow.
        let mut rate_wait: Option<Duration> = None;
        while in_flight < breaker.allowed_in_flight(adaptive.limit())
            && pending < OUTCOMES_IN_FLIGHT
            && !ready_queue.is_empty()
        {
            if let Some(b) = bucket.as_mut() {
                if !b.try_take(now_ms()) {
                    rate_wait = Some(b.wait(now_ms()).max(Duration::from_millis(1)));
                    deliverer
                        .metrics
                        .rate_limit_waits
                        .with_label_values(&[dest])
                        .inc();
                    break;
                }
            }
            let m = ready_queue.pop_front().expect("not empty");
            breaker.on_start();
            let saturated = in_flight + 1 >= adaptive.limit();
            spawn_delivery(
                deliverer.clone(),
                m,
                done_tx.clone(),
                Slot::new(slot_tx.clone(), saturated),
            );
            in_flight += 1;
            pending += 1;
        }
        deliverer
            .metrics
            .in_flight
            .with_label_values(&[dest])
            .set(in_flight as i64);
        let next_due = next_due(shared);
        // Keep polling while the circuit is open (partitions are paused) so
        // the group does not think this member is stuck.
        let circuit_open = matches!(breaker.state(), circuit::State::Open { .. });
        let room = ready_queue.is_empty()
            && (circuit_open
                || (in_flight < breaker.allowed_in_flight(adaptive.limit())
                    && pending < OUTCOMES_IN_FLIGHT));
        let open_until = match breaker.state() {
            circuit::State::Open { until } => Some(until),
            _ => None,
        };
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(report) = slot_rx.recv() => {
                in_flight -= 1;
                if let Some(state) = breaker.on_outcome(report.health, now_ms()) {
                    circuit_changed(consumer, shared, state, dest, &deliverer.metrics);
                }
                let signal = match report.health {
                    circuit::Health::Up => concurrency::Signal::Ok,
                    circuit::Health::Down => concurrency::Signal::BackPressure,
                    circuit::Health::Neutral => concurrency::Signal::None,
                };
                if adaptive.observe(signal, report.latency, report.saturated) {
                    deliverer.metrics.concurrency_limit.with_label_values(&[dest]).set(adaptive.limit() as i64);
                }
            }
            Some(done) = done_rx.recv() => {
                pending -= 1;
                shared.lock().expect("adapter state lock").offsets.finish(&done.tp, done.offset);
            }
            _ = sleep_until_ms(open_until), if open_until.is_some() => {
                if breaker.tick(now_ms()) {
                    circuit_changed(consumer, shared, breaker.state(), dest, &deliverer.metrics);
                }
            }
            _ = tokio::time::sleep(rate_wait.unwrap_or_default()), if rate_wait.is_some() => {}
            _ = commit_tick.tick() => {
                commit(consumer, shared);
                report_lag_seconds(shared, deliverer);
            }
            _ = sleep_until_ms(next_due), if next_due.is_some() => {
                release_due(consumer, shared, &mut ready_queue, dest, &deliverer.metrics);
            }
            msg = consumer.recv(), if room => match msg {
                Ok(m) => {
                    let m = m.detach();
                    let tp = (m.topic().to_string(), m.partition());
                    let mut s = shared.lock().expect("adapter state lock");
                    let written_at = m.timestamp().to_millis().unwrap_or_else(now_ms);
                    let event_id = header_str(&m, h::CE_ID).unwrap_or_default();
                    if s.ledger.is_delivered(m.partition(), event_id) {
                        // Delivered before a crash or rebalance, not committed then.
                        s.offsets.start(&tp, m.offset(), written_at);
                        s.offsets.finish(&tp, m.offset());
                        deliverer.metrics.redeliveries_suppressed.with_label_values(&[dest]).inc();
                        debug!(
                            event_id,
                            destination = dest,
                            attempt = header_str(&m, h::ATTEMPT).and_then(|a| a.parse::<i32>().ok()).map(|a| a + 1),
                            trace_id = header_str(&m, h::TRACEPARENT).and_then(otel::trace_id_of),
                            "Already delivered according to the ledger; skipped."
                        );
                        continue;
                    }
                    if circuit_open {
                        pause(consumer, &tp, true);
                    }
                    if tiers.contains(m.topic()) {
                        let due = header_str(&m, h::DUE_AT).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
                        // A tier record is only late once it is due.
                        s.offsets.start(&tp, m.offset(), written_at.max(due));
                        // Hold it when it is not due, or when earlier records
                        // of its partition are held (order within a tier).
                        let holding = s.held.get(&tp).is_some_and(|q| !q.is_empty());
                        if holding || due > now_ms() {
                            if !holding {
                                pause(consumer, &tp, true);
                            }
                            s.held.entry(tp.clone()).or_default().push_back((due, m));
                            deliverer.metrics.waiting.with_label_values(&[dest]).inc();
                            continue;
                        }
                    } else {
                        s.offsets.start(&tp, m.offset(), written_at);
                    }
                    drop(s);
                    ready_queue.push_back(m);
                }
                Err(e) => warn!(error = %e, "Consumer error."),
            }
        }
    }

    // Graceful stop: nothing new starts; in-flight work gets the grace period.
    info!(in_flight = pending, grace = ?config.adapter.shutdown_grace, "Shutting down: finishing in-flight deliveries.");
    let deadline = tokio::time::Instant::now() + config.adapter.shutdown_grace;
    while pending > 0 {
        match tokio::time::timeout_at(deadline, done_rx.recv()).await {
            Ok(Some(done)) => {
                pending -= 1;
                shared
                    .lock()
                    .expect("adapter state lock")
                    .offsets
                    .finish(&done.tp, done.offset);
            }
            _ => {
                warn!(in_flight = pending, "Grace period over; abandoning in-flight deliveries (they will be re-delivered).");
                break;
            }
        }
    }
    deliverer.stopping.store(true, Ordering::Release);
    let (commits, unfinished) = {
        let mut s = shared.lock().expect("adapter state lock");
        (s.offsets.take_commits(), s.offsets.unfinished())
    };
    info!(
        unfinished,
        "Committing finished offsets; unfinished records will be re-delivered to the next owner."
    );
    if let Err(e) = commit_list(consumer, &commits, CommitMode::Sync) {
        warn!(error = %e, "Final offset commit failed; finished records may be re-delivered.");
    }
    Ok(())
}

/// SIGTERM or SIGINT.
async fn herald_core_shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn next_due(shared: &Mutex<Shared>) -> Option<i64> {
    let s = shared.lock().expect("adapter state lock");
    s.held
        .values()
        .filter_map(|q| q.front().map(|(due, _)| *due))
        .min()
}

async fn sleep_until_ms(due: Option<i64>) {
    let wait = due.map(|d| d - now_ms()).unwrap_or(0).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

/// Moves due tier records to the ready queue; resumes partitions whose
/// held queue emptied.
fn release_due(
    consumer: &StreamConsumer<AdapterContext>,
    shared: &Mutex<Shared>,
    ready_queue: &mut VecDeque<OwnedMessage>,
    dest: &str,
    metrics: &AdapterMetrics,
) {
    let now = now_ms();
    let mut s = shared.lock().expect("adapter state lock");
    let mut emptied = Vec::new();
    for (tp, q) in s.held.iter_mut() {
        while q.front().is_some_and(|(due, _)| *due <= now) {
            let (_, m) = q.pop_front().expect("front exists");
            ready_queue.push_back(m);
            metrics.waiting.with_label_values(&[dest]).dec();
        }
        if q.is_empty() {
            emptied.push(tp.clone());
        }
    }
    for tp in emptied {
        s.held.remove(&tp);
        pause(consumer, &tp, false);
    }
}

fn pause(consumer: &StreamConsumer<AdapterContext>, tp: &Tp, pause: bool) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&tp.0, tp.1);
    let r = if pause {
        consumer.pause(&tpl)
    } else {
        consumer.resume(&tpl)
    };
    if let Err(e) = r {
        warn!(topic = %tp.0, partition = tp.1, pause, error = %e, "Could not pause/resume a tier partition.");
    } else {
        debug!(topic = %tp.0, partition = tp.1, pause, "Tier partition paused/resumed.");
    }
}

/// Applies a circuit transition: pause every assigned partition when it
/// opens (nothing is attempted, lag grows, no budget burns), resume when it
/// lets a probe through; tier partitions holding records stay paused.
fn circuit_changed(
    consumer: &StreamConsumer<AdapterContext>,
    shared: &Mutex<Shared>,
    state: circuit::State,
    dest: &str,
    metrics: &AdapterMetrics,
) {
    metrics
        .circuit_state
        .with_label_values(&[dest])
        .set(state.gauge());
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    let held: HashSet<Tp> = shared
        .lock()
        .expect("adapter state lock")
        .held
        .iter()
        .filter(|(_, q)| !q.is_empty())
        .map(|(tp, _)| tp.clone())
        .collect();
    match state {
        circuit::State::Open { until } => {
            warn!(
                destination = dest,
                retry_in_ms = until - now_ms(),
                "Circuit opened: the destination keeps failing; pausing deliveries."
            );
            for e in assignment.elements() {
                pause(consumer, &(e.topic().to_string(), e.partition()), true);
            }
        }
        circuit::State::HalfOpen { .. } => {
            info!(
                destination = dest,
                "Circuit half-open: sending one probe delivery."
            );
            for e in assignment.elements() {
                let tp = (e.topic().to_string(), e.partition());
                if !held.contains(&tp) {
                    pause(consumer, &tp, false);
                }
            }
        }
        circuit::State::Closed => info!(
            destination = dest,
            "Circuit closed: the destination recovered."
        ),
    }
}

/// Publishes, per partition, since when its oldest unfinished record has
/// been waiting. Under the state lock, so a partition revoked meanwhile is
/// not reported again.
fn report_lag_seconds(shared: &Mutex<Shared>, d: &Deliverer) {
    let s = shared.lock().expect("adapter state lock");
    for ((topic, partition), since) in s.offsets.oldest() {
        d.metrics
            .lag
            .seconds
            .set(&d.group, topic, *partition, since);
    }
}

fn commit(consumer: &StreamConsumer<AdapterContext>, shared: &Mutex<Shared>) {
    let commits = shared
        .lock()
        .expect("adapter state lock")
        .offsets
        .take_commits();
    if let Err(e) = commit_list(consumer, &commits, CommitMode::Async) {
        warn!(error = %e, "Offset commit failed; will retry on the next tick.");
    }
}

fn spawn_delivery(
    d: Arc<Deliverer>,
    m: OwnedMessage,
    done: mpsc::UnboundedSender<Done>,
    slot: Slot,
) {
    tokio::spawn(async move {
        let tp = (m.topic().to_string(), m.partition());
        let offset = m.offset();
        let span = otel::attempt_span(&m, &d.group, &d.destination);
        let durable = std::panic::AssertUnwindSafe(deliver(&d, &m, slot).instrument(span))
            .catch_unwind()
            .await;
        match durable {
            Ok(true) => {
                let _ = done.send(Done { tp, offset });
            }
            Ok(false) => {} // Not durable: the offset stays uncommitted.
            Err(_) => {
                error!(topic = %tp.0, partition = tp.1, offset, "A delivery task panicked; the record will be re-delivered after restart.")
            }
        }
    });
}

/// One attempt and its durable outcome. Returns whether the offset may be
/// committed.
async fn deliver(d: &Deliverer, m: &OwnedMessage, slot: Slot) -> bool {
    let key = m.key().map(<[u8]>::to_vec).unwrap_or_default();
    // The attempt span (see `spawn_delivery`); its context goes on the HTTP
    // request's parent and on every record written about this attempt.
    let span = Span::current();
    let delivery = match m.payload().map(Delivery::from_avro) {
        Some(Ok(dl)) => dl,
        other => {
            let why = match other {
                Some(Err(e)) => e.to_string(),
                _ => "record has no value".to_string(),
            };
            otel::record_error(&span, ErrorClass::Schema.as_str());
            return dead_letter_poison(d, m, key, &why).await;
        }
    };
    otel::record_event(&span, &delivery.event.id, Some(delivery.attempts + 1));
    let trace = otel::outgoing(&span, TraceHeaders::from_message(m).as_ref());
    let started = Instant::now();
    let result = attempt(d, &delivery, trace.as_ref()).await;
    let latency = started.elapsed();
    // The destination is done with us; the outcome write needs no slot.
    slot.release(health_of(&result.0), latency);
    let finished_at = now_ms();
    let dest = d.destination.as_str();
    d.metrics
        .delivery_duration
        .with_label_values(&[dest])
        .observe(latency.as_secs_f64());
    let (verdict, message) = result;
    if let Verdict::Failure { class, .. } = &verdict {
        otel::record_error(&span, class.as_str());
    }
    let result = AttemptResult {
        verdict,
        latency,
        message,
        finished_at,
    };
    let routed_at = delivery.routed_at;
    let event_id = delivery.event.id.clone();
    let attempt_no = delivery.attempts + 1;
    let (next, records) = {
        let mut rng = rand::rngs::StdRng::from_os_rng();
        outcome::plan(
            &d.names,
            &d.policy,
            delivery,
            key,
            trace.as_ref(),
            &result,
            &mut rng,
        )
    };
    // Ledger partition N covers delivery partition N (see `ledger`).
    let ledger_topic = d.names.ledger(&d.destination);
    let mut records = records;
    for r in records.iter_mut().filter(|r| r.topic == ledger_topic) {
        r.partition = Some(m.partition());
    }
    if !produce_all(d, records).await {
        return false;
    }
    let class = match &result.verdict {
        Verdict::Success { .. } => "none",
        Verdict::Failure { class, .. } => class.as_str(),
    };
    match &next {
        Next::Delivered => {
            d.metrics
                .attempts
                .with_label_values(&[dest, "delivered", class])
                .inc();
            d.metrics
                .end_to_end
                .with_label_values(&[dest])
                .observe((finished_at - routed_at).max(0) as f64 / 1000.0);
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

/// Performs the HTTP call under an HTTP client span and classifies it. The
/// request carries the client span's context (or `trace`, the attempt's,
/// when not exporting). The message is a truncated response excerpt or
/// transport error.
async fn attempt(
    d: &Deliverer,
    delivery: &Delivery,
    trace: Option<&TraceHeaders>,
) -> (Verdict, String) {
    let mut request = match d.request.build(&d.client, delivery).build() {
        Ok(r) => r,
        Err(e) => return transport_failure(&e),
    };
    let span = http_span(&request);
    if let Some(t) = otel::outgoing(&span, trace) {
        set_trace_headers(request.headers_mut(), &t);
    }
    let exchange = async {
        match d.client.execute(request).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                otel::record_http_status(&span, status);
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let verdict = classify_status(status, retry_after);
                let excerpt = match &verdict {
                    Verdict::Success { .. } => String::new(),
                    // The body of a failure explains it; read a bounded amount.
                    Verdict::Failure { .. } => match resp.bytes().await {
                        Ok(b) => h::truncate(
                            &String::from_utf8_lossy(&b[..b.len().min(2048)]),
                            h::MAX_ERROR_MESSAGE,
                        ),
                        Err(_) => String::new(),
                    },
                };
                (verdict, excerpt)
            }
            Err(e) => {
                let failure = transport_failure(&e);
                if let Verdict::Failure { class, .. } = &failure.0 {
                    otel::record_error(&span, class.as_str());
                }
                failure
            }
        }
    };
    exchange.instrument(span.clone()).await
}

fn transport_failure(e: &reqwest::Error) -> (Verdict, String) {
    let kind = if e.is_timeout() {
        TransportError::Timeout
    } else {
        TransportError::Connect
    };
    (
        classify_transport(kind),
        h::truncate(&error_chain(e), h::MAX_ERROR_MESSAGE),
    )
}

/// The HTTP client span of one request (disabled when not exporting). Its
/// `url.full` has no credentials, query or fragment: those may hold secrets.
fn http_span(r: &reqwest::Request) -> Span {
    if !otel::enabled() {
        return Span::none();
    }
    let mut url = r.url().clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    otel::http_client_span(
        r.method().as_str(),
        url.as_str(),
        url.host_str(),
        url.port_or_known_default(),
    )
}

fn set_trace_headers(headers: &mut reqwest::header::HeaderMap, t: &TraceHeaders) {
    use reqwest::header::{HeaderName, HeaderValue};
    if let Ok(v) = HeaderValue::from_str(&t.traceparent) {
        headers.insert(HeaderName::from_static(h::TRACEPARENT), v);
    }
    if let Some(Ok(v)) = t.tracestate.as_deref().map(HeaderValue::from_str) {
        headers.insert(HeaderName::from_static(h::TRACESTATE), v);
    }
}

/// The error with its causes, without the URL (it may carry credentials).
fn error_chain(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "request timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
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
    hs = outcome::error_headers(hs, herald_core::classify::ErrorClass::Schema, None, why);
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
    let ok = produce_all(d, vec![rec]).await;
    if ok {
        d.metrics
            .dead_lettered
            .with_label_values(&[&d.destination, DlqReason::Poison.as_str()])
            .inc();
    }
    ok
}

/// Produces every record, retrying transient failures, until all are
/// acknowledged. Gives up only when the adapter is stopping, in which case
/// the input offset stays uncommitted and the record is re-delivered.
async fn produce_all(d: &Deliverer, records: Vec<Record>) -> bool {
    let sends = records.iter().map(|r| async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut fr = FutureRecord::to(&r.topic).key(&r.key).headers(r.headers.clone());
            if let Some(v) = &r.value {
                fr = fr.payload(v);
            }
            if let Some(p) = r.partition {
                fr = fr.partition(p);
            }
            match d.producer.send(fr, Duration::from_secs(30)).await {
                Ok(_) => return true,
                Err((e, _)) => {
                    if d.stopping.load(Ordering::Acquire) {
                        return false;
                    }
                    error!(topic = %r.topic, error = %e, "Could not write a delivery outcome; retrying.");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    });
    futures::future::join_all(sends)
        .await
        .into_iter()
        .all(|ok| ok)
}
