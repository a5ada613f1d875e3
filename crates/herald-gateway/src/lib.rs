//! Herald's inbound gateway: one route per configured source
//! (`POST /webhooks/<source>`), each verifying its provider's signature,
//! writing the request to Kafka as a CloudEvent (binary mode, body bytes
//! untouched) and answering 2xx only once Kafka has acknowledged the record
//! (`acks=all`, idempotent producer). When Kafka does not acknowledge within
//! `gateway.ack_timeout` the answer is 503 with `Retry-After`, so the
//! provider keeps the event and retries; a provider's retry of something
//! that did land is dropped by the router's dedupe window (identity =
//! source + the provider's event id).
//!
//! [`verify`] checks signatures and [`event`] builds the record, both pure;
//! [`handler`] drives them.

pub mod event;
mod handler;
pub mod verify;

use herald_core::admin::{self, Readiness};
use herald_core::config::Config;
use herald_core::kafka::producer_config;
use herald_core::metrics::GatewayMetrics;
use herald_core::ratelimit::TokenBucket;
use herald_core::sources::ResolvedSource;
use herald_core::time::now_ms;
use rdkafka::producer::{FutureProducer, Producer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::info;

/// One configured source, ready to verify.
pub(crate) struct Source {
    pub resolved: ResolvedSource,
    pub keys: Vec<Vec<u8>>,
    pub bucket: Option<Mutex<TokenBucket>>,
}

pub(crate) struct Gateway {
    pub sources: HashMap<String, Source>,
    pub producer: FutureProducer,
    pub metrics: GatewayMetrics,
    pub limits: herald_core::sources::GatewayConfig,
    pub in_flight: Arc<Semaphore>,
}

/// Builds the producer, serves the admin endpoints and the sources' routes
/// until SIGTERM/SIGINT, then flushes.
pub async fn run(config: Config) -> anyhow::Result<()> {
    if config.sources.is_empty() {
        anyhow::bail!(
            "config key `sources`: no [sources.<name>] configured; the gateway has nothing to serve"
        );
    }
    info!(
        sources = config.sources.len(),
        input = config.topics.input.as_str(),
        "Starting the gateway."
    );
    let mut sources = HashMap::new();
    for (name, s) in &config.sources {
        let resolved = s.resolve(name, &config.topics.input)?;
        let keys = s.keys(name)?;
        let bucket = s
            .rate_limit
            .as_ref()
            .map(|rl| Mutex::new(rl.bucket(now_ms())));
        sources.insert(
            name.clone(),
            Source {
                resolved,
                keys,
                bucket,
            },
        );
    }
    let limits = config.gateway.clone();
    let metrics = GatewayMetrics::new(
        config
            .sources
            .iter()
            .map(|(n, s)| (n.as_str(), s.secrets.len())),
    );
    let ready = Readiness::default();
    let addr = admin::serve(
        &limits.admin_listen,
        metrics.registry.clone(),
        ready.clone(),
    )
    .await?;
    info!(%addr, "Serving /metrics, /healthz and /readyz.");
    let listener = tokio::net::TcpListener::bind(&limits.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (gateway.listen): {e}", limits.listen))?;
    let public = listener.local_addr()?;
    info!(
        addr = %public,
        sources = ?sources.keys().collect::<Vec<_>>(),
        "Serving POST /webhooks/<source>."
    );
    let mut pc = producer_config(&config);
    pc.set(
        "message.timeout.ms",
        limits.ack_timeout.as_millis().to_string(),
    );
    if !config.kafka.client.contains_key("message.max.bytes") {
        pc.set(
            "message.max.bytes",
            (limits.max_body_bytes + 64 * 1024)
                .max(1_000_000)
                .to_string(),
        );
    }
    // After the start-up lines: the first log event after creating the
    // client was seen going missing (rdkafka logs through the `log` crate
    // while it sets up; not understood), and tests read the addresses from
    // these lines.
    let producer: FutureProducer = tokio::task::spawn_blocking(move || pc.create())
        .await?
        .map_err(|e| anyhow::anyhow!("cannot create the Kafka producer: {e}"))?;
    let topics: Vec<String> = sources.values().map(|s| s.resolved.topic.clone()).collect();
    let gateway = Arc::new(Gateway {
        in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
        sources,
        producer,
        metrics,
        limits,
    });
    // Ready once Kafka has answered for every target topic; requests before
    // that are still served (and get 503 if Kafka stays away).
    {
        let producer = gateway.producer.clone();
        tokio::spawn(async move {
            loop {
                let p = producer.clone();
                let topics = topics.clone();
                let ok = tokio::task::spawn_blocking(move || {
                    topics.iter().all(|t| {
                        p.client()
                            .fetch_metadata(Some(t), Duration::from_secs(5))
                            .is_ok_and(|m| m.topics().iter().all(|t| t.error().is_none()))
                    })
                })
                .await
                .unwrap_or(false);
                if ok {
                    ready.set(true);
                    info!("Kafka answers for every source's topic; ready.");
                    return;
                }
                tracing::warn!("Kafka does not answer for a source's topic yet (does it exist? `herald topics apply`); retrying.");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
    }
    let app = handler::router(gateway.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            herald_core::signal::shutdown().await;
            info!("Shutting down: finishing requests in flight.");
        })
        .await?;
    info!("Stopped accepting requests; flushing the producer.");
    let p = gateway.producer.clone();
    let grace = gateway.limits.ack_timeout;
    tokio::task::spawn_blocking(move || p.flush(grace)).await??;
    Ok(())
}
