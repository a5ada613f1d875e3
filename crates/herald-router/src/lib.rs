//! The router: reads product events from the input topic, validates them,
//! and writes one Delivery per matching destination — or the record itself
//! to the invalid topic — in Kafka transactions that also commit the input
//! offsets, so a crash neither loses nor re-routes an event.
//!
//! librdkafka's transactional calls block, so the loop runs on its own
//! thread; the async runtime only serves the admin endpoints and signals.

mod context;
mod dedupe;
pub mod instance;
mod invalid;
mod positions;
mod restore;
mod route;
mod schemas;
mod txn;

pub use restore::restore_start;
pub use route::{route_record, route_record_settled, Output, Settled};

use context::RouterContext;
use dedupe::Dedupe;
use herald_core::admin::{self, Readiness};
use herald_core::batch::{BatchWindow, Step};
use herald_core::config::Config;
use herald_core::kafka::client_config;
use herald_core::metrics::{BoundedLabel, RouterMetrics};
use positions::{rewind, rewind_to_committed};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};
use txn::{Txn, TxnProducer, TXN_TIMEOUT};

/// Payload kept on the invalid record of an output refused by the broker
/// (the invalid topic may have the same limit); 0 if that fails too.
const SETTLED_KEEP_BYTES: usize = 16 * 1024;

