//! The fault-injecting HTTP server: one background task serving every route,
//! with shared counters the test (or the demo) reads while it runs.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{HeaderName, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use herald_core::signature::verify;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::behaviour::{Active, Behaviour, Decision};
use crate::stats::{RouteState, RouteStats};

/// Environment variable seeding the sink's random source.
pub const SEED_ENV: &str = "HERALD_SINK_SEED";
/// Seed used when [`SEED_ENV`] is unset, so runs are repeatable by default.
pub const DEFAULT_SEED: u64 = 0x4845_5241_4c44; // "HERALD"

const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// A running destination server. Dropping it stops accepting connections;
/// requests already in flight finish.
pub struct Sink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Dropped with the sink, which resolves the server's shutdown future.
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Sink {
    /// Binds 127.0.0.1:0 and serves `routes` (path like "/slack" ->
    /// behaviour) in a background tokio task. Unknown paths get 404;
    /// `GET /stats` (unless a route claims it) returns every route's
    /// [`RouteStats`] as JSON.
    pub async fn start(routes: Vec<(String, Behaviour)>) -> anyhow::Result<Sink> {
        Self::start_on("127.0.0.1:0", routes).await
    }

    /// Like [`Sink::start`], listening on `listen` (e.g. "127.0.0.1:8900").
    pub async fn start_on(listen: &str, routes: Vec<(String, Behaviour)>) -> anyhow::Result<Sink> {
        let seed = match std::env::var(SEED_ENV) {
            Ok(s) => s
                .trim()
                .parse()
                .with_context(|| format!("{SEED_ENV} must be an unsigned integer, got {s:?}"))?,
            Err(_) => DEFAULT_SEED,
        };
        let mut table = HashMap::with_capacity(routes.len());
        for (path, b) in routes {
            let active =
                Active::new(&b).with_context(|| format!("route {path} is misconfigured"))?;
            table.insert(normalise(&path).into_owned(), Arc::new(Route::new(active)));
        }
        let shared = Arc::new(Shared {
            routes: RwLock::new(table),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        });

        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("could not listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let listener = listener.tap_io(|tcp| {
            // Small request/response exchanges must not wait on Nagle.
            let _ = tcp.set_nodelay(true);
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "The test sink stopped serving.");
            }
        });
        Ok(Sink {
            addr,
            shared,
            _stop: stop,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// "http://127.0.0.1:PORT/path" (loopback when listening on all addresses).
    pub fn url(&self, path: &str) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!(
            "http://{}{}",
            SocketAddr::new(ip, self.addr.port()),
            normalise(path)
        )
    }

    /// The route's counters; all zero for a path that is not a route.
    pub fn stats(&self, path: &str) -> RouteStats {
        self.shared
            .route(&normalise(path))
            .map(|r| lock(&r.state).stats.clone())
            .unwrap_or_default()
    }

    /// Every route's counters, by path.
    pub fn all_stats(&self) -> BTreeMap<String, RouteStats> {
        self.shared.all_stats()
    }

    /// The `webhook-id`s answered 2xx on the route.
    pub fn delivered_ids(&self, path: &str) -> HashSet<String> {
        self.shared
            .route(&normalise(path))
            .map(|r| lock(&r.state).delivered_ids.clone())
            .unwrap_or_default()
    }

    /// Changes how the route answers from the next request on; counters are
    /// kept. A path that is not yet a route becomes one.
    ///
    /// # Panics
    /// If `b` is invalid (a ratio outside `[0, 1]`, a status that is not an
    /// HTTP status, a secret that is not `whsec_<base64>`): a test bug.
    /// Requests `path` received for event `id` (its `webhook-id`).
    pub fn requests_for(&self, path: &str, id: &str) -> u32 {
        self.shared.route(path).map_or(0, |r| {
            lock(&r.state).requests_by_id.get(id).copied().unwrap_or(0)
        })
    }

    pub fn set_behaviour(&self, path: &str, b: Behaviour) {
        let active = match Active::new(&b) {
            Ok(a) => Arc::new(a),
            Err(e) => panic!("invalid behaviour for route {path}: {e:#}"),
        };
        let path = normalise(path);
        if let Some(route) = self.shared.route(&path) {
            *lock(&route.active) = active;
            return;
        }
        let mut routes = self
            .shared
            .routes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match routes.get(path.as_ref()) {
            Some(route) => *lock(&route.active) = active,
            None => {
                routes.insert(
                    path.into_owned(),
                    Arc::new(Route {
                        active: Mutex::new(active),
                        state: Mutex::default(),
                    }),
                );
            }
        }
    }
}

