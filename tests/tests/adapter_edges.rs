//! The adapter at the edges, on a real broker: rebalance churn, an open
//! circuit that lasts, records that can never be produced or requested,
//! `Retry-After` beyond the ladder, an outage longer than retention, and a
//! restart after SIGKILL.

use herald_core::codec::AvroRecord;
use herald_core::envelope::{Attempt, Delivery, Event};
use herald_core::headers as h;
use herald_core::kafka::add_header;
use herald_devtools::{Behaviour, Sink};
use herald_e2e::{header, signed, wait_until, Dest, Pipeline};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(180);

/// Attempts logged for `dest`, by event id, in log order.
async fn attempts(p: &Pipeline, dest: &str) -> HashMap<String, Vec<Attempt>> {
    let mut out: HashMap<String, Vec<Attempt>> = HashMap::new();
    for m in p.read(&p.config.topic_names().attempts()).await {
        let a = Attempt::from_avro(m.payload().expect("value")).expect("attempt decodes");
        if a.destination == dest {
            out.entry(a.event_id.clone()).or_default().push(a);
        }
    }
    out
}

/// Items 2 and 12: partitions move back and forth between two adapter
/// instances while tier partitions are paused. A partition paused before a
/// revoke must flow again once assigned back, and the hand-over must not
/// attempt a record twice (the revoke waits for running deliveries and
/// commits before the new owner reads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_churn_neither_stalls_nor_duplicates() {
    // One in three requests fails: tier partitions hold records (paused).
    // Slow answers and low concurrency keep the stream going through the churn.
    let mut b = Behaviour::flaky(0.0, 0.33);
    b.latency = Duration::from_millis(100);
    let sink = Sink::start(vec![("/d".into(), signed(b))]).await.unwrap();
    let mut p = Pipeline::new(
        "churn",
        vec![Dest::new("d", sink.url("/d")).with(
            "concurrency = 4\nretry.tiers = [\"2s\", \"3s\"]\nretry.max_attempts = 12\ncircuit.failure_threshold = 0\n",
        )],
    )
    .await;
    p.start_router();
    p.start_adapter_instance("d", "a");
    let ids: HashSet<String> = p
        .produce_events(600, "churn.test")
        .await
        .into_iter()
        .collect();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        p.start_adapter_instance("d", "b");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            p.stop_adapter_instance("d", "b"),
            "instance b stops cleanly"
        );
    }
    wait_until("every event delivered after the churn", LONG, || {
        sink.stats("/d").unique_delivered as usize >= ids.len()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = sink.stats("/d");
    assert_eq!(s.unique_delivered as usize, ids.len(), "{s:?}");
    assert_eq!(
        s.duplicate_deliveries, 0,
        "a hand-over attempted records twice: {s:?}"
    );
    assert!(p.dead_letters("d").await.is_empty());
}

/// Rewrites the pipeline's config so its services use extra librdkafka
/// client properties.
fn with_client_props(p: &Pipeline, props: &str) {
    let text = std::fs::read_to_string(&p.config_path).unwrap();
    let text = text.replace(
        "client = { \"session.timeout.ms\" = \"6000\"",
        &format!("client = {{ {props}, \"session.timeout.ms\" = \"6000\""),
    );
    assert!(text.contains(props), "client line found in the test config");
    std::fs::write(&p.config_path, text).unwrap();
}

/// Item 3: an open circuit with records already fetched must not stop the
/// poll loop — the member would exceed `max.poll.interval.ms` and be
/// thrown out of the group during a long cool-down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_keeps_polling() {
    // Slow failures: retry records of the first ones are fetched and held
    // before the circuit opens, and come due while it is open.
    let mut down = Behaviour::status(503);
    down.latency = Duration::from_millis(300);
    let sink = Sink::start(vec![("/down".into(), signed(down))])
        .await
        .unwrap();
    let mut p = Pipeline::new(
        "pollopen",
        vec![Dest::new("down", sink.url("/down")).with(
            "concurrency = 2\nretry.tiers = [\"3s\", \"6s\"]\nretry.max_attempts = 20\ncircuit.failure_threshold = 10\ncircuit.cooldown = \"20s\"\ncircuit.max_cooldown = \"20s\"\n",
        )],
    )
    .await;
    with_client_props(&p, "\"max.poll.interval.ms\" = \"8000\"");
    p.start_all();
    let ids = p.produce_events(60, "poll.test").await;
    wait_until("the circuit opens", LONG, || {
        p.log_of("herald-adapter-down").contains("Circuit opened")
    })
    .await;
    // Longer than max.poll.interval.ms, shorter than the cool-down.
    tokio::time::sleep(Duration::from_secs(14)).await;
    let log = p.log_of("herald-adapter-down");
    let exceeded: Vec<&str> = log
        .lines()
        .filter(|l| {
            let l = l.to_lowercase();
            l.contains("poll interval") && l.contains("exceeded")
        })
        .collect();
    assert!(
        exceeded.is_empty(),
        "the adapter stopped polling while the circuit was open: {exceeded:?}"
    );
    sink.set_behaviour("/down", signed(Behaviour::healthy()));
    wait_until("all delivered after recovery", LONG, || {
        sink.stats("/down").unique_delivered as usize >= ids.len()
    })
    .await;
    // An evicted member only learns it was thrown out at its next poll,
    // after the cool-down: then it loses its partitions and re-joins. The
    // only member of its group is never revoked otherwise.
    let log = p.log_of("herald-adapter-down");
    let revoked: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Partitions revoked from the adapter"))
        .collect();
    assert!(
        revoked.is_empty(),
        "the adapter was evicted from its group while the circuit was open: {revoked:?}"
    );
}

