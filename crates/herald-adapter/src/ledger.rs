//! Suppressing re-delivery after a crash or a rebalance. A delivery whose
//! offset was not committed yet when its adapter died (or lost the
//! partition) is read again by the successor; the ledger says how far that
//! event already got.
//!
//! The ledger topic holds each event's latest step, keyed by its identity
//! (the router's identity hash: `source` + `id` by default) and written to
//! the same partition number as the delivery record, so ledger partition N
//! covers destination (and retry-tier) partition N. Steps:
//! - `delivered`: every later copy of the event is skipped;
//! - `retrying` after `attempts` attempts: the retry record is durable, so
//!   copies with fewer attempts made (the destination record, an earlier
//!   tier's record) are skipped — the chain goes on from the tier;
//! - `dead_lettered` / `expired`: nothing is skipped (a DLQ replay must go
//!   through).
//!
//! When partitions are assigned, the adapter reads, off the rebalance path,
//! the ledger entries written since the oldest uncommitted record of those
//! partitions — only those can describe records it is about to see again.
//! The partitions stay paused until then; the others flow.

use herald_core::config::Config;
use herald_core::envelope::{LedgerEntry, LedgerState};
use herald_core::kafka::client_config;
use herald_core::kafka::EofReaderContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Clock skew allowed between the producer of a delivery and of its ledger
/// entry.
const SKEW_MS: i64 = 60_000;

/// How long reading one partition's ledger may take before the restore
/// gives up (the records may then be delivered again).
const READ_BUDGET: Duration = Duration::from_secs(30);

/// The latest step recorded for an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Delivered,
    /// A retry record after this many attempts is durable.
    Retrying(i32),
    /// Dead-lettered, expired, or anything else that must not suppress.
    Other,
}

impl Step {
    /// Whether a record whose delivery had `attempts_made` attempts before
    /// it must be skipped.
    pub fn suppresses(self, attempts_made: i32) -> bool {
        match self {
            Step::Delivered => true,
            Step::Retrying(n) => attempts_made < n,
            Step::Other => false,
        }
    }

    pub fn of(entry: &LedgerEntry) -> Step {
        match entry.state {
            LedgerState::Delivered => Step::Delivered,
            LedgerState::Retrying => Step::Retrying(entry.attempts),
            _ => Step::Other,
        }
    }
}

/// Latest steps known, per partition number, by identity key.
#[derive(Debug, Default)]
pub struct Ledger {
    steps: HashMap<i32, HashMap<String, Step>>,
}

impl Ledger {
    /// Whether a record of `partition` for `identity`, made after
    /// `attempts_made` attempts, must be skipped.
    pub fn suppresses(&self, partition: i32, identity: &str, attempts_made: i32) -> bool {
        self.steps
            .get(&partition)
            .and_then(|s| s.get(identity))
            .is_some_and(|step| step.suppresses(attempts_made))
    }

    /// Adds restored steps (the destination topic and its tiers share
    /// partition numbers, so loads for one partition accumulate).
    pub fn load(&mut self, partition: i32, steps: HashMap<String, Step>) {
        self.steps.entry(partition).or_default().extend(steps);
    }

    /// This process recorded a new step for an event. Only events already
    /// known (restored) are updated — a restored step must not outlive a
    /// later one (e.g. "retrying" after the event was dead-lettered, which
    /// would skip its DLQ replay) — so the map never grows past what was
    /// restored.
    pub fn update(&mut self, partition: i32, identity: &str, step: Step) {
        if let Some(known) = self
            .steps
            .get_mut(&partition)
            .and_then(|s| s.get_mut(identity))
        {
            *known = step;
        }
    }

    pub fn forget(&mut self, partition: i32) {
        self.steps.remove(&partition);
    }
}

/// For newly assigned partitions, reads the ledger entries that may
/// describe records at or after the group's committed positions. Returns
/// the latest step per identity, per partition number (only partitions with
/// uncommitted records appear). Blocking: run it off the async runtime.
pub fn restore(
    config: &Config,
    destination: &str,
    tps: &[(String, i32)],
) -> anyhow::Result<HashMap<i32, HashMap<String, Step>>> {
    let timeout = Duration::from_secs(10);
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in tps {
        tpl.add_partition(topic, *partition);
    }
    // The adapter group's committed offsets, read by a client that never
    // joins the group.
    let group: BaseConsumer = client_config(config)
        .set("group.id", config.topic_names().adapter_group(destination))
        .set("enable.auto.commit", "false")
        .create()?;
    let committed = group.committed_offsets(tpl, timeout)?;
    let reader = reader(config, destination)?;
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
            read_steps(&reader, &ledger, partition, ts - SKEW_MS)?,
        );
    }
    Ok(out)
}