struct Shared {
    routes: RwLock<HashMap<String, Arc<Route>>>,
    rng: Mutex<StdRng>,
}

impl Shared {
    fn route(&self, path: &str) -> Option<Arc<Route>> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        routes.get(path).cloned()
    }

    fn all_stats(&self) -> BTreeMap<String, RouteStats> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        routes
            .iter()
            .map(|(path, r)| (path.clone(), lock(&r.state).stats.clone()))
            .collect()
    }
}

struct Route {
    active: Mutex<Arc<Active>>,
    state: Mutex<RouteState>,
}

impl Route {
    fn new(active: Active) -> Self {
        Self {
            active: Mutex::new(Arc::new(active)),
            state: Mutex::default(),
        }
    }

    async fn serve(&self, rng: &Mutex<StdRng>, headers: &HeaderMap, body: &[u8]) -> Response {
        let active = Arc::clone(&lock(&self.active));
        let header = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let id = header(&WEBHOOK_ID);
        let timestamp = header(&WEBHOOK_TIMESTAMP);
        let signature = header(&WEBHOOK_SIGNATURE);
        let missing = id.is_none() || timestamp.is_none() || signature.is_none();
        // Verify before taking the lock: the HMAC is the costly part.
        let signed = match &active.key {
            None => true,
            Some(key) => match (id, timestamp.and_then(|t| t.parse().ok()), signature) {
                (Some(id), Some(ts), Some(sig)) => verify(key, id, ts, body, sig),
                _ => false,
            },
        };
        {
            let mut state = lock(&self.state);
            if let Some(id) = id {
                *state.requests_by_id.entry(id.to_owned()).or_default() += 1;
            }
            let s = &mut state.stats;
            s.requests += 1;
            s.missing_headers += u64::from(missing);
            s.bad_signatures += u64::from(!signed);
            if let Some(tp) = header(&TRACEPARENT) {
                s.traceparents += 1;
                s.last_traceparent = Some(tp.to_owned());
            }
        }

        if !active.latency.is_zero() {
            tokio::time::sleep(active.latency).await;
        }
        if !signed {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        // A roll of 1.0 is past every ratio: routes without faults never
        // touch the shared random source.
        let roll = if active.needs_roll() {
            lock(rng).random::<f64>()
        } else {
            1.0
        };
        match active.decide(roll) {
            Decision::Hang(hang) => {
                tokio::time::sleep(hang).await;
                StatusCode::GATEWAY_TIMEOUT.into_response()
            }
            Decision::TooManyRequests => match active.retry_after_secs {
                Some(secs) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(RETRY_AFTER, HeaderValue::from(secs))],
                )
                    .into_response(),
                None => StatusCode::TOO_MANY_REQUESTS.into_response(),
            },
            Decision::Respond(status) => {
                if status.is_success() {
                    // Clients other than Herald may send no webhook-id; the
                    // CloudEvents id identifies the event then.
                    let id = id
                        .map(Cow::Borrowed)
                        .or_else(|| body_event_id(body).map(Cow::Owned));
                    lock(&self.state).record_delivery(id.as_deref());
                }
                status.into_response()
            }
        }
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    match shared.route(path) {
        Some(route) => route.serve(&shared.rng, &headers, &body).await,
        None if path == "/stats" && method == Method::GET => {
            Json(shared.all_stats()).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The `id` of a structured CloudEvents body, if the body is one.
fn body_event_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Event {
        id: String,
    }
    serde_json::from_slice::<Event>(body).ok().map(|e| e.id)
}

/// Routes are keyed by their path with a leading slash.
fn normalise(path: &str) -> Cow<'_, str> {
    if path.starts_with('/') {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(format!("/{path}"))
    }
}

/// Counters stay usable even if a holder panicked mid-update.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_comes_from_a_structured_body() {
        assert_eq!(
            body_event_id(br#"{"id":"e1","type":"t"}"#).as_deref(),
            Some("e1")
        );
        assert_eq!(body_event_id(b"not json"), None);
        assert_eq!(normalise("slack"), "/slack");
        assert_eq!(normalise("/slack"), "/slack");
    }
}
