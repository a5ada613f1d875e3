//! `herald dlq replay|discard`: the records they write, in one Kafka
//! transaction per run — the replayed deliveries and the action records
//! that mark them — so a crash leaves either both or neither.

use super::select::{plan_discard, plan_replay, Candidate, Filter, Plan, Skip};
use super::{load, load_actions, Entry};
use futures::StreamExt;
use herald_core::actions::{operator, ActionKind, DlqAction};
use herald_core::codec::AvroRecord;
use herald_core::config::Config;
use herald_core::headers as h;
use herald_core::kafka::{add_header, txn_producer_config};
use herald_core::otel::TraceHeaders;
use herald_core::time::now_ms;
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

/// A progress line on stderr every this many records.
const PROGRESS_EVERY: usize = 1000;

/// One record to write.
struct Out {
    topic: String,
    key: Vec<u8>,
    value: Vec<u8>,
    headers: Option<OwnedHeaders>,
}

fn action_record(config: &Config, a: &DlqAction) -> anyhow::Result<Out> {
    Ok(Out {
        topic: config.topic_names().dlq_actions(),
        key: a.key().into_bytes(),
        value: serde_json::to_vec(a)?,
        headers: None,
    })
}

/// Writes `records` in one transaction: all of them or none. `what` names
/// the transactional id: `<prefix>.cli.dlq-<what>.<host>` (a second run on
/// the same host fences the first instead of interleaving with it).
async fn write_atomically(config: &Config, what: &str, records: &[Out]) -> anyhow::Result<()> {
    let host =
        herald_core::host::hostname().unwrap_or_else(|| format!("{:08x}", rand::random::<u32>()));
    let txid = format!("{}.cli.dlq-{what}.{host}", config.topics.prefix);
    let mut cfg = txn_producer_config(config, &txid);
    if !config.kafka.client.contains_key("transaction.timeout.ms") {
        // Long replays: the broker allows up to 15 min by default.
        cfg.set("transaction.timeout.ms", "300000");
    }
    let producer: FutureProducer = cfg.create()?;
    let t = Duration::from_secs(30);
    tokio::task::block_in_place(|| producer.init_transactions(t))
        .map_err(|e| anyhow::anyhow!("initialising transactions ({txid}): {e}"))?;
    producer.begin_transaction()?;
    let sent = send_all(&producer, records).await;
    let committed = sent.and_then(|()| {
        tokio::task::block_in_place(|| producer.commit_transaction(Duration::from_secs(120)))
            .map_err(|e| anyhow::anyhow!("committing the transaction: {e}"))
    });
    if let Err(e) = committed {
        if let Err(abort) = tokio::task::block_in_place(|| producer.abort_transaction(t)) {
            eprintln!("error: aborting the transaction: {abort}");
        }
        return Err(e.context("nothing was written (transaction aborted)"));
    }
    Ok(())
}

async fn send_all(producer: &FutureProducer, records: &[Out]) -> anyhow::Result<()> {
    let total = records.len();
    let mut results = futures::stream::iter(records)
        .map(|r| {
            let mut rec = FutureRecord::to(&r.topic).key(&r.key).payload(&r.value);
            if let Some(hs) = &r.headers {
                rec = rec.headers(hs.clone());
            }
            let topic = r.topic.clone();
            async move {
                producer
                    .send(rec, Duration::from_secs(60))
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("producing to {topic} failed: {e}"))
            }
        })
        .buffer_unordered(1024);
    let mut done = 0;
    while let Some(r) = results.next().await {
        r?;
        done += 1;
        if done % PROGRESS_EVERY == 0 {
            eprintln!("  {done}/{total} records written");
        }
    }
    Ok(())
}

/// The skipped letters by why, as JSON and as a text summary.
fn skipped_summary(plan: &Plan, entries: &[Entry]) -> (Value, Option<String>) {
    let mut by = serde_json::Map::new();
    let mut text = Vec::new();
    for why in Skip::ALL {
        let ids: Vec<String> = plan
            .skipped_as(why)
            .map(|i| entries[i].event_id())
            .collect();
        if !ids.is_empty() {
            text.push(format!("{} {}", ids.len(), why.explain()));
            by.insert(why.as_str().into(), ids.into());
        }
    }
    let text = (!text.is_empty()).then(|| format!("skipped {}", text.join(", ")));
    (by.into(), text)
}

/// Exit status for a run: 1 when --id named letters and none matched.
fn report_unknown(filter: &Filter, plan: &Plan, cands: &[Candidate]) -> (Vec<String>, ExitCode) {
    let unknown = filter.unknown_ids(cands);
    if !unknown.is_empty() {
        eprintln!("no dead letter has event id {}", unknown.join(", "));
    }
    let code = if plan.matched == 0 && !filter.ids.is_empty() {
        eprintln!("no dead letter matched the given ids");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    };
    (unknown, code)
}