/// Item 1 (adapter): a retry record too large for its tier topic must not
/// pin the partition (retried forever, offset never committed): the
/// delivery is dead-lettered with a truncated history and the partition
/// moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unproducible_retry_record_is_dead_lettered_not_pinned() {
    let sink = Sink::start(vec![("/d".into(), signed(Behaviour::status(503)))])
        .await
        .unwrap();
    let mut p = Pipeline::new(
        "toolarge",
        vec![Dest::new("d", sink.url("/d")).with("circuit.failure_threshold = 0\n")],
    )
    .await;
    let tier = p.config.topic_names().retry("d", Duration::from_secs(1));
    p.alter_topic(&tier, &[("max.message.bytes", "4000")]).await;
    p.start_all();
    // A 20 kB event (incompressible) fits the destination topic, not the
    // first tier.
    let blob: String = (0..20_000)
        .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
        .collect();
    let big = serde_json::json!({
        "specversion": "1.0", "id": "big-1", "source": "/tests", "type": "big.test",
        "data": {"blob": blob},
    })
    .to_string();
    p.produce_raw(big.as_bytes(), None).await;
    wait_until("the big event is dead-lettered", LONG, || {
        futures::executor::block_on(p.dead_letters("d"))
            .iter()
            .any(|(dl, _)| dl.delivery.event.id == "big-1")
    })
    .await;
    let dls = p.dead_letters("d").await;
    let (dl, m) = dls
        .iter()
        .find(|(dl, _)| dl.delivery.event.id == "big-1")
        .unwrap();
    assert_eq!(dl.reason, "permanent");
    assert_eq!(dl.delivery.attempts, 1, "dead-lettered at its first retry");
    assert!(
        header(m, h::ERROR_MESSAGE)
            .unwrap_or_default()
            .contains("refused"),
        "the dead letter says why: {:?}",
        header(m, h::ERROR_MESSAGE)
    );
    // Later events flow, and the partition is not pinned.
    sink.set_behaviour("/d", signed(Behaviour::healthy()));
    let small = p.produce_events(5, "small.test").await;
    wait_until("small events delivered", LONG, || {
        sink.stats("/d").unique_delivered as usize >= small.len()
    })
    .await;
    let dest = p.config.topic_names().dest("d");
    let group = p.config.topic_names().adapter_group("d");
    let mut caught_up = false;
    for _ in 0..100 {
        if p.group_caught_up(&group, &dest).await {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(caught_up, "the adapter committed past the big record");
}

/// Item 7 (adapter): a delivery whose request cannot be built (an id that
/// is not a valid header value, written around the router's validation)
/// is permanent: dead-lettered on its first attempt, never retried, and it
/// does not count against the destination's health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbuildable_request_is_permanent() {
    let sink = Sink::start(vec![("/d".into(), signed(Behaviour::healthy()))])
        .await
        .unwrap();
    let mut p = Pipeline::new("ctlid", vec![Dest::new("d", sink.url("/d"))]).await;
    p.start_adapter("d");
    let delivery = Delivery {
        event: Event {
            id: "bad\nid".into(),
            source: "/tests".into(),
            r#type: "ctl.test".into(),
            time: None,
            subject: None,
            tenant: None,
            data: "{}".into(),
        },
        destination: "d".into(),
        attempts: 0,
        routed_at: herald_core::time::now_ms(),
        first_attempt_at: None,
        due_at: 0,
        origin_topic: p.input(),
        origin_partition: 0,
        origin_offset: 0,
        history: vec![],
        produced_at: None,
    };
    let value = delivery.to_avro().unwrap();
    let hs = add_header(OwnedHeaders::new(), h::ATTEMPT, "0");
    p.producer()
        .send(
            FutureRecord::to(&p.config.topic_names().dest("d"))
                .key("k")
                .payload(&value)
                .headers(hs),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let dlq = p.config.topic_names().dlq("d");
    wait_until("dead-lettered", LONG, || {
        // A fresh topic can answer "not leader" for a moment: retry.
        futures::executor::block_on(herald_core::kafka::read_topic_to_end(&p.config, &dlq))
            .is_ok_and(|v| !v.is_empty())
    })
    .await;
    let dls = p.dead_letters("d").await;
    assert_eq!(dls.len(), 1);
    assert_eq!(dls[0].0.reason, "permanent");
    assert_eq!(dls[0].0.delivery.attempts, 1, "no retries");
    assert_eq!(
        sink.stats("/d").requests,
        0,
        "nothing reached the destination"
    );
}

/// Item 17: `Retry-After` beyond the largest tier holds the record until
/// due instead of retrying early on the last tier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_beyond_the_last_tier_is_honoured() {
    let throttled = Behaviour {
        status_429_ratio: 1.0,
        retry_after_secs: Some(6),
        ..Behaviour::default()
    };
    let sink = Sink::start(vec![("/d".into(), signed(throttled))])
        .await
        .unwrap();
    let mut p = Pipeline::new(
        "retryafter",
        vec![Dest::new("d", sink.url("/d")).with("circuit.failure_threshold = 0\n")],
    )
    .await;
    p.start_all();
    let ids = p.produce_events(3, "ra.test").await;
    wait_until("first attempts made", LONG, || {
        sink.stats("/d").requests >= 3
    })
    .await;
    sink.set_behaviour("/d", signed(Behaviour::healthy()));
    wait_until("delivered", LONG, || {
        sink.stats("/d").unique_delivered as usize >= ids.len()
    })
    .await;
    let log = attempts(&p, "d").await;
    for id in &ids {
        let a = &log[id];
        assert!(a.len() >= 2, "{id}: {a:?}");
        let gap = a[1].at - a[0].at;
        assert!(
            gap >= 5_500,
            "{id}: retried {gap} ms after a 429 that asked for 6 s (tiers 1s, 2s)"
        );
    }
}

