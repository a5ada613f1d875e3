//! `lagprobe::LagProbe` against the real broker (`KAFKA_BOOTSTRAP_SERVERS`,
//! else `scripts/kafka.sh start`; without a broker these tests fail). Each
//! test has its own topics and group. The probe is ticked by hand so each
//! step's measurement is known; nothing consumes the topics, the way a
//! stopped adapter or a parked destination does not.

use herald_core::lagprobe::{LagProbe, PartitionLag, TickReport};
use herald_core::metrics::{render, LagMetrics};
use herald_core::time::now_ms;
use prometheus::Registry;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn bootstrap() -> String {
    static ADDR: OnceLock<String> = OnceLock::new();
    ADDR.get_or_init(|| {
        if let Ok(a) = std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
            if !a.trim().is_empty() {
                return a;
            }
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka.sh");
        let out = Command::new(script)
            .arg("start")
            .stderr(Stdio::inherit())
            .output()
            .expect("running scripts/kafka.sh start");
        assert!(
            out.status.success(),
            "scripts/kafka.sh start failed: these tests need a real Kafka broker"
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .expect("kafka.sh prints the address")
            .trim()
            .to_string()
    })
    .clone()
}

fn base() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap());
    c
}

fn unique(what: &str) -> String {
    format!("lagprobe-{what}-{}", now_ms())
}

fn create_topic(name: &str, partitions: i32, config: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = base().create().unwrap();
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in config {
        t = t.set(k, v);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(T));
    for r in rt.block_on(admin.create_topics([&t], &opts)).unwrap() {
        r.unwrap();
    }
}

/// Produces `timestamps.len()` records to `partition`, each with the given
/// Kafka timestamp.
fn produce(p: &BaseProducer, topic: &str, partition: i32, timestamps: &[i64]) {
    for (i, ts) in timestamps.iter().enumerate() {
        let payload = format!("record {i}");
        p.send(
            BaseRecord::<str, str>::to(topic)
                .partition(partition)
                .payload(&payload)
                .timestamp(*ts),
        )
        .unwrap();
    }
    p.flush(T).unwrap();
}

fn producer() -> BaseProducer {
    base().set("enable.idempotence", "true").create().unwrap()
}

fn transactional_producer() -> BaseProducer {
    let p: BaseProducer = base()
        .set("transactional.id", unique("txn"))
        .create()
        .unwrap();
    p.init_transactions(T).unwrap();
    p
}

/// Commits `offset` for `group` on one partition without joining it.
fn commit(group: &str, topic: &str, partition: i32, offset: i64) {
    let c: BaseConsumer = base()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .unwrap();
    c.commit(&tpl, CommitMode::Sync).unwrap();
}

