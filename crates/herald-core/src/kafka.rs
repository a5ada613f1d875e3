//! Kafka client set-up shared by every service: client configs, header
//! access, and the topic plan a configuration needs.

use crate::config::Config;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Headers, Message, OwnedHeaders};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// Base client config: bootstrap servers plus the operator's extra
/// `[kafka.client]` properties and the resolved `[kafka.client_secrets]`.
pub fn client_config(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in config.kafka.client_properties() {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &config.kafka.bootstrap_servers);
    c
}

/// Producer config every Herald writer shares: idempotent, `acks=all`, a
/// short linger, lz4, and the Java clients' murmur2 partitioner so a key
/// lands on the same partition whichever client produced it.
pub fn producer_config(config: &Config) -> ClientConfig {
    let mut c = client_config(config);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("partitioner", "murmur2_random");
    c
}

/// The router's transactional producer (and the benchmark's raw
/// transactional copy, which must match it): [`producer_config`] plus the
/// transaction settings.
pub fn txn_producer_config(config: &Config, transactional_id: &str) -> ClientConfig {
    let mut cfg = producer_config(config);
    cfg.set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", "60000");
    // The client's own limit must admit what router.max_event_bytes lets
    // through (librdkafka's default is 1 000 000 bytes).
    if !config.kafka.client.contains_key("message.max.bytes") {
        let limit = (config.router.max_event_bytes + 64 * 1024).max(1_000_000);
        cfg.set("message.max.bytes", limit.to_string());
    }
    // Batches close as soon as the input runs dry (crate::batch), so a
    // transaction often begins while the coordinator is still writing the
    // last one's markers; the broker answers CONCURRENT_TRANSACTIONS and
    // librdkafka retries after retry.backoff.ms (100 ms by default, growing
    // up to retry.backoff.max.ms). A short first backoff keeps that wait to
    // a few ms; repeated failures still back off exponentially.
    if !config.kafka.client.contains_key("retry.backoff.ms") {
        cfg.set("retry.backoff.ms", "5");
    }
    cfg
}

/// The value of header `name` as UTF-8, if present.
pub fn header_str<'a, M: Message>(msg: &'a M, name: &str) -> Option<&'a str> {
    let h = msg.headers()?;
    h.iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Appends a UTF-8 header.
pub fn add_header(h: OwnedHeaders, key: &str, value: &str) -> OwnedHeaders {
    h.insert(rdkafka::message::Header {
        key,
        value: Some(value.as_bytes()),
    })
}

/// One topic `herald topics apply` creates.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub config: Vec<(&'static str, String)>,
}

/// Every topic a configuration needs, input topic included. Retry tiers
/// share their destination topic's partition count so keys keep their
/// partition; DLQ and invalid keep data longer. The ledger is compacted
/// (the newest step per event wins) and also deleted after
/// `topics.ledger_retention`: its keys are unique events, so compaction
/// alone would let it grow forever.
pub fn topic_plan(config: &Config) -> Vec<TopicSpec> {
    let t = &config.topics;
    let names = config.topic_names();
    let spec = |name: String, retention: Duration, compact: bool| {
        let mut cfg = vec![("retention.ms", retention.as_millis().to_string())];
        if compact {
            cfg.insert(0, ("cleanup.policy", "compact,delete".to_string()));
        }
        TopicSpec {
            name,
            partitions: t.partitions,
            replication_factor: t.replication_factor,
            config: cfg,
        }
    };
    let mut out = vec![
        spec(t.input.clone(), t.retention, false),
        spec(names.invalid(), t.dlq_retention, false),
        spec(names.attempts(), t.retention, false),
        spec(names.dlq_actions(), t.dlq_retention, false),
    ];
    if !config.router.dedupe_window.is_zero() {
        // One partition per input partition; old marks age out by retention
        // as well as by compaction.
        let keep = (config.router.dedupe_window * 2).max(Duration::from_secs(3600));
        out.push(TopicSpec {
            name: names.dedupe_changelog(),
            partitions: t.partitions,
            replication_factor: t.replication_factor,
            config: vec![
                ("cleanup.policy", "compact,delete".to_string()),
                ("retention.ms", keep.as_millis().to_string()),
            ],
        });
    }
    for (name, d) in &config.destinations {
        out.push(spec(names.dest(name), t.retention, false));
        for delay in &d.retry.tiers {
            out.push(spec(names.retry(name, *delay), t.retention, false));
        }
        out.push(spec(names.dlq(name), t.dlq_retention, false));
        out.push(spec(names.ledger(name), t.ledger_retention(), true));
    }
    out
}

/// What `apply_topics` did with each topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicResult {
    Created,
    Exists,
}

