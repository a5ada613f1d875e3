//! The delivery log on the real broker: `herald-log` indexes what three
//! destinations did with 30 events — one healthy, one always 503 (retried
//! through two tiers, then dead-lettered), one 400 (dead-lettered at once) —
//! and `herald trace` says for each destination exactly what its receiver
//! saw; `herald reconcile` finds nothing unaccounted once everything ended,
//! names the stragglers while a destination's adapter is down, and the
//! index survives a SIGKILL without losing or double-counting a record.

use herald_devtools::{Behaviour, Sink};
use herald_e2e::{signed, wait_until, Dest, Pipeline};
use serde_json::Value;
use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);
const N: usize = 30;

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

async fn stats(addr: SocketAddr) -> Value {
    let body = reqwest::get(format!("http://{addr}/api/stats"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

fn rows(s: &Value, table: &str) -> i64 {
    s["rows"][table].as_i64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_and_reconcile_answer_from_the_index() {
    let sink = Sink::start(vec![
        ("/ok".into(), signed(Behaviour::healthy())),
        ("/down".into(), signed(Behaviour::status(503))),
        ("/bad".into(), signed(Behaviour::status(400))),
        ("/late".into(), signed(Behaviour::healthy())),
    ])
    .await
    .unwrap();
    let mut p = Pipeline::new(
        "delivery-log",
        vec![
            Dest::new("ok", sink.url("/ok")),
            // No circuit: every event takes its full ladder, on time.
            Dest::new("down", sink.url("/down")).with("circuit.failure_threshold = 0"),
            Dest::new("bad", sink.url("/bad")).with("circuit.failure_threshold = 0"),
            // Its adapter starts late: its events straggle meanwhile.
            Dest::new("late", sink.url("/late")).with("retry.max_age = \"2s\""),
        ],
    )
    .await;
    let db = p.dir.path().join("log.db");
    p.start_router();
    for d in ["ok", "down", "bad"] {
        p.start_adapter(d);
    }
    let addr = p.start_log(&db).await;
    let url = format!("http://{addr}");
    let ids = p.produce_events(N, "order.created").await;

    wait_until("every event ends at ok, down and bad", LONG, || {
        let d = sink.stats("/down");
        sink.delivered_ids("/ok").len() == N
            && sink.stats("/bad").requests as usize >= N
            && d.requests as usize >= 3 * N
    })
    .await;
    let dead = |dest: &str| {
        let out = p.cli(&["--json", "dlq", "list", "--destination", dest]);
        json(&out).as_array().map_or(0, Vec::len)
    };
    wait_until("down and bad dead-lettered every event", LONG, || {
        dead("down") == N && dead("bad") == N
    })
    .await;

    // The late destination's events are in flight past their budget
    // (max_age 2 s + longest tier 2 s): reconcile names them.
    let mut r = Value::Null;
    wait_until(
        "reconcile names the late destination's events",
        LONG,
        || {
            let out = p.cli(&["--json", "reconcile", "--since", "10m", "--log-url", &url]);
            r = json(&out);
            out.status.code() == Some(1) && r["stragglers"].as_array().is_some_and(|s| s.len() == N)
        },
    )
    .await;
    let s = &r["stragglers"].as_array().unwrap();
    assert!(
        s.iter()
            .all(|x| x["destination"] == "late" && x["state"] == "pending"),
        "{r}"
    );
    assert_eq!(r["pairs"], 4 * N as i64, "{r}");

    // Trace: for each destination, what its receiver saw.
    let id = &ids[7];
    let out = p.cli(&["--json", "trace", id, "--log-url", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = json(&out);
    let dest = |name: &str| {
        t["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["destination"] == name)
            .unwrap_or_else(|| panic!("no {name} in {t}"))
            .clone()
    };
    let ok = dest("ok");
    assert_eq!(ok["now"]["state"], "delivered", "{ok}");
    assert_eq!(ok["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(ok["attempts"][0]["status"], 204);
    let down = dest("down");
    let attempts = down["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "first try + two tiers: {down}");
    assert!(attempts.iter().all(|a| a["status"] == 503));
    assert_eq!(down["now"]["state"], "dead-lettered");
    assert_eq!(down["now"]["reason"], "exhausted");
    let bad = dest("bad");
    assert_eq!(bad["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(bad["now"]["reason"], "permanent");
    assert_eq!(dest("late")["now"]["state"], "pending");
    // The receivers saw the same: one request per id at ok and bad, three at down.
    assert_eq!(sink.stats("/ok").requests as usize, N);
    assert_eq!(sink.stats("/bad").requests as usize, N);
    assert_eq!(sink.stats("/down").requests as usize, 3 * N);
    // Human output names the states too.
    let out = p.cli(&["trace", id, "--log-url", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ok: delivered at") && text.contains("in the DLQ since"),
        "{text}"
    );
    let missing = p.cli(&["trace", "no-such-event", "--log-url", &url]);
    assert_eq!(missing.status.code(), Some(1));

    // SIGKILL the index mid-stream and restart it: every record indexed once.
    p.kill_log();
    p.start_adapter("late");
    let addr = p.start_log(&db).await;
    let url = format!("http://{addr}");
    // The late adapter ran: its events were delivered or expired (their
    // 2 s budget had passed) — either way, nothing is unaccounted.
    wait_until("reconcile finds every pair ended", LONG, || {
        let out = p.cli(&["--json", "reconcile", "--since", "10m", "--log-url", &url]);
        out.status.success()
            && json(&out)["stragglers"]
                .as_array()
                .is_some_and(Vec::is_empty)
    })
    .await;
    let names = p.config.topic_names();
    let attempts_topic = p.read(&names.attempts()).await.len() as i64;
    let (mut routed, mut dead) = (0i64, 0i64);
    for d in ["ok", "down", "bad", "late"] {
        routed += p.read(&names.dest(d)).await.len() as i64;
        dead += p.read(&names.dlq(d)).await.len() as i64;
    }
    let mut st = Value::Null;
    wait_until("the restarted index caught up", LONG, || {
        let rt = tokio::runtime::Handle::current();
        st = tokio::task::block_in_place(|| rt.block_on(stats(addr)));
        rows(&st, "attempts") >= attempts_topic && rows(&st, "dead") >= dead
    })
    .await;
    assert_eq!(routed, 4 * N as i64);
    assert_eq!(rows(&st, "routed"), routed, "{st}");
    assert_eq!(rows(&st, "attempts"), attempts_topic, "{st}");
    assert_eq!(rows(&st, "dead"), dead, "{st}");
}

/// 10,000 events × 3 destinations with faults (timeouts, 503s, 429s): once
/// every pair ended, reconcile accounts for all 30,000, and for a random
/// sample of ids `herald trace` shows, per destination, exactly as many
/// attempts as the receiver got requests, and "delivered" exactly where the
/// receiver answered 2xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_with_faults_trace_what_the_receivers_saw() {
    use rand::seq::IndexedRandom;
    use rand::SeedableRng;
    const EVENTS: usize = 10_000;
    let mut flaky = Behaviour::flaky(0.05, 0.2);
    flaky.hang = Duration::from_secs(1);
    let mut limited = Behaviour::healthy();
    limited.status_429_ratio = 0.15;
    let sink = Sink::start(vec![
        ("/ok".into(), signed(Behaviour::healthy())),
        ("/flaky".into(), signed(flaky)),
        ("/limited".into(), signed(limited)),
    ])
    .await
    .unwrap();
    let no_circuit = "circuit.failure_threshold = 0";
    let mut p = Pipeline::new(
        "delivery-log-10k",
        vec![
            Dest::new("ok", sink.url("/ok")),
            Dest::new("flaky", sink.url("/flaky"))
                .with(no_circuit)
                .with("timeout = \"300ms\""),
            Dest::new("limited", sink.url("/limited")).with(no_circuit),
        ],
    )
    .await;
    let db = p.dir.path().join("log.db");
    p.start_all();
    let addr = p.start_log(&db).await;
    let url = format!("http://{addr}");
    let ids = p.produce_events(EVENTS, "order.created").await;

    let mut r = Value::Null;
    wait_until(
        "every (event, destination) pair ended",
        Duration::from_secs(600),
        || {
            let out = p.cli(&["--json", "reconcile", "--since", "1h", "--log-url", &url]);
            r = json(&out);
            let ended = ["delivered", "dead-lettered"]
                .iter()
                .map(|s| r["states"][s].as_u64().unwrap_or(0))
                .sum::<u64>();
            out.status.success() && ended == 3 * EVENTS as u64
        },
    )
    .await;
    assert_eq!(r["pairs"], 3 * EVENTS as u64, "{r}");
    println!("reconcile: {}", r["states"]);

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x10_000);
    for id in ids.choose_multiple(&mut rng, 60) {
        let out = p.cli(&["--json", "trace", id, "--log-url", &url]);
        let t = json(&out);
        let dests = t["destinations"].as_array().unwrap();
        assert_eq!(dests.len(), 3, "{t}");
        for d in dests {
            let name = d["destination"].as_str().unwrap();
            let path = format!("/{name}");
            let attempts = d["attempts"].as_array().unwrap().len() as u32;
            assert_eq!(
                attempts,
                sink.requests_for(&path, id),
                "{id} at {name}: the trace's attempts vs the receiver's requests\n{d}"
            );
            let delivered = d["now"]["state"] == "delivered";
            assert_eq!(
                delivered,
                sink.delivered_ids(&path).contains(id),
                "{id} at {name}: {d}"
            );
        }
    }
}