pub async fn replay(
    config: &Config,
    destination: &str,
    filter: &Filter,
    force: bool,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let dc = config.destination(destination)?;
    let first = dc
        .retry
        .tiers
        .first()
        .ok_or_else(|| anyhow::anyhow!("destination {destination} has no retry tier"))?;
    let tier = config.topic_names().retry(destination, *first);
    let entries = load(config, destination).await?;
    let actions = load_actions(config, destination, true).await?;
    let cands: Vec<_> = entries.iter().map(Entry::candidate).collect();
    let plan = plan_replay(&cands, filter, &actions, force);
    let ids: Vec<String> = plan
        .chosen
        .iter()
        .map(|i| cands[*i].event_id.clone())
        .collect();

    if !dry_run && !plan.chosen.is_empty() {
        let now = now_ms();
        let by = operator();
        let mut records = Vec::with_capacity(plan.chosen.len() * 2);
        for &i in &plan.chosen {
            let e = &entries[i];
            records.push(replay_record(e, &tier, now)?);
            records.push(action_record(
                config,
                &replay_action(destination, e, &tier, now, &by, None),
            )?);
        }
        // The other letters of a replayed event are marked with it, so a
        // later run does not send the event again from them.
        for (i, _, keep) in plan
            .skipped
            .iter()
            .filter(|(_, s, _)| *s == Skip::Duplicate)
        {
            let (p, o) = keep.map(|k| entries[k].place()).unwrap_or_default();
            let note = format!("same event replayed once, from {p}/{o}");
            let a = replay_action(destination, &entries[*i], &tier, now, &by, Some(note));
            records.push(action_record(config, &a)?);
        }
        if records.len() >= PROGRESS_EVERY {
            eprintln!(
                "replaying {} dead letters into {tier} ({} records)",
                ids.len(),
                records.len()
            );
        }
        write_atomically(config, "replay", &records).await?;
    }

    let (skipped, skipped_text) = skipped_summary(&plan, &entries);
    let (unknown, code) = report_unknown(filter, &plan, &cands);
    if json {
        println!(
            "{}",
            json!({
                "destination": destination,
                "topic": tier,
                "dry_run": dry_run,
                "matched": plan.matched,
                "selected": ids.len(),
                "replayed": if dry_run { 0 } else { ids.len() },
                "ids": ids,
                "skipped_count": plan.skipped.len(),
                "skipped": skipped,
                "skipped_poison": plan.skipped_as(Skip::Poison).count(),
                "unknown_ids": unknown,
            })
        );
        return Ok(code);
    }
    if dry_run {
        for &i in &plan.chosen {
            let c = &cands[i];
            println!(
                "would replay {} ({}/{}) → {tier}",
                c.event_id, c.partition, c.offset
            );
        }
        println!("would replay {} dead letters into {tier}", ids.len());
    } else {
        println!("replayed {} dead letters into {tier}", ids.len());
    }
    if let Some(t) = skipped_text {
        println!("{t}");
    }
    Ok(code)
}

fn replay_action(
    destination: &str,
    e: &Entry,
    tier: &str,
    now: i64,
    by: &str,
    note: Option<String>,
) -> DlqAction {
    let (p, o) = e.place();
    DlqAction {
        action: ActionKind::Replay,
        destination: destination.to_string(),
        event_id: e.event_id(),
        dlq_partition: p,
        dlq_offset: o,
        at: now,
        by: by.to_string(),
        reason: note,
        to_topic: Some(tier.to_string()),
    }
}

/// The delivery again, on the first retry tier with a fresh budget.
fn replay_record(e: &Entry, tier: &str, now: i64) -> anyhow::Result<Out> {
    let letter = e.letter.as_ref().expect("poison letters are never chosen");
    let mut d = letter.delivery.clone();
    // A fresh budget: the operator decided this is worth trying again. The
    // age budget counts from routing, so the replay is routed anew now (an
    // old event would otherwise expire at once).
    d.attempts = 0;
    d.first_attempt_at = None;
    d.routed_at = now;
    d.due_at = now;
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
    Ok(Out {
        topic: tier.to_string(),
        key: e.msg.key().map(<[u8]>::to_vec).unwrap_or_default(),
        value: d.to_avro()?,
        headers: Some(hs),
    })
}

pub async fn discard(
    config: &Config,
    destination: &str,
    filter: &Filter,
    why: &str,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let entries = load(config, destination).await?;
    let actions = load_actions(config, destination, true).await?;
    let cands: Vec<_> = entries.iter().map(Entry::candidate).collect();
    let plan = plan_discard(&cands, filter, &actions);
    let ids: Vec<String> = plan
        .chosen
        .iter()
        .map(|i| cands[*i].event_id.clone())
        .collect();
    if !dry_run && !plan.chosen.is_empty() {
        let (now, by) = (now_ms(), operator());
        let records = plan
            .chosen
            .iter()
            .map(|&i| {
                let c = &cands[i];
                action_record(
                    config,
                    &DlqAction {
                        action: ActionKind::Discard,
                        destination: destination.to_string(),
                        event_id: c.event_id.clone(),
                        dlq_partition: c.partition,
                        dlq_offset: c.offset,
                        at: now,
                        by: by.clone(),
                        reason: Some(why.to_string()),
                        to_topic: None,
                    },
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        write_atomically(config, "discard", &records).await?;
    }
    let (skipped, skipped_text) = skipped_summary(&plan, &entries);
    let (unknown, code) = report_unknown(filter, &plan, &cands);
    if json {
        println!(
            "{}",
            json!({
                "destination": destination,
                "dry_run": dry_run,
                "matched": plan.matched,
                "selected": ids.len(),
                "discarded": if dry_run { 0 } else { ids.len() },
                "ids": ids,
                "reason": why,
                "skipped_count": plan.skipped.len(),
                "skipped": skipped,
                "unknown_ids": unknown,
            })
        );
        return Ok(code);
    }
    let verb = if dry_run {
        "would discard"
    } else {
        "discarded"
    };
    for &i in &plan.chosen {
        let c = &cands[i];
        println!("{verb} {} ({}/{})", c.event_id, c.partition, c.offset);
    }
    println!("{verb} {} dead letters: {why}", ids.len());
    if let Some(t) = skipped_text {
        println!("{t}");
    }
    Ok(code)
}