/// Creates the topics that do not exist yet. Idempotent.
pub async fn apply_topics(
    config: &Config,
    specs: &[TopicSpec],
) -> anyhow::Result<Vec<(String, TopicResult)>> {
    let admin: AdminClient<DefaultClientContext> = client_config(config).create()?;
    let new: Vec<NewTopic> = specs
        .iter()
        .map(|s| {
            let mut nt = NewTopic::new(
                &s.name,
                s.partitions,
                TopicReplication::Fixed(s.replication_factor),
            );
            for (k, v) in &s.config {
                nt = nt.set(k, v);
            }
            nt
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(new.iter(), &opts).await?;
    let mut out = Vec::new();
    for r in results {
        match r {
            Ok(name) => out.push((name, TopicResult::Created)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                out.push((name, TopicResult::Exists))
            }
            Err((name, code)) => anyhow::bail!("creating topic {name} failed: {code}"),
        }
    }
    Ok(out)
}

/// Client context for side readers that assign one partition after another
/// with `enable.partition.eof` (the lag probe, the ledger restore): an
/// end-of-partition event that arrives after its partition was replaced by
/// the next one comes back as a "global error" with no partition, which
/// librdkafka's default context logs at ERROR. It is expected and harmless:
/// logged at DEBUG. Every other client error is logged at WARN.
#[derive(Debug, Default, Clone, Copy)]
pub struct EofReaderContext;

impl rdkafka::ClientContext for EofReaderContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::debug!(%error, reason, "End of a partition the reader no longer reads.");
        } else {
            tracing::warn!(%error, reason, "Kafka client error.");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for EofReaderContext {}

/// Reads every committed record of `topic` that exists now, from the
/// beginning up to each partition's high watermark at the time of the call.
/// No consumer group is joined and nothing is committed. Used by the CLI
/// (`dlq list`, `dlq replay`) and the tests.
pub async fn read_topic_to_end(
    config: &Config,
    topic: &str,
) -> anyhow::Result<Vec<rdkafka::message::OwnedMessage>> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let consumer: StreamConsumer = client_config(config)
        .set("group.id", format!("{}.cli-reader", config.topics.prefix))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let t = md
        .topics()
        .first()
        .ok_or_else(|| anyhow::anyhow!("no metadata for topic {topic}"))?;
    if let Some(e) = t.error() {
        anyhow::bail!("topic {topic}: {:?}", e);
    }
    let mut tpl = TopicPartitionList::new();
    let mut remaining = std::collections::HashMap::new();
    for p in t.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
        if high > low {
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
            remaining.insert(p.id(), high);
        }
    }
    let mut out = Vec::new();
    if remaining.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !remaining.is_empty() {
        if std::time::Instant::now() > deadline {
            anyhow::bail!("timed out reading {topic}");
        }
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
            let (p, next) = (m.partition(), m.offset() + 1);
            out.push(m.detach());
            if remaining.get(&p).is_some_and(|high| next >= *high) {
                remaining.remove(&p);
            }
            continue;
        }
        // Transaction markers occupy offsets but are never returned; the
        // position tells when a partition has passed its watermark.
        if let Ok(pos) = consumer.position() {
            for e in pos.elements() {
                if let Offset::Offset(o) = e.offset() {
                    if remaining.get(&e.partition()).is_some_and(|high| o >= *high) {
                        remaining.remove(&e.partition());
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(toml: &str) -> Vec<TopicSpec> {
        let c = Config::from_toml_with_env(toml, "t.toml", std::iter::empty()).unwrap();
        topic_plan(&c)
    }

    fn config_of<'a>(plan: &'a [TopicSpec], name: &str) -> &'a [(&'static str, String)] {
        &plan
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} not planned"))
            .config
    }

    const DEST: &str = r#"
        [destinations.crm]
        kind = "webhook"
        url = "http://127.0.0.1:8080/hook"
    "#;

    /// The ledger is keyed by unique events: compaction alone never deletes
    /// anything, so it is also deleted after `topics.ledger_retention`.
    #[test]
    fn the_ledger_is_compacted_and_deleted() {
        let p = plan(DEST);
        let week = (7 * 86_400_000u64).to_string();
        assert_eq!(
            config_of(&p, "herald.dest.crm.ledger"),
            [
                ("cleanup.policy", "compact,delete".to_string()),
                ("retention.ms", week.clone())
            ]
        );
        let p = plan(&format!("[topics]\nledger_retention = \"10d\"\n{DEST}"));
        assert_eq!(
            config_of(&p, "herald.dest.crm.ledger")[1],
            ("retention.ms", (10 * 86_400_000u64).to_string())
        );
        // The other topics keep plain time retention.
        assert_eq!(
            config_of(&p, "herald.dest.crm"),
            [("retention.ms", week.clone())]
        );
        assert_eq!(
            config_of(&p, "herald.dest.crm.dlq"),
            [("retention.ms", (30 * 86_400_000u64).to_string())]
        );
    }
}
