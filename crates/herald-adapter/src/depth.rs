//! Retry-tier and DLQ depth of one destination, measured on the broker.
//!
//! A side client that never joins the adapter group reads, every
//! [`INTERVAL`], each tier's high watermarks and the group's committed
//! offsets (records written to the tier and not yet finished) and the DLQ's
//! low and high watermarks (records the DLQ retains). librdkafka's own
//! statistics cannot be used for this: a paused tier partition stops
//! fetching, so its high watermark there goes stale, and the DLQ has no
//! consumer at all. Every replica measures the whole topics, so the values
//! are the same on each; aggregate them with `max`, not `sum`.

use herald_core::config::{Config, DestinationConfig};
use herald_core::kafka::client_config;
use herald_core::metrics::AdapterMetrics;
use herald_core::time::compact_duration;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::time::Duration;
use tracing::{debug, warn};

/// How often depths are measured.
pub const INTERVAL: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(5);

pub struct DepthProbe {
    consumer: BaseConsumer,
    destination: String,
    /// (tier label, topic)
    tiers: Vec<(String, String)>,
    dlq: String,
    metrics: AdapterMetrics,
}

impl DepthProbe {
    pub fn new(
        config: &Config,
        destination: &str,
        dc: &DestinationConfig,
        metrics: AdapterMetrics,
    ) -> anyhow::Result<Self> {
        let names = config.topic_names();
        // Same group id, so committed offsets are the adapter group's; the
        // probe never subscribes, so it never joins the group.
        let consumer: BaseConsumer = client_config(config)
            .set("group.id", names.adapter_group(destination))
            .set("enable.auto.commit", "false")
            .create()?;
        Ok(Self {
            consumer,
            destination: destination.to_string(),
            tiers: dc
                .retry
                .tiers
                .iter()
                .map(|d| (compact_duration(*d), names.retry(destination, *d)))
                .collect(),
            dlq: names.dlq(destination),
            metrics,
        })
    }

    /// Measures now and then every [`INTERVAL`] on a thread of its own
    /// (librdkafka's calls block). The thread ends with the process.
    pub fn start(self) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("depth-probe".into())
            .spawn(move || loop {
                self.measure();
                std::thread::sleep(INTERVAL);
            })?;
        Ok(())
    }

    fn measure(&self) {
        let dest = self.destination.as_str();
        for (tier, topic) in &self.tiers {
            match self.depth(topic, true) {
                Ok(n) => self
                    .metrics
                    .retry_depth
                    .with_label_values(&[dest, tier])
                    .set(n),
                Err(e) => {
                    warn!(topic = %topic, error = %e, "Could not measure the retry tier's depth.")
                }
            }
        }
        match self.depth(&self.dlq, false) {
            Ok(n) => self.metrics.dlq_depth.with_label_values(&[dest]).set(n),
            Err(e) => warn!(topic = %self.dlq, error = %e, "Could not measure the DLQ's depth."),
        }
    }

    /// Records between each partition's start (the group's committed offset
    /// when `committed`, else the low watermark) and its high watermark.
    fn depth(&self, topic: &str, committed: bool) -> anyhow::Result<i64> {
        let md = self.consumer.fetch_metadata(Some(topic), TIMEOUT)?;
        let t = md
            .topics()
            .first()
            .ok_or_else(|| anyhow::anyhow!("no metadata for {topic}"))?;
        if let Some(e) = t.error() {
            anyhow::bail!("{topic}: {e:?}");
        }
        let mut tpl = TopicPartitionList::new();
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
        let starts = if committed {
            Some(self.consumer.committed_offsets(tpl.clone(), TIMEOUT)?)
        } else {
            None
        };
        let mut total = 0;
        for p in t.partitions() {
            let (low, high) = self.consumer.fetch_watermarks(topic, p.id(), TIMEOUT)?;
            let start = match starts
                .as_ref()
                .and_then(|s| s.find_partition(topic, p.id()))
            {
                // No commit yet: the group starts at the earliest record.
                Some(e) => match e.offset() {
                    Offset::Offset(o) => o.clamp(low, high),
                    _ => low,
                },
                None => low,
            };
            total += high - start;
        }
        debug!(topic, total, "Measured depth.");
        Ok(total)
    }
}
