//! The admin HTTP server every service runs: `/metrics` (Prometheus text),
//! `/healthz` (the process is alive) and `/readyz` (it has joined its group
//! and its producer is initialised).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus::Registry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Readiness, flipped by the service once it can do its job.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct AdminState {
    registry: Registry,
    ready: Readiness,
}

/// Binds `listen` and serves until the runtime shuts down. Returns the bound
/// address (useful with port 0).
pub async fn serve(
    listen: &str,
    registry: Registry,
    ready: Readiness,
) -> anyhow::Result<SocketAddr> {
    serve_with(listen, registry, ready, Router::new()).await
}

/// [`serve`], with a service's own routes (`herald-log`'s API) beside the
/// admin ones.
pub async fn serve_with(
    listen: &str,
    registry: Registry,
    ready: Readiness,
    extra: Router,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} for /metrics: {e}"))?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AdminState { registry, ready })
        .merge(extra);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "The admin server stopped.");
        }
    });
    Ok(addr)
}

async fn metrics(State(s): State<AdminState>) -> ([(&'static str, &'static str); 1], String) {
    (
        [("content-type", "text/plain; version=0.0.4")],
        crate::metrics::render(&s.registry),
    )
}

async fn readyz(State(s): State<AdminState>) -> (StatusCode, &'static str) {
    if s.ready.get() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
