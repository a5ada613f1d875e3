//! Consumer lag measured on the broker from a group's committed offsets —
//! what KEDA, Burrow and kafka-lag-exporter report — plus retention headroom
//! and records retention deleted before the group consumed them.
//!
//! A [`LagProbe`] is a side client: it uses the group's id to read its
//! committed offsets but never subscribes, so it never joins the group. For
//! each partition of the topics it is given it reads, every interval, the
//! committed offset and the low and high watermarks (read_committed), and the
//! Kafka timestamp of the record at the committed position, with a second
//! consumer assigned there (`enable.partition.eof`, so a caught-up partition
//! whose committed offset points at a transaction marker answers at once).
//! That record is re-read only when the committed offset moves.
//!
//! Lag in seconds is therefore the age of the next record the group has to
//! finish, and keeps growing while nothing consumes: a destination that is
//! down (partitions paused), an adapter that is not running. Every replica
//! measures the whole topics and reports the same values: aggregate with
//! `max`, never `sum`. Creating a probe hands the group's lag series for its
//! topics to it ([`crate::metrics::OldestUnprocessed::hand_to_probe`]): the
//! service's own statistics-based values for them are ignored from then on.

use crate::metrics::LagMetrics;
use crate::time::now_ms;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake};
use std::time::{Duration, Instant};
use tracing::{debug, error, warn};

mod lag;

pub use lag::{headroom_ms, PartitionLag};
use lag::{time_retention, Head, LossTracker};

/// How often a probe measures unless told otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// How long the reader may wait for each partition's record. Partitions of
/// one topic are read together, so a topic waits at most this times its
/// partitions, at least [`MIN_READ_WAIT`] (a first fetch sets up
/// connections) and at most [`TIMEOUT`]. Every partition answers (a record
/// or partition EOF), so the bound only matters for one that cannot; it is
/// read again on the next tick.
const READ_TIMEOUT: Duration = Duration::from_millis(500);
const MIN_READ_WAIT: Duration = Duration::from_secs(1);
/// Broker requests (metadata, offsets, watermarks, configs).
const TIMEOUT: Duration = Duration::from_secs(5);

/// What one tick did, for logs and tests.
#[derive(Debug, Default, Clone)]
pub struct TickReport {
    pub duration: Duration,
    pub partitions: usize,
    /// Partitions whose next record was read from the broker this tick (the
    /// others came from the cache or needed no read).
    pub reads: usize,
    /// Reads that did not answer in time (retried on the next tick).
    pub unanswered: usize,
    /// Topics that could not be measured.
    pub errors: usize,
}

type Partitions = Arc<Mutex<HashMap<(String, i32), PartitionLag>>>;

/// A cheap, cloneable view of the probe's last measurements.
#[derive(Clone, Default)]
pub struct LagView(Partitions);

impl LagView {
    /// Every partition, keyed by (topic, partition).
    pub fn snapshot(&self) -> HashMap<(String, i32), PartitionLag> {
        self.0.lock().expect("lag view lock").clone()
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<PartitionLag> {
        self.0
            .lock()
            .expect("lag view lock")
            .get(&(topic.to_string(), partition))
            .cloned()
    }
}

/// Keeps the probe's thread running; dropping it stops the thread.
pub struct LagProbeHandle {
    view: LagView,
    stop: Arc<AtomicBool>,
}

impl LagProbeHandle {
    pub fn snapshot(&self) -> HashMap<(String, i32), PartitionLag> {
        self.view.snapshot()
    }

