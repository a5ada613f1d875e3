//! Item 13 on the real broker: an offset commit the broker refuses is
//! noticed, counted, and asked for again until the broker takes it.

use super::*;
use crate::offsets::OffsetTracker;
use herald_core::config::Config;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::StreamConsumer;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use std::time::Instant;

fn context(
    config: &Config,
    offsets: Arc<Mutex<OffsetTracker>>,
    metrics: AdapterMetrics,
) -> AdapterContext {
    AdapterContext {
        offsets,
        ledger: Arc::default(),
        events: Arc::default(),
        wake: Arc::default(),
        config: config.clone(),
        destination: "d".into(),
        metrics,
        handover_wait: Duration::from_secs(1),
    }
}

/// Polls `c` for up to `wait`, so that librdkafka serves its callbacks.
async fn serve<C: ConsumerContext + 'static>(c: &StreamConsumer<C>, wait: Duration) {
    let _ = tokio::time::timeout(wait, c.recv()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_commit_is_counted_and_asked_for_again() {
    herald_core::telemetry::init_logging(herald_core::telemetry::LogFormat::Text);
    let bootstrap = herald_e2e::bootstrap();
    let config = Config::from_toml_with_env(
        &format!("[kafka]\nbootstrap_servers = \"{bootstrap}\"\n"),
        "test",
        Vec::new(),
    )
    .expect("config");
    let topic = format!("commit-refused-{}", rand::random::<u32>());
    let group = format!("{topic}.group");
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for i in 0..3 {
        producer
            .send(
                FutureRecord::<(), _>::to(&topic).payload(&format!("{i}")),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    // Another member holds the group: the broker refuses commits from a
    // client that is not in its current generation.
    let member: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    member.subscribe(&[&topic]).unwrap();
    tokio::time::timeout(Duration::from_secs(60), member.recv())
        .await
        .expect("the member joins and reads")
        .expect("a record");

    let offsets = Arc::new(Mutex::new(OffsetTracker::default()));
    let metrics = AdapterMetrics::new();
    // An adapter-like client that is not in the group's generation.
    let outsider = || {
        let c: Arc<StreamConsumer<AdapterContext>> = Arc::new(
            ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", &group)
                .set("enable.auto.commit", "false")
                .create_with_context(context(&config, offsets.clone(), metrics.clone()))
                .unwrap(),
        );
        let committer =
            Committer::start(c.clone(), offsets.clone(), metrics.clone(), "d".into()).unwrap();
        (c, committer)
    };
    let (ours, committer) = outsider();
    let tp: Tp = (topic.clone(), 0);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .unwrap();
    ours.assign(&tpl).unwrap();
    {
        let mut o = offsets.lock().unwrap();
        for offset in 0..3 {
            o.start(&tp, offset, 0);
            o.finish(&tp, offset);
        }
    }
    let failures = || metrics.commit_failures.with_label_values(&["d"]).get();

    let commits = offsets.lock().unwrap().take_commits();
    assert_eq!(commits, [(tp.clone(), 3)]);
    committer.send(commits);
    let deadline = Instant::now() + Duration::from_secs(30);
    while failures() == 0 && Instant::now() < deadline {
        serve(&ours, Duration::from_millis(200)).await;
    }
    assert_eq!(failures(), 1, "the refused commit is counted");
    let again = offsets.lock().unwrap().take_commits();
    assert_eq!(
        again,
        [(tp.clone(), 3)],
        "a refused commit point is asked for again"
    );

    // The member leaves, so the group is empty and takes commits from
    // outside it. (This client stays refused: after "unknown member" an
    // assign-only client defers its commits until it joins, which it never
    // does; a subscribed adapter re-joins. A fresh client stands in.)
    drop(member);
    drop(committer);
    let (fresh, mut committer) = outsider();
    fresh.assign(&tpl).unwrap();
    committer.send(again);
    let deadline = Instant::now() + Duration::from_secs(60);
    let committed = loop {
        // (Points refused meanwhile, while the member was still leaving.)
        committer.send(offsets.lock().unwrap().take_commits());
        serve(&fresh, Duration::from_millis(500)).await;
        let c = fresh
            .committed_offsets(tpl.clone(), Duration::from_secs(10))
            .unwrap();
        let at = c.find_partition(&topic, 0).map(|e| e.offset());
        if at == Some(Offset::Offset(3)) || Instant::now() > deadline {
            break at;
        }
    };
    assert_eq!(committed, Some(Offset::Offset(3)), "committed once allowed");
    assert!(committer.finish(Duration::from_secs(10)));
    assert!(
        offsets.lock().unwrap().take_commits().is_empty(),
        "nothing more to ask for once the broker confirmed it"
    );
}
