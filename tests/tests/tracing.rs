//! Traces across every hop, checked on a real OTLP receiver: an OTLP/HTTP
//! endpoint built on the official OpenTelemetry protobuf definitions
//! (`opentelemetry-proto`), receiving what the router and adapter binaries
//! export. One event with a known `traceparent` must come back as one trace:
//! producer → router span → attempt span(s) → HTTP client span(s), with the
//! destination seeing the HTTP span's context.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use herald_core::headers as h;
use herald_core::kafka::add_header;
use herald_devtools::{Behaviour, Sink};
use herald_e2e::{header, signed, wait_until, Dest, Pipeline, SECRET};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as OtelStatus;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::FutureRecord;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

/// A span as received, with the service that exported it.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    span: Span,
}

impl Received {
    fn attr(&self, key: &str) -> Option<String> {
        attr(&self.span.attributes, key)
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    let v = attrs
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match v {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

type Store = Arc<Mutex<Vec<Received>>>;

/// OTLP/HTTP trace receiver: `POST /v1/traces` with an
/// `ExportTraceServiceRequest` protobuf body.
struct Receiver {
    url: String,
    spans: Store,
}

impl Receiver {
    async fn start() -> Self {
        let spans = Store::default();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(export))
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("receiver address")
        );
        tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver serves") });
        Self { url, spans }
    }

    fn trace(&self, trace_id: &str) -> Vec<Received> {
        let spans = self.spans.lock().expect("receiver lock");
        spans
            .iter()
            .filter(|r| hex(&r.span.trace_id) == trace_id)
            .cloned()
            .collect()
    }
}

async fn export(State(spans): State<Store>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if content_type != Some("application/x-protobuf") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new()).into_response();
    }
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new()).into_response();
    };
    let mut out = spans.lock().expect("receiver lock");
    for rs in req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| attr(&r.attributes, "service.name"))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                out.push(Received {
                    service: service.clone(),
                    span,
                });
            }
        }
    }
    let body = ExportTraceServiceResponse::default().encode_to_vec();
    ([(header::CONTENT_TYPE, "application/x-protobuf")], body).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_is_one_trace_from_router_through_attempts_to_http() {
    let receiver = Receiver::start().await;
    // The first attempt gets 503, the retry succeeds: two attempt spans.
    let sink = Sink::start(vec![("/hook".into(), signed(Behaviour::status(503)))])
        .await
        .unwrap();
    let mut p = Pipeline::new("tracing", vec![Dest::new("hook", sink.url("/hook"))]).await;
    p.env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.url.clone()),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ];
    p.args = vec!["--log-format".into(), "json".into()];
    p.start_all();

    let trace_id = format!("{:032x}", rand::random::<u128>() | 1);
    let producer_span = format!("{:016x}", rand::random::<u64>() | 1);
    let event_id = format!("{}-traced", p.prefix);
    let value = serde_json::json!({
        "specversion": "1.0", "id": event_id, "source": "/tests", "type": "order.placed", "data": {},
    })
    .to_string();
    let headers = add_header(
        OwnedHeaders::new(),
        h::TRACEPARENT,
        &format!("00-{trace_id}-{producer_span}-01"),
    );
    let headers = add_header(headers, h::TRACESTATE, "herald-test=1");
    let input = p.input();
    p.producer()
        .send(
            FutureRecord::to(&input)
                .key("k")
                .payload(&value)
                .headers(headers),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce");

    wait_until("the first attempt", LONG, || {
        sink.stats("/hook").requests >= 1
    })
    .await;
    sink.set_behaviour("/hook", signed(Behaviour::healthy()));
    wait_until("the retry's delivery", LONG, || {
        sink.stats("/hook").unique_delivered >= 1
    })
    .await;

    let names = p.config.topic_names();
    let dest_topic = names.dest("hook");
    let tier_topic = names.retry("hook", Duration::from_secs(1));
    let named =
        |spans: &[Received], name: &str| spans.iter().filter(|r| r.span.name == name).count();
    wait_until(
        "router, two attempt and two HTTP spans in the trace",
        Duration::from_secs(60),
        || {
            let t = receiver.trace(&trace_id);
            named(&t, &format!("process {input}")) >= 1
                && named(&t, &format!("process {dest_topic}")) >= 1
                && named(&t, &format!("process {tier_topic}")) >= 1
                && named(&t, "POST") >= 2
        },
    )
    .await;
    // Spans still in flight would only add to the counts checked below.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let spans = receiver.trace(&trace_id);
    let dump = || {
        let line = |r: &Received| {
            format!(
                "{} {:?} span={} parent={}\n",
                r.service,
                r.span.name,
                hex(&r.span.span_id),
                hex(&r.span.parent_span_id)
            )
        };
        spans.iter().map(line).collect::<String>()
    };
    eprintln!(
        "trace {trace_id} (producer span {producer_span}):\n{}",
        dump()
    );
    let one = |name: &str| {
        let found: Vec<&Received> = spans.iter().filter(|r| r.span.name == name).collect();
        assert_eq!(
            found.len(),
            1,
            "exactly one {name:?} span in the trace:\n{}",
            dump()
        );
        found[0].clone()
    };
    let router = one(&format!("process {input}"));
    let first = one(&format!("process {dest_topic}"));
    let retry = one(&format!("process {tier_topic}"));
    let http: Vec<&Received> = spans.iter().filter(|r| r.span.name == "POST").collect();
    assert_eq!(
        http.len(),
        2,
        "one HTTP client span per attempt:\n{}",
        dump()
    );
    assert_eq!(spans.len(), 5, "nothing else in the trace:\n{}", dump());
    let child_of = |parent: &Received| {
        let children: Vec<&&Received> = http
            .iter()
            .filter(|s| s.span.parent_span_id == parent.span.span_id)
            .collect();
        assert_eq!(
            children.len(),
            1,
            "one HTTP span under {:?}:\n{}",
            parent.span.name,
            dump()
        );
        (*children[0]).clone()
    };

    // Router: a consumer span, child of the producer's context.
    assert_eq!(router.service, "herald-router");
    assert_eq!(router.span.kind, SpanKind::Consumer as i32);
    assert_eq!(
        hex(&router.span.parent_span_id),
        producer_span,
        "router span's parent is the producer's span"
    );
    assert_eq!(router.attr("messaging.system").as_deref(), Some("kafka"));
    assert_eq!(
        router.attr("messaging.operation.type").as_deref(),
        Some("process")
    );
    assert_eq!(
        router.attr("messaging.destination.name"),
        Some(input.clone())
    );
    assert_eq!(
        router.attr("messaging.consumer.group.name"),
        Some(names.router_group())
    );
    assert!(router.attr("messaging.destination.partition.id").is_some());
    assert!(router.attr("messaging.kafka.offset").is_some());
    assert_eq!(router.attr("messaging.message.id"), Some(event_id.clone()));

    // Attempts: consumer spans of the adapter, chained router → 1st → retry.
    for a in [&first, &retry] {
        assert_eq!(a.service, "herald-adapter:hook");
        assert_eq!(a.span.kind, SpanKind::Consumer as i32);
        assert_eq!(a.attr("messaging.system").as_deref(), Some("kafka"));
        assert_eq!(
            a.attr("messaging.consumer.group.name"),
            Some(names.adapter_group("hook"))
        );
        assert_eq!(a.attr("destination").as_deref(), Some("hook"));
        assert_eq!(a.attr("event_id"), Some(event_id.clone()));
    }
    assert_eq!(
        first.span.parent_span_id, router.span.span_id,
        "first attempt is a child of the router span"
    );
    assert_eq!(
        retry.span.parent_span_id, first.span.span_id,
        "the retry is a child of the attempt that scheduled it"
    );
    assert_eq!(first.attr("attempt").as_deref(), Some("1"));
    assert_eq!(retry.attr("attempt").as_deref(), Some("2"));
    assert_eq!(first.attr("error.type").as_deref(), Some("http-5xx"));
    assert_eq!(
        first.span.status.as_ref().map(|s| s.code),
        Some(OtelStatus::Error as i32)
    );
    assert_eq!(retry.attr("error.type"), None);

    // HTTP client spans, one under each attempt.
    let http_first = child_of(&first);
    let http_retry = child_of(&retry);
    for (s, status) in [(&http_first, "503"), (&http_retry, "204")] {
        assert_eq!(s.service, "herald-adapter:hook");
        assert_eq!(s.span.kind, SpanKind::Client as i32);
        assert_eq!(s.attr("http.request.method").as_deref(), Some("POST"));
        assert_eq!(s.attr("url.full"), Some(sink.url("/hook")));
        assert_eq!(s.attr("http.response.status_code").as_deref(), Some(status));
    }
    assert_eq!(http_first.attr("error.type").as_deref(), Some("503"));

    // The destination saw the retry's HTTP span as the parent.
    let seen = sink
        .stats("/hook")
        .last_traceparent
        .expect("the sink saw a traceparent");
    assert_eq!(
        seen,
        format!("00-{trace_id}-{}-01", hex(&http_retry.span.span_id))
    );

    // The retry-tier record carried the first attempt's context, tracestate kept.
    let tier = p.read(&tier_topic).await;
    assert_eq!(tier.len(), 1);
    assert_eq!(
        header(&tier[0], h::TRACEPARENT),
        Some(format!("00-{trace_id}-{}-01", hex(&first.span.span_id)))
    );
    assert_eq!(
        header(&tier[0], h::TRACESTATE).as_deref(),
        Some("herald-test=1")
    );

    // JSON logs about the event carry its id, destination, attempt and trace id.
    let logs = p.logs();
    assert!(
        !logs.contains(SECRET),
        "the signing secret never appears in logs"
    );
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for (message, attempt) in [("Attempt failed; retry scheduled.", 1), ("Delivered.", 2)] {
        let line = lines
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("a JSON log line {message:?}:\n{logs}"));
        let span = &line["span"];
        assert_eq!(span["event_id"], event_id.as_str(), "{line}");
        assert_eq!(span["destination"], "hook", "{line}");
        assert_eq!(span["attempt"], attempt, "{line}");
        assert_eq!(span["trace_id"], trace_id.as_str(), "{line}");
    }
}

