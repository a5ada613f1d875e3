//! The router: reads product events from the input topic, validates them,
//! and writes one Delivery per matching destination — or the record itself
//! to the invalid topic — in Kafka transactions that also commit the input
//! offsets, so a crash neither loses nor re-routes an event.
//!
//! librdkafka's transactional calls block, so the loop runs on its own
//! thread; the async runtime only serves the admin endpoints and signals.

mod dedupe;
mod route;

pub use route::{route_record, Output};

use dedupe::Dedupe;
use herald_core::admin::{self, Readiness};
use herald_core::config::Config;
use herald_core::kafka::{client_config, producer_config, LagReporter};
use herald_core::metrics::{BoundedLabel, RouterMetrics};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientContext, Statistics};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

const TXN_TIMEOUT: Duration = Duration::from_secs(30);

struct RouterContext {
    lag: LagReporter,
    assigned: Arc<AtomicBool>,
    /// Dedupe state and how to restore it; `None` when dedupe is off.
    dedupe: Option<(Arc<Mutex<Dedupe>>, Config)>,
}

impl ClientContext for RouterContext {
    fn stats(&self, stats: Statistics) {
        self.lag.record(&stats);
    }
}

impl ConsumerContext for RouterContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                if let Some((dedupe, config)) = &self.dedupe {
                    let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                    match restore_dedupe(config, &parts, dedupe) {
                        Ok(n) => {
                            info!(partitions = ?parts, identities = n, "Restored dedupe state from the changelog.")
                        }
                        // Routing goes on; only copies within the window may slip through.
                        Err(e) => {
                            error!(error = %e, "Could not restore dedupe state; duplicates of recent events may be routed.")
                        }
                    }
                }
                self.lag.assigned(tpl);
                self.assigned.store(true, Ordering::Release);
                info!(
                    partitions = tpl.count(),
                    "Partitions assigned to the router."
                );
            }
            Rebalance::Revoke(tpl) => {
                self.lag.revoked(tpl);
                if let Some((dedupe, _)) = &self.dedupe {
                    let mut d = dedupe.lock().expect("dedupe lock");
                    for e in tpl.elements() {
                        d.forget_partition(e.partition());
                    }
                }
                info!(
                    partitions = tpl.count(),
                    "Partitions revoked from the router."
                )
            }
            Rebalance::Error(e) => warn!(error = %e, "Rebalance failed."),
        }
    }
}

