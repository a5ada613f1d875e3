//! The records Herald writes to Kafka. The `.avsc` files in `schemas/` are the
//! source of truth; these types mirror them field for field, and the tests in
//! [`crate::codec`] fail if the two drift.

use serde::{Deserialize, Serialize};

/// A product event: CloudEvents context attributes plus the tenant extension,
/// with the payload kept as JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub source: String,
    pub r#type: String,
    pub time: Option<String>,
    pub subject: Option<String>,
    pub tenant: Option<String>,
    /// JSON text.
    pub data: String,
}

impl Event {
    /// The CloudEvents structured-mode JSON body delivered to destinations.
    pub fn to_cloudevent_json(&self) -> serde_json::Value {
        let data: serde_json::Value = serde_json::from_str(&self.data)
            .unwrap_or_else(|_| serde_json::Value::String(self.data.clone()));
        let mut m = serde_json::Map::new();
        m.insert("specversion".into(), "1.0".into());
        m.insert("id".into(), self.id.clone().into());
        m.insert("source".into(), self.source.clone().into());
        m.insert("type".into(), self.r#type.clone().into());
        for (k, v) in [
            ("time", &self.time),
            ("subject", &self.subject),
            ("tenant", &self.tenant),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v.clone().into());
            }
        }
        m.insert("datacontenttype".into(), "application/json".into());
        m.insert("data".into(), data);
        serde_json::Value::Object(m)
    }
}

/// One failed attempt in a delivery's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptError {
    pub attempt: i32,
    pub at: i64,
    pub error_class: String,
    pub status: Option<i32>,
    pub message: String,
}

/// One event on its way to one destination: the value of records on
/// `<prefix>.dest.<d>` and its retry tiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub event: Event,
    pub destination: String,
    /// Attempts made so far.
    pub attempts: i32,
    pub routed_at: i64,
    pub first_attempt_at: Option<i64>,
    /// Not to be attempted before this time (ms since the epoch; 0 = now).
    pub due_at: i64,
    pub origin_topic: String,
    pub origin_partition: i32,
    pub origin_offset: i64,
    pub history: Vec<AttemptError>,
}

/// The outcome of one attempt as recorded on the attempts topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptOutcome {
    Delivered,
    Retry,
    DeadLettered,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry => "retry",
            Self::DeadLettered => "dead-lettered",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Delivered, Self::Retry, Self::DeadLettered]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// One delivery attempt, as written to `<prefix>.attempts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub event_id: String,
    pub event_type: String,
    pub destination: String,
    pub attempt: i32,
    pub at: i64,
    /// `delivered`, `retry` or `dead-lettered` ([`AttemptOutcome`]).
    pub outcome: String,
    pub error_class: Option<String>,
    pub status: Option<i32>,
    pub latency_ms: i64,
    pub excerpt: Option<String>,
    pub next_topic: Option<String>,
    pub trace_id: Option<String>,
}

/// Why a delivery was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlqReason {
    /// Retryable failures until the budget (attempts or age) ran out.
    Exhausted,
    /// A failure that retrying cannot fix (4xx other than 408/429, 501).
    Permanent,
    /// A record the adapter cannot even decode.
    Poison,
}

impl DlqReason {
    pub const ALL: [DlqReason; 3] = [Self::Exhausted, Self::Permanent, Self::Poison];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exhausted => "exhausted",
            Self::Permanent => "permanent",
            Self::Poison => "poison",
        }
    }
}

/// A delivery that will not be retried any more: the value of records on
/// `<prefix>.dest.<d>.dlq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub delivery: Delivery,
    /// `exhausted`, `permanent` or `poison` ([`DlqReason`]).
    pub reason: String,
    pub dead_at: i64,
}
