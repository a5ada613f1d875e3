//! `herald dlq list|replay`: what is in a destination's dead-letter topic,
//! and sending it back through the retry ladder once the cause is fixed.

use herald_core::codec::AvroRecord;
use herald_core::config::Config;
use herald_core::envelope::DeadLetter;
use herald_core::headers as h;
use herald_core::kafka::{add_header, header_str, producer_config, read_topic_to_end};
use herald_core::otel::TraceHeaders;
use herald_core::time::now_ms;
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum DlqCmd {
    /// List the dead letters of one destination.
    List {
        /// Destination name from the config.
        #[arg(short, long)]
        destination: String,
        /// Show at most this many (newest last).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Re-deliver dead letters: each goes to the destination's first retry
    /// tier with a fresh attempt budget (its history is kept).
    Replay {
        /// Destination name from the config.
        #[arg(short, long)]
        destination: String,
        /// Replay only these event ids (repeatable).
        #[arg(long = "id")]
        ids: Vec<String>,
        /// Replay only dead letters with this reason (exhausted, permanent).
        #[arg(long)]
        reason: Option<String>,
        /// Replay every dead letter (required when no --id is given).
        #[arg(long)]
        all: bool,
        /// Show what would be replayed without producing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// One DLQ record, decoded when possible.
struct Entry {
    msg: OwnedMessage,
    letter: Option<DeadLetter>,
}

impl Entry {
    fn event_id(&self) -> String {
        self.letter
            .as_ref()
            .map(|l| l.delivery.event.id.clone())
            .or_else(|| header_str(&self.msg, h::CE_ID).map(str::to_string))
            .unwrap_or_else(|| "?".into())
    }

    fn reason(&self) -> String {
        header_str(&self.msg, h::DLQ_REASON)
            .map(str::to_string)
            .or_else(|| self.letter.as_ref().map(|l| l.reason.clone()))
            .unwrap_or_else(|| "?".into())
    }

    fn json(&self) -> serde_json::Value {
        let last = self.letter.as_ref().and_then(|l| l.delivery.history.last());
        serde_json::json!({
            "partition": self.msg.partition(),
            "offset": self.msg.offset(),
            "event_id": self.event_id(),
            "event_type": self.letter.as_ref().map(|l| l.delivery.event.r#type.clone()),
            "reason": self.reason(),
            "attempts": self.letter.as_ref().map(|l| l.delivery.attempts),
            "dead_at": self.letter.as_ref().map(|l| l.dead_at),
            "last_error_class": last.map(|e| e.error_class.clone()),
            "last_status": last.and_then(|e| e.status),
            "last_message": last.map(|e| e.message.clone()),
            "history": self.letter.as_ref().map(|l| l.delivery.history.iter().map(|e| serde_json::json!({
                "attempt": e.attempt, "at": e.at, "error_class": e.error_class, "status": e.status, "message": e.message,
            })).collect::<Vec<_>>()),
            "poison": self.letter.is_none(),
        })
    }
}

async fn load(config: &Config, destination: &str) -> anyhow::Result<Vec<Entry>> {
    config.destination(destination)?;
    let topic = config.topic_names().dlq(destination);
    let mut entries: Vec<Entry> = read_topic_to_end(config, &topic)
        .await?
        .into_iter()
        .map(|msg| {
            let letter = msg.payload().and_then(|p| DeadLetter::from_avro(p).ok());
            Entry { msg, letter }
        })
        .collect();
    entries.sort_by_key(|e| {
        (
            e.msg.timestamp().to_millis().unwrap_or(0),
            e.msg.partition(),
            e.msg.offset(),
        )
    });
    Ok(entries)
}

pub async fn run(config: &Config, cmd: DlqCmd, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        DlqCmd::List { destination, limit } => {
            let entries = load(config, &destination).await?;
            let skip = limit.map(|l| entries.len().saturating_sub(l)).unwrap_or(0);
            if json {
                let v: Vec<_> = entries[skip..].iter().map(Entry::json).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{} dead letters in {}",
                entries.len(),
                config.topic_names().dlq(&destination)
            );
            if !entries.is_empty() {
                println!(
                    "{:<10} {:<28} {:<22} {:<10} {:>8}  last error",
                    "part/off", "event id", "type", "reason", "attempts"
                );
            }
            for e in &entries[skip..] {
                let j = e.json();
                let last = match (j["last_error_class"].as_str(), j["last_status"].as_i64()) {
                    (Some(c), Some(s)) => format!("{c} {s}"),
                    (Some(c), None) => c.to_string(),
                    _ => header_str(&e.msg, h::ERROR_MESSAGE)
                        .unwrap_or("")
                        .to_string(),
                };
                println!(
                    "{:<10} {:<28} {:<22} {:<10} {:>8}  {}",
                    format!("{}/{}", e.msg.partition(), e.msg.offset()),
                    e.event_id(),
                    j["event_type"].as_str().unwrap_or("(poison)"),
                    e.reason(),
                    j["attempts"]
                        .as_i64()
                        .map(|a| a.to_string())
                        .unwrap_or_default(),
                    last
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCmd::Replay {
            destination,
            ids,
            reason,
            all,
            dry_run,
        } => {
            if ids.is_empty() && !all {
                anyhow::bail!(
                    "say which dead letters to replay: --id <event id> (repeatable) or --all"
                );
            }
            let dc = config.destination(&destination)?;
            let names = config.topic_names();
            let tier = names.retry(&destination, dc.retry.tiers[0]);
            let entries = load(config, &destination).await?;
            let chosen: Vec<&Entry> = entries
                .iter()
                .filter(|e| ids.is_empty() || ids.contains(&e.event_id()))
                .filter(|e| reason.as_ref().is_none_or(|r| &e.reason() == r))
                .collect();
            let poison = chosen.iter().filter(|e| e.letter.is_none()).count();
            let producer: FutureProducer = producer_config(config).create()?;
            let now = now_ms();
            let mut replayed = 0;
            for e in chosen.iter().filter(|e| e.letter.is_some()) {
                let letter = e.letter.as_ref().expect("filtered");
                let mut d = letter.delivery.clone();
                // A fresh budget: the operator decided this is worth trying
                // again. The age budget counts from routing, so the replay is
                // routed anew now (an old event would otherwise expire at once).
                d.attempts = 0;
                d.first_attempt_at = None;
                d.routed_at = now;
                d.due_at = now;
                if dry_run {
                    println!("would replay {} → {tier}", d.event.id);
                    continue;
                }
                let mut hs = OwnedHeaders::new();
                // The replay continues the event's trace.
                if let Some(t) = TraceHeaders::from_message(&e.msg) {
                    hs = t.add_to(hs);
                }
                hs = add_header(hs, h::CE_ID, &d.event.id);
                hs = add_header(hs, h::CE_TYPE, &d.event.r#type);
                hs = add_header(hs, h::ATTEMPT, "0");
                hs = add_header(hs, h::DUE_AT, &now.to_string());
                hs = add_header(hs, h::REPLAYED_AT, &now.to_string());
                hs = add_header(hs, h::ORIGINAL_TOPIC, &d.origin_topic);
                hs = add_header(hs, h::ORIGINAL_PARTITION, &d.origin_partition.to_string());
                hs = add_header(hs, h::ORIGINAL_OFFSET, &d.origin_offset.to_string());
                let value = d.to_avro()?;
                let key = e.msg.key().map(<[u8]>::to_vec).unwrap_or_default();
                producer
                    .send(
                        FutureRecord::to(&tier)
                            .key(&key)
                            .payload(&value)
                            .headers(hs),
                        Duration::from_secs(30),
                    )
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("producing to {tier} failed: {e}"))?;
                replayed += 1;
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({"replayed": replayed, "matched": chosen.len(), "skipped_poison": poison, "topic": tier})
                );
            } else if !dry_run {
                println!(
                    "replayed {replayed} dead letters into {tier}{}",
                    if poison > 0 {
                        format!(" ({poison} poison records skipped: they are not deliveries)")
                    } else {
                        String::new()
                    }
                );
            }
            Ok(if chosen.is_empty() && !ids.is_empty() {
                eprintln!("no dead letter matched the given ids");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
