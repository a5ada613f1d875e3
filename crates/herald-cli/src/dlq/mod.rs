//! `herald dlq list|show|replay|discard`: what is in a destination's
//! dead-letter topic, sending it back through the retry ladder once the
//! cause is fixed, and ending letters on purpose.
//!
//! Replays and discards are recorded on `<prefix>.dlq.actions`
//! ([`herald_core::actions`]), keyed by the letter's DLQ place: a replayed
//! letter is not replayed again without `--force`, a discarded one never.
//! A replay's records and their action records are written in one Kafka
//! transaction.

mod select;
mod send;
mod show;
mod when;

use herald_core::actions::DlqAction;
use herald_core::codec::AvroRecord;
use herald_core::config::Config;
use herald_core::envelope::DeadLetter;
use herald_core::headers as h;
use herald_core::kafka::{header_str, read_topic_to_end};
use herald_core::time::rfc3339_ms;
use rdkafka::message::{Message, OwnedMessage};
use select::{Actions, Candidate, Filter};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum DlqCmd {
    /// List the dead letters of one destination, with their state (dead,
    /// replayed, discarded).
    List {
        /// Destination name from the config.
        #[arg(short, long)]
        destination: String,
        /// Show at most this many (newest last).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Everything about one dead letter: the event, why and when it died,
    /// every attempt, and the replays and discards recorded on it.
    Show {
        /// Destination name from the config.
        #[arg(short, long)]
        destination: String,
        /// The event id (its newest dead letter when it has several).
        #[arg(required_unless_present = "offset", conflicts_with = "offset")]
        event_id: Option<String>,
        /// The dead letter's place in the DLQ topic: PARTITION/OFFSET.
        #[arg(long, value_parser = parse_place)]
        offset: Option<(i32, i64)>,
    },
    /// Re-deliver dead letters: each goes to the destination's first retry
    /// tier with a fresh attempt budget (its history is kept). Letters
    /// replayed before are skipped unless --force; discarded ones always.
    Replay {
        /// Destination name from the config.
        #[arg(short, long)]
        destination: String,
        #[command(flatten)]
        select: Selector,
        /// Only dead letters with this DLQ reason (exhausted, permanent, expired).
        #[arg(long, alias = "dlq-reason", group = "Selector")]
        reason: Option<String>,
        /// Replay letters that were replayed before, too.
        #[arg(long)]
        force: bool,
        /// Show what would be replayed without producing.
        #[arg(long)]
        dry_run: bool,
    },
    /// End dead letters on purpose: records a discard (who, when, why) on
    /// each; a discarded letter is never replayed.
    Discard {
        /// Destination name from the config.
        #[arg(short, long)]
        destination: String,
        #[command(flatten)]
        select: Selector,
        /// Only dead letters with this DLQ reason (exhausted, permanent, poison, expired).
        #[arg(long)]
        dlq_reason: Option<String>,
        /// Why they are discarded (recorded with each discard).
        #[arg(long)]
        reason: String,
        /// Show what would be discarded without recording anything.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Which letters `replay` / `discard` act on: at least one is required;
/// all given must match.
#[derive(clap::Args, Clone, Debug)]
#[group(id = "Selector", required = true, multiple = true)]
pub struct Selector {
    /// These event ids (repeatable).
    #[arg(long = "id")]
    ids: Vec<String>,
    /// Dead-lettered at or after: a duration ago (2h, 30m, 7d) or an RFC 3339 time.
    #[arg(long, value_parser = when::parse_when_arg)]
    since: Option<i64>,
    /// Dead-lettered at or before: a duration ago (2h) or an RFC 3339 time.
    #[arg(long, value_parser = when::parse_when_arg)]
    until: Option<i64>,
    /// The last attempt's error class (http-4xx, http-5xx, timeout, …).
    #[arg(long)]
    error_class: Option<String>,
    /// The event type.
    #[arg(long = "type")]
    event_type: Option<String>,
    /// The last attempt's HTTP status.
    #[arg(long)]
    status: Option<i32>,
    /// Every dead letter (the other selectors still filter).
    #[arg(long)]
    all: bool,
}

impl Selector {
    fn filter(self, reason: Option<String>) -> Filter {
        Filter {
            ids: self.ids,
            since: self.since,
            until: self.until,
            error_class: self.error_class,
            event_type: self.event_type,
            status: self.status,
            reason,
        }
    }
}

fn parse_place(s: &str) -> Result<(i32, i64), String> {
    s.split_once('/')
        .and_then(|(p, o)| Some((p.trim().parse().ok()?, o.trim().parse().ok()?)))
        .ok_or_else(|| format!("`{s}` is not PARTITION/OFFSET (e.g. 2/140)"))
}

/// One DLQ record, decoded when possible.
pub(crate) struct Entry {
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

    fn place(&self) -> (i32, i64) {
        (self.msg.partition(), self.msg.offset())
    }

    fn candidate(&self) -> Candidate {
        let last = self.letter.as_ref().and_then(|l| l.delivery.history.last());
        Candidate {
            partition: self.msg.partition(),
            offset: self.msg.offset(),
            event_id: self.event_id(),
            event_type: self
                .letter
                .as_ref()
                .map(|l| l.delivery.event.r#type.clone()),
            reason: self.reason(),
            dead_at: self
                .letter
                .as_ref()
                .map(|l| l.dead_at)
                .or_else(|| self.msg.timestamp().to_millis())
                .unwrap_or(0),
            last_error_class: last
                .map(|e| e.error_class.clone())
                .or_else(|| header_str(&self.msg, h::ERROR_CLASS).map(str::to_string)),
            last_status: last.and_then(|e| e.status),
            poison: self.letter.is_none(),
        }
    }

    fn json(&self, actions: &Actions) -> serde_json::Value {
        let last = self.letter.as_ref().and_then(|l| l.delivery.history.last());
        let (p, o) = self.place();
        serde_json::json!({
            "partition": p,
            "offset": o,
            "event_id": self.event_id(),
            "event_type": self.letter.as_ref().map(|l| l.delivery.event.r#type.clone()),
            "reason": self.reason(),
            "state": actions.state(p, o).as_str(),
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

/// The destination's dead letters, oldest first.
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

/// The actions recorded on the destination's letters. `strict`: a missing
/// or unreadable actions topic is an error (replay and discard must know
/// and write them); otherwise a warning and no actions.
async fn load_actions(config: &Config, destination: &str, strict: bool) -> anyhow::Result<Actions> {
    let topic = config.topic_names().dlq_actions();
    let msgs = match read_topic_to_end(config, &topic).await {
        Ok(m) => m,
        Err(e) if !strict => {
            eprintln!("warning: cannot read {topic} ({e:#}): states shown without actions");
            Vec::new()
        }
        Err(e) => {
            return Err(e.context(format!(
                "reading the actions topic {topic} (created by `herald topics apply`)"
            )))
        }
    };
    let mut bad = 0;
    let actions: Vec<DlqAction> = msgs
        .iter()
        .filter_map(|m| {
            let a = m.payload().and_then(|p| serde_json::from_slice(p).ok());
            bad += usize::from(a.is_none());
            a
        })
        .collect();
    if bad > 0 {
        eprintln!("warning: {bad} records on {topic} are not actions; ignored");
    }
    Ok(Actions::new(destination, actions))
}

pub async fn run(config: &Config, cmd: DlqCmd, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        DlqCmd::List { destination, limit } => list(config, &destination, limit, json).await,
        DlqCmd::Show {
            destination,
            event_id,
            offset,
        } => show::show(config, &destination, event_id, offset, json).await,
        DlqCmd::Replay {
            destination,
            select,
            reason,
            force,
            dry_run,
        } => {
            let filter = select.filter(reason);
            send::replay(config, &destination, &filter, force, dry_run, json).await
        }
        DlqCmd::Discard {
            destination,
            select,
            dlq_reason,
            reason,
            dry_run,
        } => {
            if reason.trim().is_empty() {
                eprintln!("error: --reason must say why the letters are discarded");
                return Ok(ExitCode::from(2));
            }
            let filter = select.filter(dlq_reason);
            send::discard(config, &destination, &filter, &reason, dry_run, json).await
        }
    }
}

async fn list(
    config: &Config,
    destination: &str,
    limit: Option<usize>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let entries = load(config, destination).await?;
    let actions = load_actions(config, destination, false).await?;
    let skip = limit.map(|l| entries.len().saturating_sub(l)).unwrap_or(0);
    if json {
        let v: Vec<_> = entries[skip..].iter().map(|e| e.json(&actions)).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} dead letters in {}",
        entries.len(),
        config.topic_names().dlq(destination)
    );
    if !entries.is_empty() {
        println!(
            "{:<10} {:<28} {:<22} {:<10} {:<9} {:>8}  {:<24}  last error",
            "part/off", "event id", "type", "reason", "state", "attempts", "dead at"
        );
    }
    for e in &entries[skip..] {
        let c = e.candidate();
        let last = match (&c.last_error_class, c.last_status) {
            (Some(class), Some(s)) => format!("{class} {s}"),
            (Some(class), None) if !c.poison => class.clone(),
            _ => header_str(&e.msg, h::ERROR_MESSAGE)
                .unwrap_or("")
                .to_string(),
        };
        println!(
            "{:<10} {:<28} {:<22} {:<10} {:<9} {:>8}  {:<24}  {}",
            format!("{}/{}", c.partition, c.offset),
            c.event_id,
            c.event_type.as_deref().unwrap_or("(poison)"),
            c.reason,
            actions.state(c.partition, c.offset).as_str(),
            e.letter
                .as_ref()
                .map(|l| l.delivery.attempts.to_string())
                .unwrap_or_default(),
            rfc3339_ms(c.dead_at),
            last
        );
    }
    Ok(ExitCode::SUCCESS)
}