type Reader = BaseConsumer<EofReaderContext>;

fn reader(config: &Config, destination: &str) -> anyhow::Result<Reader> {
    Ok(client_config(config)
        .set(
            "group.id",
            format!(
                "{}.ledger-restore",
                config.topic_names().adapter_group(destination)
            ),
        )
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        // A caught-up partition whose committed offset points at a
        // transaction marker has no record to return: say so at once
        // instead of waiting for one.
        .set("enable.partition.eof", "true")
        // Each partition is read on its own, one after the other: answer
        // fetches at once rather than after librdkafka's default 500 ms.
        .set("fetch.wait.max.ms", "10")
        .create_with_context(EofReaderContext)?)
}

/// What one poll of a partition-EOF-enabled reader gave.
enum Polled<M> {
    Record(M),
    End,
    Nothing,
}

fn poll<'a>(
    reader: &'a Reader,
    wait: Duration,
) -> anyhow::Result<Polled<rdkafka::message::BorrowedMessage<'a>>> {
    match reader.poll(wait) {
        Some(Ok(m)) => Ok(Polled::Record(m)),
        Some(Err(KafkaError::PartitionEOF(_))) => Ok(Polled::End),
        Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::PartitionEOF))) => {
            Ok(Polled::End)
        }
        Some(Err(e)) => Err(e.into()),
        None => Ok(Polled::Nothing),
    }
}

/// Timestamp of the first record at or after `offset`, if there is one.
fn first_timestamp_from(
    reader: &Reader,
    topic: &str,
    partition: i32,
    offset: i64,
) -> anyhow::Result<Option<i64>> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    reader.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match poll(reader, Duration::from_millis(200))? {
            Polled::Record(m) => return Ok(m.timestamp().to_millis()),
            Polled::End => return Ok(None),
            Polled::Nothing => {}
        }
    }
    Ok(None)
}

/// Latest step per identity in one ledger partition, written at or after
/// `from_ms`.
fn read_steps(
    reader: &Reader,
    ledger: &str,
    partition: i32,
    from_ms: i64,
) -> anyhow::Result<HashMap<String, Step>> {
    let timeout = Duration::from_secs(10);
    let mut steps = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(ledger, partition, Offset::Offset(from_ms))?;
    let start = reader.offsets_for_times(tpl, timeout)?;
    let Some(Offset::Offset(start)) = start.elements().first().map(|e| e.offset()) else {
        return Ok(steps); // Nothing written since.
    };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(ledger, partition, Offset::Offset(start))?;
    reader.assign(&tpl)?;
    let deadline = Instant::now() + READ_BUDGET;
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out reading {ledger} partition {partition}"
        );
        match poll(reader, Duration::from_millis(200))? {
            Polled::Record(m) => {
                if let (Some(k), Some(v)) = (m.key(), m.payload()) {
                    if let Some(entry) = LedgerEntry::decode_any(v) {
                        steps.insert(String::from_utf8_lossy(k).into_owned(), Step::of(&entry));
                    }
                }
            }
            Polled::End => return Ok(steps),
            Polled::Nothing => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_suppress_what_they_supersede() {
        assert!(Step::Delivered.suppresses(0));
        assert!(Step::Delivered.suppresses(7));
        assert!(Step::Retrying(2).suppresses(0), "the destination record");
        assert!(Step::Retrying(2).suppresses(1), "the first tier's record");
        assert!(!Step::Retrying(2).suppresses(2), "the live tier record");
        assert!(!Step::Other.suppresses(0), "a DLQ replay goes through");
        let mut l = Ledger::default();
        l.load(2, [("id1".to_string(), Step::Delivered)].into());
        assert!(l.suppresses(2, "id1", 0));
        assert!(!l.suppresses(1, "id1", 0));
        l.update(2, "id1", Step::Other);
        assert!(
            !l.suppresses(2, "id1", 0),
            "a later step replaces a restored one"
        );
        l.update(2, "id2", Step::Delivered);
        assert!(!l.suppresses(2, "id2", 0), "unknown events are not added");
        l.forget(2);
        assert!(!l.suppresses(2, "id1", 0));
    }
}
