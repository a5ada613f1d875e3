//! The HTTP API over the index (JSON), beside `/metrics`: `GET
//! /api/events/<id>` (the trace), `GET /api/reconcile?since_s=<seconds>` and
//! `GET /api/stats` (rows per table, records read per topic).
//! Also the periodic reconcile behind `herald_log_reconcile_straggling_deliveries`.

use crate::query;
use crate::reconcile;
use crate::store::Store;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use herald_core::config::Config;
use herald_core::metrics::LogMetrics;
use herald_core::time::now_ms;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};

#[derive(Clone)]
pub struct ApiState(Arc<Inner>);

struct Inner {
    /// A reading connection (WAL: the indexer writes beside it).
    store: Mutex<Store>,
    /// Retry topics → their delay, to say until when an event waits.
    tiers: HashMap<String, Duration>,
    /// Destination → how long a pair may be in flight before it straggles.
    budgets: HashMap<String, Duration>,
    window: Duration,
    interval: Duration,
    metrics: LogMetrics,
}

impl ApiState {
    pub fn new(config: &Config, metrics: LogMetrics) -> anyhow::Result<Self> {
        let names = config.topic_names();
        let mut tiers = HashMap::new();
        let mut budgets = HashMap::new();
        for (d, dc) in &config.destinations {
            for t in &dc.retry.tiers {
                tiers.insert(names.retry(d, *t), *t);
            }
            let longest = dc.retry.tiers.iter().max().copied().unwrap_or_default();
            budgets.insert(d.clone(), dc.retry.max_age + longest);
        }
        let window = config.log.window(budgets.values().copied());
        let store = Store::open(std::path::Path::new(&config.log.db))?;
        Ok(Self(Arc::new(Inner {
            store: Mutex::new(store),
            tiers,
            budgets,
            window,
            interval: config.log.reconcile_interval,
            metrics,
        })))
    }

    fn reconcile(&self, since: Duration) -> Result<reconcile::Reconcile, String> {
        let s = self.0.store.lock().map_err(|e| e.to_string())?;
        let to = now_ms();
        reconcile::reconcile(
            &s,
            to - since.as_millis() as i64,
            to,
            &self.0.budgets,
            &self.0.tiers,
        )
        .map_err(|e| e.to_string())
    }
}

pub fn routes(state: ApiState) -> Router {
    Router::new()
        .route("/api/events/{id}", get(event))
        .route("/api/reconcile", get(reconcile))
        .route("/api/stats", get(stats))
        .with_state(state)
}

fn failed(e: String) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(serde_json::json!({"error": e})),
    )
        .into_response()
}

async fn event(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let res = tokio::task::spawn_blocking(move || {
        let store = s.0.store.lock().map_err(|e| e.to_string())?;
        query::trace(&store, &id, &s.0.tiers).map_err(|e| e.to_string())
    })
    .await;
    match res {
        Ok(Ok(t)) if t.destinations.is_empty() => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": format!("event {} is not in the index", t.event_id)})),
        )
            .into_response(),
        Ok(Ok(t)) => Json(t).into_response(),
        Ok(Err(e)) => failed(e),
        Err(e) => failed(e.to_string()),
    }
}

/// Rows per table and the records read per topic: what the index holds.
async fn stats(State(s): State<ApiState>) -> Response {
    let res = tokio::task::spawn_blocking(move || {
        let store = s.0.store.lock().map_err(|e| e.to_string())?;
        let counts = store.counts().map_err(|e| e.to_string())?;
        let mut read: HashMap<String, i64> = HashMap::new();
        for ((topic, _), next) in store.positions().map_err(|e| e.to_string())? {
            *read.entry(topic).or_default() += next;
        }
        Ok::<_, String>(serde_json::json!({"rows": counts, "next_offsets_by_topic": read}))
    })
    .await;
    match res {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => failed(e),
        Err(e) => failed(e.to_string()),
    }
}

#[derive(Deserialize)]
struct ReconcileParams {
    /// The window, in seconds back from now (default log.reconcile_window).
    since_s: Option<u64>,
}

async fn reconcile(State(s): State<ApiState>, Query(p): Query<ReconcileParams>) -> Response {
    let since = p.since_s.map_or(s.0.window, Duration::from_secs);
    match tokio::task::spawn_blocking(move || s.reconcile(since)).await {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(e)) => failed(e),
        Err(e) => failed(e.to_string()),
    }
}

/// Every `log.reconcile_interval`: the stragglers of `log.reconcile_window`
/// as a gauge (alert `HeraldReconcileStragglers`).
pub async fn reconcile_periodically(state: ApiState) {
    let mut tick = tokio::time::interval(state.0.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = state.clone();
        match tokio::task::spawn_blocking(move || s.reconcile(s.0.window)).await {
            Ok(Ok(r)) => {
                state.0.metrics.stragglers.set(r.stragglers.len() as i64);
                if !r.stragglers.is_empty() {
                    info!(
                        pairs = r.pairs,
                        stragglers = r.stragglers.len(),
                        "Reconcile found deliveries in flight past their budget."
                    );
                }
            }
            Ok(Err(e)) => warn!(error = %e, "Periodic reconcile failed."),
            Err(e) => warn!(error = %e, "Periodic reconcile panicked."),
        }
    }
}
