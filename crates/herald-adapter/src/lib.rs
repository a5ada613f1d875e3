//! The adapter: one process (and consumer group) per destination. It reads
//! the destination topic and its retry tiers, attempts each delivery over
//! HTTP with bounded concurrency, and makes every outcome durable — attempt
//! log, next retry tier or DLQ, ledger — before the record's offset may be
//! committed. Offsets are committed only below the lowest unfinished record.
//!
//! Along the data flow:
//! - [`consumer`]: group membership, rebalances, offset commits;
//! - `scheduler`: pure decisions — ready queue, held tier records, pause
//!   reasons (held, circuit, back-pressure, ledger restore);
//! - `driver`: the loop that polls Kafka and applies those decisions,
//!   gated by the circuit breaker, rate limit and concurrency limit;
//! - `delivery` and `exchange`: one delivery task and its HTTP exchange;
//! - [`outcome`] and `writer`: the records that make an outcome durable,
//!   and producing them in a crash-safe order;
//! - `ledger`, `expiry`: what suppresses re-delivery, and when a record
//!   must stop waiting.

mod circuit;
mod committer;
mod concurrency;
pub mod consumer;
mod delivery;
mod depth;
mod driver;
mod exchange;
mod expiry;
pub mod kinds;
mod ledger;
mod offsets;
pub mod outcome;
mod scheduler;
mod stall;
mod writer;

use consumer::AdapterContext;
use delivery::Deliverer;
use herald_core::admin::{self, Readiness};
use herald_core::config::Config;
use herald_core::kafka::{client_config, producer_config};
use herald_core::metrics::{AdapterMetrics, BoundedLabel};
use herald_core::time::compact_duration;
use rdkafka::consumer::{Consumer, StreamConsumer};
use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::info;

/// How often lag, retention headroom and expiring heads are measured.
const LAG_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the adapter for `destination` until SIGTERM or SIGINT.
pub async fn run(config: Config, destination: String) -> anyhow::Result<()> {
    let dc = config.destination(&destination)?.clone();
    herald_core::registry::output::init(&config).await?;
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

    let offsets = Arc::new(Mutex::new(offsets::OffsetTracker::default()));
    let ledger = Arc::new(Mutex::new(ledger::Ledger::default()));
    let events = Arc::new(Mutex::new(Vec::new()));
    let wake = Arc::new(tokio::sync::Notify::new());
    let instance = instance_id(&config, &group);
    let mut topics = vec![names.dest(&destination)];
    topics.extend(dc.retry.tiers.iter().map(|d| names.retry(&destination, *d)));
    let make_consumer = || -> anyhow::Result<StreamConsumer<AdapterContext>> {
        let mut cc = client_config(&config);
        if let Some(instance) = &instance {
            cc.set("group.instance.id", instance);
        }
        // A resumed partition (a tier record came due, the circuit closed)
        // joins the next fetch request, which waits for the one in flight:
        // with librdkafka's 500 ms default, every resume cost half a second.
        if !config.kafka.client.contains_key("fetch.wait.max.ms") {
            cc.set("fetch.wait.max.ms", "100");
        }
        let consumer: StreamConsumer<AdapterContext> = cc
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .create_with_context(AdapterContext {
                offsets: offsets.clone(),
                ledger: ledger.clone(),
                events: events.clone(),
                wake: wake.clone(),
                config: config.clone(),
                destination: destination.clone(),
                metrics: metrics.clone(),
                handover_wait: dc.timeout + Duration::from_secs(5),
            })?;
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topic_refs)?;
        Ok(consumer)
    };

    let client = reqwest::Client::builder()
        .timeout(dc.timeout)
        .connect_timeout(dc.timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(dc.concurrency)
        .build()?;
    let policy = dc.retry.policy();
    let deliverer = Arc::new(Deliverer {
        names: names.clone(),
        destination: destination.clone(),
        group: group.clone(),
        policy: policy.clone(),
        client,
        request: kinds::build(&destination, &dc)?,
        writer: writer::Writer {
            producer: producer_config(&config).create()?,
            names: names.clone(),
            destination: destination.clone(),
            metrics: metrics.clone(),
            stopping: AtomicBool::new(false),
        },
        metrics: metrics.clone(),
        event_types: BoundedLabel::for_config(&dc.route.event_types, 100),
        tenants: BoundedLabel::for_config(&dc.route.tenants, 100),
        offsets: offsets.clone(),
        ledger: ledger.clone(),
    });
    info!(destination = %destination, %group, group_instance_id = instance.as_deref().unwrap_or("(dynamic)"), topics = ?topics, concurrency = dc.concurrency, "Adapter started.");
    depth::DepthProbe::new(&config, &destination, &dc, metrics.clone())?.start()?;

    // Lag in offsets and seconds at the group's committed position, and
    // the topics' retention, measured beside the group (never joining it).
    let probe = herald_core::lagprobe::LagProbe::new(
        &client_config(&config),
        &group,
        &topics,
        LAG_PROBE_INTERVAL,
        metrics.lag.clone(),
    )?
    .spawn()?;
    let expiry = expiry::ExpiryRule {
        max_age_ms: policy.max_age.as_millis() as i64,
        ..Default::default()
    };
    let tiers: HashSet<String> = topics[1..].iter().cloned().collect();
    let result = loop {
        let consumer = Arc::new(make_consumer()?);
        let committer = committer::Committer::start(
            consumer.clone(),
            offsets.clone(),
            metrics.clone(),
            destination.clone(),
        )?;
        let exit = driver::Driver {
            config: &config,
            dc: &dc,
            consumer: &consumer,
            committer,
            deliverer: deliverer.clone(),
            ledger: ledger.clone(),
            events: events.clone(),
            wake: wake.clone(),
            tiers: tiers.clone(),
            ready: ready.clone(),
            expiry: expiry.clone(),
            lag: probe.view(),
        }
        .run()
        .await;
        match exit {
            Ok(exit @ (driver::Exit::Fatal(_) | driver::Exit::Stalled(_))) => {
                // The old member's partitions are gone: start from the
                // group's committed offsets, like a restarted process.
                drop(consumer);
                *offsets.lock().expect("offsets lock") = offsets::OffsetTracker::default();
                *ledger.lock().expect("ledger lock") = ledger::Ledger::default();
                events.lock().expect("events lock").clear();
                deliverer
                    .writer
                    .stopping
                    .store(false, std::sync::atomic::Ordering::Release);
                match exit {
                    driver::Exit::Fatal(e) => {
                        tracing::warn!(error = %e, "Re-joining the group with a new consumer.")
                    }
                    driver::Exit::Stalled(tp) => {
                        tracing::warn!(topic = %tp.0, partition = tp.1, "Re-joining the group with a new consumer (a partition stalled).")
                    }
                    driver::Exit::Shutdown => {}
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok(driver::Exit::Shutdown) => {
                ready.set(false);
                // Leave the group now rather than after the session times out.
                consumer.unsubscribe();
                break Ok(());
            }
            Err(e) => break Err(e),
        }
    };
    info!("Adapter stopped.");
    result
}

/// `group.instance.id` = `<group>.<adapter.instance_id>` when set (static
/// membership: a restarted adapter gets its partitions back at once). Off
/// by default: a static member does not leave its group when it stops, so
/// a graceful stop (a rolling update) would hold its partitions until the
/// session times out.
fn instance_id(config: &Config, group: &str) -> Option<String> {
    config
        .adapter
        .instance_id
        .as_ref()
        .map(|name| format!("{group}.{name}"))
}
