//! Questions the index answers: where is event X at each destination
//! ([`trace`]), and did every (event, destination) routed in a window reach
//! an end ([`reconcile`]). The state of a pair is decided by [`state_of`]
//! from its latest fact — pure, tested without a database.

use crate::store::Store;
use rusqlite::params;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Where an (event, destination) pair is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum State {
    /// Routed, no attempt recorded yet.
    Pending,
    /// The last attempt failed; waiting in a retry tier.
    Waiting {
        topic: String,
        since: i64,
        due: Option<i64>,
    },
    Delivered {
        at: i64,
    },
    DeadLettered {
        at: i64,
        reason: String,
    },
    /// A dead letter sent back through the ladder; no attempt since.
    Replayed {
        at: i64,
    },
    Discarded {
        at: i64,
        by: String,
        reason: Option<String>,
    },
}

impl State {
    /// Delivered, dead-lettered or discarded: nothing more will happen
    /// unless an operator acts.
    pub fn ended(&self) -> bool {
        matches!(
            self,
            State::Delivered { .. } | State::DeadLettered { .. } | State::Discarded { .. }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Waiting { .. } => "waiting",
            State::Delivered { .. } => "delivered",
            State::DeadLettered { .. } => "dead-lettered",
            State::Replayed { .. } => "replayed",
            State::Discarded { .. } => "discarded",
        }
    }
}

/// One fact about a pair, for [`state_of`].
#[derive(Debug, Clone)]
pub enum Fact {
    Attempt {
        at: i64,
        outcome: String,
        next_topic: Option<String>,
    },
    Dead {
        at: i64,
        reason: String,
    },
    Action {
        at: i64,
        action: String,
        by: String,
        reason: Option<String>,
    },
}

impl Fact {
    fn at(&self) -> i64 {
        match self {
            Fact::Attempt { at, .. } | Fact::Dead { at, .. } | Fact::Action { at, .. } => *at,
        }
    }
}

/// The state the latest fact gives (ties: a dead letter or an action after
/// the attempt that caused it). `tiers` maps retry topics to their delay.
pub fn state_of(facts: &[Fact], tiers: &HashMap<String, Duration>) -> State {
    let rank = |f: &Fact| match f {
        Fact::Attempt { .. } => 0,
        Fact::Dead { .. } => 1,
        Fact::Action { .. } => 2,
    };
    let Some(last) = facts.iter().max_by_key(|f| (f.at(), rank(f))) else {
        return State::Pending;
    };
    match last {
        Fact::Attempt {
            at,
            outcome,
            next_topic,
        } => match outcome.as_str() {
            "delivered" => State::Delivered { at: *at },
            "retry" => {
                let topic = next_topic.clone().unwrap_or_default();
                let due = tiers.get(&topic).map(|d| at + d.as_millis() as i64);
                State::Waiting {
                    topic,
                    since: *at,
                    due,
                }
            }
            _ => State::DeadLettered {
                at: *at,
                reason: "dead-lettered".into(),
            },
        },
        Fact::Dead { at, reason } => State::DeadLettered {
            at: *at,
            reason: reason.clone(),
        },
        Fact::Action {
            at,
            action,
            by,
            reason,
        } => match action.as_str() {
            "discard" => State::Discarded {
                at: *at,
                by: by.clone(),
                reason: reason.clone(),
            },
            _ => State::Replayed { at: *at },
        },
    }
}

#[derive(Debug, Serialize)]
pub struct AttemptView {
    pub attempt: i32,
    pub at: i64,
    pub outcome: String,
    pub error_class: Option<String>,
    pub status: Option<i32>,
    pub latency_ms: i64,
    pub excerpt: Option<String>,
    pub next_topic: Option<String>,
    pub trace_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DestinationTrace {
    pub destination: String,
    pub event_type: Option<String>,
    pub tenant: Option<String>,
    pub routed_at: Option<i64>,
    pub produced_at: Option<i64>,
    pub attempts: Vec<AttemptView>,
    pub dead_letters: Vec<serde_json::Value>,
    pub actions: Vec<serde_json::Value>,
    pub now: State,
}

#[derive(Debug, Serialize)]
pub struct Trace {
    pub event_id: String,
    pub destinations: Vec<DestinationTrace>,
}

type Slot = (DestinationTrace, Vec<Fact>);

fn slot<'m>(m: &'m mut BTreeMap<String, Slot>, d: &str) -> &'m mut Slot {
    m.entry(d.to_string()).or_insert_with(|| {
        (
            DestinationTrace {
                destination: d.to_string(),
                event_type: None,
                tenant: None,
                routed_at: None,
                produced_at: None,
                attempts: Vec::new(),
                dead_letters: Vec::new(),
                actions: Vec::new(),
                now: State::Pending,
            },
            Vec::new(),
        )
    })
}

