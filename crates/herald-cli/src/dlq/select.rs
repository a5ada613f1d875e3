//! Which dead letters a command acts on: the filters, each letter's state
//! from the actions recorded on it, and the replay and discard decisions.
//! No I/O: `dlq/mod.rs` reads the topics, `dlq/send.rs` writes.

use herald_core::actions::{ActionKind, DlqAction};
use std::collections::{BTreeSet, HashMap};

/// What selection needs to know of one dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub partition: i32,
    pub offset: i64,
    /// The event id (from the `ce_id` header for a poison record, or `?`).
    pub event_id: String,
    pub event_type: Option<String>,
    pub reason: String,
    /// When it was dead-lettered (ms); the record's timestamp for poison.
    pub dead_at: i64,
    /// The last history entry's error class and HTTP status.
    pub last_error_class: Option<String>,
    pub last_status: Option<i32>,
    /// Not a decodable delivery: cannot be replayed.
    pub poison: bool,
}

/// The selectors of `dlq replay` / `dlq discard`; every one given must match.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Any of these event ids (empty: any).
    pub ids: Vec<String>,
    /// Dead-lettered at or after (ms).
    pub since: Option<i64>,
    /// Dead-lettered at or before (ms).
    pub until: Option<i64>,
    pub error_class: Option<String>,
    pub event_type: Option<String>,
    pub status: Option<i32>,
    /// The DLQ reason (exhausted, permanent, poison, expired).
    pub reason: Option<String>,
}

impl Filter {
    pub fn matches(&self, c: &Candidate) -> bool {
        (self.ids.is_empty() || self.ids.contains(&c.event_id))
            && self.since.is_none_or(|t| c.dead_at >= t)
            && self.until.is_none_or(|t| c.dead_at <= t)
            && self
                .error_class
                .as_ref()
                .is_none_or(|x| c.last_error_class.as_ref() == Some(x))
            && self
                .event_type
                .as_ref()
                .is_none_or(|x| c.event_type.as_ref() == Some(x))
            && self.status.is_none_or(|s| c.last_status == Some(s))
            && self.reason.as_ref().is_none_or(|r| &c.reason == r)
    }

    /// The given ids no letter has (whatever the other filters say).
    pub fn unknown_ids(&self, cands: &[Candidate]) -> Vec<String> {
        let known: BTreeSet<&str> = cands.iter().map(|c| c.event_id.as_str()).collect();
        let mut out: Vec<String> = Vec::new();
        for id in &self.ids {
            if !known.contains(id.as_str()) && !out.contains(id) {
                out.push(id.clone());
            }
        }
        out
    }
}

/// A letter's state as `dlq list` and `dlq show` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Dead,
    Replayed,
    Discarded,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dead => "dead",
            Self::Replayed => "replayed",
            Self::Discarded => "discarded",
        }
    }
}

/// The actions recorded on one destination's letters, by DLQ place.
#[derive(Debug, Default)]
pub struct Actions {
    by_letter: HashMap<(i32, i64), Vec<DlqAction>>,
}

impl Actions {
    /// Keeps `destination`'s actions, each letter's in time order.
    pub fn new(destination: &str, all: impl IntoIterator<Item = DlqAction>) -> Self {
        let mut by_letter: HashMap<(i32, i64), Vec<DlqAction>> = HashMap::new();
        for a in all.into_iter().filter(|a| a.destination == destination) {
            by_letter
                .entry((a.dlq_partition, a.dlq_offset))
                .or_default()
                .push(a);
        }
        for v in by_letter.values_mut() {
            v.sort_by_key(|a| a.at);
        }
        Self { by_letter }
    }

    pub fn of(&self, partition: i32, offset: i64) -> &[DlqAction] {
        self.by_letter
            .get(&(partition, offset))
            .map_or(&[], Vec::as_slice)
    }

    fn has(&self, c: &Candidate, kind: ActionKind) -> bool {
        self.of(c.partition, c.offset)
            .iter()
            .any(|a| a.action == kind)
    }

