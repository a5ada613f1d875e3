//! What must happen and what did: the (event, destination) pairs the
//! workload implies, the sink's deliveries, the dead-letter topics (read
//! `read_committed`), the invalid topic, and the bounded wait until every
//! pair is terminal.

use crate::plan::{destinations, Plan};
use crate::recorder::Recorder;
use crate::workload::{find_tag, planned, Planned};
use herald_core::codec::AvroRecord;
use herald_core::config::Config;
use herald_core::envelope::{DeadLetter, Delivery};
use herald_core::kafka::{header_str, read_topic_to_end};
use rdkafka::message::Message;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// The pairs that must end terminal, and the records Herald should refuse.
pub struct Expect {
    /// destination -> ids of valid events routed to it.
    pub pairs: BTreeMap<String, HashSet<String>>,
    /// Records Herald should refuse (malformed, oversized, control-char id).
    pub refused: Vec<Planned>,
    /// Ids produced twice on purpose.
    pub copied: HashSet<String>,
}

pub fn expectations(plan: &Plan, run: &str) -> Expect {
    let dests = destinations();
    let mut pairs: BTreeMap<String, HashSet<String>> = dests
        .iter()
        .map(|d| (d.name.to_string(), HashSet::new()))
        .collect();
    let (mut refused, mut copied) = (Vec::new(), HashSet::new());
    for seq in 0..plan.events {
        let p = planned(plan, run, seq);
        if !p.kind.valid() {
            refused.push(p);
            continue;
        }
        if p.copied {
            copied.insert(p.id.clone());
        }
        for d in dests.iter().filter(|d| d.matches(p.event_type)) {
            pairs.get_mut(d.name).expect("dest").insert(p.id.clone());
        }
    }
    Expect {
        pairs,
        refused,
        copied,
    }
}

/// One dead letter.
#[derive(Debug, Clone)]
pub struct Letter {
    pub reason: String,
    pub dead_at: i64,
}

/// A destination's dead-letter topic by event id, plus records that did
/// not decode as a DeadLetter (counted, by their `ce_id` header).
pub async fn read_dlq(
    config: &Config,
    dest: &str,
) -> anyhow::Result<(HashMap<String, Vec<Letter>>, u64)> {
    let topic = config.topic_names().dlq(dest);
    let mut out: HashMap<String, Vec<Letter>> = HashMap::new();
    let mut undecodable = 0;
    for m in read_topic_to_end(config, &topic).await? {
        match m.payload().map(DeadLetter::from_avro) {
            Some(Ok(l)) => out.entry(l.delivery.event.id).or_default().push(Letter {
                reason: l.reason,
                dead_at: l.dead_at,
            }),
            _ => {
                undecodable += 1;
                let id = header_str(&m, "ce_id").unwrap_or("?").to_string();
                out.entry(id).or_default().push(Letter {
                    reason: header_str(&m, "herald-dlq-reason")
                        .unwrap_or("undecodable")
                        .to_string(),
                    dead_at: m.timestamp().to_millis().unwrap_or(0),
                });
            }
        }
    }
    Ok((out, undecodable))
}

/// How often each event id was routed onto a destination topic.
pub async fn routed_counts(config: &Config, dest: &str) -> anyhow::Result<HashMap<String, u32>> {
    let mut out = HashMap::new();
    for m in read_topic_to_end(config, &config.topic_names().dest(dest)).await? {
        if let Some(Ok(d)) = m.payload().map(Delivery::from_avro) {
            *out.entry(d.event.id).or_default() += 1;
        }
    }
    Ok(out)
}

/// Refused records found on the invalid topic: seq -> reason.
pub async fn read_invalid(config: &Config) -> anyhow::Result<(HashMap<u64, String>, u64)> {
    let mut out = HashMap::new();
    let mut unmatched = 0;
    for m in read_topic_to_end(config, &config.topic_names().invalid()).await? {
        let reason = header_str(&m, "herald-invalid-reason")
            .unwrap_or("(no reason header)")
            .to_string();
        let seq = header_str(&m, "chaos-seq")
            .and_then(|s| s.parse().ok())
            .or_else(|| m.payload().and_then(find_tag));
        match seq {
            Some(s) => {
                out.insert(s, reason);
            }
            None => unmatched += 1,
        }
    }
    Ok((out, unmatched))
}

