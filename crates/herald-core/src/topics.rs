//! Topic and consumer-group names. Every name Herald uses is built here, so
//! that a prefix change or a new ladder is one edit.

use crate::time::compact_duration;
use std::time::Duration;

/// Names derived from the configured prefix (default `herald`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicNames {
    prefix: String,
}

impl TopicNames {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Undecodable or schema-invalid input, with reason headers.
    pub fn invalid(&self) -> String {
        format!("{}.invalid", self.prefix)
    }

    /// Every delivery attempt (the delivery log).
    pub fn attempts(&self) -> String {
        format!("{}.attempts", self.prefix)
    }

    /// Deliveries routed to one destination.
    pub fn dest(&self, destination: &str) -> String {
        format!("{}.dest.{destination}", self.prefix)
    }

    /// One retry tier. The delay is part of the name, so changing the ladder
    /// creates new topics instead of silently changing old ones.
    pub fn retry(&self, destination: &str, delay: Duration) -> String {
        format!(
            "{}.dest.{destination}.retry.{}",
            self.prefix,
            compact_duration(delay)
        )
    }

    pub fn dlq(&self, destination: &str) -> String {
        format!("{}.dest.{destination}.dlq", self.prefix)
    }

    /// Operators' actions on dead letters (replayed, discarded: who, when,
    /// why), one JSON record per action; the audit trail `herald dlq` and
    /// `herald-log` read.
    pub fn dlq_actions(&self) -> String {
        format!("{}.dlq.actions", self.prefix)
    }

    /// Compacted: the terminal state of each event at one destination.
    pub fn ledger(&self, destination: &str) -> String {
        format!("{}.dest.{destination}.ledger", self.prefix)
    }

    /// Compacted: event identities the router has seen, per input partition.
    pub fn dedupe_changelog(&self) -> String {
        format!("{}.router.dedupe", self.prefix)
    }

    pub fn router_group(&self) -> String {
        format!("{}.router", self.prefix)
    }

    pub fn adapter_group(&self, destination: &str) -> String {
        format!("{}.adapter.{destination}", self.prefix)
    }
}

/// Whether `name` uses only the characters Herald allows in topic names and
/// name parts: `[a-z0-9.-]`, not empty.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_follow_the_contract() {
        let t = TopicNames::new("herald");
        assert_eq!(t.invalid(), "herald.invalid");
        assert_eq!(t.dest("slack"), "herald.dest.slack");
        assert_eq!(
            t.retry("slack", Duration::from_secs(120)),
            "herald.dest.slack.retry.2m"
        );
        assert_eq!(t.dlq("slack"), "herald.dest.slack.dlq");
        assert_eq!(t.ledger("slack"), "herald.dest.slack.ledger");
        assert_eq!(t.adapter_group("slack"), "herald.adapter.slack");
        assert_eq!(t.router_group(), "herald.router");
    }

    #[test]
    fn name_charset() {
        assert!(is_valid_name("herald.dest.a-b.retry.30s"));
        assert!(!is_valid_name("Herald"));
        assert!(!is_valid_name("a_b"));
        assert!(!is_valid_name(""));
    }
}