/// Runs the router until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let metrics = RouterMetrics::new();
    let ready = Readiness::default();
    let addr = admin::serve(
        &config.router.listen,
        metrics.registry.clone(),
        ready.clone(),
    )
    .await?;
    info!(%addr, "Serving /metrics, /healthz and /readyz.");
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (stop, metrics, ready) = (stop.clone(), metrics.clone(), ready.clone());
        std::thread::Builder::new()
            .name("router".into())
            .spawn(move || route_loop(&config, &metrics, &ready, &stop))?
    };
    let waiter = tokio::task::spawn_blocking(move || worker.join());
    tokio::pin!(waiter);
    tokio::select! {
        _ = shutdown_signal() => {
            info!("Shutting down: finishing the current transaction.");
            stop.store(true, Ordering::Release);
        }
        res = &mut waiter => {
            return res?.map_err(|_| anyhow::anyhow!("router thread panicked"))?;
        }
    }
    waiter
        .await?
        .map_err(|_| anyhow::anyhow!("router thread panicked"))?
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn route_loop(
    config: &Config,
    metrics: &RouterMetrics,
    ready: &Readiness,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let names = config.topic_names();
    let group = names.router_group();
    let assigned = Arc::new(AtomicBool::new(false));
    let dedupe = (!config.router.dedupe_window.is_zero()).then(|| {
        Arc::new(Mutex::new(Dedupe::new(
            config.router.dedupe_window,
            config.router.dedupe_max_entries,
        )))
    });
    if dedupe.is_some() {
        check_changelog(config)?;
    }
    let ctx = RouterContext {
        lag: LagReporter {
            group: group.clone(),
            metrics: metrics.lag.clone(),
            stored_positions: true,
        },
        assigned: assigned.clone(),
        dedupe: dedupe.clone().map(|d| (d, config.clone())),
    };
    let consumer: BaseConsumer<RouterContext> = client_config(config)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("statistics.interval.ms", "5000")
        .create_with_context(ctx)?;
    consumer.subscribe(&[&config.topics.input])?;

    let transactional_id = config.router.transactional_id.clone().unwrap_or_else(|| {
        let host =
            std::env::var("HOSTNAME").unwrap_or_else(|_| format!("pid{}", std::process::id()));
        format!("{group}.{host}")
    });
    let producer: ThreadedProducer<_> = producer_config(config)
        .set("transactional.id", &transactional_id)
        .set("transaction.timeout.ms", "60000")
        .create()?;
    producer.init_transactions(TXN_TIMEOUT)?;
    info!(%transactional_id, input = %config.topics.input, destinations = config.destinations.len(), "Router started.");

    let event_types = BoundedLabel::new(200);
    let mut batch = Vec::with_capacity(config.router.batch_max_records);
    while !stop.load(Ordering::Acquire) {
        ready.set(assigned.load(Ordering::Acquire));
        batch.clear();
        let mut deadline = None;
        while batch.len() < config.router.batch_max_records {
            let timeout = match deadline {
                None => Duration::from_millis(200),
                Some(d) => d - Instant::now().min(d),
            };
            match consumer.poll(timeout) {
                Some(Ok(m)) => {
                    batch.push(m.detach());
                    deadline.get_or_insert_with(|| Instant::now() + config.router.batch_max_wait);
                }
                Some(Err(e)) => warn!(error = %e, "Consumer error while polling the input topic."),
                None if deadline.is_none() => break,
                None => {}
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        if batch.is_empty() {
            continue;
        }
        metrics.records_read.inc_by(batch.len() as u64);
        let heads = batch_heads(&batch);
        for (&partition, &since) in &heads {
            metrics
                .lag
                .seconds
                .set(&group, &config.topics.input, partition, Some(since));
        }
        let started = Instant::now();
        let mut guard = dedupe.as_ref().map(|d| d.lock().expect("dedupe lock"));
        match route_batch(
            config,
            &consumer,
            &producer,
            &batch,
            metrics,
            &event_types,
            guard.as_deref_mut(),
        ) {
            Ok(()) => {
                if let Some(d) = guard.as_deref_mut() {
                    d.commit();
                    d.evict(herald_core::time::now_ms());
                }
                drop(guard);
                metrics.transactions.with_label_values(&["commit"]).inc();
                store_positions(&consumer, &batch);
                for &partition in heads.keys() {
                    metrics
                        .lag
                        .seconds
                        .set(&group, &config.topics.input, partition, None);
                }
                metrics
                    .batch_duration
                    .with_label_values(&[] as &[&str])
                    .observe(started.elapsed().as_secs_f64());
            }
            Err(e) => {
                if let Some(d) = guard.as_deref_mut() {
                    d.abort();
                }
                drop(guard);
                metrics.transactions.with_label_values(&["abort"]).inc();
                if let KafkaError::Transaction(ref t) = e {
                    if t.is_fatal() {
                        error!(error = %e, "Fatal transaction error; exiting so the batch is re-read after restart.");
                        return Err(e.into());
                    }
                }
                warn!(error = %e, records = batch.len(), "Transaction failed; aborting and re-reading the batch.");
                if let Err(e) = producer.abort_transaction(TXN_TIMEOUT) {
                    error!(error = %e, "Abort failed; exiting so the batch is re-read after restart.");
                    return Err(e.into());
                }
                rewind(&consumer, &batch);
            }
        }
    }
    info!("Router stopped; leaving the consumer group.");
    ready.set(false);
    consumer.unsubscribe();
    Ok(())
}

/// Routes one batch in one transaction: outputs, then the input offsets.
fn route_batch(
    config: &Config,
    consumer: &BaseConsumer<RouterContext>,
    producer: &ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    batch: &[rdkafka::message::OwnedMessage],
    metrics: &RouterMetrics,
    event_types: &BoundedLabel,
    mut dedupe: Option<&mut Dedupe>,
) -> Result<(), KafkaError> {
    producer.begin_transaction()?;
    let mut next_offsets: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    let group = config.topic_names().router_group();
    for m in batch {
        // One span per record; outputs written under it carry its context.
        let span = herald_core::otel::route_span(m, &group);
        let _routing = span.enter();
        for out in route_record(config, m, metrics, event_types, dedupe.as_deref_mut()) {
            let mut record = BaseRecord::to(&out.topic)
                .payload(&out.value)
                .headers(out.headers);
            if let Some(k) = &out.key {
                record = record.key(k);
            }
            if let Some(p) = out.partition {
                record = record.partition(p);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((
                        KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        r,
                    )) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        }
        next_offsets.insert((m.topic(), m.partition()), m.offset() + 1);
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in &next_offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    let group = consumer
        .group_metadata()
        .ok_or_else(|| KafkaError::Subscription("consumer has no group metadata".into()))?;
    producer.send_offsets_to_transaction(&tpl, &group, TXN_TIMEOUT)?;
    wait_for_acks(producer, TXN_TIMEOUT);
    producer.commit_transaction(TXN_TIMEOUT)?;
    Ok(())
}

/// Waits, in 1 ms steps, until every record of the transaction is
/// acknowledged. `commit_transaction` starts with rdkafka's `flush`, which
/// polls in 100 ms steps while the ThreadedProducer's own thread takes the
/// delivery reports: every transaction lasted at least 100 ms, which capped
/// throughput and added 100 ms to every event's latency (docs/benchmarks.md).
/// Once nothing is in flight, that flush returns at once. On timeout the
/// commit reports what went wrong.
fn wait_for_acks(
    producer: &ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// After an abort, moves each partition of the batch back to its first
/// record so the batch is routed again. Partitions no longer assigned are
/// skipped: their new owner starts from the committed offset.
fn rewind(consumer: &BaseConsumer<RouterContext>, batch: &[rdkafka::message::OwnedMessage]) {
    let mut first: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for m in batch {
        first
            .entry((m.topic(), m.partition()))
            .or_insert(m.offset());
    }
    for ((topic, partition), offset) in first {
        if let Err(e) = consumer.seek(
            topic,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(5),
        ) {
            warn!(topic, partition, error = %e, "Could not rewind partition (likely revoked).");
        }
    }
}

/// The changelog must exist with at least as many partitions as the input,
/// since input partition N keeps its marks in changelog partition N.
fn check_changelog(config: &Config) -> anyhow::Result<()> {
    let consumer: BaseConsumer = client_config(config).create()?;
    let count = |topic: &str| -> anyhow::Result<usize> {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        Ok(md
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map(|t| t.partitions().len())
            .unwrap_or(0))
    };
    let changelog = config.topic_names().dedupe_changelog();
    let (input, log) = (count(&config.topics.input)?, count(&changelog)?);
    if log < input {
        anyhow::bail!(
            "dedupe changelog {changelog} has {log} partitions but input topic {} has {input}; \
             run `herald topics apply` (or add partitions to it), or set router.dedupe_window = \"0s\" to turn dedupe off",
            config.topics.input
        );
    }
    Ok(())
}

/// Reads the changelog partitions matching newly assigned input partitions
/// and loads the marks still inside the window. Runs inside the rebalance
/// callback, before any record of those partitions is routed.
fn restore_dedupe(
    config: &Config,
    partitions: &[i32],
    dedupe: &Mutex<Dedupe>,
) -> anyhow::Result<usize> {
    let topic = config.topic_names().dedupe_changelog();
    let consumer: BaseConsumer = client_config(config)
        .set(
            "group.id",
            format!("{}.dedupe-restore", config.topic_names().router_group()),
        )
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for &p in partitions {
        let (low, high) = consumer.fetch_watermarks(&topic, p, Duration::from_secs(10))?;
        if high > low {
            tpl.add_partition_offset(&topic, p, Offset::Offset(low))?;
            ends.insert(p, high);
        }
    }
    if ends.is_empty() {
        return Ok(0);
    }
    consumer.assign(&tpl)?;
    let now = herald_core::time::now_ms();
    let mut d = dedupe.lock().expect("dedupe lock");
    let (mut loaded, deadline) = (0, Instant::now() + Duration::from_secs(120));
    while !ends.is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "timed out reading {topic}");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m?;
            let id = m.key().and_then(dedupe::parse_key);
            let at = m
                .payload()
                .and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok());
            if let (Some(id), Some(at)) = (id, at) {
                if now - at <= d.window_ms() {
                    d.insert(m.partition(), id, at);
                    loaded += 1;
                }
            }
        }
        // Transaction markers take offsets but are never returned.
        for e in consumer.position()?.elements() {
            if let Offset::Offset(o) = e.offset() {
                if ends.get(&e.partition()).is_some_and(|end| o >= *end) {
                    ends.remove(&e.partition());
                }
            }
        }
    }
    Ok(loaded)
}

/// Per partition of a batch, the Kafka timestamp of its first record: the
/// oldest record not yet routed until the batch's transaction commits.
fn batch_heads(batch: &[rdkafka::message::OwnedMessage]) -> BTreeMap<i32, i64> {
    let mut heads = BTreeMap::new();
    for m in batch {
        let ts = m
            .timestamp()
            .to_millis()
            .unwrap_or_else(herald_core::time::now_ms);
        heads.entry(m.partition()).or_insert(ts);
    }
    heads
}

/// Records the batch's committed positions on the consumer, for the lag
/// statistics only (auto-commit is off, so nothing commits them): the
/// transaction's offset commit is invisible to the consumer.
fn store_positions(
    consumer: &BaseConsumer<RouterContext>,
    batch: &[rdkafka::message::OwnedMessage],
) {
    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for m in batch {
        next.insert((m.topic(), m.partition()), m.offset() + 1);
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        if tpl
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .is_err()
        {
            return;
        }
    }
    // Fails only for partitions revoked meanwhile; their new owner reports them.
    let _ = consumer.store_offsets(&tpl);
}