/// Whether a pair is settled: delivered, or dead-lettered (after `since`
/// when the pair was replayed).
fn settled(
    id: &str,
    delivered: &HashSet<String>,
    dlq: &HashMap<String, Vec<Letter>>,
    replayed: Option<(&HashSet<String>, i64)>,
) -> bool {
    if delivered.contains(id) {
        return true;
    }
    let Some(letters) = dlq.get(id) else {
        return false;
    };
    match replayed {
        Some((ids, since)) if ids.contains(id) => letters.iter().any(|l| l.dead_at >= since),
        _ => true,
    }
}

/// The end of a wait.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Wait {
    pub converged: bool,
    pub seconds: f64,
    /// Pairs not terminal when the wait ended, per destination.
    pub open: BTreeMap<String, usize>,
    /// Why it ended without converging.
    pub ended_by: String,
}

/// Polls until every pair is settled, `timeout` passes, or nothing has
/// changed for `stall`. `replayed`: ids sent back from the DLQ at a time
/// (ms since the epoch), which must settle anew.
pub async fn wait_terminal(
    config: &Config,
    expect: &Expect,
    recorder: &Recorder,
    timeout: Duration,
    stall: Duration,
    replayed: &BTreeMap<String, (HashSet<String>, i64)>,
    log: impl Fn(String),
) -> Wait {
    let started = Instant::now();
    let (mut last_open, mut last_change) = (usize::MAX, Instant::now());
    let mut last_log = Instant::now();
    loop {
        let mut open = BTreeMap::new();
        for (d, ids) in &expect.pairs {
            let delivered = recorder.delivered(d);
            let dlq = read_dlq(config, d).await.map(|x| x.0).unwrap_or_default();
            let r = replayed.get(d).map(|(ids, t)| (ids, *t));
            let n = ids
                .iter()
                .filter(|id| !settled(id, &delivered, &dlq, r))
                .count();
            open.insert(d.clone(), n);
        }
        let total: usize = open.values().sum();
        let seconds = started.elapsed().as_secs_f64();
        if total == 0 {
            return Wait {
                converged: true,
                seconds,
                open,
                ended_by: "every pair terminal".into(),
            };
        }
        if total != last_open {
            last_open = total;
            last_change = Instant::now();
        }
        if last_log.elapsed() > Duration::from_secs(10) {
            log(format!("waiting: pairs not terminal yet {open:?}"));
            last_log = Instant::now();
        }
        let ended_by = if started.elapsed() > timeout {
            Some(format!("timeout after {timeout:?}"))
        } else if last_change.elapsed() > stall {
            Some(format!("no change for {stall:?}"))
        } else {
            None
        };
        if let Some(ended_by) = ended_by {
            return Wait {
                converged: false,
                seconds,
                open,
                ended_by,
            };
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// Where each of `ids` sits on `topic` (Delivery records) and whether
/// `group` has committed past it: for replayed pairs that never settled.
pub async fn locate(
    config: &Config,
    topic: &str,
    group: &str,
    ids: &HashSet<String>,
) -> HashMap<String, String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let mut out = HashMap::new();
    let Ok(msgs) = read_topic_to_end(config, topic).await else {
        return out;
    };
    let committed: HashMap<i32, i64> = herald_core::kafka::client_config(config)
        .set("group.id", group)
        .create::<BaseConsumer>()
        .ok()
        .and_then(|c| {
            let mut tpl = TopicPartitionList::new();
            for p in 0..config.topics.partitions {
                tpl.add_partition(topic, p);
            }
            c.committed_offsets(tpl, Duration::from_secs(10)).ok()
        })
        .map(|tpl| {
            tpl.elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    for m in msgs {
        let Some(Ok(d)) = m.payload().map(Delivery::from_avro) else {
            continue;
        };
        if ids.contains(&d.event.id) {
            let c = committed.get(&m.partition()).copied();
            out.insert(
                d.event.id,
                format!(
                    "on {topic} at {}/{} (attempts {}, due_at {}), group committed {} there",
                    m.partition(),
                    m.offset(),
                    d.attempts,
                    d.due_at,
                    c.map_or("nothing".into(), |o| o.to_string())
                ),
            );
        }
    }
    out
}
