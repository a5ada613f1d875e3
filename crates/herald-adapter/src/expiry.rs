//! When a delivery must stop waiting: its age budget (counted from when the
//! router routed the event) is spent, or — while the circuit is open, so
//! nothing can be attempted — its record has waited so long that the
//! topic's retention would soon delete it unseen. Such a record is
//! dead-lettered as `expired` without an attempt, so an outage longer than
//! retention ends in the DLQ, not in silent loss.

use std::collections::HashMap;

/// Share of a topic's retention after which an unprocessed record is
/// dead-lettered rather than left for retention to delete.
pub const RETENTION_GUARD: f64 = 0.8;

#[derive(Debug, Clone, Default)]
pub struct ExpiryRule {
    /// The retry budget's age limit, ms (0: none).
    pub max_age_ms: i64,
    /// Per topic: age (ms) of an unprocessed record at which it expires.
    pub guard_ms: HashMap<String, i64>,
}

impl ExpiryRule {
    /// Sets a topic's retention (`retention.ms`; negative = infinite).
    pub fn set_retention(&mut self, topic: &str, retention_ms: i64) {
        if retention_ms > 0 {
            let guard = (retention_ms as f64 * RETENTION_GUARD) as i64;
            self.guard_ms.insert(topic.to_string(), guard);
        } else {
            self.guard_ms.remove(topic);
        }
    }

    /// Why a record of `topic`, written at `record_ts`, of an event routed
    /// at `routed_at`, must expire now — or `None`.
    pub fn why(&self, topic: &str, record_ts: i64, routed_at: i64, now: i64) -> Option<String> {
        if let Some(why) = self.budget_spent(routed_at, now) {
            return Some(why);
        }
        let guard = *self.guard_ms.get(topic)?;
        (now - record_ts > guard).then(|| {
            format!(
                "unprocessed for {} s in {topic}, close to its retention ({} s); dead-lettered before retention deletes it",
                (now - record_ts) / 1000,
                (guard as f64 / RETENTION_GUARD) as i64 / 1000
            )
        })
    }

    /// Why an event routed at `routed_at` has spent its age budget — or
    /// `None`.
    pub fn budget_spent(&self, routed_at: i64, now: i64) -> Option<String> {
        (self.max_age_ms > 0 && now - routed_at > self.max_age_ms).then(|| {
            format!(
                "age budget spent: routed {} s ago, max_age {} s",
                (now - routed_at) / 1000,
                self.max_age_ms / 1000
            )
        })
    }

    /// Whether a partition whose record at the committed position is
    /// `head_age_ms` old must be drained now.
    pub fn head_expiring(&self, topic: &str, head_age_ms: i64) -> bool {
        self.guard_ms.get(topic).is_some_and(|g| head_age_ms > *g)
            || (self.max_age_ms > 0 && head_age_ms > self.max_age_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_counts_from_routing_and_retention_guards_each_topic() {
        let mut r = ExpiryRule {
            max_age_ms: 60_000,
            ..Default::default()
        };
        r.set_retention("d", 100_000);
        r.set_retention("inf", -1);
        assert!(r.why("d", 0, 0, 60_000).is_none());
        assert!(r.why("d", 0, 0, 60_001).unwrap().contains("age budget"));
        assert!(r.budget_spent(0, 60_001).is_some());
        assert!(
            r.budget_spent(50_000, 80_001).is_none(),
            "retention is not a budget"
        );
        // A young event in an old record: retention decides.
        assert!(r.why("d", 0, 50_000, 80_000).is_none());
        assert!(r.why("d", 0, 50_000, 80_001).unwrap().contains("retention"));
        assert!(r.why("inf", 0, 0, 30_000).is_none());
        assert!(r.head_expiring("d", 80_001));
        assert!(!r.head_expiring("d", 50_000));
        assert!(r.head_expiring("inf", 60_001), "age budget still applies");
    }
}