/// Item 8: a destination down for longer than its topics' retention. The
/// circuit keeps the records unconsumed; before retention can delete them
/// they are dead-lettered as `expired` — none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_retention_ends_in_the_dlq() {
    let sink = Sink::start(vec![("/down".into(), signed(Behaviour::status(503)))])
        .await
        .unwrap();
    let mut p = Pipeline::new(
        "retention",
        vec![Dest::new("down", sink.url("/down")).with(
            "retry.max_attempts = 50\ncircuit.failure_threshold = 3\ncircuit.cooldown = \"120s\"\ncircuit.max_cooldown = \"120s\"\n",
        )],
    )
    .await;
    let names = p.config.topic_names();
    let mut topics = vec![names.dest("down")];
    topics.extend(
        ["1s", "2s"]
            .iter()
            .map(|t| names.retry("down", humantime::parse_duration(t).unwrap())),
    );
    for t in &topics {
        p.alter_topic(t, &[("retention.ms", "45000"), ("segment.ms", "2000")])
            .await;
    }
    p.start_all();
    let ids = p.produce_events(40, "retention.test").await;
    wait_until("every event settled as expired or delivered", LONG, || {
        let dls = futures::executor::block_on(p.dead_letters("down"));
        dls.len() >= ids.len()
    })
    .await;
    let dls = p.dead_letters("down").await;
    let dead: HashSet<String> = dls
        .iter()
        .map(|(d, _)| d.delivery.event.id.clone())
        .collect();
    let ids: HashSet<String> = ids.into_iter().collect();
    assert_eq!(dead, ids, "every event is in the DLQ, none lost");
    assert!(
        dls.iter().filter(|(d, _)| d.reason == "expired").count() >= ids.len() - 3,
        "all but the attempts that opened the circuit expired: {:?}",
        dls.iter()
            .map(|(d, _)| d.reason.clone())
            .collect::<Vec<_>>()
    );
}

