//! `herald invalid list|replay`: the input records the router refused, and
//! putting them back on their input topic once the cause is fixed (a schema
//! registry that was unreachable, a producer that shipped a bug).
//!
//! A replayed record is the producer's record again — key, value and the
//! producer's headers, without the ones the router added — plus
//! `herald-replayed-from`, on the partition it was read from. Replaying a
//! record twice produces it twice; the router's dedupe window
//! (`router.dedupe_window`, kept per input partition) drops the copy of an
//! event it routed within the window.

use herald_core::config::Config;
use herald_core::headers as h;
use herald_core::kafka::{add_header, header_str, producer_config, read_topic_to_end};
use herald_core::time::now_ms;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum InvalidCmd {
    /// List the records on the invalid topic, why each was refused, and
    /// whether it can be replayed.
    List(Filter),
    /// Re-produce invalid records to the topic they were read from.
    Replay {
        #[command(flatten)]
        filter: Filter,
        /// Replay every record the filter selects (required without --reason).
        #[arg(long)]
        all: bool,
        /// Show what would be replayed without producing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(clap::Args, Clone)]
pub struct Filter {
    /// Only records refused for this reason (decode, schema, registry, …).
    #[arg(long)]
    reason: Option<String>,
    /// Only records refused within this long (e.g. 30m, 2h).
    #[arg(long, value_parser = crate::watch::humantime_parse)]
    since: Option<Duration>,
}

/// One invalid record and what replaying it would do.
struct Entry {
    msg: OwnedMessage,
    plan: Result<Replay, String>,
}

/// The input record to produce again.
#[derive(Debug, PartialEq)]
struct Replay {
    topic: String,
    /// The partition it was read from: the router's dedupe state is kept
    /// per input partition, so a copy replayed twice meets its original.
    partition: Option<i32>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    /// The producer's headers, in order.
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// What replaying `m` would produce, or why it cannot be replayed.
fn plan(m: &OwnedMessage, default_topic: &str) -> Result<Replay, String> {
    if let Some(size) = header_str(m, h::ORIGINAL_SIZE) {
        return Err(format!(
            "its payload was cut to {} of {size} bytes to fit the invalid topic",
            m.payload().map_or(0, <[u8]>::len)
        ));
    }
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .filter(|x| !h::INVALID_ADDED.contains(&x.key))
                .map(|x| (x.key.to_string(), x.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    Ok(Replay {
        topic: header_str(m, h::ORIGINAL_TOPIC)
            .unwrap_or(default_topic)
            .to_string(),
        partition: header_str(m, h::ORIGINAL_PARTITION).and_then(|p| p.parse().ok()),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers,
    })
}

fn selected(m: &OwnedMessage, f: &Filter, now: i64) -> bool {
    let reason_ok = f
        .reason
        .as_deref()
        .is_none_or(|r| header_str(m, h::INVALID_REASON) == Some(r));
    let since_ok = f.since.is_none_or(|d| {
        m.timestamp()
            .to_millis()
            .is_some_and(|t| t >= now - d.as_millis() as i64)
    });
    reason_ok && since_ok
}

impl Entry {
    fn json(&self) -> serde_json::Value {
        let m = &self.msg;
        let hdr = |n| header_str(m, n);
        serde_json::json!({
            "partition": m.partition(),
            "offset": m.offset(),
            "timestamp": m.timestamp().to_millis(),
            "reason": hdr(h::INVALID_REASON),
            "error": hdr(h::ERROR_MESSAGE),
            "original": {
                "topic": hdr(h::ORIGINAL_TOPIC),
                "partition": hdr(h::ORIGINAL_PARTITION).and_then(|p| p.parse::<i32>().ok()),
                "offset": hdr(h::ORIGINAL_OFFSET).and_then(|o| o.parse::<i64>().ok()),
            },
            "bytes": m.payload().map_or(0, <[u8]>::len),
            "replayable": self.plan.is_ok(),
            "not_replayable_because": self.plan.as_ref().err(),
        })
    }
}

async fn load(config: &Config, f: &Filter) -> anyhow::Result<Vec<Entry>> {
    let now = now_ms();
    let input = &config.topics.input;
    Ok(read_topic_to_end(config, &config.topic_names().invalid())
        .await?
        .into_iter()
        .filter(|m| selected(m, f, now))
        .map(|msg| {
            let plan = plan(&msg, input);
            Entry { msg, plan }
        })
        .collect())
}

pub async fn run(config: &Config, cmd: InvalidCmd, json: bool) -> anyhow::Result<ExitCode> {
    let topic = config.topic_names().invalid();
    match cmd {
        InvalidCmd::List(filter) => {
            let entries = load(config, &filter).await?;
            if json {
                let v: Vec<_> = entries.iter().map(Entry::json).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("{} invalid records in {topic}", entries.len());
            for e in &entries {
                let j = e.json();
                println!(
                    "{}/{:<8} {:<10} {}{}",
                    e.msg.partition(),
                    e.msg.offset(),
                    j["reason"].as_str().unwrap_or("?"),
                    j["error"].as_str().unwrap_or(""),
                    match &e.plan {
                        Ok(_) => String::new(),
                        Err(why) => format!("  [not replayable: {why}]"),
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        InvalidCmd::Replay {
            filter,
            all,
            dry_run,
        } => {
            if filter.reason.is_none() && !all {
                anyhow::bail!(
                    "say which records: --reason <reason> (e.g. registry), or --all for every invalid record"
                );
            }
            let entries = load(config, &filter).await?;
            let producer: FutureProducer = producer_config(config).create()?;
            let (mut sent, mut skipped) = (0usize, 0usize);
            for e in &entries {
                let from = format!("{topic}/{}/{}", e.msg.partition(), e.msg.offset());
                let r = match &e.plan {
                    Ok(r) => r,
                    Err(why) => {
                        skipped += 1;
                        eprintln!("skipped {from}: {why}");
                        continue;
                    }
                };
                if dry_run {
                    if !json {
                        println!("would replay {from} to {}", r.topic);
                    }
                    sent += 1;
                    continue;
                }
                let mut hs = OwnedHeaders::new();
                for (k, v) in &r.headers {
                    hs = hs.insert(Header {
                        key: k,
                        value: v.as_deref(),
                    });
                }
                let hs = add_header(hs, h::REPLAYED_FROM, &from);
                let mut rec = FutureRecord::<[u8], [u8]>::to(&r.topic).headers(hs);
                if let Some(k) = &r.key {
                    rec = rec.key(k);
                }
                if let Some(p) = r.partition {
                    rec = rec.partition(p);
                }
                if let Some(v) = &r.value {
                    rec = rec.payload(v);
                }
                producer
                    .send(rec, Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("replaying {from}: {e}"))?;
                sent += 1;
            }
            let verb = if dry_run { "would replay" } else { "replayed" };
            if json {
                println!(
                    "{}",
                    serde_json::json!({"replayed": if dry_run { 0 } else { sent }, "would_replay": if dry_run { sent } else { 0 }, "skipped": skipped})
                );
            } else {
                println!("{verb} {sent} record(s) from {topic}; {skipped} not replayable");
            }
            Ok(if skipped > 0 {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn msg(headers: &[(&str, &str)], value: &[u8]) -> OwnedMessage {
        let mut hs = OwnedHeaders::new();
        for (k, v) in headers {
            hs = add_header(hs, k, v);
        }
        OwnedMessage::new(
            Some(value.to_vec()),
            Some(b"cus_1".to_vec()),
            "herald.invalid".into(),
            Timestamp::CreateTime(1_000_000),
            0,
            7,
            Some(hs),
        )
    }

    #[test]
    fn a_replay_is_the_producers_record_without_the_routers_headers() {
        let m = msg(
            &[
                ("traceparent", "00-abc-def-01"),
                ("ce_type", "order.created"),
                (h::INVALID_REASON, "registry"),
                (h::ERROR_CLASS, "schema"),
                (h::ERROR_MESSAGE, "schema id 7 could not be looked up"),
                (h::ORIGINAL_TOPIC, "shop.events"),
                (h::ORIGINAL_PARTITION, "2"),
                (h::ORIGINAL_OFFSET, "41"),
            ],
            b"\0\0\0\0\x07body",
        );
        let r = plan(&m, "events").unwrap();
        assert_eq!((r.topic.as_str(), r.partition), ("shop.events", Some(2)));
        assert_eq!(r.key.as_deref(), Some(&b"cus_1"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"\0\0\0\0\x07body"[..]));
        let keys: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["traceparent", "ce_type"]);
    }

    #[test]
    fn a_cut_payload_is_not_replayed_and_filters_select() {
        let m = msg(
            &[
                (h::INVALID_REASON, "too-large"),
                (h::ORIGINAL_SIZE, "2000000"),
            ],
            b"x",
        );
        let why = plan(&m, "events").unwrap_err();
        assert!(why.contains("2000000"), "{why}");
        let f = |reason: Option<&str>, since: Option<u64>| Filter {
            reason: reason.map(str::to_string),
            since: since.map(Duration::from_secs),
        };
        let now = 1_000_000 + 60_000;
        assert!(selected(&m, &f(None, None), now));
        assert!(selected(&m, &f(Some("too-large"), None), now));
        assert!(!selected(&m, &f(Some("registry"), None), now));
        assert!(
            selected(&m, &f(None, Some(120)), now),
            "a minute ago is within 2m"
        );
        assert!(!selected(&m, &f(None, Some(30)), now), "but not within 30s");
    }
}