/// Ticks the probe until `cond` holds for the partition's measurement.
fn tick_until(
    probe: &mut LagProbe,
    topic: &str,
    partition: i32,
    timeout: Duration,
    what: &str,
    cond: impl Fn(&PartitionLag) -> bool,
) -> PartitionLag {
    let deadline = Instant::now() + timeout;
    loop {
        probe.tick();
        if let Some(l) = probe.view().get(topic, partition) {
            if cond(&l) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for: {what}; last {l:?}"
            );
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The value of one series in the registry's text, if present.
fn series(r: &Registry, metric: &str, labels: &str) -> Option<f64> {
    let text = render(r);
    let prefix = format!("{metric}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|v| v.parse().unwrap())
}

fn probe(group: &str, topics: &[String], m: &LagMetrics) -> LagProbe {
    LagProbe::new(&base(), group, topics, Duration::from_secs(5), m.clone()).unwrap()
}

/// (1) A group that stopped consuming: lag in seconds is the age of the
/// record at its committed offset and keeps growing; lag in offsets is
/// high minus committed; the record is read once per committed offset; the
/// service's own lag calls for the topic no longer count; only the probe's
/// topics are reported.
#[test]
fn a_stopped_group_lags_by_the_age_of_its_committed_record() {
    let (topic, other, group) = (unique("stopped"), unique("other"), unique("group"));
    create_topic(&topic, 2, &[]);
    create_topic(&other, 1, &[]);
    let t0 = now_ms();
    let stamps: Vec<i64> = (0..10).map(|i| t0 + i).collect();
    let p = producer();
    produce(&p, &topic, 0, &stamps);
    produce(&p, &other, 0, &stamps);
    commit(&group, &topic, 0, 2);
    commit(&group, &other, 0, 1);

    let r = Registry::new();
    let m = LagMetrics::new(&r);
    let mut probe = probe(&group, std::slice::from_ref(&topic), &m);
    // A read that did not answer in time (a loaded box) is retried on the
    // next tick.
    let l = tick_until(&mut probe, &topic, 0, T, "the head is read", |l| {
        l.head_ts.is_some()
    });
    assert_eq!((l.committed, l.low, l.high), (Some(2), 0, 10));
    assert_eq!(l.lag_offsets, 8);
    assert_eq!(
        l.head_ts,
        Some(t0 + 2),
        "the record at the committed offset"
    );
    assert!(!l.caught_up);
    // Partition 1: empty, never committed: caught up.
    let empty = probe.snapshot()[&(topic.clone(), 1)].clone();
    assert!(empty.caught_up && empty.committed.is_none() && empty.lag_offsets == 0);
    assert!(
        probe.snapshot().keys().all(|(t, _)| *t == topic),
        "only the probe's topics"
    );

    // Nothing consumes: the age passes 3 s and keeps growing.
    let a = tick_until(&mut probe, &topic, 0, T, "age >= 3 s", |l| {
        l.age_ms >= 3_000
    });
    let b = tick_until(&mut probe, &topic, 0, T, "age grows", |l| {
        l.age_ms > a.age_ms
    });
    println!("age {} ms, then {} ms", a.age_ms, b.age_ms);
    let again: TickReport = probe.tick();
    assert_eq!(
        again.reads, 0,
        "unchanged committed offsets are not re-read"
    );

    // What the adapter's own (statistics and in-process) lag path does for
    // its assigned partitions is ignored for a probed topic.
    m.seconds.set(&group, &topic, 0, None);
    m.seconds.remove(&group, &topic, 0);
    let labels = format!("group=\"{group}\",partition=\"0\",topic=\"{topic}\"");
    let secs = series(&r, "herald_consumer_lag_seconds", &labels).unwrap();
    assert!(secs >= 3.0, "lag seconds at scrape time: {secs}");
    assert_eq!(
        series(&r, "herald_consumer_lag_offsets", &labels),
        Some(8.0)
    );
    assert!(
        !render(&r).contains(&other),
        "the other topic is not reported"
    );

    // The group moves on: re-read at the new position.
    commit(&group, &topic, 0, 5);
    let moved = probe.tick();
    let l = probe.view().get(&topic, 0).unwrap();
    assert_eq!(moved.reads, 1);
    assert_eq!((l.head_ts, l.lag_offsets), (Some(t0 + 5), 5));
    // Caught up: 0 s, 0 offsets.
    commit(&group, &topic, 0, 10);
    probe.tick();
    let l = probe.view().get(&topic, 0).unwrap();
    assert!(l.caught_up && l.age_ms == 0 && l.lag_offsets == 0, "{l:?}");
    assert_eq!(
        series(&r, "herald_consumer_lag_seconds", &labels),
        Some(0.0)
    );
}

/// (2) A transactional topic: a caught-up group's committed offset points
/// at a commit marker, which a read_committed reader never returns. The
/// reader answers from partition EOF (no wait for a record that does not
/// exist): age 0, no unanswered read. Records of an aborted transaction are
/// skipped: the head is the first committed record.
#[test]
fn a_caught_up_transactional_partition_answers_at_once() {
    let (topic, group) = (unique("txn"), unique("group"));
    create_topic(&topic, 2, &[]);
    let t0 = now_ms();
    let p = transactional_producer();
    // Partition 0: five committed records, then the commit marker.
    p.begin_transaction().unwrap();
    produce(&p, &topic, 0, &[t0; 5]);
    p.commit_transaction(T).unwrap();
    // Partition 1: three aborted records and their marker, then two
    // committed ones (the first at t0 + 100) and theirs.
    p.begin_transaction().unwrap();
    produce(&p, &topic, 1, &[t0; 3]);
    p.abort_transaction(T).unwrap();
    p.begin_transaction().unwrap();
    produce(&p, &topic, 1, &[t0 + 100, t0 + 101]);
    p.commit_transaction(T).unwrap();

    // A consumer that finished partition 0 commits the offset after its
    // last record: the marker's.
    commit(&group, &topic, 0, 5);
    commit(&group, &topic, 1, 0);
    let m = LagMetrics::new(&Registry::new());
    let mut probe = probe(&group, std::slice::from_ref(&topic), &m);
    // Without partition EOF the marker never answers (no record is there),
    // so this would time out; with it, the first tick usually settles both.
    let deadline = Instant::now() + T;
    loop {
        let report = probe.tick();
        println!("tick over a marker and an aborted transaction: {report:?}");
        if report.unanswered == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reads never answered: {report:?}"
        );
    }
    let caught = probe.view().get(&topic, 0).unwrap();
    assert_eq!((caught.committed, caught.high), (Some(5), 6), "{caught:?}");
    assert!(caught.caught_up, "{caught:?}");
    assert_eq!((caught.age_ms, caught.lag_offsets), (0, 0));
    let behind = probe.view().get(&topic, 1).unwrap();
    assert_eq!(
        behind.head_ts,
        Some(t0 + 100),
        "first committed record: {behind:?}"
    );
    // Cached: the marker is not read again while nothing changes.
    assert_eq!(probe.tick().reads, 0);

    // On its own thread, the way a service runs it.
    let running = LagProbe::new(
        &base(),
        &group,
        std::slice::from_ref(&topic),
        Duration::from_millis(200),
        m,
    )
    .unwrap()
    .spawn()
    .unwrap();
    let deadline = Instant::now() + T;
    while running.snapshot().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the spawned probe measured nothing"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(running.snapshot()[&(topic.clone(), 0)].caught_up);
}

/// (3) An outage longer than retention: retention deletes records the
/// group never consumed; the low watermark passes its committed offset.
/// The deleted records are counted once, with one offset reset; the
/// headroom started at the topic's retention.
#[test]
fn records_deleted_before_consumption_are_counted_once() {
    let (topic, group) = (unique("retention"), unique("group"));
    create_topic(
        &topic,
        1,
        &[("retention.ms", "10000"), ("segment.ms", "2000")],
    );
    let p = producer();
    let now = now_ms();
    produce(&p, &topic, 0, &[now; 20]);
    commit(&group, &topic, 0, 0);
    let r = Registry::new();
    let m = LagMetrics::new(&r);
    let mut probe = probe(&group, std::slice::from_ref(&topic), &m);
    probe.tick();
    let l = probe.view().get(&topic, 0).unwrap();
    assert_eq!(l.retention_ms, Some(10_000));
    let headroom = l.headroom_ms(now_ms()).unwrap();
    assert!(headroom <= 10_000, "{l:?}");
    let expired = || {
        m.expired_unconsumed
            .with_label_values(&[&group, &topic])
            .get()
    };
    let resets = || m.offset_resets.with_label_values(&[&group, &topic]).get();
    assert_eq!((expired(), resets()), (0, 0));
    assert_eq!(
        series(
            &r,
            "herald_topic_retention_seconds",
            &format!("topic=\"{topic}\"")
        ),
        Some(10.0)
    );

    let gone = tick_until(
        &mut probe,
        &topic,
        0,
        Duration::from_secs(120),
        "retention deletes every record",
        |l| l.low == 20,
    );
    println!("deleted: {gone:?}");
    assert_eq!(expired(), 20, "every deleted record, counted once");
    assert_eq!(resets(), 1);
    for _ in 0..3 {
        probe.tick();
    }
    assert_eq!((expired(), resets()), (20, 1), "counted once per episode");
    // The consumer resets to the low watermark and commits: the episode ends.
    commit(&group, &topic, 0, 20);
    probe.tick();
    assert_eq!((expired(), resets()), (20, 1));
    let labels = format!("group=\"{group}\",partition=\"0\",topic=\"{topic}\"");
    assert_eq!(
        series(&r, "herald_consumer_retention_headroom_seconds", &labels),
        Some(10.0),
        "caught up: the whole retention"
    );
}
