//! `herald dlq show`: everything about one dead letter.

use super::select::Actions;
use super::{load, load_actions, Entry};
use herald_core::actions::DlqAction;
use herald_core::config::Config;
use herald_core::headers as h;
use herald_core::kafka::header_str;
use herald_core::time::rfc3339_ms;
use rdkafka::message::Message;
use serde_json::{json, Value};
use std::process::ExitCode;

pub async fn show(
    config: &Config,
    destination: &str,
    event_id: Option<String>,
    place: Option<(i32, i64)>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let topic = config.topic_names().dlq(destination);
    let entries = load(config, destination).await?;
    let found = match (&event_id, place) {
        (_, Some(pl)) => entries.iter().rposition(|e| e.place() == pl),
        (Some(id), None) => entries.iter().rposition(|e| &e.event_id() == id),
        (None, None) => None,
    };
    let Some(at) = found else {
        match (event_id, place) {
            (_, Some((p, o))) => eprintln!("error: no dead letter at {p}/{o} in {topic}"),
            (id, None) => eprintln!(
                "error: no dead letter for event {} in {topic}",
                id.unwrap_or_default()
            ),
        }
        return Ok(ExitCode::FAILURE);
    };
    let actions = load_actions(config, destination, false).await?;
    let e = &entries[at];
    let id = e.event_id();
    // The event's other letters (dead-lettered again after a replay, or
    // twice by an adapter that restarted).
    let others: Vec<Value> = entries
        .iter()
        .enumerate()
        .filter(|(i, o)| *i != at && o.event_id() == id && id != "?")
        .map(|(_, o)| {
            let (p, off) = o.place();
            json!({
                "partition": p, "offset": off,
                "state": actions.state(p, off).as_str(),
                "dead_at": rfc3339_ms(o.candidate().dead_at),
            })
        })
        .collect();
    let v = describe(destination, &topic, e, &actions, others);
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_text(&v);
    }
    Ok(ExitCode::SUCCESS)
}

fn action_json(a: &DlqAction) -> Value {
    json!({
        "action": a.action,
        "at": rfc3339_ms(a.at),
        "by": a.by,
        "reason": a.reason,
        "to_topic": a.to_topic,
    })
}

/// The letter as one JSON object (`--json`, and what the text shows).
fn describe(
    destination: &str,
    topic: &str,
    e: &Entry,
    actions: &Actions,
    others: Vec<Value>,
) -> Value {
    let (p, o) = e.place();
    let c = e.candidate();
    let mut v = json!({
        "destination": destination,
        "topic": topic,
        "partition": p,
        "offset": o,
        "event_id": c.event_id,
        "state": actions.state(p, o).as_str(),
        "reason": c.reason,
        "dead_at": rfc3339_ms(c.dead_at),
        "poison": c.poison,
        "actions": actions.of(p, o).iter().map(action_json).collect::<Vec<_>>(),
        "other_letters": others,
    });
    let Some(l) = &e.letter else {
        v["error_message"] = header_str(&e.msg, h::ERROR_MESSAGE).into();
        v["payload_bytes"] = e.msg.payload().map_or(0, <[u8]>::len).into();
        return v;
    };
    let d = &l.delivery;
    let ev = &d.event;
    let data = serde_json::from_str::<Value>(&ev.data).unwrap_or_else(|_| ev.data.clone().into());
    v["event"] = json!({
        "id": ev.id, "type": ev.r#type, "source": ev.source, "subject": ev.subject,
        "tenant": ev.tenant, "time": ev.time, "data": data,
    });
    v["attempts"] = d.attempts.into();
    v["routed_at"] = rfc3339_ms(d.routed_at).into();
    v["first_attempt_at"] = d.first_attempt_at.map(rfc3339_ms).into();
    v["produced_at"] = d.produced_at.map(rfc3339_ms).into();
    v["origin"] = json!({
        "topic": d.origin_topic, "partition": d.origin_partition, "offset": d.origin_offset,
    });
    v["history"] = d
        .history
        .iter()
        .map(|h| {
            json!({
                "attempt": h.attempt, "at": rfc3339_ms(h.at), "error_class": h.error_class,
                "status": h.status, "message": h.message,
            })
        })
        .collect::<Vec<_>>()
        .into();
    v
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn print_text(v: &Value) {
    println!(
        "dead letter at {}/{} (partition/offset) in {} (destination {})",
        v["partition"],
        v["offset"],
        s(&v["topic"]),
        s(&v["destination"])
    );
    println!("  state             {}", s(&v["state"]));
    println!("  reason            {}", s(&v["reason"]));
    if v["poison"] == true {
        println!(
            "  event id          {} (poison: not a decodable delivery)",
            s(&v["event_id"])
        );
        println!("  error             {}", s(&v["error_message"]));
        println!("  payload           {} bytes", v["payload_bytes"]);
        println!("  dead at           {}", s(&v["dead_at"]));
    } else {
        let ev = &v["event"];
        println!("event");
        for k in ["id", "type", "source", "subject", "tenant", "time"] {
            println!("  {k:<16}  {}", s(&ev[k]));
        }
        println!("  data");
        let data = serde_json::to_string_pretty(&ev["data"]).unwrap_or_default();
        for line in data.lines() {
            println!("    {line}");
        }
        println!("delivery");
        println!("  attempts          {}", v["attempts"]);
        println!("  produced at       {}", s(&v["produced_at"]));
        println!("  routed at         {}", s(&v["routed_at"]));
        println!("  first attempt at  {}", s(&v["first_attempt_at"]));
        println!("  dead at           {}", s(&v["dead_at"]));
        let o = &v["origin"];
        println!(
            "  from              {} partition {} offset {}",
            s(&o["topic"]),
            o["partition"],
            o["offset"]
        );
        println!("history");
        for h in v["history"].as_array().into_iter().flatten() {
            let status = h["status"]
                .as_i64()
                .map(|s| format!(" {s}"))
                .unwrap_or_default();
            println!(
                "  #{:<3} {}  {}{status}  {}",
                h["attempt"],
                s(&h["at"]),
                s(&h["error_class"]),
                s(&h["message"])
            );
        }
    }
    let acts = v["actions"].as_array().cloned().unwrap_or_default();
    println!("actions{}", if acts.is_empty() { ": none" } else { "" });
    for a in &acts {
        let what = match (s(&a["action"]).as_str(), &a["to_topic"], &a["reason"]) {
            ("replay", Value::String(t), _) => format!("replayed into {t}"),
            (k, _, Value::String(r)) => format!("{k}: {r}"),
            (k, _, _) => k.to_string(),
        };
        println!("  {}  {}  by {}", s(&a["at"]), what, s(&a["by"]));
    }
    if let Some(others) = v["other_letters"].as_array().filter(|o| !o.is_empty()) {
        println!("other dead letters of this event");
        for o in others {
            println!(
                "  {}/{}  {}  dead at {}",
                o["partition"],
                o["offset"],
                s(&o["state"]),
                s(&o["dead_at"])
            );
        }
    }
}
