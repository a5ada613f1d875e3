//! Offset commits, off the driver's loop, with their results.
//!
//! librdkafka reports nothing back for an asynchronous manual commit
//! (`rd_kafka_commit(.., async)` is sent without a reply queue; only a
//! configuration-wide `offset_commit_cb`, which rust-rdkafka does not set,
//! would hear of it): a commit the broker refused would be believed done
//! and never sent again. So commits are synchronous, on a thread of their
//! own so the driver never waits on the broker: each result goes to the
//! offset tracker (a refused point is asked for again on the next tick) and
//! refusals are counted in `herald_adapter_commit_failures_total`. Points
//! that queue up while a commit is in flight are merged: only the latest
//! per partition is sent.

use crate::consumer::{commit_list, AdapterContext};
use crate::offsets::{OffsetTracker, Tp};
use herald_core::metrics::AdapterMetrics;
use rdkafka::consumer::{CommitMode, StreamConsumer};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{debug, warn};

pub struct Committer {
    tx: Option<mpsc::Sender<Vec<(Tp, i64)>>>,
    done: mpsc::Receiver<()>,
}

impl Committer {
    pub fn start(
        consumer: Arc<StreamConsumer<AdapterContext>>,
        offsets: Arc<Mutex<OffsetTracker>>,
        metrics: AdapterMetrics,
        destination: String,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Vec<(Tp, i64)>>();
        let (done_tx, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("offset-commits".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut latest: BTreeMap<Tp, i64> = BTreeMap::new();
                    for (tp, o) in first.into_iter().chain(rx.try_iter().flatten()) {
                        let at = latest.entry(tp).or_insert(o);
                        *at = (*at).max(o);
                    }
                    let commits: Vec<(Tp, i64)> = latest.into_iter().collect();
                    let result = commit_list(&*consumer, &commits, CommitMode::Sync);
                    {
                        let mut tracker = offsets.lock().expect("offsets lock");
                        for (tp, o) in &commits {
                            tracker.commit_result(tp, *o, result.is_ok());
                        }
                    }
                    match result {
                        Ok(()) => debug!(partitions = commits.len(), "Offsets committed."),
                        Err(e) => {
                            metrics
                                .commit_failures
                                .with_label_values(&[&destination])
                                .inc();
                            warn!(error = %e, partitions = commits.len(), "Offset commit refused; it is sent again on the next tick.");
                        }
                    }
                }
                let _ = done_tx.send(());
            })?;
        Ok(Self { tx: Some(tx), done })
    }

    /// Hands commit points to the thread; never waits.
    pub fn send(&self, commits: Vec<(Tp, i64)>) {
        if commits.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(commits);
        }
    }

    /// Lets the commit in flight (and anything queued) finish, waiting at
    /// most `wait`. Returns whether it did.
    pub fn finish(&mut self, wait: Duration) -> bool {
        self.tx = None;
        match self.done.recv_timeout(wait) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
            Err(mpsc::RecvTimeoutError::Timeout) => false,
        }
    }
}

#[cfg(test)]
mod tests;
