//! `herald dlq show|replay|discard` on a real broker: selection by filters,
//! idempotent replays (recorded on `<prefix>.dlq.actions`), `--force`, and
//! discarded letters that are never replayed.

use herald_core::actions::{ActionKind, DlqAction};
use herald_devtools::{Behaviour, Sink};
use herald_e2e::{signed, wait_until, Dest, Pipeline};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(180);
const PAID: &str = "order.paid";
const SHIPPED: &str = "order.shipped";

/// Produces `n` structured CloudEvents of `event_type` with ids
/// `<prefix>-<event_type>-<i>`; returns the ids.
async fn produce(p: &Pipeline, n: usize, event_type: &str) -> Vec<String> {
    let producer = p.producer();
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("{}-{event_type}-{i}", p.prefix);
        let value = serde_json::json!({
            "specversion": "1.0", "id": id, "source": "/tests", "type": event_type,
            "subject": format!("ord_{i}"), "data": {"n": i, "kind": event_type},
        })
        .to_string();
        producer
            .send(
                FutureRecord::to(&p.input())
                    .key(&format!("ord_{i}"))
                    .payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
        ids.push(id);
    }
    ids
}

/// Runs the CLI with `--json`; asserts the exit code; returns stdout as JSON.
fn cli_json(p: &Pipeline, args: &[&str], code: i32) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = p.cli(&all);
    assert_eq!(
        out.status.code(),
        Some(code),
        "herald {args:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "herald {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn id_set(v: &Value) -> HashSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().expect("id").to_string())
        .collect()
}

