//! `reconcile`: did every (event, destination) routed in a window reach an
//! end — delivered, dead-lettered or discarded — or is it still in flight
//! within its destination's budget? The rest are stragglers.

use crate::query::{state_of, Fact, State};
use crate::store::Store;
use rusqlite::params;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// A pair still in flight past its destination's budget.
#[derive(Debug, Serialize)]
pub struct Straggler {
    pub destination: String,
    pub event_id: String,
    pub routed_at: i64,
    pub age_s: i64,
    #[serde(flatten)]
    pub now: State,
}

#[derive(Debug, Serialize)]
pub struct Reconcile {
    pub from: i64,
    pub to: i64,
    /// Pairs routed in the window, by state.
    pub states: BTreeMap<&'static str, usize>,
    pub pairs: usize,
    pub stragglers: Vec<Straggler>,
}

/// Every (event, destination) routed in `[from, to]`: its state, and the
/// ones not ended whose age passed their destination's `budget` (retry
/// `max_age` plus the longest tier; a replayed letter counts from the
/// replay). A destination missing from `budgets` gets none (always a
/// straggler when not ended).
pub fn reconcile(
    store: &Store,
    from: i64,
    to: i64,
    budgets: &HashMap<String, Duration>,
    tiers: &HashMap<String, Duration>,
) -> rusqlite::Result<Reconcile> {
    let c = store.conn();
    let mut pairs: HashMap<(String, String), (i64, Vec<Fact>)> = HashMap::new();
    let mut st = c.prepare(
        "SELECT destination, event_id, routed_at FROM routed WHERE routed_at BETWEEN ?1 AND ?2",
    )?;
    let mut rows = st.query(params![from, to])?;
    while let Some(r) = rows.next()? {
        pairs.insert((r.get(0)?, r.get(1)?), (r.get(2)?, Vec::new()));
    }
    let window = "JOIN routed r USING (destination, event_id) WHERE r.routed_at BETWEEN ?1 AND ?2";
    let mut st = c.prepare(&format!(
        "SELECT x.destination, x.event_id, x.at, x.outcome, x.next_topic FROM attempts x {window}"
    ))?;
    let mut rows = st.query(params![from, to])?;
    while let Some(r) = rows.next()? {
        if let Some(p) = pairs.get_mut(&(r.get(0)?, r.get(1)?)) {
            p.1.push(Fact::Attempt {
                at: r.get(2)?,
                outcome: r.get(3)?,
                next_topic: r.get(4)?,
            });
        }
    }
    let mut st = c.prepare(&format!(
        "SELECT x.destination, x.event_id, x.dead_at, x.reason FROM dead x {window}"
    ))?;
    let mut rows = st.query(params![from, to])?;
    while let Some(r) = rows.next()? {
        if let Some(p) = pairs.get_mut(&(r.get(0)?, r.get(1)?)) {
            p.1.push(Fact::Dead {
                at: r.get(2)?,
                reason: r.get(3)?,
            });
        }
    }
    let mut st = c.prepare(&format!(
        "SELECT x.destination, x.event_id, x.at, x.action, x.by, x.reason FROM actions x {window}"
    ))?;
    let mut rows = st.query(params![from, to])?;
    while let Some(r) = rows.next()? {
        if let Some(p) = pairs.get_mut(&(r.get(0)?, r.get(1)?)) {
            p.1.push(Fact::Action {
                at: r.get(2)?,
                action: r.get(3)?,
                by: r.get(4)?,
                reason: r.get(5)?,
            });
        }
    }
    let mut out = Reconcile {
        from,
        to,
        states: BTreeMap::new(),
        pairs: pairs.len(),
        stragglers: Vec::new(),
    };
    for ((destination, event_id), (routed_at, facts)) in pairs {
        let now = state_of(&facts, tiers);
        *out.states.entry(now.name()).or_default() += 1;
        if now.ended() {
            continue;
        }
        let since = match &now {
            State::Replayed { at } => *at,
            _ => routed_at,
        };
        let budget = budgets
            .get(&destination)
            .map_or(0, |b| b.as_millis() as i64);
        if to - since > budget {
            out.stragglers.push(Straggler {
                destination,
                event_id,
                routed_at,
                age_s: (to - routed_at) / 1000,
                now,
            });
        }
    }
    out.stragglers.sort_by(|a, b| {
        (a.routed_at, &a.destination, &a.event_id).cmp(&(b.routed_at, &b.destination, &b.event_id))
    });
    Ok(out)
}
