//! What the scenarios feed Herald and the baselines: the events, the
//! configuration files, the topics (created per run, deleted after), the
//! pre-filled backlogs, a paced load generator, and the Kafka-side
//! measurements (committed offsets, end offsets).

use anyhow::{bail, Context};
use herald_core::config::Config;
use herald_core::envelope::Event;
use herald_core::kafka::{apply_topics, topic_plan};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The signing secret every benchmark destination is configured with, so
/// Herald signs each request (as it would in production).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

const EVENT_TYPES: [&str; 4] = [
    "subscription.started",
    "payment.failed",
    "user.signed_up",
    "invoice.paid",
];

/// Event `i` of a run: a typical product event of about 400 bytes as
/// structured CloudEvents JSON. `t_us` is its produce time (µs since the
/// epoch), which the sink turns into a latency; 0 where nobody measures it.
pub fn event(run: &str, i: u64, t_us: u64) -> Event {
    Event {
        id: format!("{run}-{i}"),
        source: "/billing/api".into(),
        r#type: EVENT_TYPES[(i % 4) as usize].into(),
        time: Some("2026-01-15T09:30:00.000Z".into()),
        subject: Some(format!("cus_{:06}", i % 1000)),
        tenant: Some(format!("tenant-{}", i % 7)),
        data: format!(
            r#"{{"t":{t_us},"amount":{},"currency":"eur","plan":"pro-annual","invoice":"in_{i:012}","customer":{{"email":"user{}@example.com","country":"DE"}},"attempt":1}}"#,
            1000 + i % 9000,
            i % 1000
        ),
    }
}

/// The record value producers write: structured CloudEvents JSON.
pub fn event_json(e: &Event) -> Vec<u8> {
    serde_json::to_vec(&e.to_cloudevent_json()).expect("JSON values serialise")
}

/// The record key producers write: the entity id.
pub fn event_key(e: &Event) -> Vec<u8> {
    e.subject.clone().unwrap_or_default().into_bytes()
}

/// A destination in a benchmark configuration.
pub struct DestSpec {
    pub name: String,
    pub url: String,
    /// Extra TOML lines for `[destinations.<name>]`.
    pub extra: String,
}

impl DestSpec {
    pub fn new(name: &str, url: String) -> Self {
        Self {
            name: name.into(),
            url,
            extra: String::new(),
        }
    }

    pub fn with(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }
}

/// Writes `<dir>/<prefix>.toml` and loads it back (so it is validated the
/// way the services will validate it). Settings not named here are Herald's
/// defaults; the report lists the ones that matter.
pub fn write_config(
    dir: &Path,
    bootstrap: &str,
    prefix: &str,
    input: &str,
    partitions: i32,
    dests: &[DestSpec],
) -> anyhow::Result<(PathBuf, Config)> {
    let mut toml = format!(
        r#"{kafka}
[topics]
prefix = "{prefix}"
input = "{input}"
partitions = {partitions}
replication_factor = 1

[router]
transactional_id = "{prefix}.router"
"#,
        kafka = kafka_toml(bootstrap)
    );
    for d in dests {
        toml.push_str(&format!(
            "\n[destinations.{}]\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
            d.name, d.url
        ));
        if !d.extra.contains("retry.tiers") {
            toml.push_str("retry.tiers = [\"1s\", \"5s\"]\n");
        }
        toml.push_str(&d.extra);
    }
    let path = dir.join(format!("{prefix}.toml"));
    std::fs::write(&path, &toml)?;
    let config = Config::load_with_env(Some(&path), std::iter::empty())
        .with_context(|| format!("benchmark config {} is invalid", path.display()))?;
    Ok((path, config))
}

/// Creates every topic the configuration needs (the input topic may exist).
pub async fn create_topics(config: &Config) -> anyhow::Result<()> {
    apply_topics(config, &topic_plan(config)).await?;
    Ok(())
}

/// Creates one plain topic (for the perf tools).
pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create()?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.create_topics([&topic], &opts).await? {
        if let Err((name, code)) = r {
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                bail!("creating topic {name} failed: {code}");
            }
        }
    }
    Ok(())
}

/// The `[kafka]` settings of `--kafka-config` (security for a secured
/// cluster), applied to every client of the run: the bench's own and,
/// through [`kafka_toml`], the services' and baselines'.
static KAFKA: std::sync::OnceLock<herald_core::config::KafkaConfig> = std::sync::OnceLock::new();

