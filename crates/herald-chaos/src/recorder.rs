//! The destinations: herald-devtools' fault-injecting [`Sink`] (signature
//! check, 503s, hangs, latency) behind a thin recording front. The front
//! forwards each request unchanged and notes, per destination, every
//! request's `webhook-id`, when it arrived, when the sink answered and
//! with what — also when the adapter gave up waiting (the forward runs in
//! its own task), which is what tells a timeout-after-processing apart
//! from a crash-window duplicate.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use herald_devtools::{Behaviour, Sink};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::oneshot;

/// One request as the front saw it. Times are ms since the run started.
#[derive(Debug, Clone)]
pub struct Request {
    pub id: String,
    pub at_ms: u64,
    pub done_ms: u64,
    pub status: u16,
}

struct Shared {
    sink_base: String,
    http: reqwest::Client,
    t0: Instant,
    log: Mutex<HashMap<String, Vec<Request>>>,
}

pub struct Recorder {
    pub sink: Sink,
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    _stop: oneshot::Sender<()>,
}

impl Recorder {
    /// Starts the sink with one route per destination and the front.
    pub async fn start(routes: Vec<(String, Behaviour)>, t0: Instant) -> anyhow::Result<Self> {
        let sink = Sink::start(routes).await?;
        let shared = Arc::new(Shared {
            sink_base: sink.url(""),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()?,
            t0,
            log: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/d/{name}", post(forward))
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            sink,
            addr,
            shared,
            _stop: stop,
        })
    }

    /// The URL Herald delivers destination `name` to.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/d/{name}", self.addr)
    }

    pub fn set_behaviour(&self, name: &str, b: Behaviour) {
        self.sink.set_behaviour(&format!("/{name}"), b);
    }

    /// Requests seen so far for `name` (cheap: for progress checks).
    pub fn request_count(&self, name: &str) -> usize {
        self.shared
            .log
            .lock()
            .expect("log lock")
            .get(name)
            .map_or(0, Vec::len)
    }

    /// Every request seen so far for `name`.
    pub fn requests(&self, name: &str) -> Vec<Request> {
        self.shared
            .log
            .lock()
            .expect("log lock")
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Ids answered 2xx so far for `name`.
    pub fn delivered(&self, name: &str) -> std::collections::HashSet<String> {
        self.shared
            .log
            .lock()
            .expect("log lock")
            .get(name)
            .map(|v| {
                v.iter()
                    .filter(|r| (200..300).contains(&r.status))
                    .map(|r| r.id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

async fn forward(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let at_ms = s.t0.elapsed().as_millis() as u64;
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let s2 = s.clone();
    // In its own task: it completes and is recorded even when the adapter
    // times out and drops this request.
    let job = tokio::spawn(async move {
        let mut req = s2.http.post(format!("{}{name}", s2.sink_base)).body(body);
        for (k, v) in &headers {
            if k != "host" && k != "content-length" {
                req = req.header(k, v);
            }
        }
        let status = match req.send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 599,
        };
        let done_ms = s2.t0.elapsed().as_millis() as u64;
        s2.log
            .lock()
            .expect("log lock")
            .entry(name)
            .or_default()
            .push(Request {
                id,
                at_ms,
                done_ms,
                status,
            });
        status
    });
    match job.await {
        Ok(code) => StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY),
        Err(_) => StatusCode::BAD_GATEWAY,
    }
}
