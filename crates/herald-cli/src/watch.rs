//! `herald watch`: follows the attempts topic and shows, per destination,
//! how many events were delivered, are waiting in a retry tier, or were
//! dead-lettered. Reads without a consumer group.

use herald_core::codec::AvroRecord;
use herald_core::config::Config;
use herald_core::envelope::{Attempt, AttemptOutcome};
use herald_core::kafka::client_config;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct WatchArgs {
    /// Refresh interval.
    #[arg(long, default_value = "2s", value_parser = humantime_parse)]
    interval: Duration,
    /// Stop after this long (default: until interrupted).
    #[arg(long, value_parser = humantime_parse)]
    duration: Option<Duration>,
    /// Count only attempts from now on (default: the whole attempts topic).
    #[arg(long)]
    from_now: bool,
}

pub(crate) fn humantime_parse(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 2s or 1m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("`{s}` is not a duration like 2s or 1m")),
    }
}

#[derive(Default, Clone)]
pub struct Counts {
    pub delivered: u64,
    pub retrying: u64,
    pub dead_lettered: u64,
    pub attempts: u64,
}

/// Per-destination tallies from attempt records: each event counts once,
/// under its latest outcome.
#[derive(Default)]
pub struct Tally {
    last: HashMap<(String, String), AttemptOutcome>,
    pub by_dest: BTreeMap<String, Counts>,
}

impl Tally {
    pub fn add(&mut self, a: &Attempt) {
        let Some(outcome) = AttemptOutcome::parse(&a.outcome) else {
            return;
        };
        let c = self.by_dest.entry(a.destination.clone()).or_default();
        c.attempts += 1;
        if let Some(prev) = self
            .last
            .insert((a.destination.clone(), a.event_id.clone()), outcome)
        {
            *slot(c, prev) -= 1;
        }
        *slot(c, outcome) += 1;
    }
}

fn slot(c: &mut Counts, o: AttemptOutcome) -> &mut u64 {
    match o {
        AttemptOutcome::Delivered => &mut c.delivered,
        AttemptOutcome::Retry => &mut c.retrying,
        AttemptOutcome::DeadLettered => &mut c.dead_lettered,
    }
}

pub async fn run(config: &Config, args: WatchArgs, json: bool) -> anyhow::Result<ExitCode> {
    let topic = config.topic_names().attempts();
    let consumer: StreamConsumer = client_config(config)
        .set("group.id", format!("{}.cli-watch", config.topics.prefix))
        .set("enable.auto.commit", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(
                &topic,
                p.id(),
                if args.from_now {
                    Offset::End
                } else {
                    Offset::Beginning
                },
            )?;
        }
    }
    if tpl.count() == 0 {
        anyhow::bail!("topic {topic} does not exist; run `herald topics apply` first");
    }
    consumer.assign(&tpl)?;
    let mut tally = Tally::default();
    for d in config.destinations.keys() {
        tally.by_dest.entry(d.clone()).or_default();
    }
    let started = Instant::now();
    let mut next_print = Instant::now() + args.interval;
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    loop {
        let until = tokio::time::Instant::from_std(next_print);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep_until(until) => {
                print(&tally, json, started.elapsed());
                next_print = Instant::now() + args.interval;
                if args.duration.is_some_and(|d| started.elapsed() >= d) {
                    break;
                }
            }
            m = consumer.recv() => {
                if let Ok(m) = m {
                    if let Some(a) = m.payload().and_then(|p| Attempt::from_avro(p).ok()) {
                        tally.add(&a);
                    }
                }
            }
        }
    }
    print(&tally, json, started.elapsed());
    Ok(ExitCode::SUCCESS)
}

fn print(t: &Tally, json: bool, elapsed: Duration) {
    if json {
        let v: serde_json::Map<_, _> = t
            .by_dest
            .iter()
            .map(|(d, c)| (d.clone(), serde_json::json!({"delivered": c.delivered, "retrying": c.retrying, "dead_lettered": c.dead_lettered, "attempts": c.attempts})))
            .collect();
        println!("{}", serde_json::Value::Object(v));
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\n[{:>5.0}s] {:<16} {:>10} {:>10} {:>14} {:>10}",
        elapsed.as_secs_f64(),
        "destination",
        "delivered",
        "retrying",
        "dead-lettered",
        "attempts"
    );
    for (d, c) in &t.by_dest {
        let _ = writeln!(
            out,
            "        {:<16} {:>10} {:>10} {:>14} {:>10}",
            d, c.delivered, c.retrying, c.dead_lettered, c.attempts
        );
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(dest: &str, id: &str, outcome: &str) -> Attempt {
        Attempt {
            event_id: id.into(),
            event_type: "t".into(),
            destination: dest.into(),
            attempt: 1,
            at: 0,
            outcome: outcome.into(),
            error_class: None,
            status: None,
            latency_ms: 1,
            excerpt: None,
            next_topic: None,
            trace_id: None,
        }
    }

    #[test]
    fn each_event_counts_once_under_its_latest_outcome() {
        let mut t = Tally::default();
        t.add(&attempt("a", "1", "retry"));
        t.add(&attempt("a", "1", "retry"));
        t.add(&attempt("a", "2", "delivered"));
        let c = &t.by_dest["a"];
        assert_eq!(
            (c.delivered, c.retrying, c.dead_lettered, c.attempts),
            (1, 1, 0, 3)
        );
        t.add(&attempt("a", "1", "dead-lettered"));
        let c = &t.by_dest["a"];
        assert_eq!((c.delivered, c.retrying, c.dead_lettered), (1, 0, 1));
    }
}