/// `herald produce` starts each event's trace: one producer span per event
/// from `herald-cli`, the router's span its child, the delivery's HTTP span
/// in the same trace. The spans are flushed before the CLI exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_produce_starts_each_events_trace_with_a_producer_span() {
    let receiver = Receiver::start().await;
    let sink = Sink::start(vec![("/hook".into(), signed(Behaviour::healthy()))])
        .await
        .unwrap();
    let mut p = Pipeline::new("tracing-cli", vec![Dest::new("hook", sink.url("/hook"))]).await;
    p.env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.url.clone()),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ];
    p.start_all();

    let id_prefix = format!("{}-cli", p.prefix);
    let mut cli = std::process::Command::new(herald_e2e::bin("herald"));
    cli.arg("--config")
        .arg(&p.config_path)
        .args(["--json", "produce", "-n", "3", "--id-prefix", &id_prefix])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url)
        // Far beyond the CLI's run: its spans can only arrive through the
        // flush at exit.
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .env_remove("OTEL_SERVICE_NAME");
    let out = tokio::task::spawn_blocking(move || cli.output().expect("running herald produce"))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "herald produce failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json summary");
    assert_eq!(summary["produced"], 3, "{summary}");

    let input = p.input();
    let ids: Vec<String> = (0..3).map(|i| format!("{id_prefix}-{i}")).collect();
    // Already exported when the CLI has exited.
    let producers: Vec<Received> = {
        let spans = receiver.spans.lock().unwrap();
        spans
            .iter()
            .filter(|r| r.service == "herald-cli")
            .cloned()
            .collect()
    };
    assert_eq!(
        producers.len(),
        3,
        "one span per produced event, flushed at exit: {producers:#?}"
    );
    for s in &producers {
        assert_eq!(s.span.kind, SpanKind::Producer as i32);
        assert_eq!(s.span.name, format!("send {input}"));
        assert!(s.span.parent_span_id.is_empty(), "the trace starts here");
        assert_eq!(s.attr("messaging.system").as_deref(), Some("kafka"));
        assert_eq!(s.attr("messaging.operation.type").as_deref(), Some("send"));
        assert_eq!(s.attr("messaging.destination.name"), Some(input.clone()));
        assert_eq!(
            s.attr("cloudevents.event_id"),
            s.attr("messaging.message.id")
        );
        assert!(
            s.attr("messaging.kafka.message.key")
                .is_some_and(|k| k.starts_with("cus_")),
            "the record's key: {s:?}"
        );
        assert!(s.attr("messaging.destination.partition.id").is_some());
        assert!(s.attr("messaging.kafka.offset").is_some());
    }
    let mut seen: Vec<String> = producers
        .iter()
        .filter_map(|s| s.attr("messaging.message.id"))
        .collect();
    seen.sort();
    assert_eq!(seen, ids, "one producer span per event id");

    wait_until("3 deliveries", LONG, || {
        sink.stats("/hook").unique_delivered >= 3
    })
    .await;
    let router_span = format!("process {input}");
    let trace_of = |s: &Received| receiver.trace(&hex(&s.span.trace_id));
    wait_until(
        "router and HTTP spans in each producer's trace",
        Duration::from_secs(60),
        || {
            producers.iter().all(|s| {
                let t = trace_of(s);
                t.iter().any(|r| r.span.name == router_span)
                    && t.iter().any(|r| r.span.name == "POST")
            })
        },
    )
    .await;
    for s in &producers {
        let id = s.attr("messaging.message.id").unwrap();
        let t = trace_of(s);
        let dump = t
            .iter()
            .map(|r| {
                format!(
                    "{} {:?} span={} parent={}\n",
                    r.service,
                    r.span.name,
                    hex(&r.span.span_id),
                    hex(&r.span.parent_span_id)
                )
            })
            .collect::<String>();
        let routers: Vec<&Received> = t.iter().filter(|r| r.span.name == router_span).collect();
        assert_eq!(routers.len(), 1, "one router span for {id}:\n{dump}");
        let router = routers[0];
        assert_eq!(router.service, "herald-router");
        assert_eq!(router.attr("messaging.message.id"), Some(id.clone()));
        assert_eq!(
            router.span.parent_span_id, s.span.span_id,
            "the router's span is the producer span's child:\n{dump}"
        );
        let http = t
            .iter()
            .find(|r| r.span.name == "POST")
            .unwrap_or_else(|| panic!("an HTTP span for {id}:\n{dump}"));
        assert_eq!(http.service, "herald-adapter:hook");
        assert_eq!(http.span.kind, SpanKind::Client as i32);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_trace_backend_neither_blocks_delivery_nor_shutdown() {
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let sink = Sink::start(vec![("/hook".into(), signed(Behaviour::healthy()))])
        .await
        .unwrap();
    let mut p = Pipeline::new("tracing-down", vec![Dest::new("hook", sink.url("/hook"))]).await;
    p.env = vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            format!("http://{dead}"),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ];
    p.start_all();
    p.produce_events(50, "order.placed").await;
    wait_until("50 deliveries", LONG, || {
        sink.stats("/hook").unique_delivered >= 50
    })
    .await;
    assert_eq!(
        sink.stats("/hook").traceparents,
        sink.stats("/hook").requests
    );
    let started = std::time::Instant::now();
    assert!(
        p.stop_adapter("hook"),
        "the adapter exits cleanly on SIGTERM:\n{}",
        p.logs()
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "flushing to a dead backend does not hold up shutdown"
    );
}

