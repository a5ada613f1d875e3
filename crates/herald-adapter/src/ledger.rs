//! Suppressing re-delivery after a crash or a rebalance. A delivery whose
//! offset was not committed yet when its adapter died is read again by the
//! successor; if the destination already accepted it, the ledger says so.
//!
//! The ledger topic holds each event's terminal state, keyed by event id and
//! written to the same partition number as the delivery record, so ledger
//! partition N covers destination (and retry-tier) partition N. When
//! partitions are assigned, the adapter reads the ledger entries written
//! since the oldest uncommitted record of those partitions — only those can
//! describe records it is about to see again — and skips events already
//! delivered. Dead-lettered events are not suppressed: a DLQ replay must go
//! through.

use herald_core::config::Config;
use herald_core::kafka::client_config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// Ledger value of a delivered event.
pub const DELIVERED: &str = "delivered";

/// Clock skew allowed between the producer of a delivery and of its ledger
/// entry.
const SKEW_MS: i64 = 60_000;

/// Event ids known to be delivered, per partition number.
#[derive(Debug, Default)]
pub struct Ledger {
    delivered: HashMap<i32, HashSet<String>>,
}

impl Ledger {
    pub fn is_delivered(&self, partition: i32, event_id: &str) -> bool {
        self.delivered
            .get(&partition)
            .is_some_and(|s| s.contains(event_id))
    }

    /// Adds restored ids (the destination topic and its tiers share
    /// partition numbers, so loads for one partition accumulate).
    pub fn load(&mut self, partition: i32, ids: HashSet<String>) {
        self.delivered.entry(partition).or_default().extend(ids);
    }

    pub fn forget(&mut self, partition: i32) {
        self.delivered.remove(&partition);
    }
}

/// Whether a ledger value says the event was delivered.
pub fn is_delivered_value(v: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(v)
        .ok()
        .and_then(|j| {
            j.get("state")
                .and_then(|s| s.as_str())
                .map(|s| s == DELIVERED)
        })
        .unwrap_or(false)
}

/// For the `committed` positions of newly assigned partitions, reads the
/// ledger entries that may describe records at or after them. Returns the
/// delivered event ids per partition number (only partitions with
/// uncommitted records appear).
pub fn restore(
    config: &Config,
    destination: &str,
    committed: &TopicPartitionList,
) -> anyhow::Result<HashMap<i32, HashSet<String>>> {
    let reader: BaseConsumer = client_config(config)
        .set(
            "group.id",
            format!(
                "{}.ledger-restore",
                config.topic_names().adapter_group(destination)
            ),
        )
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let timeout = Duration::from_secs(10);

    // Since when, per partition number, records may be uncommitted.
    let mut since: BTreeMap<i32, i64> = BTreeMap::new();
    for e in committed.elements() {
        let (low, high) = reader.fetch_watermarks(e.topic(), e.partition(), timeout)?;
        let start = match e.offset() {
            Offset::Offset(o) => o.max(low),
            _ => low,
        };
        if start >= high {
            continue;
        }
        if let Some(ts) = first_timestamp_from(&reader, e.topic(), e.partition(), start)? {
            let slot = since.entry(e.partition()).or_insert(ts);
            *slot = (*slot).min(ts);
        }
    }
    let ledger = config.topic_names().ledger(destination);
    let mut out = HashMap::new();
    for (partition, ts) in since {
        out.insert(
            partition,
            read_delivered(&reader, &ledger, partition, ts - SKEW_MS)?,
        );
    }
    Ok(out)
}

/// Timestamp of the first record at or after `offset`, if one arrives.
fn first_timestamp_from(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
) -> anyhow::Result<Option<i64>> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    reader.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(m) = reader.poll(Duration::from_millis(200)) {
            let m = m?;
            return Ok(m.timestamp().to_millis());
        }
    }
    Ok(None)
}

/// Delivered event ids in one ledger partition written at or after `from_ms`.
fn read_delivered(
    reader: &BaseConsumer,
    ledger: &str,
    partition: i32,
    from_ms: i64,
) -> anyhow::Result<HashSet<String>> {
    let timeout = Duration::from_secs(10);
    let (_, high) = reader.fetch_watermarks(ledger, partition, timeout)?;
    let mut ids = HashSet::new();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(ledger, partition, Offset::Offset(from_ms))?;
    let start = reader.offsets_for_times(tpl, timeout)?;
    let Some(Offset::Offset(start)) = start.elements().first().map(|e| e.offset()) else {
        return Ok(ids); // Nothing written since.
    };
    if start >= high {
        return Ok(ids);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(ledger, partition, Offset::Offset(start))?;
    reader.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out reading {ledger} partition {partition}"
        );
        if let Some(m) = reader.poll(Duration::from_millis(200)) {
            let m = m?;
            if let (Some(k), Some(v)) = (m.key(), m.payload()) {
                if is_delivered_value(v) {
                    ids.insert(String::from_utf8_lossy(k).into_owned());
                }
            }
        }
        let done = reader
            .position()?
            .elements()
            .first()
            .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= high));
        if done {
            return Ok(ids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_delivered_entries_suppress() {
        assert!(is_delivered_value(
            br#"{"state":"delivered","attempts":1,"at":1}"#
        ));
        assert!(!is_delivered_value(
            br#"{"state":"dead-lettered","attempts":3,"at":1}"#
        ));
        assert!(!is_delivered_value(b"garbage"));
        let mut l = Ledger::default();
        l.load(2, ["e1".to_string()].into_iter().collect());
        assert!(l.is_delivered(2, "e1"));
        assert!(!l.is_delivered(1, "e1"));
        l.forget(2);
        assert!(!l.is_delivered(2, "e1"));
    }
}
