//! `herald-log`: the delivery log. It indexes every routed delivery,
//! attempt, dead letter and operator action into SQLite ([`store`]) from
//! Herald's own topics ([`indexer`]) and answers `herald trace` and
//! `herald reconcile` ([`query`], [`reconcile`], served by [`api`]). The index is derived:
//! delete the file and it is rebuilt from what the topics retain.

pub mod api;
pub mod indexer;
pub mod query;
pub mod reconcile;
pub mod store;

use herald_core::admin::Readiness;
use herald_core::config::Config;
use herald_core::metrics::LogMetrics;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tracing::info;

/// Runs the indexer and the API until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    herald_core::registry::output::init(&config).await?;
    let metrics = LogMetrics::new();
    let ready = Readiness::default();
    // Opened here so a bad path fails at start-up, naming the key.
    let store = store::Store::open(Path::new(&config.log.db))
        .map_err(|e| anyhow::anyhow!("config key `log.db`: cannot open {}: {e}", config.log.db))?;
    let state = api::ApiState::new(&config, metrics.clone())?;
    let addr = herald_core::admin::serve_with(
        &config.log.listen,
        metrics.registry.clone(),
        ready.clone(),
        api::routes(state.clone()),
    )
    .await?;
    info!(%addr, "Serving /api/events/<id>, /api/reconcile, /metrics, /healthz and /readyz.");
    tokio::spawn(api::reconcile_periodically(state));
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (stop, metrics, ready, config) =
            (stop.clone(), metrics.clone(), ready.clone(), config.clone());
        std::thread::Builder::new()
            .name("indexer".into())
            .spawn(move || indexer::run(&config, store, &metrics, &stop, &ready))?
    };
    let waiter = tokio::task::spawn_blocking(move || worker.join());
    tokio::pin!(waiter);
    tokio::select! {
        _ = herald_core::signal::shutdown() => {
            info!("Shutting down.");
            stop.store(true, Ordering::Release);
        }
        res = &mut waiter => {
            return res?.map_err(|_| anyhow::anyhow!("indexer thread panicked"))?;
        }
    }
    waiter
        .await?
        .map_err(|_| anyhow::anyhow!("indexer thread panicked"))?
}
