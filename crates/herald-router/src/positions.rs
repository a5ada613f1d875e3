//! Consumer positions: rewinding after a dropped or failed batch. (Lag is
//! measured by the lag probe, from the group's committed offsets.)

use crate::context::RouterContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::topic_partition_list::Offset;
use std::collections::BTreeMap;
use std::time::Duration;
use tracing::warn;

type Consumer_ = BaseConsumer<RouterContext>;

/// After a dropped batch, moves each partition of the batch back to its
/// first record so the batch is routed again. Partitions no longer assigned
/// are skipped: their new owner starts from the committed offset.
pub fn rewind(consumer: &Consumer_, batch: &[OwnedMessage]) {
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

/// Moves every assigned partition to the group's committed offset (the
/// start, if none). After a failed or uncertain transaction this is the
/// only safe position: a commit that did go through is not routed again,
/// one that did not is.
pub fn rewind_to_committed(consumer: &Consumer_) -> anyhow::Result<()> {
    let assignment = consumer.assignment()?;
    if assignment.count() == 0 {
        return Ok(());
    }
    let committed = consumer.committed_offsets(assignment, Duration::from_secs(10))?;
    for e in committed.elements() {
        let to = match e.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        if let Err(err) = consumer.seek(e.topic(), e.partition(), to, Duration::from_secs(10)) {
            // Revoked meanwhile, or not fetching yet: its (next) owner
            // starts from the committed offset anyway.
            warn!(partition = e.partition(), error = %err, "Could not move partition to its committed offset.");
        }
    }
    Ok(())
}
