//! A partition the Kafka client stops fetching, on a real broker.
//!
//! librdkafka can leave an assigned partition unfetched without a word
//! (a fetch start outdated by a concurrent pause or resume; seen in CI as
//! two retry-tier records never attempted). The adapter's stall watch must
//! notice — the partition flows, nothing of it is unfinished, and the lag
//! probe sees a record waiting at the committed offset — and heal it: a
//! seek first, a fresh consumer when that does not help. The fault is
//! injected with `HERALD_FAULT_STALL_PARTITION`, which pauses the partition
//! inside librdkafka behind the scheduler's back (a seek does not undo a
//! pause, so both steps of the escalation run).

use herald_devtools::{Behaviour, Sink};
use herald_e2e::{wait_until, Dest, Pipeline, SECRET};
use rdkafka::message::Message;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(240);

fn metric(text: &str, name: &str, action: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(&format!("action=\"{action}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_the_client_stops_fetching_is_healed() {
    let mut healthy = Behaviour::healthy();
    healthy.secret = Some(SECRET.to_string());
    let sink = Sink::start(vec![("/d".into(), healthy)]).await.unwrap();
    let mut p = Pipeline::new("stall", vec![Dest::new("d", sink.url("/d"))]).await;
    let dest_topic = p.config.topic_names().dest("d");
    p.env.push((
        "HERALD_FAULT_STALL_PARTITION".into(),
        format!("{dest_topic}:0"),
    ));
    p.start_all();
    // Produce once the ledger is read: the fault fires on the first record
    // of the partition taken in while it flows, with its successors behind.
    wait_until("the adapter read its ledger", LONG, || {
        p.log_of("herald-adapter-d")
            .contains("Ledger restored for assigned partitions")
    })
    .await;
    let ids = p.produce_events(60, "stall.test").await;
    wait_until("every event delivered despite the stall", LONG, || {
        sink.stats("/d").unique_delivered as usize >= ids.len()
    })
    .await;
    let on_stuck = p
        .read(&dest_topic)
        .await
        .iter()
        .filter(|m| m.partition() == 0)
        .count();
    assert!(
        on_stuck >= 2,
        "partition 0 must hold records behind the one that triggers the fault ({on_stuck})"
    );
    let log = p.log_of("herald-adapter-d");
    assert!(
        log.contains("Fault injection: this partition stops being fetched"),
        "the fault fired"
    );
    assert!(log.contains("Partition stalled"), "the stall was reported");
    // Logged right after rdkafka's clients are created: it was lost to a
    // stale per-layer filter verdict (see herald_core::telemetry).
    assert!(log.contains("Adapter started."), "no log line is lost");
    let addr = p.admin_addr("d").await;
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let name = "herald_adapter_partition_stalls_total";
    assert!(metric(&text, name, "seek") >= 1.0, "{text}");
    assert!(metric(&text, name, "rejoin") >= 1.0, "{text}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = sink.stats("/d");
    assert_eq!(s.unique_delivered as usize, ids.len(), "{s:?}");
    assert_eq!(s.duplicate_deliveries, 0, "{s:?}");
}