/// Uses `kafka` (from a Herald config) for every client of the run.
pub fn use_kafka_config(kafka: herald_core::config::KafkaConfig) {
    let _ = KAFKA.set(kafka);
}

/// A client of the bench itself: `bootstrap` plus `--kafka-config`'s
/// client properties and resolved secrets.
pub fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    if let Some(k) = KAFKA.get() {
        for (prop, value) in k.client_properties() {
            c.set(prop, value);
        }
    }
    c.set("bootstrap.servers", bootstrap);
    c
}

/// The `[kafka]` section of a service's or baseline's config: `bootstrap`
/// and `--kafka-config`'s properties and secret references.
pub fn kafka_toml(bootstrap: &str) -> String {
    let mut t = format!("[kafka]\nbootstrap_servers = \"{bootstrap}\"\n");
    if let Some(k) = KAFKA.get() {
        let table = |m: Vec<(String, String)>| {
            m.iter()
                .map(|(k, v)| {
                    let quote = |x: &str| toml::Value::String(x.to_string()).to_string();
                    format!("{} = {}", quote(k), quote(v))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !k.client.is_empty() {
            t.push_str(&format!(
                "client = {{ {} }}\n",
                table(k.client.clone().into_iter().collect())
            ));
        }
        if !k.client_secrets.is_empty() {
            t.push_str(&format!(
                "client_secrets = {{ {} }}\n",
                table(
                    k.client_secrets
                        .iter()
                        .map(|(p, r)| (p.clone(), r.reference().to_string()))
                        .collect()
                )
            ));
        }
    }
    t
}

/// Deletes every topic whose name starts with `prefix`. Benchmarks create
/// hundreds of partitions per run; leaving them would slow the broker down
/// for the scenarios that follow (and for everyone else on the machine).
pub async fn delete_topics(bootstrap: &str, prefix: &str) -> anyhow::Result<()> {
    let names: Vec<String> = {
        let consumer: BaseConsumer = client(bootstrap).create()?;
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
            let md = consumer.fetch_metadata(None, Duration::from_secs(10))?;
            Ok(md
                .topics()
                .iter()
                .map(|t| t.name().to_string())
                .filter(|n| n.starts_with(&prefix))
                .collect())
        })
        .await??
    };
    if names.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create()?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.delete_topics(&refs, &opts).await? {
        if let Err((name, code)) = r {
            if code != RDKafkaErrorCode::UnknownTopicOrPartition {
                bail!("deleting topic {name} failed: {code}");
            }
        }
    }
    Ok(())
}

/// Deletes `topic` and creates it again as `config` plans it, empty.
pub async fn recreate_topic(bootstrap: &str, config: &Config, topic: &str) -> anyhow::Result<()> {
    delete_topics(bootstrap, topic).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Deletion completes asynchronously; creating too early would find the
    // old topic still there.
    while topic_exists(bootstrap, topic).await? {
        if Instant::now() > deadline {
            bail!("topic {topic} was not deleted within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let plan: Vec<_> = topic_plan(config)
        .into_iter()
        .filter(|t| t.name == topic)
        .collect();
    apply_topics(config, &plan).await?;
    let (b, t) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || end_offsets(&b, &t)).await??;
    Ok(())
}

async fn topic_exists(bootstrap: &str, topic: &str) -> anyhow::Result<bool> {
    let consumer: BaseConsumer = client(bootstrap).create()?;
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
        let md = consumer.fetch_metadata(None, Duration::from_secs(10))?;
        Ok(md.topics().iter().any(|t| t.name() == topic))
    })
    .await?
}

/// Deletes a consumer group, retrying while its last member is still
/// leaving, so the next repetition starts from the beginning of the topic.
pub async fn delete_group(bootstrap: &str, group: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match admin.delete_groups(&[group], &opts).await?.pop() {
            Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::GroupIdNotFound))) | None => return Ok(()),
            Some(Err((_, code))) if Instant::now() > deadline => {
                bail!("deleting group {group} failed: {code}")
            }
            Some(Err(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Writes `n` records to `topic` as fast as the broker takes them, then
/// checks they are all there. `make(i)` gives key, value and headers.
pub fn prefill(
    bootstrap: &str,
    topic: &str,
    n: u64,
    make: impl Fn(u64) -> (Vec<u8>, Vec<u8>, OwnedHeaders),
) -> anyhow::Result<()> {
    let producer: BaseProducer = client(bootstrap)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "200000")
        .create()?;
    let before = end_offsets(bootstrap, topic)?;
    for i in 0..n {
        let (key, value, headers) = make(i);
        let mut rec = BaseRecord::to(topic)
            .key(&key)
            .payload(&value)
            .headers(headers);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        if i % 1000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120))?;
    let written = end_offsets(bootstrap, topic)? - before;
    if written < n as i64 {
        bail!("pre-filling {topic}: only {written} of {n} records arrived");
    }
    Ok(())
}

