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
    /// The input record's Kafka timestamp (ms since the epoch): when the
    /// producer wrote the event. `None` in deliveries routed before Herald
    /// carried it.
    #[serde(default)]
    pub produced_at: Option<i64>,
}

impl Delivery {
    /// Where the retry age budget starts ([`crate::retry::RetryPolicy::next`]):
    /// when the event was routed, so time spent waiting before any attempt
    /// (an open circuit, a paused partition, a backlog) counts. Records
    /// written without a routing time (0) fall back to the first attempt,
    /// then to `now`.
    pub fn age_origin(&self, now: i64) -> i64 {
        if self.routed_at > 0 {
            self.routed_at
        } else {
            self.first_attempt_at.unwrap_or(now)
        }
    }
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
    /// Its age budget or its topic's retention ran out before it could be
    /// delivered (e.g. held behind an open circuit): settled before Kafka
    /// could delete it unseen.
    Expired,
}

impl DlqReason {
    pub const ALL: [DlqReason; 4] = [
        Self::Exhausted,
        Self::Permanent,
        Self::Poison,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exhausted => "exhausted",
            Self::Permanent => "permanent",
            Self::Poison => "poison",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A delivery that will not be retried any more: the value of records on
/// `<prefix>.dest.<d>.dlq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub delivery: Delivery,
    /// `exhausted`, `permanent`, `poison` or `expired` ([`DlqReason`]).
    pub reason: String,
    pub dead_at: i64,
}

/// The step an event last reached at one destination, as the ledger records
/// it. The Avro enum `LedgerState` in `schemas/ledger.avsc` has exactly these
/// symbols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerState {
    /// The destination accepted it.
    Delivered,
    /// A retry record after `attempts` attempts is durable on a tier.
    Retrying,
    /// In the DLQ (exhausted, permanent or poison).
    DeadLettered,
    /// Dead-lettered because its age budget or retention ran out.
    Expired,
    /// Dropped from the DLQ by an operator, with a reason.
    Discarded,
    /// Replaced by a newer event for the same entity.
    Superseded,
}

impl LedgerState {
    pub const ALL: [LedgerState; 6] = [
        Self::Delivered,
        Self::Retrying,
        Self::DeadLettered,
        Self::Expired,
        Self::Discarded,
        Self::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retrying => "retrying",
            Self::DeadLettered => "dead_lettered",
            Self::Expired => "expired",
            Self::Discarded => "discarded",
            Self::Superseded => "superseded",
        }
    }

    /// Also reads `dead-lettered`, the spelling of ledgers written as JSON.
    pub fn parse(s: &str) -> Option<Self> {
        if s == "dead-lettered" {
            return Some(Self::DeadLettered);
        }
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether nothing more will happen to the event without an operator.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Retrying)
    }
}

impl std::fmt::Display for LedgerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event's latest step at one destination: the value of records on
/// `<prefix>.dest.<d>.ledger`, keyed by `identity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The event's identity hash (`router.identity` fields), 32 hex digits.
    pub identity: String,
    pub event_id: String,
    pub source: String,
    pub state: LedgerState,
    /// Attempts made when the step was recorded.
    pub attempts: i32,
    /// When the step was recorded, ms since the epoch.
    pub at: i64,
}

impl LedgerEntry {
    /// Decodes a ledger value in either form: Avro (`schemas/ledger.avsc`,
    /// single-object or registry-framed), or the untyped JSON that ledgers held before
    /// it, `{"state":"delivered","attempts":1,"at":…}`. A JSON entry has no
    /// identity, event id or source (they are empty): its record key is the
    /// event id. `None` for anything else, tombstones included.
    pub fn decode_any(bytes: &[u8]) -> Option<LedgerEntry> {
        use crate::codec::{AvroRecord, SINGLE_OBJECT_MAGIC};
        if bytes.starts_with(&SINGLE_OBJECT_MAGIC) || crate::registry::unframe(bytes).is_some() {
            return LedgerEntry::from_avro(bytes).ok();
        }
        #[derive(Deserialize)]
        struct Legacy {
            state: String,
            #[serde(default)]
            attempts: i64,
            #[serde(default)]
            at: i64,
        }
        let old: Legacy = serde_json::from_slice(bytes).ok()?;
        Some(LedgerEntry {
            identity: String::new(),
            event_id: String::new(),
            source: String::new(),
            state: LedgerState::parse(&old.state)?,
            attempts: i32::try_from(old.attempts).unwrap_or(i32::MAX),
            at: old.at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::{NextStep, RetryPolicy};
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::time::Duration;

    fn delivery(routed_at: i64, first_attempt_at: Option<i64>) -> Delivery {
        Delivery {
            event: Event {
                id: "e1".into(),
                source: "/s".into(),
                r#type: "t.x".into(),
                time: None,
                subject: None,
                tenant: None,
                data: "{}".into(),
            },
            destination: "crm".into(),
            attempts: 0,
            routed_at,
            first_attempt_at,
            due_at: 0,
            origin_topic: "events".into(),
            origin_partition: 0,
            origin_offset: 0,
            history: vec![],
            produced_at: None,
        }
    }

    #[test]
    fn age_origin_is_the_routing_time() {
        assert_eq!(delivery(100, Some(500)).age_origin(900), 100);
        // Written without a routing time: the first attempt, then now.
        assert_eq!(delivery(0, Some(500)).age_origin(900), 500);
        assert_eq!(delivery(0, None).age_origin(900), 900);
    }

    /// An event held 25 h behind an open circuit fails its first attempt:
    /// its 24 h budget, counted from routing, is spent.
    #[test]
    fn an_event_held_before_its_first_attempt_runs_out_of_budget() {
        let policy = RetryPolicy {
            tiers: vec![Duration::from_secs(30)],
            max_attempts: 5,
            max_age: Duration::from_secs(86_400),
            jitter: 0.0,
        };
        let hour = 3_600_000;
        let now = 25 * hour;
        let d = delivery(1, Some(now));
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            policy.next(1, d.age_origin(now), now, None, &mut rng),
            NextStep::Exhausted
        );
        let fresh = delivery(now - hour, Some(now));
        assert!(matches!(
            policy.next(1, fresh.age_origin(now), now, None, &mut rng),
            NextStep::Retry { .. }
        ));
    }

    #[test]
    fn ledger_states_parse_their_names() {
        for s in LedgerState::ALL {
            assert_eq!(LedgerState::parse(s.as_str()), Some(s));
        }
        assert_eq!(
            LedgerState::parse("dead-lettered"),
            Some(LedgerState::DeadLettered)
        );
        assert_eq!(LedgerState::parse("lost"), None);
        assert!(!LedgerState::Retrying.is_terminal());
        assert!(LedgerState::Delivered.is_terminal());
        for r in DlqReason::ALL {
            assert_eq!(DlqReason::parse(r.as_str()), Some(r));
        }
    }
}
