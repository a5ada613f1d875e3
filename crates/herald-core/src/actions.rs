//! Operators' actions on dead letters, recorded on `<prefix>.dlq.actions`
//! ([`crate::topics::TopicNames::dlq_actions`]): a replay (the letter went
//! back through the retry ladder) or a discard (the letter is ended on
//! purpose, with a reason). One JSON record per action, keyed by
//! [`DlqAction::key`] — the dead letter's place in its DLQ — so "was this
//! letter already replayed?" and "is this (event, destination) ended?" are
//! answered from the topic alone.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    Replay,
    Discard,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqAction {
    pub action: ActionKind,
    pub destination: String,
    pub event_id: String,
    /// Where the dead letter is: its DLQ partition and offset.
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    /// When, ms since the epoch.
    pub at: i64,
    /// Who: the operator's name as the CLI or console knows it.
    pub by: String,
    /// Why (required for a discard).
    #[serde(default)]
    pub reason: Option<String>,
    /// For a replay: the topic the letter was written to.
    #[serde(default)]
    pub to_topic: Option<String>,
}

impl DlqAction {
    /// The record key: `<destination>/<dlq partition>/<dlq offset>`.
    pub fn key(&self) -> String {
        letter_key(&self.destination, self.dlq_partition, self.dlq_offset)
    }
}

/// The key of the actions on one dead letter.
pub fn letter_key(destination: &str, partition: i32, offset: i64) -> String {
    format!("{destination}/{partition}/{offset}")
}

/// Who is acting: `HERALD_OPERATOR`, else the OS user, else `unknown`.
pub fn operator() -> String {
    ["HERALD_OPERATOR", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_as_json_keyed_by_the_letters_place() {
        let a = DlqAction {
            action: ActionKind::Discard,
            destination: "crm".into(),
            event_id: "evt_1".into(),
            dlq_partition: 2,
            dlq_offset: 40,
            at: 1,
            by: "ana".into(),
            reason: Some("customer deleted".into()),
            to_topic: None,
        };
        let text = serde_json::to_string(&a).unwrap();
        assert!(text.contains("\"action\":\"discard\""), "{text}");
        assert_eq!(serde_json::from_str::<DlqAction>(&text).unwrap(), a);
        assert_eq!(a.key(), "crm/2/40");
    }
}
