//! A small in-memory server speaking the part of the Confluent Schema
//! Registry REST API that serializers and Herald use: register a schema
//! under a subject, look one up by id, list and read a subject's versions.
//! For tests that need a registry on loopback when no real one can run
//! (see the README's "Schema Registry" section). It can require basic auth
//! and can be switched "down" (every request answers 503).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// First id handed out: ids that look like nothing else in a test.
const FIRST_ID: u32 = 101;

#[derive(Default)]
struct Store {
    /// Schema text by id.
    schemas: BTreeMap<u32, String>,
    /// Ids of each subject's versions, version 1 first.
    subjects: BTreeMap<String, Vec<u32>>,
}

struct Shared {
    store: Mutex<Store>,
    down: AtomicBool,
    /// `Authorization` header value required, if any.
    auth: Option<String>,
    by_id_lookups: AtomicU64,
}

/// A running registry; dropping it stops the server.
pub struct TestRegistry {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: oneshot::Sender<()>,
}

impl TestRegistry {
    /// Serves on 127.0.0.1 (an ephemeral port), without auth.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(None).await
    }

    /// Serves on 127.0.0.1, answering 401 unless the request carries basic
    /// auth with `user` and `password`.
    pub async fn start_with_basic_auth(user: &str, password: &str) -> anyhow::Result<Self> {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Self::start_with(Some(format!("Basic {token}"))).await
    }

    async fn start_with(auth: Option<String>) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            down: AtomicBool::new(false),
            auth,
            by_id_lookups: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/subjects", get(subjects))
            .route("/subjects/{subject}/versions", post(register).get(versions))
            .route("/subjects/{subject}/versions/{version}", get(version))
            .route("/schemas/ids/{id}", get(by_id))
            .with_state(shared.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            shared,
            _stop: tx,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// While down, every request answers 503.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::Release);
    }

    /// `GET /schemas/ids/{id}` requests answered so far (down or not).
    pub fn lookups_by_id(&self) -> u64 {
        self.shared.by_id_lookups.load(Ordering::Acquire)
    }

    /// Registers `schema` under `subject` as a serializer would; its id.
    pub fn register(&self, subject: &str, schema: &str) -> u32 {
        self.shared
            .store
            .lock()
            .expect("registry lock")
            .register(subject, schema)
    }
}

impl Store {
    fn register(&mut self, subject: &str, schema: &str) -> u32 {
        // The same schema (as JSON, whitespace aside) keeps its id.
        let same = |a: &str| match (
            serde_json::from_str::<Value>(a),
            serde_json::from_str::<Value>(schema),
        ) {
            (Ok(x), Ok(y)) => x == y,
            _ => a == schema,
        };
        let id = match self.schemas.iter().find(|(_, s)| same(s)) {
            Some((id, _)) => *id,
            None => {
                let id = self.schemas.keys().last().map_or(FIRST_ID, |l| l + 1);
                self.schemas.insert(id, schema.to_string());
                id
            }
        };
        let versions = self.subjects.entry(subject.to_string()).or_default();
        if !versions.contains(&id) {
            versions.push(id);
        }
        id
    }
}

fn error(status: StatusCode, code: u32, message: String) -> Response {
    (
        status,
        Json(json!({"error_code": code, "message": message})),
    )
        .into_response()
}

/// 503 while down, 401 without the required credentials.
fn gate(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    if s.down.load(Ordering::Acquire) {
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            50003,
            "registry is down (test switch)".into(),
        ));
    }
    if let Some(want) = &s.auth {
        let got = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if got != Some(want.as_str()) {
            return Some(error(
                StatusCode::UNAUTHORIZED,
                40101,
                "Unauthorized".into(),
            ));
        }
    }
    None
}

#[derive(Deserialize)]
struct RegisterBody {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
}

async fn register(
    State(s): State<Arc<Shared>>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = gate(&s, &headers) {
        return r;
    }
    let body: RegisterBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                42201,
                format!("Invalid schema: {e}"),
            )
        }
    };
    if body.schema_type.as_deref().is_some_and(|t| t != "AVRO") {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            "this test registry keeps Avro schemas only".into(),
        );
    }
    let id = s
        .store
        .lock()
        .expect("registry lock")
        .register(&subject, &body.schema);
    Json(json!({ "id": id })).into_response()
}

async fn by_id(State(s): State<Arc<Shared>>, Path(id): Path<u32>, headers: HeaderMap) -> Response {
    s.by_id_lookups.fetch_add(1, Ordering::AcqRel);
    if let Some(r) = gate(&s, &headers) {
        return r;
    }
    match s.store.lock().expect("registry lock").schemas.get(&id) {
        Some(schema) => Json(json!({ "schema": schema })).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            40403,
            format!("Schema {id} not found"),
        ),
    }
}

async fn subjects(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(r) = gate(&s, &headers) {
        return r;
    }
    let store = s.store.lock().expect("registry lock");
    Json(store.subjects.keys().cloned().collect::<Vec<_>>()).into_response()
}

async fn versions(
    State(s): State<Arc<Shared>>,
    Path(subject): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = gate(&s, &headers) {
        return r;
    }
    match s
        .store
        .lock()
        .expect("registry lock")
        .subjects
        .get(&subject)
    {
        Some(v) => Json((1..=v.len()).collect::<Vec<_>>()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            40401,
            format!("Subject '{subject}' not found."),
        ),
    }
}

async fn version(
    State(s): State<Arc<Shared>>,
    Path((subject, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = gate(&s, &headers) {
        return r;
    }
    let store = s.store.lock().expect("registry lock");
    let Some(ids) = store.subjects.get(&subject) else {
        return error(
            StatusCode::NOT_FOUND,
            40401,
            format!("Subject '{subject}' not found."),
        );
    };
    let n = match version.as_str() {
        "latest" | "-1" => ids.len(),
        v => v.parse::<usize>().unwrap_or(0),
    };
    match n.checked_sub(1).and_then(|i| ids.get(i)) {
        Some(id) => Json(json!({
            "subject": subject,
            "version": n,
            "id": id,
            "schema": store.schemas[id],
        }))
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            40402,
            format!("Version {version} not found."),
        ),
    }
}