    /// Discarded wins over replayed: a discard ends the letter.
    pub fn state(&self, partition: i32, offset: i64) -> State {
        let acts = self.of(partition, offset);
        if acts.iter().any(|a| a.action == ActionKind::Discard) {
            State::Discarded
        } else if acts.iter().any(|a| a.action == ActionKind::Replay) {
            State::Replayed
        } else {
            State::Dead
        }
    }
}

/// Why a selected letter is not acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Replayed before (replay again with --force).
    AlreadyReplayed,
    /// Discarded: never replayed.
    Discarded,
    /// Discarded before (by a discard).
    AlreadyDiscarded,
    /// Not a delivery: nothing to replay.
    Poison,
    /// Another letter of the same event is replayed in this run (the
    /// newest); this one is marked replayed with it.
    Duplicate,
}

impl Skip {
    pub const ALL: [Skip; 5] = [
        Self::AlreadyReplayed,
        Self::Discarded,
        Self::AlreadyDiscarded,
        Self::Poison,
        Self::Duplicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlreadyReplayed => "already_replayed",
            Self::Discarded => "discarded",
            Self::AlreadyDiscarded => "already_discarded",
            Self::Poison => "poison",
            Self::Duplicate => "duplicate",
        }
    }

    pub fn explain(self) -> &'static str {
        match self {
            Self::AlreadyReplayed => "already replayed (use --force to replay again)",
            Self::Discarded => "discarded",
            Self::AlreadyDiscarded => "already discarded",
            Self::Poison => "poison records (not deliveries)",
            Self::Duplicate => "other letters of an event replayed once",
        }
    }
}

/// The decision for one command: indexes into the candidates.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Letters to act on, in DLQ order.
    pub chosen: Vec<usize>,
    /// Letters the filters matched but that are not acted on. For a
    /// [`Skip::Duplicate`], the letter chosen for the same event.
    pub skipped: Vec<(usize, Skip, Option<usize>)>,
    /// Letters the filters matched.
    pub matched: usize,
}

impl Plan {
    pub fn skipped_as(&self, why: Skip) -> impl Iterator<Item = usize> + '_ {
        self.skipped
            .iter()
            .filter(move |(_, s, _)| *s == why)
            .map(|(i, _, _)| *i)
    }
}

/// Which letters to replay. A discarded letter never is; a replayed one only
/// with `force`; of several letters of one event, only the newest (the
/// candidates are in DLQ order, oldest first) — the others are reported as
/// duplicates of it.
pub fn plan_replay(cands: &[Candidate], filter: &Filter, actions: &Actions, force: bool) -> Plan {
    let mut plan = Plan::default();
    let mut newest: HashMap<&str, usize> = HashMap::new();
    let mut eligible = Vec::new();
    for (i, c) in cands.iter().enumerate().filter(|(_, c)| filter.matches(c)) {
        plan.matched += 1;
        let skip = if actions.has(c, ActionKind::Discard) {
            Some(Skip::Discarded)
        } else if c.poison {
            Some(Skip::Poison)
        } else if !force && actions.has(c, ActionKind::Replay) {
            Some(Skip::AlreadyReplayed)
        } else {
            None
        };
        match skip {
            Some(s) => plan.skipped.push((i, s, None)),
            None => {
                newest.insert(c.event_id.as_str(), i);
                eligible.push(i);
            }
        }
    }
    for i in eligible {
        let keep = newest[cands[i].event_id.as_str()];
        if keep == i {
            plan.chosen.push(i);
        } else {
            plan.skipped.push((i, Skip::Duplicate, Some(keep)));
        }
    }
    plan.skipped.sort_by_key(|(i, _, _)| *i);
    plan
}

/// Which letters to discard: every matched letter not discarded yet (each
/// letter of an event gets its own discard).
pub fn plan_discard(cands: &[Candidate], filter: &Filter, actions: &Actions) -> Plan {
    let mut plan = Plan::default();
    for (i, c) in cands.iter().enumerate().filter(|(_, c)| filter.matches(c)) {
        plan.matched += 1;
        if actions.has(c, ActionKind::Discard) {
            plan.skipped.push((i, Skip::AlreadyDiscarded, None));
        } else {
            plan.chosen.push(i);
        }
    }
    plan
}

#[cfg(test)]
#[path = "select_tests.rs"]
mod tests;
