//! Looks up the writer schemas of registry-framed input records before a
//! batch is routed, so routing itself stays synchronous and pure.
//!
//! An id is fetched once and cached for the process's life (a registry never
//! changes what an id means). While the registry cannot be reached the batch
//! waits, the consumer keeps polling (so the group does not evict it; what
//! those polls return is dropped, so the caller re-reads from the committed
//! offsets afterwards), and the lookup is retried with a growing pause up to
//! `schema_registry.outage_hold`; then the id is settled as unavailable for
//! [`SETTLED_TTL`] (or `outage_hold`, if shorter): the records framed with it go to the invalid topic with
//! reason `registry` and the routing goes on.

use herald_core::config::Config;
use herald_core::metrics::RouterMetrics;
use herald_core::registry::schemas::SETTLED_TTL;
use herald_core::registry::{RegistryClient, RegistryError, WriterSchemas};
use rdkafka::message::{Message, OwnedMessage};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::{info, warn};

pub struct SchemaLookup {
    client: Option<(RegistryClient, tokio::runtime::Runtime)>,
    hold: Duration,
    pub schemas: WriterSchemas,
}

impl SchemaLookup {
    /// Runs on the routing thread (not inside the async runtime): the
    /// lookups block it on a runtime of its own.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let Some(c) = &config.schema_registry else {
            return Ok(Self {
                client: None,
                hold: Duration::ZERO,
                schemas: WriterSchemas::default(),
            });
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = rt.block_on(async { RegistryClient::from_config(c) })?;
        info!(
            url = client.url(),
            "Input records in the Confluent wire format are resolved against the schema registry."
        );
        Ok(Self {
            client: Some((client, rt)),
            hold: c.outage_hold,
            schemas: WriterSchemas::default(),
        })
    }

    /// Makes sure every schema id `batch` names is known, or known to be
    /// unavailable. `idle` keeps the consumer polled while it waits; `true`
    /// when it was called: the consumer's position moved past records it
    /// dropped, and the batch must be read again from the committed offsets.
    pub fn prefetch(
        &mut self,
        batch: &[OwnedMessage],
        metrics: &RouterMetrics,
        stop: &AtomicBool,
        mut idle: impl FnMut(Duration),
    ) -> bool {
        self.schemas.clear_unavailable(Instant::now());
        let mut held = false;
        let Some((client, rt)) = &self.client else {
            return false;
        };
        let values = || batch.iter().filter_map(|m| m.payload());
        let mut missing = self.schemas.missing(values(), Instant::now());
        let started = Instant::now();
        let mut pause = Duration::from_millis(250);
        while !missing.is_empty() {
            let mut waiting = Vec::new();
            for id in std::mem::take(&mut missing) {
                let answer = rt.block_on(client.schema_by_id(id));
                let outcome = match &answer {
                    Ok(_) => "fetched",
                    Err(RegistryError::NotFound(_)) => "not_found",
                    Err(RegistryError::Unavailable(_)) => "unavailable",
                    Err(RegistryError::Refused(_)) => "refused",
                };
                metrics.schema_lookups.with_label_values(&[outcome]).inc();
                match &answer {
                    Ok(_) => info!(schema_id = id, "Fetched a writer schema from the registry."),
                    Err(RegistryError::NotFound(e)) => {
                        warn!(schema_id = id, error = %e, "The registry does not know this schema id.")
                    }
                    Err(e) => waiting.push((id, e.to_string())),
                }
                self.schemas.learn(id, answer, Instant::now());
            }
            if waiting.is_empty() || stop.load(Ordering::Acquire) {
                break;
            }
            let waited = started.elapsed();
            if waited >= self.hold {
                for (id, e) in &waiting {
                    self.schemas
                        .settle(*id, Instant::now() + SETTLED_TTL.min(self.hold));
                    warn!(schema_id = id, error = %e, waited_s = waited.as_secs(),
                        "The registry stayed unreachable for schema_registry.outage_hold; records with this schema id go to the invalid topic (reason registry).");
                }
                break;
            }
            metrics.registry_wait.set(waited.as_secs() as i64);
            warn!(ids = ?waiting.iter().map(|w| w.0).collect::<Vec<_>>(), error = %waiting[0].1,
                waited_s = waited.as_secs(), "Cannot reach the schema registry; holding the batch and retrying.");
            idle(pause.min(self.hold - waited));
            held = true;
            pause = (pause * 2).min(Duration::from_secs(5));
            missing = waiting.into_iter().map(|w| w.0).collect();
        }
        metrics.registry_wait.set(0);
        held
    }
}
