//! The transactional producer's lifecycle: created and initialised with
//! back-off for as long as the broker is away, aborted after a failed
//! batch, and re-created when its state is fatal or an abort cannot finish
//! (a new `init_transactions` with the same `transactional.id` fences the
//! old producer and finishes its open transaction on the broker).
//!
//! Delivery reports carry the input record's (partition, offset), so a
//! produce error that no retry fixes (a record over a topic's
//! `max.message.bytes`) names the record to settle to the invalid topic.

use herald_core::config::Config;
use herald_core::kafka::txn_producer_config;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tracing::{error, info, warn};

pub const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait between two attempts to reach the broker.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// (input partition, input offset) of the record an output came from.
pub type Origin = (i32, i64);

/// An output the broker or the client refused for good.
pub struct Rejected {
    pub origin: Origin,
    pub error: KafkaError,
    /// Bytes of the refused record (value + key).
    pub size: usize,
}

#[derive(Default)]
pub struct TxnContext {
    rejected: Mutex<Vec<Rejected>>,
}

impl TxnContext {
    pub fn any_rejected(&self) -> bool {
        !self.rejected.lock().expect("rejected lock").is_empty()
    }
}

impl ClientContext for TxnContext {}

impl ProducerContext for TxnContext {
    type DeliveryOpaque = Box<Origin>;

    fn delivery(&self, result: &DeliveryResult<'_>, origin: Box<Origin>) {
        if let Err((e, m)) = result {
            if is_permanent(e) {
                self.rejected.lock().expect("rejected lock").push(Rejected {
                    origin: *origin,
                    error: e.clone(),
                    size: m.payload_len() + m.key_len(),
                });
            }
        }
    }
}

pub type TxnProducer = ThreadedProducer<TxnContext>;

/// Produce errors no retry can fix: the record itself is refused.
pub fn is_permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

/// Invalid-topic reason for a permanent produce error.
pub fn rejection_reason(e: &KafkaError) -> &'static str {
    match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::MessageBatchTooLarge,
        ) => "too-large",
        _ => "rejected",
    }
}

pub struct Txn {
    cfg: ClientConfig,
    pub id: String,
    producer: Option<TxnProducer>,
}

impl Txn {
    pub fn new(config: &Config, id: String) -> Self {
        let cfg = txn_producer_config(config, &id);
        Self {
            cfg,
            id,
            producer: None,
        }
    }

    /// The producer, ready for a transaction, created (again) if needed.
    /// Retries with back-off until it works or `stop` is set; `idle` runs
    /// between attempts (it keeps the consumer polled). `false` on stop.
    pub fn ensure(&mut self, stop: &AtomicBool, idle: &mut dyn FnMut(Duration)) -> bool {
        let mut backoff = Duration::from_millis(500);
        while self.producer.is_none() {
            if stop.load(Ordering::Acquire) {
                return false;
            }
            match self.create() {
                Ok(p) => {
                    info!(transactional_id = %self.id, "Transactional producer ready.");
                    self.producer = Some(p);
                }
                Err(e) => {
                    warn!(error = %e, retry_in = ?backoff, "Could not initialise the transactional producer; retrying.");
                    idle(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        true
    }

    fn create(&self) -> Result<TxnProducer, KafkaError> {
        let p: TxnProducer = self.cfg.create_with_context(TxnContext::default())?;
        p.init_transactions(TXN_TIMEOUT)?;
        Ok(p)
    }

    pub fn producer(&self) -> &TxnProducer {
        self.producer.as_ref().expect("ensure() first")
    }

    /// Outputs refused for good since the last call.
    pub fn take_rejected(&self) -> Vec<Rejected> {
        self.producer
            .as_ref()
            .map(|p| std::mem::take(&mut *p.context().rejected.lock().expect("rejected lock")))
            .unwrap_or_default()
    }

    /// After a failed batch: aborts the transaction, or, when the producer
    /// is fatally broken or cannot abort, drops it for `ensure` to re-create.
    pub fn abort(&mut self, cause: &KafkaError) {
        let Some(p) = &self.producer else { return };
        let fatal = matches!(cause, KafkaError::Transaction(t) if t.is_fatal());
        if !fatal {
            match p.abort_transaction(TXN_TIMEOUT) {
                Ok(()) => {
                    self.take_rejected();
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "Abort failed; re-creating the transactional producer.")
                }
            }
        } else {
            error!(error = %cause, "Fatal transaction error; re-creating the transactional producer.");
        }
        self.producer = None;
    }
}