fn set(ids: &[String]) -> HashSet<String> {
    ids.iter().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_replay_by_type_idempotently_force_and_discard() {
    let sink = Sink::start(vec![("/bad".into(), signed(Behaviour::status(400)))])
        .await
        .unwrap();
    let mut p = Pipeline::new("dlq-cli", vec![Dest::new("bad", sink.url("/bad"))]).await;
    p.start_all();
    let paid = produce(&p, 10, PAID).await;
    let shipped = produce(&p, 10, SHIPPED).await;
    wait_until("20 permanent dead letters", LONG, || {
        let rt = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| rt.block_on(p.dead_letters("bad"))).len() >= 20
    })
    .await;
    assert_eq!(sink.stats("/bad").requests, 20, "400 is not retried");
    // `herald --json dlq <cmd> -d bad <rest>`.
    let run = |rest: &[&str], code: i32| -> Value {
        let mut full = vec!["dlq", rest[0], "-d", "bad"];
        full.extend_from_slice(&rest[1..]);
        cli_json(&p, &full, code)
    };

    // show: everything about one letter.
    let v = run(&["show", &paid[3]], 0);
    assert_eq!(v["event"]["id"], paid[3].as_str());
    assert_eq!(v["event"]["type"], PAID);
    assert_eq!(v["event"]["data"]["n"], 3);
    assert_eq!(v["reason"], "permanent");
    assert_eq!(v["attempts"], 1);
    assert_eq!(v["state"], "dead");
    assert_eq!(v["history"][0]["status"], 400);
    assert_eq!(v["history"][0]["error_class"], "http-4xx");
    assert!(v["dead_at"].as_str().unwrap().ends_with('Z'), "{v}");
    assert!(v["routed_at"].as_str().unwrap().ends_with('Z'), "{v}");
    assert_eq!(v["actions"], serde_json::json!([]));
    let place = format!("{}/{}", v["partition"], v["offset"]);
    let by_place = run(&["show", "--offset", &place], 0);
    assert_eq!(by_place["event_id"], paid[3].as_str());
    let text = p.cli(&["dlq", "show", "-d", "bad", &paid[3]]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&paid[3]) && text.contains("\"kind\": \"order.paid\""),
        "{text}"
    );
    let unknown = p.cli(&["dlq", "show", "-d", "bad", "no-such-event"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no dead letter"));

    // A selector is required.
    assert_eq!(
        p.cli(&["dlq", "replay", "-d", "bad"]).status.code(),
        Some(2)
    );
    assert_eq!(
        p.cli(&["dlq", "discard", "-d", "bad", "--all"])
            .status
            .code(),
        Some(2),
        "discard needs --reason"
    );

    // Dry runs select by type (and time), produce nothing.
    let v = run(&["replay", "--type", PAID, "--dry-run"], 0);
    assert_eq!(id_set(&v["ids"]), set(&paid));
    assert_eq!(v["replayed"], 0);
    let v = run(&["replay", "--type", PAID, "--since", "1h", "--dry-run"], 0);
    assert_eq!(v["selected"], 10);
    let v = run(&["replay", "--all", "--until", "1h", "--dry-run"], 0);
    assert_eq!(v["selected"], 0);
    let v = run(
        &[
            "replay",
            "--id",
            &shipped[1],
            "--id",
            &shipped[1],
            "--dry-run",
        ],
        0,
    );
    assert_eq!(
        v["ids"],
        serde_json::json!([shipped[1]]),
        "listed twice, sent once"
    );
    let tier = p.config.topic_names().retry("bad", Duration::from_secs(1));
    assert!(p.read(&tier).await.is_empty(), "a dry run produces nothing");

    // The replay delivers that type's events.
    sink.set_behaviour("/bad", signed(Behaviour::healthy()));
    let v = run(&["replay", "--type", PAID], 0);
    assert_eq!(v["replayed"], 10);
    assert_eq!(id_set(&v["ids"]), set(&paid));
    wait_until("paid events delivered", LONG, || {
        sink.delivered_ids("/bad") == set(&paid)
    })
    .await;

    // Again: nothing to do, the sink hears nothing more.
    let v = run(&["replay", "--type", PAID], 0);
    assert_eq!(v["replayed"], 0);
    assert_eq!(id_set(&v["skipped"]["already_replayed"]), set(&paid));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = sink.stats("/bad");
    assert_eq!((s.requests, s.delivered), (30, 10), "{s:?}");

    // --force replays them again.
    let v = run(&["replay", "--type", PAID, "--force"], 0);
    assert_eq!(v["replayed"], 10);
    wait_until("paid events delivered twice", LONG, || {
        sink.stats("/bad").delivered >= 20
    })
    .await;
    assert_eq!(sink.stats("/bad").duplicate_deliveries, 10);

    // Discard one shipped event: shown as such, never replayed.
    let v = run(&["discard", "--id", &shipped[0], "--reason", "test"], 0);
    assert_eq!(v["discarded"], 1);
    assert_eq!(v["ids"], serde_json::json!([shipped[0]]));
    let list = cli_json(&p, &["dlq", "list", "-d", "bad"], 0);
    let states: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event_id"].as_str().unwrap().to_string(),
                e["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(states.len(), 20);
    for (id, state) in &states {
        let want = if *id == shipped[0] {
            "discarded"
        } else if paid.contains(id) {
            "replayed"
        } else {
            "dead"
        };
        assert_eq!(state, want, "{id}");
    }
    let v = run(&["replay", "--all"], 0);
    assert_eq!(v["replayed"], 9);
    assert_eq!(id_set(&v["ids"]), set(&shipped[1..]));
    assert_eq!(v["skipped"]["discarded"], serde_json::json!([shipped[0]]));
    assert_eq!(id_set(&v["skipped"]["already_replayed"]), set(&paid));
    wait_until(
        "shipped events but the discarded one delivered",
        LONG,
        || sink.delivered_ids("/bad").len() >= 19,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!sink.delivered_ids("/bad").contains(&shipped[0]));
    assert_eq!(sink.stats("/bad").requests, 20 + 10 + 10 + 9);

    // Discarding again skips it; show has the discard with who and why.
    let v = run(&["discard", "--id", &shipped[0], "--reason", "again"], 0);
    assert_eq!(v["discarded"], 0);
    assert_eq!(
        v["skipped"]["already_discarded"],
        serde_json::json!([shipped[0]])
    );
    let v = run(&["show", &shipped[0]], 0);
    assert_eq!(v["state"], "discarded");
    let acts = v["actions"].as_array().unwrap();
    assert_eq!(acts.len(), 1, "{v}");
    assert_eq!(acts[0]["action"], "discard");
    assert_eq!(acts[0]["reason"], "test");
    assert!(!acts[0]["by"].as_str().unwrap().is_empty());
    let v = run(&["show", &paid[3]], 0);
    assert_eq!(v["state"], "replayed");
    assert_eq!(
        v["actions"].as_array().unwrap().len(),
        2,
        "replay, then --force"
    );
    assert_eq!(v["actions"][0]["to_topic"], tier.as_str());

    // The audit trail: one action record per replayed or discarded letter.
    let actions: Vec<DlqAction> = p
        .read(&p.config.topic_names().dlq_actions())
        .await
        .iter()
        .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
        .collect();
    let count = |k| actions.iter().filter(|a| a.action == k).count();
    assert_eq!(count(ActionKind::Replay), 10 + 10 + 9);
    assert_eq!(count(ActionKind::Discard), 1);
    assert!(actions.iter().all(|a| a.destination == "bad"));
}
