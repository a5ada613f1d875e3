//! The baselines Herald is compared with: what a team would write by hand.
//! Each runs as its own process (a hidden `herald-bench` subcommand) so it
//! is measured exactly like the service it stands in for.
//!
//! - `copy`: consume the input topic and write each record to every
//!   destination topic, straight on rdkafka, with the router's consumer and
//!   producer settings, batch limits, output sizes and headers — but no
//!   decoding, validation, routing rules or envelope. With `--transactional`
//!   each batch is one transaction with its offsets (like the router);
//!   without, each batch is flushed and then its offsets committed
//!   (at-least-once).
//! - `http-loop`: POST the same signed CloudEvents bodies the adapter sends,
//!   with reqwest at the destination's concurrency, in a loop — no Kafka.
//! - `raw-gateway` ([`crate::raw_gateway`]): an HTTP route that only writes
//!   each request body to Kafka and answers after the acknowledgement.

use anyhow::Context;
use herald_core::batch::{BatchWindow, Step};
use herald_core::config::Config;
use herald_core::metrics::{BoundedLabel, RouterMetrics};
use herald_core::signature::{signature_header, SigningKey};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// `herald-bench copy`: runs until SIGTERM.
pub async fn copy(config_path: &Path, transactional: bool) -> anyhow::Result<()> {
    let config = Config::load(Some(config_path))?;
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("copy".into())
            .spawn(move || copy_loop(&config, transactional, &stop))?
    };
    let waiter = tokio::task::spawn_blocking(move || worker.join());
    tokio::pin!(waiter);
    tokio::select! {
        _ = herald_core::signal::shutdown() => stop.store(true, Ordering::Release),
        res = &mut waiter => return res?.map_err(|_| anyhow::anyhow!("copy thread panicked"))?,
    }
    waiter
        .await?
        .map_err(|_| anyhow::anyhow!("copy thread panicked"))?
}

/// The shape of the router's output for an input record: how many bytes
/// longer the Delivery is than the input value, and its headers.
struct Template {
    extra_bytes: usize,
    headers: OwnedHeaders,
}

impl Template {
    fn of(config: &Config, m: &OwnedMessage) -> Self {
        let outputs = herald_router::route_record(
            config,
            m,
            &RouterMetrics::new(),
            &BoundedLabel::new(10),
            None,
        );
        let input_len = m.payload().map_or(0, <[u8]>::len);
        match outputs.into_iter().next() {
            Some(o) => Self {
                extra_bytes: o.value.len().saturating_sub(input_len),
                headers: o.headers,
            },
            None => Self {
                extra_bytes: 0,
                headers: OwnedHeaders::new(),
            },
        }
    }
}