/// Inbound: a webhook's trace continues the provider's `traceparent` at the
/// gateway's server span, and the router's span is the gateway's child;
/// without one, the trace starts at the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_webhook_continues_or_starts_its_trace_at_the_gateway() {
    let receiver = Receiver::start().await;
    let mut p = Pipeline::new(
        "tracing-gw",
        vec![Dest::new("hook", "http://127.0.0.1:9/x".into())],
    )
    .await;
    p.append_config(&format!(
        "[sources.sw]\nscheme = \"standard-webhooks\"\nsecrets = [\"{SECRET}\"]\n"
    ));
    p.env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.url.clone()),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ];
    let addr = p.start_gateway().await;
    p.start_router();
    let key = herald_core::signature::SigningKey::parse(SECRET).unwrap();
    let client = reqwest::Client::new();
    let post = |id: String, traceparent: Option<String>| {
        let (client, key) = (client.clone(), key.clone());
        async move {
            let body = r#"{"type":"order.placed","data":{}}"#;
            let ts = herald_core::time::now_ms() / 1000;
            let mut req = client
                .post(format!("http://{addr}/webhooks/sw"))
                .header("webhook-id", &id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", key.sign(&id, ts, body.as_bytes()))
                .body(body);
            if let Some(tp) = traceparent {
                req = req.header("traceparent", tp);
            }
            let r = req.send().await.expect("gateway answers");
            assert_eq!(r.status().as_u16(), 200);
        }
    };
    let trace_id = format!("{:032x}", rand::random::<u128>() | 1);
    let provider_span = format!("{:016x}", rand::random::<u64>() | 1);
    post(
        format!("{}-in", p.prefix),
        Some(format!("00-{trace_id}-{provider_span}-01")),
    )
    .await;
    post(format!("{}-fresh", p.prefix), None).await;

    let input = p.input();
    let gateway_span = "POST /webhooks/sw";
    let router_span = format!("process {input}");
    wait_until(
        "gateway and router spans of the provider's trace",
        LONG,
        || {
            let t = receiver.trace(&trace_id);
            t.iter().any(|r| r.span.name == gateway_span)
                && t.iter().any(|r| r.span.name == router_span)
        },
    )
    .await;
    let t = receiver.trace(&trace_id);
    let gw = t.iter().find(|r| r.span.name == gateway_span).unwrap();
    let router = t.iter().find(|r| r.span.name == router_span).unwrap();
    assert_eq!(gw.service, "herald-gateway");
    assert_eq!(gw.span.kind, SpanKind::Server as i32);
    assert_eq!(
        hex(&gw.span.parent_span_id),
        provider_span,
        "continues the provider's span"
    );
    assert_eq!(
        router.span.parent_span_id, gw.span.span_id,
        "router under the gateway"
    );

    // The request without a traceparent: a root span at the gateway, the
    // router's span its child in the same (new) trace.
    wait_until("a root gateway span with a routed child", LONG, || {
        let spans = receiver.spans.lock().unwrap();
        spans.iter().any(|g| {
            g.span.name == gateway_span
                && g.span.parent_span_id.is_empty()
                && spans
                    .iter()
                    .any(|r| r.span.name == router_span && r.span.parent_span_id == g.span.span_id)
        })
    })
    .await;
}