    pub fn view(&self) -> LagView {
        self.view.clone()
    }
}

impl Drop for LagProbeHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

pub struct LagProbe {
    group: String,
    topics: Vec<String>,
    interval: Duration,
    /// group.id = the group: committed offsets and watermarks.
    offsets: BaseConsumer,
    /// Reads the record at each committed position.
    reader: BaseConsumer<crate::kafka::EofReaderContext>,
    admin: AdminClient<DefaultClientContext>,
    metrics: LagMetrics,
    /// topic -> time retention, once read.
    retention: HashMap<String, Option<i64>>,
    /// (topic, partition) -> (read position, what was there).
    heads: HashMap<(String, i32), (i64, Head)>,
    loss: LossTracker,
    view: LagView,
}

impl LagProbe {
    /// A probe of `group` on `topics`, measuring every `interval`, with
    /// clients built from `base` (bootstrap servers and the operator's
    /// client properties: `kafka::client_config`). Takes over the group's
    /// lag series for `topics` in `metrics` at once.
    pub fn new(
        base: &ClientConfig,
        group: &str,
        topics: &[String],
        interval: Duration,
        metrics: LagMetrics,
    ) -> KafkaResult<Self> {
        let offsets: BaseConsumer = base
            .clone()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()?;
        // Its own group id, never committed to; assign() needs one.
        let reader: BaseConsumer<crate::kafka::EofReaderContext> = base
            .clone()
            .set("group.id", format!("{group}.lag-probe"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            // One record per partition is all it needs, soon.
            .set("fetch.wait.max.ms", "50")
            .set("max.partition.fetch.bytes", "65536")
            .create_with_context(crate::kafka::EofReaderContext)?;
        let admin = base.create()?;
        metrics.seconds.hand_to_probe(group, topics);
        for t in topics {
            // From 0, so the first loss is an increase.
            metrics.expired_unconsumed.with_label_values(&[group, t]);
            metrics.offset_resets.with_label_values(&[group, t]);
        }
        Ok(Self {
            group: group.to_string(),
            topics: topics.to_vec(),
            interval,
            offsets,
            reader,
            admin,
            metrics,
            retention: HashMap::new(),
            heads: HashMap::new(),
            loss: LossTracker::default(),
            view: LagView::default(),
        })
    }

    pub fn view(&self) -> LagView {
        self.view.clone()
    }

    pub fn snapshot(&self) -> HashMap<(String, i32), PartitionLag> {
        self.view.snapshot()
    }

    /// Measures now and then every interval on a thread of its own
    /// (librdkafka's calls block), until the handle is dropped.
    pub fn spawn(mut self) -> std::io::Result<LagProbeHandle> {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = LagProbeHandle {
            view: self.view(),
            stop: stop.clone(),
        };
        std::thread::Builder::new()
            .name("lag-probe".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let r = self.tick();
                    debug!(group = %self.group, ?r, "Measured lag.");
                    let until = Instant::now() + self.interval;
                    while !stop.load(Ordering::Acquire) && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })?;
        Ok(handle)
    }

    /// One measurement of every topic; publishes the metrics and the view.
    pub fn tick(&mut self) -> TickReport {
        let started = Instant::now();
        let mut report = TickReport::default();
        if self.retention.len() < self.topics.len() {
            if let Err(e) = self.read_retention() {
                warn!(group = %self.group, error = %e, "Could not read the topics' retention; headroom is not reported until it can.");
            }
        }
        for topic in self.topics.clone() {
            match self.measure(&topic, &mut report) {
                Ok(parts) => {
                    let mut view = self.view.0.lock().expect("lag view lock");
                    for (p, lag) in parts {
                        view.insert((topic.clone(), p), lag);
                    }
                }
                Err(e) => {
                    report.errors += 1;
                    warn!(group = %self.group, topic, error = %e, "Could not measure the group's lag.");
                }
            }
        }
        report.duration = started.elapsed();
        report
    }

    fn read_retention(&mut self) -> anyhow::Result<()> {
        let specs: Vec<ResourceSpecifier> = self
            .topics
            .iter()
            .map(|t| ResourceSpecifier::Topic(t))
            .collect();
        let opts = AdminOptions::new().request_timeout(Some(TIMEOUT));
        for r in block_on(self.admin.describe_configs(specs.iter(), &opts))? {
            let r = r.map_err(|code| anyhow::anyhow!("describe configs: {code}"))?;
            let rdkafka::admin::OwnedResourceSpecifier::Topic(topic) = &r.specifier else {
                continue;
            };
            let value = |name: &str| r.get(name).and_then(|e| e.value.as_deref());
            let ms = time_retention(value("cleanup.policy"), value("retention.ms"));
            match ms {
                Some(ms) => self
                    .metrics
                    .retention
                    .with_label_values(&[topic.as_str()])
                    .set(ms as f64 / 1000.0),
                None => {
                    let _ = self
                        .metrics
                        .retention
                        .remove_label_values(&[topic.as_str()]);
                }
            }
            self.retention.insert(topic.clone(), ms);
        }
        Ok(())
    }

    fn measure(
        &mut self,
        topic: &str,
        report: &mut TickReport,
    ) -> anyhow::Result<Vec<(i32, PartitionLag)>> {
        let md = self.offsets.fetch_metadata(Some(topic), TIMEOUT)?;
        let t = md
            .topics()
            .first()
            .ok_or_else(|| anyhow::anyhow!("no metadata for {topic}"))?;
        if let Some(e) = t.error() {
            anyhow::bail!("{topic}: {e:?}");
        }
        let mut tpl = TopicPartitionList::new();
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
        let committed = self.offsets.committed_offsets(tpl, TIMEOUT)?;
        // (partition, committed, low, high, read position)
        let mut marks = Vec::new();
        for p in t.partitions() {
            let (low, high) = self.offsets.fetch_watermarks(topic, p.id(), TIMEOUT)?;
            let c = match committed.find_partition(topic, p.id()).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            };
            let start = c.map_or(low, |c| c.max(low)).min(high);
            marks.push((p.id(), c, low, high, start));
        }
        // Read only where the position moved, or new records arrived behind
        // a caught-up position.
        let wanted: Vec<(i32, i64, i64)> = marks
            .iter()
            .filter(|(p, _, _, high, start)| {
                start < high
                    && match self.heads.get(&(topic.to_string(), *p)) {
                        Some((at, Head::Record { .. })) => at != start,
                        Some((at, Head::CaughtUp { high: h })) => at != start || h != high,
                        None => true,
                    }
            })
            .map(|(p, _, _, high, start)| (*p, *start, *high))
            .collect();
        report.reads += wanted.len();
        let read = self.read_heads(topic, &wanted);
        report.unanswered += wanted.len() - read.len();
        for (p, (at, head)) in read {
            self.heads.insert((topic.to_string(), p), (at, head));
        }
        let now = now_ms();
        let retention = self.retention.get(topic).copied().flatten();
        let mut out = Vec::with_capacity(marks.len());
        for (p, c, low, high, start) in marks {
            let head = if start >= high {
                Some(Head::CaughtUp { high })
            } else {
                // A caught-up answer holds only until the high watermark moves.
                match self.heads.get(&(topic.to_string(), p)) {
                    Some((at, Head::CaughtUp { high: h })) if *at == start && *h != high => None,
                    Some((at, h)) if *at == start => Some(*h),
                    _ => None,
                }
            };
            let lag = self.partition_lag(c, low, high, start, head, retention, now);
            self.publish(topic, p, &lag, head.is_some());
            out.push((p, lag));
        }
        report.partitions += out.len();
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn partition_lag(
        &self,
        committed: Option<i64>,
        low: i64,
        high: i64,
        start: i64,
        head: Option<Head>,
        retention_ms: Option<i64>,
        now: i64,
    ) -> PartitionLag {
        let (caught_up, head_ts, head_due_ms) = match head {
            Some(Head::CaughtUp { .. }) => (true, None, None),
            Some(Head::Record { ts, due }) => (false, Some(ts), due),
            None => (false, None, None),
        };
        let mut lag = PartitionLag {
            committed,
            low,
            high,
            lag_offsets: if caught_up { 0 } else { high - start },
            head_ts,
            head_due_ms,
            caught_up,
            age_ms: 0,
            retention_ms,
            measured_at_ms: now,
        };
        lag.age_ms = lag.waiting_since_ms().map_or(0, |s| (now - s).max(0));
        lag
    }

    /// Metrics of one partition, and the loss check.
    fn publish(&mut self, topic: &str, p: i32, lag: &PartitionLag, head_known: bool) {
        let (m, group) = (&self.metrics, self.group.as_str());
        m.offsets
            .with_label_values(&[group, topic, &p.to_string()])
            .set(lag.lag_offsets);
        if head_known {
            m.seconds
                .set_probed(group, topic, p, lag.waiting_since_ms());
            m.headroom
                .set(group, topic, p, lag.retention_ms, lag.head_ts);
        }
        let loss = self.loss.observe(topic, p, lag.committed, lag.low);
        if loss.new_episode {
            m.offset_resets.with_label_values(&[group, topic]).inc();
        }
        if loss.expired > 0 {
            m.expired_unconsumed
                .with_label_values(&[group, topic])
                .inc_by(loss.expired);
            error!(
                group,
                topic,
                partition = p,
                offsets = loss.expired,
                committed = lag.committed,
                low_watermark = lag.low,
                "Retention deleted records the group had not consumed: they are lost, and its consumer skips to the low watermark."
            );
        }
    }

    /// Reads the first record at or after each `(partition, position, high)`
    /// of `topic`. Partitions that did not answer in time are left out.
    fn read_heads(&self, topic: &str, wanted: &[(i32, i64, i64)]) -> HashMap<i32, (i64, Head)> {
        let mut out = HashMap::new();
        if wanted.is_empty() {
            return out;
        }
        let mut tpl = TopicPartitionList::new();
        for (p, start, _) in wanted {
            if let Err(e) = tpl.add_partition_offset(topic, *p, Offset::Offset(*start)) {
                warn!(topic, partition = p, error = %e, "Could not set the lag reader's position.");
                return out;
            }
        }
        if let Err(e) = self.reader.assign(&tpl) {
            warn!(topic, error = %e, "Could not assign the lag reader.");
            return out;
        }
        let find = |p: i32| wanted.iter().find(|(q, _, _)| *q == p).copied();
        let wait = (READ_TIMEOUT * wanted.len() as u32).clamp(MIN_READ_WAIT, TIMEOUT);
        let deadline = Instant::now() + wait;
        while out.len() < wanted.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.reader.poll(left) {
                Some(Ok(m)) if m.topic() == topic => {
                    let Some((p, start, _)) = find(m.partition()) else {
                        continue;
                    };
                    let Some(ts) = m.timestamp().to_millis() else {
                        continue;
                    };
                    if m.offset() >= start && !out.contains_key(&p) {
                        let due = crate::kafka::header_str(&m, crate::headers::DUE_AT)
                            .and_then(|v| v.parse().ok());
                        out.insert(p, (start, Head::Record { ts, due }));
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    if let Some((p, start, high)) = find(p) {
                        out.entry(p).or_insert((start, Head::CaughtUp { high }));
                    }
                }
                Some(Err(e)) => debug!(topic, error = %e, "Lag reader error."),
                _ => {}
            }
        }
        if let Err(e) = self.reader.unassign() {
            warn!(topic, error = %e, "Could not unassign the lag reader.");
        }
        // Nothing from this read may answer the next one.
        while self.reader.poll(Duration::ZERO).is_some() {}
        out
    }
}

/// Runs a future that needs no runtime (rdkafka's admin futures are
/// completed by librdkafka's own thread) on the calling thread.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_waits_for_a_future_woken_from_another_thread() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(7).unwrap();
        });
        assert_eq!(block_on(rx).unwrap(), 7);
    }
}