/// Sum of the partitions' high watermarks. Retries for a while: a topic
/// created a moment ago may not have its leaders yet.
pub fn end_offsets(bootstrap: &str, topic: &str) -> anyhow::Result<i64> {
    let consumer: BaseConsumer = client(bootstrap).create()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match try_end_offsets(&consumer, topic) {
            Ok(n) => return Ok(n),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn try_end_offsets(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<i64> {
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let t = md.topics().first().context("no topic metadata")?;
    let mut sum = 0;
    for p in t.partitions() {
        sum += consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))?
            .1;
    }
    Ok(sum)
}

/// Reads a consumer group's committed offsets without joining it.
pub struct OffsetWatch {
    consumer: BaseConsumer,
    tpl: TopicPartitionList,
}

impl OffsetWatch {
    pub fn new(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> anyhow::Result<Self> {
        // read_uncommitted: librdkafka otherwise asks for stable offsets and
        // waits out every open transaction of the group it watches.
        let consumer: BaseConsumer = client(bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_uncommitted")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        Ok(Self { consumer, tpl })
    }

    /// Records consumed and committed so far (sum over partitions). Blocks.
    pub fn committed(&self) -> anyhow::Result<i64> {
        let tpl = self
            .consumer
            .committed_offsets(self.tpl.clone(), Duration::from_secs(5))?;
        Ok(tpl
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum())
    }
}

/// A producer writing events at a fixed rate on its own thread, like a busy
/// backend would. Events whose produce time falls in the measurement window
/// are counted, so the sink's arrivals can be checked against them.
pub struct LoadGen {
    pub in_window: Arc<AtomicU64>,
    pub sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl LoadGen {
    /// Produces `rate` events/s to `topic` for `duration`; events produced in
    /// `[window.0, window.1)` (µs since the epoch) are counted.
    pub fn start(
        bootstrap: &str,
        topic: &str,
        run: &str,
        rate: f64,
        duration: Duration,
        window: (u64, u64),
    ) -> anyhow::Result<Self> {
        let producer: BaseProducer = client(bootstrap)
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("enable.idempotence", "true")
            .create()?;
        let (in_window, sent, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (topic, run) = (topic.to_string(), run.to_string());
        let handle = {
            let (in_window, sent, stop) = (in_window.clone(), sent.clone(), stop.clone());
            std::thread::Builder::new().name("loadgen".into()).spawn(
                move || -> anyhow::Result<()> {
                    let start = Instant::now();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) && start.elapsed() < duration {
                        let due = (start.elapsed().as_secs_f64() * rate) as u64;
                        while i < due {
                            let t = crate::sink::now_us();
                            let e = event(&run, i, t);
                            let (key, value) = (event_key(&e), event_json(&e));
                            let mut rec = BaseRecord::to(&topic).key(&key).payload(&value);
                            loop {
                                match producer.send(rec) {
                                    Ok(()) => break,
                                    Err((
                                        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                                        r,
                                    )) => {
                                        rec = r;
                                        producer.poll(Duration::from_millis(1));
                                    }
                                    Err((e, _)) => return Err(e.into()),
                                }
                            }
                            if (window.0..window.1).contains(&t) {
                                in_window.fetch_add(1, Ordering::Relaxed);
                            }
                            i += 1;
                            sent.store(i, Ordering::Relaxed);
                        }
                        producer.poll(Duration::ZERO);
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    producer.flush(Duration::from_secs(30))?;
                    Ok(())
                },
            )?
        };
        Ok(Self {
            in_window,
            sent,
            stop,
            handle: Some(handle),
        })
    }

    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Stops producing (if still running) and reports the thread's result.
    pub fn join(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| anyhow::anyhow!("load generator panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for LoadGen {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
