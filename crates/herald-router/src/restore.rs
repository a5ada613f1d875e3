//! Dedupe state from the changelog: when input partitions are assigned, the
//! matching changelog partitions are read back — only the part inside the
//! dedupe window (found by timestamp), and for at most [`RESTORE_TIMEOUT`],
//! since this runs inside the rebalance callback. When it cannot finish,
//! routing goes on without the state, and the failure is logged and
//! counted (`herald_router_dedupe_restore_failures_total`).

use crate::dedupe::{parse_key, Dedupe};
use herald_core::config::Config;
use herald_core::kafka::client_config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest a restore may take before routing goes on without it.
pub const RESTORE_TIMEOUT: Duration = Duration::from_secs(30);

/// The changelog must exist with at least as many partitions as the input,
/// since input partition N keeps its marks in changelog partition N.
pub fn check_changelog(config: &Config) -> anyhow::Result<()> {
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

/// Where reading a changelog partition starts: the first offset whose
/// timestamp is inside the window (`by_time`, from `offsets_for_times`;
/// `None` when no record is that new), never before the low watermark.
/// `None`: nothing to read.
pub fn restore_start(low: i64, high: i64, by_time: Option<i64>) -> Option<i64> {
    let start = by_time?.max(low);
    (start < high).then_some(start)
}

/// What a restore read.
#[derive(Debug, Default)]
pub struct Restored {
    /// Marks loaded into the dedupe state.
    pub loaded: usize,
    /// Records before the window, not read at all.
    pub skipped: i64,
}

/// Reads the changelog partitions matching newly assigned input partitions
/// and loads the marks still inside the window.
pub fn restore_dedupe(
    config: &Config,
    partitions: &[i32],
    dedupe: &Mutex<Dedupe>,
) -> anyhow::Result<Restored> {
    let deadline = Instant::now() + RESTORE_TIMEOUT;
    let left = || deadline.saturating_duration_since(Instant::now());
    let topic = config.topic_names().dedupe_changelog();
    let consumer: BaseConsumer = client_config(config)
        .set(
            "group.id",
            format!("{}.dedupe-restore", config.topic_names().router_group()),
        )
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let window_ms = dedupe.lock().expect("dedupe lock").window_ms();
    let now = herald_core::time::now_ms();
    let mut by_time = TopicPartitionList::new();
    for &p in partitions {
        by_time.add_partition_offset(&topic, p, Offset::Offset(now - window_ms))?;
    }
    let by_time = consumer.offsets_for_times(by_time, left())?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    let mut out = Restored::default();
    for e in by_time.elements() {
        let p = e.partition();
        let (low, high) = consumer.fetch_watermarks(&topic, p, left())?;
        let found = match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        };
        if let Some(start) = restore_start(low, high, found) {
            tpl.add_partition_offset(&topic, p, Offset::Offset(start))?;
            ends.insert(p, high);
            out.skipped += start - low;
        } else {
            out.skipped += high - low;
        }
    }
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    let mut d = dedupe.lock().expect("dedupe lock");
    while !ends.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "reading {topic} took longer than {RESTORE_TIMEOUT:?}"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m?;
            let id = m.key().and_then(parse_key);
            let at = m
                .payload()
                .and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok());
            if let (Some(id), Some(at)) = (id, at) {
                if now - at <= window_ms {
                    d.insert(m.partition(), id, at);
                    out.loaded += 1;
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::restore_start;

    #[test]
    fn restore_reads_only_the_window() {
        // Marks at offsets 0..1000, the window starts at offset 990.
        assert_eq!(restore_start(0, 1000, Some(990)), Some(990));
        // Compaction or retention removed the start: from the low watermark.
        assert_eq!(restore_start(995, 1000, Some(990)), Some(995));
        // Nothing inside the window: nothing is read.
        assert_eq!(restore_start(0, 1000, None), None);
        assert_eq!(restore_start(0, 1000, Some(1000)), None);
        assert_eq!(restore_start(0, 0, Some(0)), None);
    }
}