fn copy_loop(config: &Config, transactional: bool, stop: &AtomicBool) -> anyhow::Result<()> {
    let names = config.topic_names();
    let group = format!("{}.copy", config.topics.prefix);
    // The router's consumer settings.
    let consumer: BaseConsumer = herald_core::kafka::client_config(config)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("statistics.interval.ms", "5000")
        .create()?;
    consumer.subscribe(&[&config.topics.input])?;
    // The router's producer settings (every Herald writer shares them),
    // transactional like the router's when `transactional`.
    let copy_id = format!("{}.copy", config.topics.prefix);
    let mut pc = herald_core::kafka::txn_producer_config(config, &copy_id);
    if !transactional {
        pc.remove("transactional.id");
    }
    let producer: ThreadedProducer<_> = pc.create()?;
    if transactional {
        producer.init_transactions(TXN_TIMEOUT)?;
    }
    let outputs: Vec<String> = config.destinations.keys().map(|d| names.dest(d)).collect();
    let mut template: Option<Template> = None;
    let mut batch: Vec<OwnedMessage> = Vec::with_capacity(config.router.batch_max_records);
    while !stop.load(Ordering::Acquire) {
        // The router's batching (herald_core::batch): what is ready, up
        // to batch_max_records, for at most batch_max_wait.
        batch.clear();
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
                Some(Err(e)) => eprintln!("copy: consumer error: {e}"),
                None if window.closes_when_dry(Instant::now()) => break,
                None => {}
            }
        }
        if batch.is_empty() {
            continue;
        }
        let t = template.get_or_insert_with(|| Template::of(config, &batch[0]));
        if transactional {
            producer.begin_transaction()?;
        }
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for m in &batch {
            let input = m.payload().unwrap_or_default();
            let mut value = Vec::with_capacity(input.len() + t.extra_bytes);
            value.extend_from_slice(input);
            value.resize(input.len() + t.extra_bytes, b' ');
            for topic in &outputs {
                let mut rec = BaseRecord::to(topic)
                    .payload(&value)
                    .headers(t.headers.clone());
                if let Some(k) = m.key() {
                    rec = rec.key(k);
                }
                loop {
                    match producer.send(rec) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            rec = r;
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err((e, _)) => return Err(e.into()),
                    }
                }
            }
            next.insert((m.topic(), m.partition()), m.offset() + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &next {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        // Like the router, wait for the acknowledgements in short steps
        // before rdkafka's flush (which polls in 100 ms steps while the
        // ThreadedProducer's thread takes the delivery reports).
        if transactional {
            let meta = consumer
                .group_metadata()
                .context("consumer has no group metadata")?;
            producer.send_offsets_to_transaction(&tpl, &meta, TXN_TIMEOUT)?;
            wait_for_acks(&producer);
            producer.commit_transaction(TXN_TIMEOUT)?;
        } else {
            wait_for_acks(&producer);
            producer.flush(TXN_TIMEOUT)?;
            consumer.commit(&tpl, CommitMode::Async)?;
        }
    }
    consumer.unsubscribe();
    Ok(())
}

fn wait_for_acks(producer: &ThreadedProducer<rdkafka::producer::DefaultProducerContext>) {
    let deadline = Instant::now() + TXN_TIMEOUT;
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `herald-bench http-loop`: POSTs event `i % count` of run `run`, signed
/// like the webhook kind signs it, with `concurrency` requests in flight,
/// until SIGTERM.
pub async fn http_loop(
    config_path: &Path,
    destination: &str,
    run: &str,
    count: u64,
) -> anyhow::Result<()> {
    let config = Config::load(Some(config_path))?;
    let dc = config.destination(destination)?.clone();
    let keys: Vec<SigningKey> = match &dc.secret {
        Some(s) => vec![SigningKey::parse(&s.resolve("secret")?)?],
        None => Vec::new(),
    };
    // The adapter's client settings.
    let client = reqwest::Client::builder()
        .timeout(dc.timeout)
        .connect_timeout(dc.timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(dc.concurrency)
        .build()?;
    let url = reqwest::Url::parse(&dc.url)?;
    let next = Arc::new(AtomicU64::new(0));
    let keys = Arc::new(keys);
    let run = Arc::new(run.to_string());
    let workers: Vec<_> = (0..dc.concurrency)
        .map(|_| {
            let (client, url, next, keys, run) = (
                client.clone(),
                url.clone(),
                next.clone(),
                keys.clone(),
                run.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) % count.max(1);
                    let e = crate::workload::event(&run, i, 0);
                    let body = crate::workload::event_json(&e);
                    let ts = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs() as i64)
                        .unwrap_or(0);
                    let mut req = client
                        .post(url.clone())
                        .header("content-type", "application/json")
                        .header("user-agent", "herald-bench-baseline")
                        .header("webhook-id", &e.id)
                        .header("webhook-timestamp", ts.to_string());
                    if !keys.is_empty() {
                        req = req.header(
                            "webhook-signature",
                            signature_header(&keys, &e.id, ts, &body),
                        );
                    }
                    if let Err(err) = req.body(body).send().await {
                        eprintln!("http-loop: request failed: {err}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            })
        })
        .collect();
    herald_core::signal::shutdown().await;
    for w in workers {
        w.abort();
    }
    Ok(())
}
