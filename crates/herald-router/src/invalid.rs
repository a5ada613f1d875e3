//! Records the router sends to the invalid topic: the producer's headers,
//! why, where the record came from, and as much of its payload as fits.

use crate::route::{headers_size, Output, ORIGINAL_SIZE};
use herald_core::config::Config;
use herald_core::headers as h;
use herald_core::kafka::add_header;
use herald_core::metrics::RouterMetrics;
use rdkafka::message::{Headers, Message, OwnedHeaders};
use tracing::warn;

/// A record whose outputs can never be written (a produce error that no
/// retry fixes, such as a destination topic's smaller `max.message.bytes`):
/// on its next routing it goes to the invalid topic instead.
#[derive(Debug, Clone)]
pub struct Settled {
    pub reason: &'static str,
    pub message: String,
    /// Most payload bytes kept on the invalid record.
    pub keep_bytes: usize,
}

/// Writes `m` to the invalid topic: the producer's headers, why, where it
/// came from, and as much of its payload as fits in `max_bytes`.
#[allow(clippy::too_many_arguments)]
pub fn invalid_output<M: Message>(
    config: &Config,
    m: &M,
    metrics: &RouterMetrics,
    reason: &'static str,
    class: &str,
    message: &str,
    max_bytes: usize,
    keep: usize,
) -> Output {
    metrics.invalid.with_label_values(&[reason]).inc();
    warn!(
        topic = m.topic(),
        partition = m.partition(),
        offset = m.offset(),
        reason,
        error = message,
        "Input record is not a valid event; sending it to the invalid topic."
    );
    let mut hs = OwnedHeaders::new();
    if let Some(orig) = m.headers() {
        for x in orig.iter() {
            hs = hs.insert(x);
        }
    }
    let payload = m.payload().unwrap_or_default();
    let key = m.key().map(<[u8]>::to_vec);
    let hs = add_header(hs, h::INVALID_REASON, reason);
    let hs = add_header(hs, h::ERROR_CLASS, class);
    let hs = add_header(
        hs,
        h::ERROR_MESSAGE,
        &h::truncate(message, h::MAX_ERROR_MESSAGE),
    );
    let hs = add_header(hs, h::ORIGINAL_TOPIC, m.topic());
    let hs = add_header(hs, h::ORIGINAL_PARTITION, &m.partition().to_string());
    let mut hs = add_header(hs, h::ORIGINAL_OFFSET, &m.offset().to_string());
    let room = max_bytes
        .saturating_sub(key.as_ref().map_or(0, Vec::len))
        .saturating_sub(headers_size(&hs) + 64)
        .min(keep);
    let mut value = payload.to_vec();
    if value.len() > room {
        hs = add_header(hs, ORIGINAL_SIZE, &value.len().to_string());
        value.truncate(room);
    }
    Output {
        topic: config.topic_names().invalid(),
        partition: None,
        key,
        value,
        headers: hs,
    }
}
