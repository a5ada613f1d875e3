//! What comes in: group membership changes, received records (parked while
//! their partition's ledger is read, skipped when the ledger says they are
//! done, queued otherwise), and the stall watch over it all.

use super::{expiring, Driver, State};
use crate::consumer::GroupEvent;
use crate::delivery::Received;
use crate::ledger;
use crate::offsets::Tp;
use crate::scheduler::Queued;
use crate::stall::{Heal, Observed};
use herald_core::headers as h;
use herald_core::kafka::header_str;
use herald_core::time::now_ms;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::topic_partition_list::Offset;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// How long a seek that heals a stalled partition may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);

impl Driver<'_> {
    pub(super) fn apply_group_events(
        &self,
        st: &mut State,
        restored_tx: &mpsc::UnboundedSender<Vec<Tp>>,
    ) {
        let events = std::mem::take(&mut *self.events.lock().expect("events lock"));
        let now = now_ms();
        for e in events {
            match e {
                GroupEvent::Revoked(tps) => {
                    let dropped = st.sched.revoke(&tps);
                    if dropped > 0 {
                        debug!(dropped, "Dropped queued records of revoked partitions.");
                    }
                    for tp in &tps {
                        st.watch.revoked(tp);
                    }
                }
                GroupEvent::Assigned(tps) => {
                    st.assigned_once = true;
                    st.sched.assign(tps.iter().cloned());
                    for tp in &tps {
                        st.watch.assigned(tp, now);
                    }
                    self.restore_ledger(tps, restored_tx.clone());
                }
            }
        }
    }

    /// Reads the ledger of newly assigned partitions on a blocking thread;
    /// they flow once it is loaded (or could not be read: then at worst
    /// their uncommitted records are delivered again).
    fn restore_ledger(&self, tps: Vec<Tp>, done: mpsc::UnboundedSender<Vec<Tp>>) {
        let config = self.config.clone();
        let dest = self.deliverer.destination.clone();
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            match ledger::restore(&config, &dest, &tps) {
                Ok(found) => {
                    let n: usize = found.values().map(HashMap::len).sum();
                    let mut l = ledger.lock().expect("ledger lock");
                    for (partition, steps) in found {
                        l.load(partition, steps);
                    }
                    info!(
                        partitions = tps.len(),
                        entries = n,
                        took_ms = started.elapsed().as_millis() as u64,
                        "Ledger restored for assigned partitions."
                    );
                }
                Err(e) => {
                    warn!(error = %e, "Could not read the ledger; records in flight before this assignment may be delivered twice.")
                }
            }
            let _ = done.send(tps);
        });
    }

    /// The ledger of `tps` is loaded: takes in what was parked meanwhile.
    pub(super) fn on_restored(&self, st: &mut State, tps: &[Tp]) {
        for r in st.sched.restored(tps) {
            self.take_in(st, r);
        }
    }

    pub(super) fn on_record(&self, st: &mut State, m: OwnedMessage) {
        let tp = (m.topic().to_string(), m.partition());
        if !st.sched.is_assigned(&tp) {
            return; // Fetched before a revoke; the new owner reads it.
        }
        st.sched.received(&tp);
        st.watch.activity(&tp, now_ms());
        self.inject_stall(st, &tp);
        let r = Received::new(m, &self.config.router.identity);
        if st.sched.is_restoring(&tp) {
            // Whether it was delivered already is in the ledger being read.
            st.sched.park(tp, r);
        } else {
            self.take_in(st, r);
        }
    }

    /// A record whose partition's ledger is loaded: skipped if the ledger
    /// says it is done, otherwise queued (held until due for a tier).
    fn take_in(&self, st: &mut State, r: Received) {
        let d = &self.deliverer;
        let tp = (r.msg.topic().to_string(), r.msg.partition());
        if !st.sched.is_assigned(&tp) {
            return;
        }
        let now = now_ms();
        let written_at = r.msg.timestamp().to_millis().unwrap_or(now);
        let suppressed = r.delivery.is_ok()
            && self.ledger.lock().expect("ledger lock").suppresses(
                tp.1,
                &r.identity,
                r.attempts_made,
            );
        let mut offsets = d.offsets.lock().expect("offsets lock");
        if suppressed {
            // Delivered (or moved on to a later tier) before a crash or a
            // rebalance, and not committed then.
            offsets.start(&tp, r.msg.offset(), written_at);
            offsets.finish(&tp, r.msg.offset());
            d.metrics
                .redeliveries_suppressed
                .with_label_values(&[&d.destination])
                .inc();
            debug!(
                event_id = r.delivery.as_ref().map(|d| d.event.id.as_str()).unwrap_or_default(),
                destination = %d.destination,
                attempt = r.attempts_made + 1,
                trace_id = header_str(&r.msg, h::TRACEPARENT).and_then(herald_core::otel::trace_id_of),
                "Already delivered or moved on according to the ledger; skipped."
            );
            return;
        }
        let due = self.tiers.contains(&tp.0).then(|| {
            header_str(&r.msg, h::DUE_AT)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        });
        // A tier record is only late once it is due.
        offsets.start(&tp, r.msg.offset(), written_at.max(due.unwrap_or(0)));
        drop(offsets);
        let expiring = expiring(&self.expiry, &r, now, true).is_some();
        let held_before = st.sched.held_len();
        st.sched.push(Queued { tp, item: r }, due, expiring, now);
        let held = st.sched.held_len() - held_before;
        if held > 0 {
            d.metrics
                .waiting
                .with_label_values(&[&d.destination])
                .add(held as i64);
        }
    }

    /// Fault injection for tests (`HERALD_FAULT_STALL_PARTITION=topic:N`):
    /// once per process, stops fetching that partition behind the
    /// scheduler's back, as librdkafka does when it loses a partition's
    /// fetch start. Never set it in production. Fires only on a flowing
    /// partition: a pause while the ledger is read would be undone by the
    /// scheduler's own resume when the read ends (seen in CI).
    fn inject_stall(&self, st: &State, tp: &Tp) {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::OnceLock;
        static FIRED: AtomicBool = AtomicBool::new(false);
        // Read once: this runs for every record.
        static TARGET: OnceLock<Option<String>> = OnceLock::new();
        let target = TARGET.get_or_init(|| std::env::var("HERALD_FAULT_STALL_PARTITION").ok());
        let Some(target) = target else {
            return;
        };
        if FIRED.load(Ordering::Relaxed)
            || *target != format!("{}:{}", tp.0, tp.1)
            || !st.sched.is_flowing(tp)
            || FIRED.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition(&tp.0, tp.1);
        warn!(topic = %tp.0, partition = tp.1, "Fault injection: this partition stops being fetched.");
        if let Err(e) = self.consumer.pause(&tpl) {
            warn!(error = %e, "Fault injection failed.");
        }
    }

    /// Heals partitions the Kafka client stopped fetching (see `stall.rs`).
    /// Returns the partition when only a new consumer can help.
    pub(super) fn check_stalls(&self, st: &mut State) -> Option<Tp> {
        let lags = self.lag.snapshot();
        let heals = {
            let offsets = self.deliverer.offsets.lock().expect("offsets lock");
            let sched = &st.sched;
            st.watch.check(now_ms(), |tp| Observed {
                flowing: sched.is_flowing(tp),
                idle: offsets.idle(tp),
                next: offsets.next(tp),
                lag: lags.get(tp),
            })
        };
        let dest = self.deliverer.destination.as_str();
        let stalls = &self.deliverer.metrics.partition_stalls;
        for heal in heals {
            match heal {
                Heal::Seek { tp, offset } => {
                    warn!(topic = %tp.0, partition = tp.1, offset, "Partition stalled: assigned and flowing, but nothing fetched for 30 s while a record waits at the committed offset; seeking there.");
                    stalls.with_label_values(&[dest, "seek"]).inc();
                    let sought = tokio::task::block_in_place(|| {
                        self.consumer
                            .seek(&tp.0, tp.1, Offset::Offset(offset), SEEK_TIMEOUT)
                    });
                    if let Err(e) = sought {
                        warn!(topic = %tp.0, partition = tp.1, error = %e, "Seek failed; re-joining the group with a new consumer.");
                        stalls.with_label_values(&[dest, "rejoin"]).inc();
                        return Some(tp);
                    }
                }
                Heal::Rejoin { tp } => {
                    warn!(topic = %tp.0, partition = tp.1, "Partition stalled again after a seek; re-joining the group with a new consumer.");
                    stalls.with_label_values(&[dest, "rejoin"]).inc();
                    return Some(tp);
                }
            }
        }
        None
    }
}
