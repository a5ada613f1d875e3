//! Turns what was observed into per-destination outcomes: delivered,
//! dead-lettered by reason, lost (with samples), and each duplicate
//! delivery attributed to the cause that explains it.

use crate::faults::Fault;
use crate::recorder::Request;
use crate::verify::{Expect, Letter};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Default, Clone, Serialize)]
pub struct DestOutcome {
    pub name: String,
    pub behaviour: String,
    /// (event, destination) pairs that had to end terminal.
    pub expected: usize,
    pub delivered: usize,
    /// Pairs never delivered but in the DLQ, by the reason of their last letter.
    pub dead_lettered: BTreeMap<String, usize>,
    pub lost: usize,
    /// A few lost ids with what is known about each.
    pub lost_samples: Vec<String>,
    /// Pairs sent back by the DLQ replay that were neither delivered nor
    /// dead-lettered again by the end (still in the DLQ from before: not
    /// lost, but the replay did not finish them).
    pub replay_unsettled: usize,
    pub replay_unsettled_samples: Vec<String>,
    /// Every dead letter written during the run, by reason.
    pub dlq_records: BTreeMap<String, usize>,
    pub dlq_undecodable: u64,
    pub requests: usize,
    /// 2xx answers for an id already answered 2xx.
    pub duplicates: usize,
    pub duplicates_by_cause: BTreeMap<String, usize>,
    /// A few duplicates that no cause explains, with their timing.
    pub unexplained_samples: Vec<String>,
    pub bad_signatures: u64,
    /// Ids routed onto the destination topic more than once (None when the
    /// topic was not read: its retention deletes records on purpose).
    pub routed_twice: Option<usize>,
    /// Ids delivered that the workload did not route here.
    pub unexpected_deliveries: usize,
    /// Low watermarks (records deleted by retention) of the destination
    /// topic and its tiers.
    pub deleted_by_retention: BTreeMap<String, i64>,
}

/// Inputs for one destination's outcome.
pub struct DestInput<'a> {
    pub name: &'a str,
    pub behaviour: &'a str,
    pub timeout_ms: u64,
    pub requests: Vec<Request>,
    pub dlq: HashMap<String, Vec<Letter>>,
    pub dlq_undecodable: u64,
    /// Ids dead-lettered before the replay, and when it started (ms since
    /// the run's start).
    pub replayed: HashSet<String>,
    pub replay_at_ms: Option<u64>,
    /// The same moment in ms since the epoch (dead letters' `dead_at`).
    pub replay_epoch_ms: i64,
    pub routed: Option<HashMap<String, u32>>,
    pub bad_signatures: u64,
    pub deleted_by_retention: BTreeMap<String, i64>,
}

pub fn outcome(input: DestInput<'_>, expect: &Expect, faults: &[Fault]) -> DestOutcome {
    let ids = &expect.pairs[input.name];
    let mut ok: HashMap<&str, Vec<&Request>> = HashMap::new();
    for r in input
        .requests
        .iter()
        .filter(|r| (200..300).contains(&r.status))
    {
        ok.entry(r.id.as_str()).or_default().push(r);
    }
    let mut o = DestOutcome {
        name: input.name.into(),
        behaviour: input.behaviour.into(),
        expected: ids.len(),
        requests: input.requests.len(),
        bad_signatures: input.bad_signatures,
        dlq_undecodable: input.dlq_undecodable,
        deleted_by_retention: input.deleted_by_retention.clone(),
        ..Default::default()
    };
    for letters in input.dlq.values() {
        for l in letters {
            *o.dlq_records.entry(l.reason.clone()).or_default() += 1;
        }
    }
    for id in ids {
        if ok.contains_key(id.as_str()) {
            o.delivered += 1;
        } else if let Some(l) = input
            .dlq
            .get(id)
            .and_then(|v| v.iter().max_by_key(|l| l.dead_at))
        {
            *o.dead_lettered.entry(l.reason.clone()).or_default() += 1;
            if input.replayed.contains(id) && l.dead_at < input.replay_epoch_ms {
                o.replay_unsettled += 1;
                if o.replay_unsettled_samples.len() < 10 {
                    let n = input.requests.iter().filter(|r| &r.id == id).count();
                    o.replay_unsettled_samples.push(format!(
                        "{id}: last dead-lettered ({}) before the replay, {n} request(s) seen by the sink in all",
                        l.reason
                    ));
                }
            }
        } else {
            o.lost += 1;
            if o.lost_samples.len() < 10 {
                let routed = input
                    .routed
                    .as_ref()
                    .map(|r| format!("routed {} time(s)", r.get(id).copied().unwrap_or(0)))
                    .unwrap_or_else(|| "destination topic not read".into());
                let attempts = input.requests.iter().filter(|r| &r.id == id).count();
                o.lost_samples
                    .push(format!("{id}: {routed}, {attempts} request(s) seen by the sink, none 2xx, not in the DLQ"));
            }
        }
    }
    o.unexpected_deliveries = ok.keys().filter(|id| !ids.contains(**id)).count();
    o.routed_twice = input
        .routed
        .as_ref()
        .map(|r| r.values().filter(|n| **n > 1).count());
    for (id, mut reqs) in ok {
        reqs.sort_by_key(|r| r.at_ms);
        for w in reqs.windows(2) {
            let cause = cause(&input, id, w[0], w[1], expect, faults);
            o.duplicates += 1;
            *o.duplicates_by_cause.entry(cause.into()).or_default() += 1;
            if cause == "unexplained" && o.unexplained_samples.len() < 5 {
                o.unexplained_samples.push(format!(
                    "{id}: 2xx at {} ms (answered after {} ms), 2xx again at {} ms",
                    w[0].at_ms,
                    w[0].done_ms - w[0].at_ms,
                    w[1].at_ms
                ));
            }
        }
    }
    o
}

/// Why `id` was answered 2xx again in `cur` after `prev`.
fn cause(
    input: &DestInput<'_>,
    id: &str,
    prev: &Request,
    cur: &Request,
    expect: &Expect,
    faults: &[Fault],
) -> &'static str {
    if prev.done_ms.saturating_sub(prev.at_ms) + 20 >= input.timeout_ms {
        return "timeout-after-processing";
    }
    if input.replayed.contains(id) && input.replay_at_ms.is_some_and(|t| cur.at_ms >= t) {
        return "replay";
    }
    let window = |f: &Fault| {
        let at = (f.at_s * 1000.0) as u64;
        at + 2000 >= prev.at_ms && at <= cur.at_ms
    };
    let hit = |kinds: &[&str], target_is_dest: bool| {
        faults.iter().any(|f| {
            kinds.contains(&f.kind)
                && (!target_is_dest
                    || f.target == input.name
                    || f.target.starts_with(&format!("adapter-{}", input.name)))
                && window(f)
        })
    };
    if hit(&["adapter-kill", "unexpected-exit"], true) || hit(&["broker-kill"], false) {
        return "crash-window";
    }
    if hit(&["rebalance-join", "rebalance-leave"], true) {
        return "rebalance";
    }
    if expect.copied.contains(id) {
        return "producer-copy-not-dropped";
    }
    "unexplained"
}
