//! Progress of the services under test, sampled from Kafka once a second
//! on its own thread (the calls block): the router group's committed input
//! offsets and each adapter group's committed offsets over its destination
//! topic and retry tiers, with the lag to the high watermarks. Time to
//! recover after a kill is read from these samples and from the sink.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Committed offsets summed over a group's partitions, and its lag.
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupProgress {
    pub committed: i64,
    pub lag: i64,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: Instant,
    pub router: GroupProgress,
    pub adapters: HashMap<String, GroupProgress>,
}

/// A group to watch: name and the topics it consumes.
pub struct Watch {
    pub key: String,
    pub group: String,
    pub topics: Vec<String>,
}

pub struct Monitor {
    latest: Arc<Mutex<Option<Snapshot>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn progress(c: &BaseConsumer, topics: &[String], partitions: i32) -> anyhow::Result<GroupProgress> {
    let t = Duration::from_secs(3);
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
    }
    let committed = c.committed_offsets(tpl, t)?;
    let mut out = GroupProgress::default();
    for e in committed.elements() {
        let (low, high) = c.fetch_watermarks(e.topic(), e.partition(), t)?;
        let pos = match e.offset() {
            Offset::Offset(o) => o.max(low),
            _ => low,
        };
        out.committed += pos;
        out.lag += (high - pos).max(0);
    }
    Ok(out)
}

impl Monitor {
    pub fn start(
        bootstrap: &str,
        partitions: i32,
        router: Watch,
        adapters: Vec<Watch>,
    ) -> anyhow::Result<Self> {
        let consumer = |group: &str| -> anyhow::Result<BaseConsumer> {
            Ok(ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .create()?)
        };
        let rc = consumer(&router.group)?;
        let acs: Vec<(Watch, BaseConsumer)> = adapters
            .into_iter()
            .map(|w| consumer(&w.group).map(|c| (w, c)))
            .collect::<anyhow::Result<_>>()?;
        let latest = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (l2, s2) = (latest.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                let started = Instant::now();
                let sample = (|| -> anyhow::Result<Snapshot> {
                    let r = progress(&rc, &router.topics, partitions)?;
                    let mut adapters = HashMap::new();
                    for (w, c) in &acs {
                        adapters.insert(w.key.clone(), progress(c, &w.topics, partitions)?);
                    }
                    Ok(Snapshot {
                        at: started,
                        router: r,
                        adapters,
                    })
                })();
                if let Ok(s) = sample {
                    *l2.lock().expect("monitor lock") = Some(s);
                }
                let spent = started.elapsed();
                if spent < Duration::from_secs(1) {
                    std::thread::sleep(Duration::from_secs(1) - spent);
                }
            }
        });
        Ok(Self {
            latest,
            stop,
            thread: Some(thread),
        })
    }

    /// The latest sample taken after `after`, if any yet.
    pub fn since(&self, after: Instant) -> Option<Snapshot> {
        self.latest
            .lock()
            .expect("monitor lock")
            .clone()
            .filter(|s| s.at >= after)
    }

    pub fn latest(&self) -> Option<Snapshot> {
        self.latest.lock().expect("monitor lock").clone()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
