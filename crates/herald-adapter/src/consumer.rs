//! The adapter's Kafka consumer: group membership, what happens when
//! partitions come and go (offset commits: `committer.rs`).
//!
//! The rebalance callbacks run inside the driver's `recv()`, so the driver
//! is not starting work meanwhile. On revoke, the callback waits (bounded)
//! for delivery tasks already running on those partitions, commits what is
//! finished and tells the driver to drop their queued records: nothing new
//! starts for a partition that is leaving, and the new owner starts where
//! this one stopped; the partitions are also resumed, so that no pause of
//! ours outlives the assignment inside librdkafka. On assign, the driver is
//! told, and restores their ledger off the rebalance path. Nothing is
//! paused here: a pause issued while librdkafka is starting a partition's
//! fetcher can leave that partition never fetched (see `scheduler.rs`).

use crate::ledger::Ledger;
use crate::offsets::{OffsetTracker, Tp};
use herald_core::config::Config;
use herald_core::metrics::AdapterMetrics;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Membership changes for the driver to apply, in order.
#[derive(Debug, PartialEq)]
pub enum GroupEvent {
    Assigned(Vec<Tp>),
    Revoked(Vec<Tp>),
}

pub struct AdapterContext {
    pub offsets: Arc<Mutex<OffsetTracker>>,
    pub ledger: Arc<Mutex<Ledger>>,
    pub events: Arc<Mutex<Vec<GroupEvent>>>,
    /// Wakes the driver when an event is pushed: the callbacks run inside
    /// its `recv()`, which would otherwise wait on for a record — and newly
    /// assigned partitions stay paused until the driver sees them.
    pub wake: Arc<tokio::sync::Notify>,
    pub config: Config,
    pub destination: String,
    pub metrics: AdapterMetrics,
    /// How long a revoke waits for running deliveries of its partitions.
    pub handover_wait: Duration,
}

// Lag is measured by the lag probe (`herald_core::lagprobe`), beside the
// group, not from this client's statistics.
impl ClientContext for AdapterContext {}

fn tps_of(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ConsumerContext for AdapterContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let tps = tps_of(tpl);
            // A no-op for partitions that are not paused.
            if let Err(e) = consumer.resume(tpl) {
                warn!(error = %e, "Could not resume revoked partitions.");
            }
            self.events
                .lock()
                .expect("events lock")
                .push(GroupEvent::Revoked(tps.clone()));
            self.wake.notify_one();
            let waited = self.wait_for_running(&tps);
            let commits = self.offsets.lock().expect("offsets lock").revoke(&tps);
            let dest_topic = self.config.topic_names().dest(&self.destination);
            {
                let mut ledger = self.ledger.lock().expect("ledger lock");
                for tp in tps.iter().filter(|tp| tp.0 == dest_topic) {
                    ledger.forget(tp.1);
                }
            }
            // Hand over cleanly: commit what is finished before the new
            // owner starts reading. Unfinished records are re-delivered.
            if let Err(e) = commit_list(consumer, &commits, CommitMode::Sync) {
                self.metrics
                    .commit_failures
                    .with_label_values(&[&self.destination])
                    .inc();
                warn!(error = %e, "Could not commit offsets of revoked partitions; their finished records may be delivered again by the new owner.");
            }
            info!(
                partitions = tps.len(),
                waited_ms = waited.as_millis() as u64,
                "Partitions revoked from the adapter."
            );
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                // Their records are parked by the driver until their ledger
                // is read.
                self.events
                    .lock()
                    .expect("events lock")
                    .push(GroupEvent::Assigned(tps_of(tpl)));
                self.wake.notify_one();
                info!(
                    partitions = tpl.count(),
                    "Partitions assigned to the adapter."
                );
            }
            Rebalance::Error(e) => warn!(error = %e, "Rebalance failed."),
            Rebalance::Revoke(_) => {}
        }
    }
}

impl AdapterContext {
    /// Waits until no delivery task runs for `tps`, at most
    /// `handover_wait`. Runs inside the driver's poll: the tasks run on the
    /// runtime's other workers meanwhile.
    fn wait_for_running(&self, tps: &[Tp]) -> Duration {
        let started = Instant::now();
        let deadline = started + self.handover_wait;
        let wait = || loop {
            let running = self.offsets.lock().expect("offsets lock").running(tps);
            if running == 0 {
                return;
            }
            if Instant::now() >= deadline {
                warn!(
                    running,
                    "Deliveries of revoked partitions still running after the hand-over wait; the new owner may deliver them again."
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
        started.elapsed()
    }
}

pub fn commit_list<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    commits: &[(Tp, i64)],
    mode: CommitMode,
) -> KafkaResult<()> {
    if commits.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in commits {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    consumer.commit(&tpl, mode)
}