/// Runs the router until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let started = Instant::now();
    herald_core::registry::output::init(&config).await?;
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
            .spawn(move || route_loop(&config, &metrics, &ready, &stop, started))?
    };
    let waiter = tokio::task::spawn_blocking(move || worker.join());
    tokio::pin!(waiter);
    tokio::select! {
        _ = herald_core::signal::shutdown() => {
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

/// Why a batch did not commit.
enum BatchError {
    Kafka(KafkaError),
    /// Outputs refused for good: their input records go to the invalid
    /// topic when the batch is routed again.
    Rejected(Vec<txn::Rejected>),
}

impl From<KafkaError> for BatchError {
    fn from(e: KafkaError) -> Self {
        Self::Kafka(e)
    }
}

type Consumer_ = BaseConsumer<RouterContext>;

fn route_loop(
    config: &Config,
    metrics: &RouterMetrics,
    ready: &Readiness,
    stop: &AtomicBool,
    started: Instant,
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
        restore::check_changelog(config)?;
    }
    // Lag at the group's committed position (the transactions commit it),
    // retention headroom and records lost to retention, measured beside the
    // group; kept alive for the whole loop.
    let _lag_probe = herald_core::lagprobe::LagProbe::new(
        &client_config(config),
        &group,
        std::slice::from_ref(&config.topics.input),
        herald_core::lagprobe::DEFAULT_INTERVAL,
        metrics.lag.clone(),
    )?
    .spawn()?;
    let transactional_id = instance::transactional_id(
        config.router.transactional_id.as_deref(),
        &group,
        instance::os_hostname(),
    )?;
    let broker_down = Arc::new(AtomicBool::new(false));
    let make_consumer = || -> anyhow::Result<Consumer_> {
        let ctx = RouterContext {
            assigned: assigned.clone(),
            rebalances: AtomicU64::new(0),
            metrics: metrics.clone(),
            dedupe: dedupe.clone().map(|d| (d, config.clone())),
            broker_down: broker_down.clone(),
        };
        let mut cc = client_config(config);
        cc.set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed");
        // Incremental rebalances: partitions that stay keep routing.
        // Static membership (`group.instance.id`) is not set by default:
        // with librdkafka 2.12 a broker restart fenced the static member for
        // good (FENCED_INSTANCE_ID) and its replacement then fetched nothing
        // (router_edges outage test). Operators may still set it in
        // [kafka.client]; a fenced consumer is re-created below.
        if !config
            .kafka
            .client
            .contains_key("partition.assignment.strategy")
        {
            cc.set("partition.assignment.strategy", "cooperative-sticky");
        }
        let consumer: Consumer_ = cc.create_with_context(ctx)?;
        consumer.subscribe(&[&config.topics.input])?;
        Ok(consumer)
    };
    let mut consumer = make_consumer()?;

    let mut txn = Txn::new(config, transactional_id.clone());
    let mut idle = |d: Duration| idle_poll(&consumer, d);
    if !txn.ensure(stop, &mut idle) {
        return Ok(());
    }
    info!(%transactional_id, host = ?instance::os_hostname(), input = %config.topics.input, destinations = config.destinations.len(), "Router started.");

    let mut lookup = schemas::SchemaLookup::new(config)?;
    let event_types = BoundedLabel::new(200);
    let mut batch: Vec<OwnedMessage> = Vec::with_capacity(config.router.batch_max_records);
    let mut settled: HashMap<(i32, i64), Settled> = HashMap::new();
    let mut recovering = false;
    let mut first_commit = true;
    while !stop.load(Ordering::Acquire) {
        // A static member can be fenced for good (librdkafka raises a fatal
        // error when, after a broker restart, its own rejoin replaced its
        // old member id): start a new consumer, same instance id.
        if let Some((code, reason)) = consumer.client().fatal_error() {
            warn!(error = ?code, reason, "The consumer failed for good; re-creating it.");
            ready.set(false);
            assigned.store(false, Ordering::Release);
            if let Some(d) = &dedupe {
                *d.lock().expect("dedupe lock") = Dedupe::new(
                    config.router.dedupe_window,
                    config.router.dedupe_max_entries,
                );
            }
            drop(consumer);
            consumer = loop {
                match make_consumer() {
                    Ok(c) => break c,
                    Err(e) => {
                        warn!(error = %e, "Could not create the consumer; retrying.");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            };
            recovering = true;
            continue;
        }
        let mut idle = |d: Duration| idle_poll(&consumer, d);
        if !txn.ensure(stop, &mut idle) {
            break;
        }
        if recovering {
            // Whatever the last transaction's fate, resume from what the
            // group committed: nothing lost, nothing routed twice.
            ready.set(false);
            if let Err(e) = rewind_to_committed(&consumer) {
                warn!(error = %e, "Could not read the committed offsets; retrying.");
                idle_poll(&consumer, Duration::from_secs(1));
                continue;
            }
            info!("Resuming from the committed offsets.");
            recovering = false;
        }
        if broker_down.load(Ordering::Acquire)
            && consumer
                .fetch_metadata(Some(&config.topics.input), Duration::from_secs(2))
                .is_ok()
        {
            info!("The broker answers again.");
            broker_down.store(false, Ordering::Release);
        }
        ready.set(assigned.load(Ordering::Acquire) && !broker_down.load(Ordering::Acquire));
        batch.clear();
        if !collect(config, &consumer, &mut batch) {
            continue;
        }
        if lookup.prefetch(&batch, metrics, stop, |d| idle_poll(&consumer, d)) {
            // The wait polled past the batch: read it again, with its
            // schemas now known or settled as unavailable.
            recovering = true;
            continue;
        }
        metrics.records_read.inc_by(batch.len() as u64);
        let t0 = Instant::now();
        let mut guard = dedupe.as_ref().map(|d| d.lock().expect("dedupe lock"));
        let res = route_batch(
            config,
            &consumer,
            txn.producer(),
            &batch,
            metrics,
            &event_types,
            &lookup.schemas,
            guard.as_deref_mut(),
            &settled,
        )
        .map_err(|e| {
            // A refused output fails the transaction; name its record.
            let rejected = txn.take_rejected();
            match e {
                BatchError::Kafka(_) if !rejected.is_empty() => BatchError::Rejected(rejected),
                e => e,
            }
        });
        match res {
            Ok(()) => {
                if let Some(d) = guard.as_deref_mut() {
                    d.commit();
                    d.evict(herald_core::time::now_ms());
                }
                drop(guard);
                metrics.transactions.with_label_values(&["commit"]).inc();
                debug!(records = batch.len(), "Batch committed.");
                if first_commit {
                    first_commit = false;
                    info!(
                        ms = started.elapsed().as_millis() as u64,
                        "Routing: first transaction committed {} ms after start.",
                        started.elapsed().as_millis()
                    );
                }
                for m in &batch {
                    settled.remove(&(m.partition(), m.offset()));
                }
                metrics
                    .batch_duration
                    .with_label_values(&[] as &[&str])
                    .observe(t0.elapsed().as_secs_f64());
            }
            Err(e) => {
                if let Some(d) = guard.as_deref_mut() {
                    d.abort();
                }
                drop(guard);
                metrics.transactions.with_label_values(&["abort"]).inc();
                // Not ready until routing works again (/readyz).
                ready.set(false);
                let cause = match e {
                    BatchError::Kafka(e) => {
                        warn!(error = %e, records = batch.len(), "Transaction failed; aborting and routing the batch again.");
                        e
                    }
                    BatchError::Rejected(list) => {
                        // The broker refuses a whole produce request for one
                        // record too many: settle only the largest refused
                        // record per try, so innocent ones sharing its
                        // request are routed on the next.
                        let largest = list.iter().max_by_key(|r| r.size);
                        if let Some(r) = largest {
                            let again = settled.contains_key(&r.origin);
                            warn!(partition = r.origin.0, offset = r.origin.1, error = %r.error,
                                "An output of this input record was refused for good; routing the batch again with the record sent to the invalid topic.");
                            settled.insert(
                                r.origin,
                                Settled {
                                    reason: txn::rejection_reason(&r.error),
                                    message: format!("producing an output failed: {}", r.error),
                                    keep_bytes: if again { 0 } else { SETTLED_KEEP_BYTES },
                                },
                            );
                        }
                        KafkaError::Canceled
                    }
                };
                txn.abort(&cause);
                recovering = true;
            }
        }
    }
    info!("Router stopped; leaving the consumer group.");
    ready.set(false);
    consumer.unsubscribe();
    Ok(())
}

/// Polls the consumer while the producer is away, so it stays in its group
/// and serves rebalances; records read are dropped (the loop rewinds to the
/// committed offsets before routing again).
fn idle_poll(consumer: &Consumer_, d: Duration) {
    let until = Instant::now() + d;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        if let Some(Err(e)) = consumer.poll(left.min(Duration::from_millis(200))) {
            warn!(error = %e, "Consumer error while waiting for the broker.");
        }
    }
}

/// Fills `batch` by [`BatchWindow`]'s rule: what is ready, up to
/// `batch_max_records`, for at most `batch_max_wait`. `false` when there is
/// nothing to route: no record came, or the assignment changed meanwhile
/// (the records, possibly of revoked partitions, are dropped and their
/// partitions rewound).
fn collect(config: &Config, consumer: &Consumer_, batch: &mut Vec<OwnedMessage>) -> bool {
    let rebalances = || consumer.context().rebalances.load(Ordering::Acquire);
    let epoch = rebalances();
    let mut window = BatchWindow::new(
        config.router.batch_max_records,
        config.router.batch_linger,
        config.router.batch_max_wait,
    );
    while let Step::Poll(timeout) = window.next(Instant::now()) {
        match consumer.poll(timeout) {
            Some(Ok(m)) => {
                batch.push(m.detach());
                window.took(Instant::now());
            }
            Some(Err(e)) => warn!(error = %e, "Consumer error while polling the input topic."),
            None if window.closes_when_dry(Instant::now()) => break,
            None => {}
        }
        if rebalances() != epoch {
            if !batch.is_empty() {
                info!(
                    records = batch.len(),
                    "Assignment changed while reading a batch; dropping it and rewinding."
                );
                rewind(consumer, batch);
                batch.clear();
            }
            return false;
        }
    }
    !batch.is_empty()
}

/// Routes one batch in one transaction: outputs, then the input offsets.
#[allow(clippy::too_many_arguments)]
fn route_batch(
    config: &Config,
    consumer: &Consumer_,
    producer: &TxnProducer,
    batch: &[OwnedMessage],
    metrics: &RouterMetrics,
    event_types: &BoundedLabel,
    schemas: &herald_core::registry::WriterSchemas,
    mut dedupe: Option<&mut Dedupe>,
    settled: &HashMap<(i32, i64), Settled>,
) -> Result<(), BatchError> {
    producer.begin_transaction()?;
    let mut next_offsets: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    let group = config.topic_names().router_group();
    for m in batch {
        // One span per record; outputs written under it carry its context.
        let span = herald_core::otel::route_span(m, &group);
        let _routing = span.enter();
        let origin = (m.partition(), m.offset());
        let outs = route_record_settled(
            config,
            m,
            metrics,
            event_types,
            schemas,
            dedupe.as_deref_mut(),
            settled.get(&origin),
        );
        for out in outs {
            let mut record = BaseRecord::with_opaque_to(&out.topic, Box::new(origin))
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
                    Err((e, _)) if txn::is_permanent(&e) => {
                        return Err(BatchError::Rejected(vec![txn::Rejected {
                            origin,
                            error: e,
                            size: usize::MAX,
                        }]))
                    }
                    Err((e, _)) => return Err(e.into()),
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
    // A refused output must not commit: its record would be lost.
    if producer.context().any_rejected() {
        return Err(BatchError::Kafka(KafkaError::Canceled));
    }
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
fn wait_for_acks(producer: &TxnProducer, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}
