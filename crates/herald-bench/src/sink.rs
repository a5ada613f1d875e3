//! The benchmark's HTTP destination, served inside the bench process:
//!
//! - `POST /fast` answers 204 at once and counts (throughput scenarios);
//! - `POST /d/<name>` answers 204 and records, for events produced inside
//!   the measurement window, the time from produce (`data.t`, microseconds
//!   since the epoch, written by the load generator) to arrival;
//! - `POST /flaky` hangs on 3 requests in 10 (longer than the adapter's
//!   timeout) and answers 204 to the rest;
//! - `POST /tally/<name>` answers 503 to a set share of requests (none
//!   unless [`Sink::set_fail_share`]) and 204 to the rest, counting the
//!   accepted requests per `webhook-id`: what arrived, and what twice.
//!
//! It is deliberately minimal (no signature check, no duplicate tracking) so
//! that the destination costs the same and as little as possible for Herald
//! and for the baselines. herald-devtools' sink does more per request.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::serve::ListenerExt;
use axum::Router;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// Microseconds since the epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Arrivals at one `/d/<name>` route.
#[derive(Debug, Default, Clone)]
pub struct Arrivals {
    /// Every request.
    pub total: u64,
    /// Produce-to-arrival latency of each event produced in the window, µs.
    pub latencies_us: Vec<u64>,
}

#[derive(Default)]
struct Shared {
    fast: AtomicU64,
    flaky: AtomicU64,
    flaky_hang_ms: AtomicU64,
    window_start: AtomicU64,
    window_end: AtomicU64,
    routes: Mutex<HashMap<String, Arrivals>>,
    tallies: Mutex<HashMap<String, Tally>>,
    fail_share: Mutex<HashMap<String, f64>>,
    /// xorshift state: which requests a failing route refuses.
    dice: AtomicU64,
}

/// What `/tally/<name>` accepted, by event id.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Requests, accepted or refused.
    pub requests: u64,
    /// Accepted requests per event id.
    pub accepted: HashMap<String, u32>,
}

impl Tally {
    /// Accepted requests beyond the first of their event.
    pub fn duplicates(&self) -> u64 {
        self.accepted.values().map(|n| u64::from(n - 1)).sum()
    }
}

pub struct Sink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: oneshot::Sender<()>,
}

impl Sink {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let shared = Arc::new(Shared::default());
        shared.flaky_hang_ms.store(2000, Ordering::Relaxed);
        shared.dice.store(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            shared,
            _stop: stop,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests answered on `/fast` so far.
    pub fn fast_count(&self) -> u64 {
        self.shared.fast.load(Ordering::Relaxed)
    }

    /// Requests seen on `/flaky` so far.
    pub fn flaky_count(&self) -> u64 {
        self.shared.flaky.load(Ordering::Relaxed)
    }

    /// How long `/flaky` hangs on the requests it lets time out.
    pub fn set_flaky_hang(&self, hang: Duration) {
        self.shared
            .flaky_hang_ms
            .store(hang.as_millis() as u64, Ordering::Relaxed);
    }

    /// Events produced in `[start, end)` (µs since the epoch) are measured.
    /// Clears what earlier windows recorded.
    pub fn set_window(&self, start: u64, end: u64) {
        self.shared.routes.lock().expect("sink lock").clear();
        self.shared.window_start.store(start, Ordering::Relaxed);
        self.shared.window_end.store(end, Ordering::Relaxed);
    }

    /// Measured arrivals so far at `/d/<name>`.
    pub fn measured(&self, name: &str) -> usize {
        self.shared
            .routes
            .lock()
            .expect("sink lock")
            .get(name)
            .map_or(0, |a| a.latencies_us.len())
    }

    /// `/tally/<name>` answers 503 to `share` (0..1) of its requests.
    pub fn set_fail_share(&self, name: &str, share: f64) {
        self.shared
            .fail_share
            .lock()
            .expect("sink lock")
            .insert(name.to_string(), share);
    }

    /// What `/tally/<name>` accepted so far.
    pub fn tally(&self, name: &str) -> Tally {
        self.shared
            .tallies
            .lock()
            .expect("sink lock")
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Events `/tally/<name>` accepted at least once so far.
    pub fn tally_unique(&self, name: &str) -> usize {
        self.shared
            .tallies
            .lock()
            .expect("sink lock")
            .get(name)
            .map_or(0, |t| t.accepted.len())
    }

    pub fn arrivals(&self, name: &str) -> Arrivals {
        self.shared
            .routes
            .lock()
            .expect("sink lock")
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
}

#[derive(serde::Deserialize)]
struct Body {
    data: Data,
}

#[derive(serde::Deserialize)]
struct Data {
    t: u64,
}

/// A uniform draw in [0, 1) from a shared xorshift64.
fn roll(s: &Shared) -> f64 {
    let mut x = s.dice.load(Ordering::Relaxed);
    loop {
        let mut y = x;
        y ^= y << 13;
        y ^= y >> 7;
        y ^= y << 17;
        match s
            .dice
            .compare_exchange_weak(x, y, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => return (y >> 11) as f64 / (1u64 << 53) as f64,
            Err(now) => x = now,
        }
    }
}

fn tally(s: &Shared, name: &str, headers: &HeaderMap) -> StatusCode {
    let share = s
        .fail_share
        .lock()
        .expect("sink lock")
        .get(name)
        .copied()
        .unwrap_or(0.0);
    let refuse = share > 0.0 && roll(s) < share;
    let mut tallies = s.tallies.lock().expect("sink lock");
    let t = tallies.entry(name.to_string()).or_default();
    t.requests += 1;
    if refuse {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)");
    *t.accepted.entry(id.to_string()).or_default() += 1;
    StatusCode::NO_CONTENT
}

async fn handle(
    State(s): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let path = uri.path();
    if let Some(name) = path.strip_prefix("/tally/") {
        return tally(&s, name, &headers);
    }
    if path == "/fast" {
        s.fast.fetch_add(1, Ordering::Relaxed);
        return StatusCode::NO_CONTENT;
    }
    if path == "/flaky" {
        let n = s.flaky.fetch_add(1, Ordering::Relaxed);
        if n % 10 < 3 {
            tokio::time::sleep(Duration::from_millis(
                s.flaky_hang_ms.load(Ordering::Relaxed),
            ))
            .await;
            return StatusCode::GATEWAY_TIMEOUT;
        }
        return StatusCode::NO_CONTENT;
    }
    if let Some(name) = path.strip_prefix("/d/") {
        let arrived = now_us();
        let sent = serde_json::from_slice::<Body>(&body).ok().map(|b| b.data.t);
        let (start, end) = (
            s.window_start.load(Ordering::Relaxed),
            s.window_end.load(Ordering::Relaxed),
        );
        let mut routes = s.routes.lock().expect("sink lock");
        let a = routes.entry(name.to_string()).or_default();
        a.total += 1;
        if let Some(t) = sent.filter(|t| (start..end).contains(t)) {
            a.latencies_us.push(arrived.saturating_sub(t));
        }
        return StatusCode::NO_CONTENT;
    }
    StatusCode::NOT_FOUND
}