/// Everything the index knows about `event_id`, per destination.
pub fn trace(
    store: &Store,
    event_id: &str,
    tiers: &HashMap<String, Duration>,
) -> rusqlite::Result<Trace> {
    let c = store.conn();
    let mut m: BTreeMap<String, Slot> = BTreeMap::new();
    let mut st = c.prepare(
        "SELECT destination, event_type, tenant, routed_at, produced_at FROM routed WHERE event_id = ?1",
    )?;
    let mut rows = st.query(params![event_id])?;
    while let Some(r) = rows.next()? {
        let d: String = r.get(0)?;
        let e = &mut slot(&mut m, &d).0;
        e.event_type = r.get(1)?;
        e.tenant = r.get(2)?;
        e.routed_at = r.get(3)?;
        e.produced_at = r.get(4)?;
    }
    let mut st = c.prepare(
        "SELECT destination, attempt, at, outcome, error_class, status, latency_ms, excerpt, next_topic, trace_id, event_type
         FROM attempts WHERE event_id = ?1 ORDER BY at, attempt",
    )?;
    let mut rows = st.query(params![event_id])?;
    while let Some(r) = rows.next()? {
        let d: String = r.get(0)?;
        let a = AttemptView {
            attempt: r.get(1)?,
            at: r.get(2)?,
            outcome: r.get(3)?,
            error_class: r.get(4)?,
            status: r.get(5)?,
            latency_ms: r.get(6)?,
            excerpt: r.get(7)?,
            next_topic: r.get(8)?,
            trace_id: r.get(9)?,
        };
        let s = slot(&mut m, &d);
        if s.0.event_type.is_none() {
            s.0.event_type = r.get(10)?;
        }
        s.1.push(Fact::Attempt {
            at: a.at,
            outcome: a.outcome.clone(),
            next_topic: a.next_topic.clone(),
        });
        s.0.attempts.push(a);
    }
    let mut st = c.prepare(
        "SELECT destination, reason, dead_at, dlq_partition, dlq_offset FROM dead WHERE event_id = ?1 ORDER BY dead_at",
    )?;
    let mut rows = st.query(params![event_id])?;
    while let Some(r) = rows.next()? {
        let d: String = r.get(0)?;
        let (reason, at, p, o): (String, i64, i32, i64) =
            (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
        let s = slot(&mut m, &d);
        s.0.dead_letters.push(serde_json::json!({"reason": reason, "dead_at": at, "dlq_partition": p, "dlq_offset": o}));
        s.1.push(Fact::Dead { at, reason });
    }
    let mut st = c.prepare(
        "SELECT destination, action, at, by, reason, to_topic, dlq_partition, dlq_offset FROM actions WHERE event_id = ?1 ORDER BY at",
    )?;
    let mut rows = st.query(params![event_id])?;
    while let Some(r) = rows.next()? {
        let d: String = r.get(0)?;
        let (action, at, by, reason, to): (String, i64, String, Option<String>, Option<String>) =
            (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
        let (p, o): (i32, i64) = (r.get(6)?, r.get(7)?);
        let s = slot(&mut m, &d);
        s.0.actions.push(serde_json::json!({"action": action, "at": at, "by": by, "reason": reason, "to_topic": to, "dlq_partition": p, "dlq_offset": o}));
        s.1.push(Fact::Action {
            at,
            action,
            by,
            reason,
        });
    }
    let destinations = m
        .into_values()
        .map(|(mut t, facts)| {
            t.now = state_of(&facts, tiers);
            t
        })
        .collect();
    Ok(Trace {
        event_id: event_id.to_string(),
        destinations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::reconcile;
    use crate::store::tests::{attempt, routed};
    use crate::store::Row;
    use std::path::Path;

    fn tiers() -> HashMap<String, Duration> {
        HashMap::from([(
            "herald.dest.crm.retry.30s".to_string(),
            Duration::from_secs(30),
        )])
    }

    #[test]
    fn the_latest_fact_decides_the_state() {
        let t = tiers();
        assert_eq!(state_of(&[], &t), State::Pending);
        let retry = Fact::Attempt {
            at: 10,
            outcome: "retry".into(),
            next_topic: Some("herald.dest.crm.retry.30s".into()),
        };
        assert_eq!(
            state_of(std::slice::from_ref(&retry), &t),
            State::Waiting {
                topic: "herald.dest.crm.retry.30s".into(),
                since: 10,
                due: Some(30_010)
            }
        );
        let dead_attempt = Fact::Attempt {
            at: 40,
            outcome: "dead-lettered".into(),
            next_topic: None,
        };
        let dead = Fact::Dead {
            at: 40,
            reason: "exhausted".into(),
        };
        assert_eq!(
            state_of(&[retry.clone(), dead_attempt.clone(), dead.clone()], &t),
            State::DeadLettered {
                at: 40,
                reason: "exhausted".into()
            },
            "the dead letter's reason wins a tie with its attempt"
        );
        let replay = Fact::Action {
            at: 50,
            action: "replay".into(),
            by: "ana".into(),
            reason: None,
        };
        assert_eq!(
            state_of(&[dead.clone(), replay.clone()], &t),
            State::Replayed { at: 50 }
        );
        let ok = Fact::Attempt {
            at: 60,
            outcome: "delivered".into(),
            next_topic: None,
        };
        assert_eq!(
            state_of(&[dead, replay, ok], &t),
            State::Delivered { at: 60 }
        );
    }

    #[test]
    fn trace_and_reconcile_read_the_index() {
        let mut s = Store::open(Path::new(":memory:")).unwrap();
        let rows = vec![
            routed("crm", "e1", 1_000),
            attempt("crm", "e1", 1, 1_100, "retry"),
            attempt("crm", "e1", 2, 31_200, "delivered"),
            routed("crm", "e2", 1_000),
            attempt("crm", "e2", 1, 1_100, "retry"),
            routed("crm", "e3", 1_000),
            attempt("crm", "e3", 1, 1_100, "dead-lettered"),
            Row::Dead {
                destination: "crm".into(),
                event_id: "e3".into(),
                reason: "permanent".into(),
                dead_at: 1_100,
                partition: 0,
                offset: 0,
            },
            routed("slack", "e1", 1_000),
        ];
        s.apply(&rows, &HashMap::new()).unwrap();
        let t = trace(&s, "e1", &tiers()).unwrap();
        assert_eq!(t.destinations.len(), 2);
        assert_eq!(t.destinations[0].destination, "crm");
        assert_eq!(t.destinations[0].attempts.len(), 2);
        assert_eq!(t.destinations[0].now, State::Delivered { at: 31_200 });
        assert_eq!(t.destinations[1].now, State::Pending);

        let budgets = HashMap::from([
            ("crm".to_string(), Duration::from_secs(60)),
            ("slack".to_string(), Duration::from_secs(60)),
        ]);
        // Within budget: nothing straggles.
        let r = reconcile(&s, 0, 50_000, &budgets, &tiers()).unwrap();
        assert_eq!(r.pairs, 4);
        assert!(r.stragglers.is_empty(), "{r:?}");
        assert_eq!(r.states["delivered"], 1);
        assert_eq!(r.states["dead-lettered"], 1);
        // Later: e2 (waiting) and e1@slack (pending) passed their budget.
        let r = reconcile(&s, 0, 200_000, &budgets, &tiers()).unwrap();
        let late: Vec<(&str, &str, &str)> = r
            .stragglers
            .iter()
            .map(|x| (x.destination.as_str(), x.event_id.as_str(), x.now.name()))
            .collect();
        assert_eq!(late, [("crm", "e2", "waiting"), ("slack", "e1", "pending")]);
    }
}
