//! The gateway's baseline (`herald-bench raw-gateway`, runs until SIGTERM):
//! what a team would write by hand to land webhooks on Kafka — an axum
//! (hyper) route that reads the body, produces it with Herald's producer
//! settings (idempotent, `acks=all`, the same `message.timeout.ms`) and
//! answers 200 once Kafka acknowledges, 503 otherwise. No signature check,
//! no CloudEvents headers, no limits, no metrics, no tracing.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use herald_core::config::Config;
use herald_core::kafka::producer_config;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use std::path::Path;
use std::sync::Arc;

struct Raw {
    producer: FutureProducer,
    topic: String,
    timeout: std::time::Duration,
}

pub async fn raw_gateway(config_path: &Path, listen: &str) -> anyhow::Result<()> {
    let config = Config::load(Some(config_path))?;
    let mut pc = producer_config(&config);
    pc.set(
        "message.timeout.ms",
        config.gateway.ack_timeout.as_millis().to_string(),
    );
    let raw = Arc::new(Raw {
        producer: pc.create()?,
        topic: config.topics.input.clone(),
        timeout: config.gateway.ack_timeout,
    });
    let app = axum::Router::new()
        .route("/webhooks/{source}", post(handle))
        .with_state(raw);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(herald_core::signal::shutdown())
        .await?;
    Ok(())
}

async fn handle(State(raw): State<Arc<Raw>>, body: Bytes) -> StatusCode {
    let record = FutureRecord::<(), [u8]>::to(&raw.topic).payload(body.as_ref());
    match raw.producer.send(record, Timeout::After(raw.timeout)).await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}