/// Items 4 and 7a: an adapter (with an instance id) killed with SIGKILL and
/// started again gets its partitions back at once (static membership) and delivers without waiting
/// for a session timeout or for the ledger of caught-up partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_adapter_delivers_again_soon_after_restart() {
    let sink = Sink::start(vec![("/d".into(), signed(Behaviour::healthy()))])
        .await
        .unwrap();
    let mut p = Pipeline::new("restart", vec![Dest::new("d", sink.url("/d"))]).await;
    p.start_router();
    // Static membership: the restarted process reclaims its partitions.
    p.start_adapter_instance("d", "one");
    let first = p.produce_events(30, "restart.test").await;
    wait_until("first batch delivered", LONG, || {
        sink.stats("/d").unique_delivered as usize >= first.len()
    })
    .await;
    let dest = p.config.topic_names().dest("d");
    let group = p.config.topic_names().adapter_group("d");
    wait_until("offsets committed", LONG, || {
        futures::executor::block_on(p.group_caught_up(&group, &dest))
    })
    .await;
    p.kill_adapter_instance("d", "one");
    let started = Instant::now();
    p.start_adapter_instance("d", "one");
    // A new event after the restart (distinct ids: produced raw).
    for i in 0..3 {
        let v = serde_json::json!({"specversion": "1.0", "id": format!("after-{i}"),
            "source": "/tests", "type": "restart.test", "data": {}});
        p.produce_raw(v.to_string().as_bytes(), None).await;
    }
    wait_until("delivering again", LONG, || {
        sink.stats("/d").unique_delivered as usize >= first.len() + 3
    })
    .await;
    let took = started.elapsed();
    eprintln!("time from restart to delivering again: {took:?}");
    let log = p.log_of("herald-adapter-d");
    assert!(log.contains("Ledger restored"), "{log}");
    assert_eq!(sink.stats("/d").duplicate_deliveries, 0);
}

/// Item 10: the ledger is keyed by identity (`source` + `id`), not by id:
/// two events with one id from two sources are two events. After a crash,
/// the ledger entry "delivered" of the first must not suppress the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_tells_events_apart_by_identity() {
    let sink = Sink::start(vec![("/d".into(), signed(Behaviour::healthy()))])
        .await
        .unwrap();
    let mut p = Pipeline::new(
        "identity",
        vec![Dest::new("d", sink.url("/d")).with("circuit.failure_threshold = 0\n")],
    )
    .await;
    // Nothing is committed while running: a SIGKILL re-reads everything.
    let text = std::fs::read_to_string(&p.config_path).unwrap();
    std::fs::write(
        &p.config_path,
        text.replace("commit_interval = \"200ms\"", "commit_interval = \"1h\""),
    )
    .unwrap();
    p.start_all();
    let event = |source: &str| {
        serde_json::json!({"specversion": "1.0", "id": "same-id", "source": source,
            "type": "identity.test", "data": {}})
        .to_string()
    };
    p.produce_raw(event("/billing").as_bytes(), None).await;
    wait_until("the first event delivered", LONG, || {
        sink.stats("/d").delivered >= 1
    })
    .await;
    sink.set_behaviour("/d", signed(Behaviour::status(503)));
    p.produce_raw(event("/crm").as_bytes(), None).await;
    wait_until("the second event failed once", LONG, || {
        sink.stats("/d").requests >= 2
    })
    .await;
    // Let the retry record and the ledger step be written.
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.kill_adapter("d");
    sink.set_behaviour("/d", signed(Behaviour::healthy()));
    p.start_adapter("d");
    wait_until("the second event delivered after the restart", LONG, || {
        sink.stats("/d").delivered >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sink.stats("/d").delivered,
        2,
        "each event exactly once: {:?}",
        sink.stats("/d")
    );
}
