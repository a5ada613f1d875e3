//! The pipeline end to end on a real Kafka broker: router and adapter
//! binaries as child processes, a fault-injecting HTTP sink as the
//! destinations.

use herald_core::codec::{AvroRecord, SINGLE_OBJECT_MAGIC};
use herald_core::envelope::Attempt;
use herald_core::headers as h;
use herald_core::kafka::add_header;
use herald_devtools::{Behaviour, Sink};
use herald_e2e::{header, signed, wait_until, Dest, Pipeline};
use rdkafka::message::{Message, OwnedHeaders};
use std::collections::HashSet;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_1000_events_to_three_destinations_exactly_once() {
    let routes = ["/a", "/b", "/c"];
    let sink = Sink::start(
        routes
            .iter()
            .map(|r| (r.to_string(), signed(Behaviour::healthy())))
            .collect(),
    )
    .await
    .unwrap();
    let mut p = Pipeline::new(
        "fanout",
        vec![
            Dest::new("a", sink.url("/a")),
            Dest::new("b", sink.url("/b")),
            Dest::new("c", sink.url("/c")),
        ],
    )
    .await;
    p.start_all();
    let ids: HashSet<String> = p
        .produce_events(1000, "subscription.started")
        .await
        .into_iter()
        .collect();
    for r in routes {
        wait_until(&format!("1000 unique deliveries at {r}"), LONG, || {
            sink.stats(r).unique_delivered >= 1000
        })
        .await;
    }
    // Let late duplicates, if any, arrive before judging.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for r in routes {
        let s = sink.stats(r);
        assert_eq!(s.unique_delivered, 1000, "{r}: {s:?}");
        assert_eq!(s.duplicate_deliveries, 0, "{r}: {s:?}");
        assert_eq!(s.bad_signatures, 0, "{r}: every request is signed: {s:?}");
        assert_eq!(
            s.traceparents, s.requests,
            "{r}: traceparent reaches the HTTP call: {s:?}"
        );
        assert_eq!(
            sink.delivered_ids(r),
            ids,
            "{r} received exactly the produced ids"
        );
    }
    for d in ["a", "b", "c"] {
        let routed = p.routed_ids(d).await;
        assert_eq!(routed.len(), 1000);
        assert!(
            routed.values().all(|n| *n == 1),
            "{d}: each event routed once"
        );
    }
    // Every attempt is logged.
    let attempts: Vec<Attempt> = p
        .read(&p.config.topic_names().attempts())
        .await
        .iter()
        .map(|m| Attempt::from_avro(m.payload().unwrap()).unwrap())
        .collect();
    assert_eq!(
        attempts.iter().filter(|a| a.outcome == "delivered").count(),
        3000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_destination_loses_nothing_and_does_not_hold_back_healthy_ones() {
    let mut flaky = Behaviour::flaky(0.3, 0.1);
    flaky.hang = Duration::from_secs(3);
    let sink = Sink::start(vec![
        ("/ok1".into(), signed(Behaviour::healthy())),
        ("/ok2".into(), signed(Behaviour::healthy())),
        ("/flaky".into(), signed(flaky)),
    ])
    .await
    .unwrap();
    let mut p = Pipeline::new(
        "flaky",
        vec![
            Dest::new("ok1", sink.url("/ok1")),
            Dest::new("ok2", sink.url("/ok2")),
            // Longer tiers make "finished without waiting" unambiguous: a
            // flaky event failing twice cannot end before ~6 s.
            Dest::new("flaky", sink.url("/flaky"))
                .with("timeout = \"500ms\"\nretry.tiers = [\"2s\", \"4s\"]\n"),
        ],
    )
    .await;
    p.start_all();
    let n = 300;
    let ids: HashSet<String> = p
        .produce_events(n, "payment.failed")
        .await
        .into_iter()
        .collect();
    wait_until("healthy destinations complete", LONG, || {
        sink.stats("/ok1").unique_delivered >= n as u64
            && sink.stats("/ok2").unique_delivered >= n as u64
    })
    .await;
    let flaky_done_then = sink.stats("/flaky").unique_delivered;
    assert!(
        flaky_done_then < n as u64,
        "the healthy destinations finished while the flaky one still had retries pending ({flaky_done_then}/{n} delivered)"
    );

    // Every flaky event ends delivered or dead-lettered; none lost, none both.
    let dlq_topic = p.config.topic_names().dlq("flaky");
    let mut dead = Vec::new();
    wait_until(
        "every flaky event is delivered or dead-lettered",
        LONG,
        || {
            let delivered = sink.delivered_ids("/flaky");
            let rt = tokio::runtime::Handle::current();
            dead = tokio::task::block_in_place(|| rt.block_on(p.dead_letters("flaky")));
            delivered.len() + dead.len() >= n
        },
    )
    .await;
    let delivered = sink.delivered_ids("/flaky");
    let dead_ids: HashSet<String> = dead
        .iter()
        .map(|(d, _)| d.delivery.event.id.clone())
        .collect();
    assert_eq!(dead_ids.len(), dead.len(), "no event dead-lettered twice");
    assert!(
        delivered.is_disjoint(&dead_ids),
        "no event both delivered and dead-lettered"
    );
    let all: HashSet<String> = delivered.union(&dead_ids).cloned().collect();
    assert_eq!(
        all, ids,
        "every event accounted for in {dlq_topic} or at the sink"
    );
    for (dl, m) in &dead {
        assert_eq!(dl.reason, "exhausted");
        assert_eq!(dl.delivery.attempts, 3, "budget: 1 + one per tier");
        assert_eq!(dl.delivery.history.len(), 3);
        assert!(
            dl.delivery
                .history
                .iter()
                .all(|e| e.error_class == "timeout" || e.error_class == "http-5xx"),
            "{:?}",
            dl.delivery.history
        );
        assert_eq!(header(m, h::DLQ_REASON).as_deref(), Some("exhausted"));
        assert!(header(m, h::ERROR_CLASS).is_some());
    }
    assert_eq!(sink.stats("/ok1").duplicate_deliveries, 0);
    assert_eq!(sink.stats("/ok2").duplicate_deliveries, 0);
    // Retries went through the tier topics.
    let tier0 = p
        .read(
            &p.config
                .topic_names()
                .retry("flaky", Duration::from_secs(2)),
        )
        .await;
    assert!(
        !tier0.is_empty(),
        "30% timeouts + 10% 503 must produce retries"
    );
    for m in &tier0 {
        assert!(header(m, h::DUE_AT).is_some());
        assert_eq!(header(m, h::ATTEMPT).as_deref(), Some("1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_4xx_dead_letters_on_the_first_attempt() {
    let sink = Sink::start(vec![("/bad".into(), signed(Behaviour::status(400)))])
        .await
        .unwrap();
    let mut p = Pipeline::new("permanent", vec![Dest::new("bad", sink.url("/bad"))]).await;
    p.start_all();
    let ids: HashSet<String> = p
        .produce_events(5, "user.signed_up")
        .await
        .into_iter()
        .collect();
    let mut dead = Vec::new();
    wait_until("5 dead letters", LONG, || {
        let rt = tokio::runtime::Handle::current();
        dead = tokio::task::block_in_place(|| rt.block_on(p.dead_letters("bad")));
        dead.len() >= 5
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        sink.stats("/bad").requests,
        5,
        "no retries of a permanent failure"
    );
    let got: HashSet<String> = dead
        .iter()
        .map(|(d, _)| d.delivery.event.id.clone())
        .collect();
    assert_eq!(got, ids);
    for (dl, m) in &dead {
        assert_eq!(dl.reason, "permanent");
        assert_eq!(dl.delivery.attempts, 1);
        assert_eq!(dl.delivery.history[0].status, Some(400));
        assert_eq!(header(m, h::DLQ_REASON).as_deref(), Some("permanent"));
        assert_eq!(header(m, h::ERROR_STATUS).as_deref(), Some("400"));
        assert_eq!(header(m, h::ERROR_CLASS).as_deref(), Some("http-4xx"));
    }
    // Nothing went to the retry tiers.
    assert!(p
        .read(&p.config.topic_names().retry("bad", Duration::from_secs(1)))
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_input_goes_to_invalid_and_later_events_still_flow() {
    let sink = Sink::start(vec![("/d".into(), signed(Behaviour::healthy()))])
        .await
        .unwrap();
    let mut p = Pipeline::new("poison", vec![Dest::new("d", sink.url("/d"))]).await;
    p.start_all();
    p.produce_raw(b"{not json", None).await;
    p.produce_raw(br#"{"id":"x","source":"/s","data":{}}"#, None)
        .await; // no type
    let random: Vec<u8> = (0..64).map(|_| rand::random::<u8>() | 0x80).collect();
    p.produce_raw(&random, None).await;
    let mut fake_avro = SINGLE_OBJECT_MAGIC.to_vec();
    fake_avro.extend_from_slice(&[9; 20]);
    p.produce_raw(&fake_avro, None).await;
    let binary_no_json = add_header(
        add_header(OwnedHeaders::new(), h::CE_SPECVERSION, "1.0"),
        h::CE_TYPE,
        "a.b",
    );
    p.produce_raw(b"\x01\x02", Some(binary_no_json)).await;
    let ids: HashSet<String> = p
        .produce_events(20, "invoice.paid")
        .await
        .into_iter()
        .collect();
    wait_until("events after the poison are delivered", LONG, || {
        sink.stats("/d").unique_delivered >= 20
    })
    .await;
    assert_eq!(sink.delivered_ids("/d"), ids);
    let invalid = p.read(&p.config.topic_names().invalid()).await;
    assert_eq!(
        invalid.len(),
        5,
        "every bad record lands in the invalid topic"
    );
    let mut reasons: Vec<String> = invalid
        .iter()
        .map(|m| header(m, h::INVALID_REASON).unwrap())
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["decode", "decode", "decode", "decode", "schema"]);
    for m in &invalid {
        assert!(header(m, h::ERROR_MESSAGE).is_some_and(|s| !s.is_empty()));
        assert_eq!(header(m, h::ORIGINAL_TOPIC), Some(p.input()));
        assert!(
            m.payload().is_some(),
            "the original bytes are kept for replay"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_killed_mid_stream_routes_nothing_twice_and_loses_nothing() {
    let sink = Sink::start(vec![("/d".into(), signed(Behaviour::healthy()))])
        .await
        .unwrap();
    let mut p = Pipeline::new("sigkill", vec![Dest::new("d", sink.url("/d"))]).await;
    let n = 4000;
    let ids: HashSet<String> = p
        .produce_events(n, "payment.succeeded")
        .await
        .into_iter()
        .collect();
    p.start_adapter("d");
    p.start_router();
    wait_until("routing under way", LONG, || {
        sink.stats("/d").unique_delivered >= 200
    })
    .await;
    p.kill_router();
    let before = sink.stats("/d").unique_delivered;
    assert!(
        before < n as u64,
        "killed mid-stream ({before}/{n} already delivered)"
    );
    p.start_router();
    wait_until("all events delivered after restart", LONG, || {
        sink.stats("/d").unique_delivered >= n as u64
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let routed = p.routed_ids("d").await;
    assert_eq!(
        routed.keys().cloned().collect::<HashSet<_>>(),
        ids,
        "none lost"
    );
    let twice: Vec<_> = routed.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "routed twice (read_committed): {twice:?}");
    assert_eq!(sink.stats("/d").duplicate_deliveries, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_replay_redelivers_once_the_destination_is_healthy() {
    let sink = Sink::start(vec![("/down".into(), signed(Behaviour::status(503)))])
        .await
        .unwrap();
    let mut p = Pipeline::new(
        "replay",
        vec![Dest::new("down", sink.url("/down")).with("retry.max_attempts = 2\n")],
    )
    .await;
    // Topic provisioning through the CLI is idempotent (they exist already).
    let out = p.cli(&["topics", "apply"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 created"), "{text}");
    p.start_all();
    let ids: HashSet<String> = p
        .produce_events(10, "subscription.cancelled")
        .await
        .into_iter()
        .collect();
    wait_until("10 exhausted dead letters", LONG, || {
        let rt = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| rt.block_on(p.dead_letters("down"))).len() >= 10
    })
    .await;
    assert_eq!(sink.stats("/down").delivered, 0);
    let list = p.cli(&["--json", "dlq", "list", "--destination", "down"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 10);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["reason"] == "exhausted" && e["last_status"] == 503));

    sink.set_behaviour("/down", signed(Behaviour::healthy()));
    let out = p.cli(&["dlq", "replay", "--destination", "down", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("replayed 10"));
    wait_until("replayed events delivered", LONG, || {
        sink.stats("/down").unique_delivered >= 10
    })
    .await;
    assert_eq!(sink.delivered_ids("/down"), ids);
    assert_eq!(sink.stats("/down").duplicate_deliveries, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_stops_gracefully_on_sigterm_and_a_successor_finishes_the_work() {
    let mut slow = Behaviour::healthy();
    slow.latency = Duration::from_millis(50);
    let sink = Sink::start(vec![("/d".into(), signed(slow))])
        .await
        .unwrap();
    let mut p = Pipeline::new("sigterm", vec![Dest::new("d", sink.url("/d"))]).await;
    p.start_all();
    let n = 600;
    let ids: HashSet<String> = p
        .produce_events(n, "user.signed_up")
        .await
        .into_iter()
        .collect();
    wait_until("some deliveries", LONG, || {
        sink.stats("/d").unique_delivered >= 50
    })
    .await;
    assert!(
        p.stop_adapter("d"),
        "adapter exits 0 on SIGTERM:\n{}",
        p.logs()
    );
    p.start_adapter("d");
    wait_until("all delivered by the successor", LONG, || {
        sink.stats("/d").unique_delivered >= n as u64
    })
    .await;
    assert_eq!(sink.delivered_ids("/d"), ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_an_event_are_dropped_within_the_window_even_across_router_restarts() {
    let sink = Sink::start(vec![("/d".into(), signed(Behaviour::healthy()))])
        .await
        .unwrap();
    let mut p = Pipeline::new("dedupe", vec![Dest::new("d", sink.url("/d"))]).await;
    p.start_all();
    let ids: HashSet<String> = p
        .produce_events(100, "payment.failed")
        .await
        .into_iter()
        .collect();
    // A producer retry storm: every event again, in the same batch window.
    p.produce_events(100, "payment.failed").await;
    wait_until("first copies delivered", LONG, || {
        sink.stats("/d").unique_delivered >= 100
    })
    .await;
    wait_until("router caught up", LONG, || p.router_caught_up()).await;
    // A restarted router restores the marks from the changelog.
    p.kill_router();
    p.start_router();
    p.produce_events(100, "payment.failed").await;
    wait_until("router caught up after restart", LONG, || {
        p.router_caught_up()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let routed = p.routed_ids("d").await;
    assert_eq!(routed.keys().cloned().collect::<HashSet<_>>(), ids);
    assert!(
        routed.values().all(|n| *n == 1),
        "each event routed once despite three copies"
    );
    let s = sink.stats("/d");
    assert_eq!((s.requests, s.unique_delivered), (100, 100), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_killed_after_delivering_does_not_deliver_again() {
    let sink = Sink::start(vec![("/d".into(), signed(Behaviour::healthy()))])
        .await
        .unwrap();
    let mut p = Pipeline::new("ledger", vec![Dest::new("d", sink.url("/d"))]).await;
    // Offsets are committed rarely, so at the kill nothing is committed.
    p.env
        .push(("HERALD__ADAPTER__COMMIT_INTERVAL".into(), "1h".into()));
    p.start_all();
    let ids: HashSet<String> = p
        .produce_events(200, "invoice.paid")
        .await
        .into_iter()
        .collect();
    wait_until("all delivered once", LONG, || {
        sink.stats("/d").unique_delivered >= 200
    })
    .await;
    // Let the ledger writes of the last deliveries be acknowledged.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let group = p.config.topic_names().adapter_group("d");
    let dest_topic = p.config.topic_names().dest("d");
    assert!(
        !p.group_caught_up(&group, &dest_topic).await,
        "nothing committed before the kill"
    );
    p.kill_adapter("d");
    p.env
        .retain(|(k, _)| k != "HERALD__ADAPTER__COMMIT_INTERVAL");
    p.start_adapter("d");
    wait_until("successor caught up", LONG, || {
        let rt = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| rt.block_on(p.group_caught_up(&group, &dest_topic)))
    })
    .await;
    let s = sink.stats("/d");
    assert_eq!(sink.delivered_ids("/d"), ids);
    assert_eq!(
        s.requests, 200,
        "the successor re-sent nothing the ledger shows delivered: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_opens_on_a_down_destination_and_burns_no_budget() {
    let sink = Sink::start(vec![("/down".into(), signed(Behaviour::status(503)))])
        .await
        .unwrap();
    let mut p = Pipeline::new(
        "circuit",
        vec![Dest::new("down", sink.url("/down")).with(
            "concurrency = 4\nretry.tiers = [\"1s\", \"2s\"]\ncircuit.failure_threshold = 5\ncircuit.cooldown = \"3s\"\ncircuit.max_cooldown = \"3s\"\n",
        )],
    )
    .await;
    p.start_all();
    let n = 60;
    let ids: HashSet<String> = p
        .produce_events(n, "user.signed_up")
        .await
        .into_iter()
        .collect();
    wait_until("the breaker trips", LONG, || {
        sink.stats("/down").requests >= 5
    })
    .await;
    // Down for ~10 s: without a breaker every event would burn its three
    // attempts (180 requests) and land in the DLQ.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let while_down = sink.stats("/down").requests;
    assert!(
        while_down < 30,
        "the open circuit held deliveries back ({while_down} requests while down)"
    );
    let dead = p.dead_letters("down").await.len();
    assert!(
        dead < 5,
        "almost nothing burned into the DLQ while down ({dead})"
    );
    sink.set_behaviour("/down", signed(Behaviour::healthy()));
    let mut dead_ids = HashSet::new();
    wait_until("every event delivered or dead-lettered", LONG, || {
        let rt = tokio::runtime::Handle::current();
        dead_ids = tokio::task::block_in_place(|| rt.block_on(p.dead_letters("down")))
            .into_iter()
            .map(|(d, _)| d.delivery.event.id)
            .collect();
        sink.delivered_ids("/down").len() + dead_ids.len() >= n
    })
    .await;
    let all: HashSet<String> = sink
        .delivered_ids("/down")
        .union(&dead_ids)
        .cloned()
        .collect();
    assert_eq!(all, ids, "none lost");
    assert!(dead_ids.len() < 5, "{} dead-lettered", dead_ids.len());
}
