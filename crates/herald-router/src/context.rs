//! The consumer's context: broker reachability, dedupe restore on assignment,
//! and a rebalance counter the routing loop checks so that a batch fetched
//! before a revoke is dropped rather than routed by two routers.

use crate::dedupe::Dedupe;
use crate::restore::restore_dedupe;
use herald_core::config::Config;
use herald_core::metrics::RouterMetrics;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tracing::{error, info, warn};

pub struct RouterContext {
    pub assigned: Arc<AtomicBool>,
    /// Bumped on every assignment change. Rebalance callbacks run inside
    /// `poll`, on the routing thread, between batches: a batch collected
    /// while it changed is dropped and its partitions rewound.
    pub rebalances: AtomicU64,
    pub metrics: RouterMetrics,
    /// Dedupe state and how to restore it; `None` when dedupe is off.
    pub dedupe: Option<(Arc<Mutex<Dedupe>>, Config)>,
    /// Set when the client reports every broker unreachable (a global
    /// error, not a poll result); the loop clears it once the broker
    /// answers a metadata request again. The router is not ready meanwhile.
    pub broker_down: Arc<AtomicBool>,
}

impl ClientContext for RouterContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown) {
            self.broker_down.store(true, Ordering::Release);
        }
        error!(error = %error, reason, "librdkafka error.");
    }
}

impl ConsumerContext for RouterContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::AcqRel);
        match rebalance {
            Rebalance::Assign(tpl) => {
                if let Some((dedupe, config)) = &self.dedupe {
                    let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                    if !parts.is_empty() {
                        match restore_dedupe(config, &parts, dedupe) {
                            Ok(r) => info!(
                                partitions = ?parts,
                                identities = r.loaded,
                                skipped_before_window = r.skipped,
                                "Restored dedupe state from the changelog."
                            ),
                            // Routing goes on; only copies within the window may slip through.
                            Err(e) => {
                                self.metrics.dedupe_restore_failures.inc();
                                error!(partitions = ?parts, error = %e, "Could not restore dedupe state; dedupe is off for these partitions until their marks are rebuilt, so copies of recent events may be routed.")
                            }
                        }
                    }
                }
                self.assigned.store(true, Ordering::Release);
                info!(
                    partitions = tpl.count(),
                    "Partitions assigned to the router."
                );
            }
            Rebalance::Revoke(tpl) => {
                if let Some((dedupe, _)) = &self.dedupe {
                    let mut d = dedupe.lock().expect("dedupe lock");
                    for e in tpl.elements() {
                        d.forget_partition(e.partition());
                    }
                }
                info!(
                    partitions = tpl.count(),
                    "Partitions revoked from the router."
                )
            }
            Rebalance::Error(e) => warn!(error = %e, "Rebalance failed."),
        }
    }
}
