//! The adapter's loop: polls Kafka at all times (an open circuit or a full
//! queue pauses partitions, it never stops the poll), feeds the scheduler,
//! starts delivery tasks as the circuit breaker, the rate limit and the
//! concurrency limit allow, commits offsets below the lowest unfinished
//! record, and stops gracefully.

mod intake;

use crate::circuit::{self, Breaker};
use crate::committer::Committer;
use crate::concurrency::{self, Adaptive};
use crate::consumer::{commit_list, AdapterContext, GroupEvent};
use crate::delivery::{self, Deliverer, Received, Slot, SlotReport, Work};
use crate::expiry::ExpiryRule;
use crate::ledger::Ledger;
use crate::offsets::Tp;
use crate::scheduler::{Queued, Scheduler};
use crate::stall::{StallWatch, STALL_AFTER};
use herald_core::admin::Readiness;
use herald_core::config::{Config, DestinationConfig};
use herald_core::lagprobe::LagView;
use herald_core::ratelimit::TokenBucket;
use herald_core::time::now_ms;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::TopicPartitionList;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// How many deliveries may have finished their HTTP attempt but not yet
/// made the outcome durable. The concurrency limit bounds only the HTTP
/// attempts (it protects the destination); the outcome writes wait for
/// Kafka acknowledgements, and holding a concurrency slot through them
/// capped throughput. This bound keeps memory in check if Kafka slows.
const OUTCOMES_IN_FLIGHT: usize = 1024;

/// What the loop needs besides the consumer.
pub struct Driver<'a> {
    pub config: &'a Config,
    pub dc: &'a DestinationConfig,
    pub consumer: &'a StreamConsumer<AdapterContext>,
    /// Commits offsets on its own thread and reports their results.
    pub committer: Committer,
    pub deliverer: Arc<Deliverer>,
    pub ledger: Arc<Mutex<Ledger>>,
    pub events: Arc<Mutex<Vec<GroupEvent>>>,
    /// Notified when a group event is pushed.
    pub wake: Arc<tokio::sync::Notify>,
    pub tiers: HashSet<String>,
    pub ready: Readiness,
    pub expiry: ExpiryRule,
    /// The lag probe's measurements: the record at the group's committed
    /// position per partition, and each topic's retention.
    pub lag: LagView,
}

/// Why the loop ended.
pub enum Exit {
    /// SIGTERM or SIGINT: the process stops.
    Shutdown,
    /// The consumer can never work again; a new one must take over.
    Fatal(rdkafka::error::KafkaError),
    /// The consumer stopped fetching this partition and a seek did not
    /// help; a new one must take over.
    Stalled(Tp),
}

struct State {
    sched: Scheduler<Received>,
    breaker: Breaker,
    adaptive: Adaptive,
    bucket: Option<TokenBucket>,
    in_flight: usize,
    pending: usize,
    assigned_once: bool,
    /// When the ready queue was last scanned for expired records.
    expiry_scanned_at: i64,
    /// When the loop's state was last logged (DEBUG).
    state_logged_at: i64,
    watch: StallWatch,
}

impl Driver<'_> {
    pub async fn run(mut self) -> anyhow::Result<Exit> {
        let dc = self.dc;
        let d = self.deliverer.clone();
        let dest = d.destination.clone();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
        let (slot_tx, mut slot_rx) = mpsc::unbounded_channel::<SlotReport>();
        let (restored_tx, mut restored_rx) = mpsc::unbounded_channel::<Vec<Tp>>();
        let mut st = State {
            // Back-pressure is a memory bound, not a pacing tool: every pause
            // drops what librdkafka fetched for the partition, and the resume
            // waits for the next fetch round trip.
            sched: Scheduler::new((dc.concurrency * 64).max(1024)),
            breaker: Breaker::new(
                dc.circuit.failure_threshold,
                dc.circuit.cooldown,
                dc.circuit.max_cooldown,
            ),
            adaptive: Adaptive::new(dc.concurrency, dc.adaptive_concurrency),
            bucket: dc.rate_limit.as_ref().map(|rl| rl.bucket(now_ms())),
            in_flight: 0,
            pending: 0,
            assigned_once: false,
            expiry_scanned_at: 0,
            state_logged_at: 0,
            watch: StallWatch::new(STALL_AFTER),
        };
        let mut commit_tick = tokio::time::interval(self.config.adapter.commit_interval);
        commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = herald_core::signal::shutdown();
        tokio::pin!(shutdown);
        let mut fatal = None;
        let mut stalled = None;

        loop {
            self.apply_group_events(&mut st, &restored_tx);
            self.ready.set(st.assigned_once);
            self.settle_expired(&mut st, &done_tx);
            let rate_wait = self.start_ready(&mut st, &done_tx, &slot_tx);
            self.apply_pauses(&mut st);
            d.metrics
                .in_flight
                .with_label_values(&[&dest])
                .set(st.in_flight as i64);
            let next_due = st.sched.next_due();
            let open_until = match st.breaker.state() {
                circuit::State::Open { until } => Some(until),
                _ => None,
            };
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                Some(report) = slot_rx.recv() => self.on_slot(&mut st, report),
                Some(()) = done_rx.recv() => st.pending -= 1,
                Some(tps) = restored_rx.recv() => self.on_restored(&mut st, &tps),
                _ = self.wake.notified() => {} // group events: applied at the top

                _ = sleep_until_ms(open_until), if open_until.is_some() => {
                    if st.breaker.tick(now_ms()) {
                        self.circuit_changed(&mut st);
                    }
                }
                _ = tokio::time::sleep(rate_wait.unwrap_or_default()), if rate_wait.is_some() => {}
                _ = commit_tick.tick() => {
                    if now_ms() - st.state_logged_at >= 5_000 {
                        st.state_logged_at = now_ms();
                        debug!(ready = st.sched.ready_len(), held = st.sched.held_len(), in_flight = st.in_flight, outcomes_pending = st.pending, circuit = ?st.breaker.state(), limit = st.adaptive.limit(), "Adapter loop state.");
                    }
                    self.commit();
                    self.drain_expiring(&mut st);
                    if let Some(tp) = self.check_stalls(&mut st) {
                        stalled = Some(tp);
                        break;
                    }
                }
                _ = sleep_until_ms(next_due), if next_due.is_some() => {
                    let n = st.sched.release_due(now_ms());
                    d.metrics.waiting.with_label_values(&[&dest]).sub(n as i64);
                }
                // Always polled: group liveness never depends on our state.
                msg = self.consumer.recv() => match msg {
                    Ok(m) => {
                        // The assign callback may have run inside this very
                        // recv(): know the partition before taking its record.
                        self.apply_group_events(&mut st, &restored_tx);
                        self.on_record(&mut st, m.detach());
                    }
                    Err(e) if is_fatal(&e) => {
                        // E.g. fenced: the group gave this group.instance.id
                        // to a new member id (seen after a broker restart),
                        // or two adapters share one. Finish what runs; the
                        // caller starts a fresh consumer.
                        tracing::error!(error = %e, "Fatal consumer error; starting a new consumer (if it repeats, two adapters share one adapter.instance_id).");
                        fatal = Some(e);
                        break;
                    }
                    Err(e) => warn!(error = %e, "Consumer error."),
                }
            }
        }
        self.stop(&mut st, &mut done_rx).await;
        Ok(match (fatal, stalled) {
            (Some(e), _) => Exit::Fatal(e),
            (None, Some(tp)) => Exit::Stalled(tp),
            (None, None) => Exit::Shutdown,
        })
    }

    /// Dead-letters ready records that expired, whatever the circuit says.
    fn settle_expired(&self, st: &mut State, done: &mpsc::UnboundedSender<()>) {
        let now = now_ms();
        // Budgets are minutes to days: a scan every 100 ms is plenty while
        // deliveries flow; with the circuit open, settling is all there is.
        let open = matches!(st.breaker.state(), circuit::State::Open { .. });
        if st.sched.ready_len() == 0 || (!open && now - st.expiry_scanned_at < 100) {
            return;
        }
        st.expiry_scanned_at = now;
        // Near retention only matters while nothing can be attempted: with
        // the circuit closed a received record is attempted soon, and its
        // outcome (delivered, or a fresh retry record) is safe from
        // retention. After an outage the backlog is delivered, not
        // dead-lettered. A spent age budget ends the delivery either way.
        let guard = open;
        let expiry = &self.expiry;
        let expired = st
            .sched
            .take_ready_where(|r| expiring(expiry, r, now, guard).is_some());
        for Queued { item, .. } in expired {
            let why = expiring(expiry, &item, now, guard).unwrap_or_default();
            self.spawn(st, item, Work::Expire(why), done);
        }
    }

    /// Starts what is ready while the breaker, the rate limit and the
    /// concurrency limit allow. Returns how long to wait for a rate token.
    fn start_ready(
        &self,
        st: &mut State,
        done: &mpsc::UnboundedSender<()>,
        slots: &mpsc::UnboundedSender<SlotReport>,
    ) -> Option<Duration> {
        let d = &self.deliverer;
        while st.in_flight < st.breaker.allowed_in_flight(st.adaptive.limit())
            && st.pending < OUTCOMES_IN_FLIGHT
            && st.sched.ready_len() > 0
        {
            if let Some(b) = st.bucket.as_mut() {
                if !b.try_take(now_ms()) {
                    d.metrics
                        .rate_limit_waits
                        .with_label_values(&[&d.destination])
                        .inc();
                    return Some(b.wait(now_ms()).max(Duration::from_millis(1)));
                }
            }
            let q = st.sched.pop_ready().expect("not empty");
            st.breaker.on_start();
            let saturated = st.in_flight + 1 >= st.adaptive.limit();
            self.spawn(
                st,
                q.item,
                Work::Attempt(Slot::new(slots.clone(), saturated)),
                done,
            );
            st.in_flight += 1;
        }
        None
    }

    fn spawn(&self, st: &mut State, r: Received, work: Work, done: &mpsc::UnboundedSender<()>) {
        let tp = (r.msg.topic().to_string(), r.msg.partition());
        self.deliverer
            .offsets
            .lock()
            .expect("offsets lock")
            .begin(&tp);
        st.pending += 1;
        delivery::spawn(self.deliverer.clone(), r, work, done.clone());
    }

    fn apply_pauses(&self, st: &mut State) {
        for (tp, pause) in st.sched.pause_changes() {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&tp.0, tp.1);
            let r = if pause {
                self.consumer.pause(&tpl)
            } else {
                self.consumer.resume(&tpl)
            };
            match r {
                Ok(()) => {
                    debug!(topic = %tp.0, partition = tp.1, pause, "Partition paused/resumed.")
                }
                Err(e) => {
                    warn!(topic = %tp.0, partition = tp.1, pause, error = %e, "Could not pause/resume a partition; trying again.");
                    st.sched.unapplied(&tp);
                }
            }
        }
    }

    fn on_slot(&self, st: &mut State, report: SlotReport) {
        let d = &self.deliverer;
        st.in_flight -= 1;
        if st.breaker.on_outcome(report.health, now_ms()).is_some() {
            self.circuit_changed(st);
        }
        let signal = match report.health {
            circuit::Health::Up => concurrency::Signal::Ok,
            circuit::Health::Down => concurrency::Signal::BackPressure,
            circuit::Health::Neutral => concurrency::Signal::None,
        };
        if st
            .adaptive
            .observe(signal, report.latency, report.saturated)
        {
            d.metrics
                .concurrency_limit
                .with_label_values(&[&d.destination])
                .set(st.adaptive.limit() as i64);
        }
    }

    /// A circuit transition: open pauses every partition (nothing is
    /// attempted, lag grows, no budget burns); half-open lets records flow
    /// for the probe; closed resumes all.
    fn circuit_changed(&self, st: &mut State) {
        let d = &self.deliverer;
        let dest = d.destination.as_str();
        let state = st.breaker.state();
        d.metrics
            .circuit_state
            .with_label_values(&[dest])
            .set(state.gauge());
        match state {
            circuit::State::Open { until } => {
                warn!(
                    destination = dest,
                    retry_in_ms = until - now_ms(),
                    "Circuit opened: the destination keeps failing; pausing deliveries."
                );
                st.sched.set_circuit(true);
            }
            circuit::State::HalfOpen { .. } => {
                info!(
                    destination = dest,
                    "Circuit half-open: sending one probe delivery."
                );
                st.sched.set_circuit(false);
            }
            circuit::State::Closed => {
                info!(
                    destination = dest,
                    "Circuit closed: the destination recovered."
                );
                st.sched.set_circuit(false);
            }
        }
    }

    /// Takes the topics' retention from the lag probe and, while the
    /// circuit is open, lets partitions whose committed record is close to
    /// expiring flow so that record can be dead-lettered.
    fn drain_expiring(&mut self, st: &mut State) {
        let lags = self.lag.snapshot();
        for ((topic, _), l) in &lags {
            if let Some(r) = l.retention_ms {
                self.expiry.set_retention(topic, r);
            }
        }
        if !matches!(st.breaker.state(), circuit::State::Open { .. }) {
            return;
        }
        let now = now_ms();
        for (tp, l) in lags {
            let Some(head) = l.head_ts.filter(|_| !l.caught_up) else {
                continue;
            };
            let age = now - head;
            if st.sched.is_assigned(&tp) && self.expiry.head_expiring(&tp.0, age) {
                info!(topic = %tp.0, partition = tp.1, age_s = age / 1000, "Circuit open, but records are about to expire: draining them to the DLQ.");
                st.sched.drain_for_expiry(&tp);
            }
        }
    }

    fn commit(&self) {
        let commits = self
            .deliverer
            .offsets
            .lock()
            .expect("offsets lock")
            .take_commits();
        self.committer.send(commits);
    }

    /// Graceful stop: nothing new starts; in-flight work gets the grace period.
    async fn stop(&mut self, st: &mut State, done_rx: &mut mpsc::UnboundedReceiver<()>) {
        let grace = self.config.adapter.shutdown_grace;
        info!(in_flight = st.pending, grace = ?grace, "Shutting down: finishing in-flight deliveries.");
        let deadline = tokio::time::Instant::now() + grace;
        while st.pending > 0 {
            match tokio::time::timeout_at(deadline, done_rx.recv()).await {
                Ok(Some(())) => st.pending -= 1,
                _ => {
                    warn!(in_flight = st.pending, "Grace period over; abandoning in-flight deliveries (they will be re-delivered).");
                    break;
                }
            }
        }
        self.deliverer
            .writer
            .stopping
            .store(true, std::sync::atomic::Ordering::Release);
        // A commit still in flight either lands or is asked for again below.
        let committer = &mut self.committer;
        if !tokio::task::block_in_place(|| committer.finish(Duration::from_secs(10))) {
            warn!("An offset commit is still waiting for the broker.");
        }
        let (commits, unfinished) = {
            let mut o = self.deliverer.offsets.lock().expect("offsets lock");
            (o.take_commits(), o.unfinished())
        };
        info!(
            unfinished,
            "Committing finished offsets; unfinished records will be re-delivered to the next owner."
        );
        if let Err(e) = commit_list(self.consumer, &commits, CommitMode::Sync) {
            warn!(error = %e, "Final offset commit failed; finished records may be re-delivered.");
        }
    }
}

/// Errors after which this consumer can never work again.
fn is_fatal(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::{Fatal, FencedInstanceId};
    matches!(e.rdkafka_error_code(), Some(Fatal | FencedInstanceId))
}

/// Why `r` must be dead-lettered as expired now, if it must.
/// (`retention_guard`: also when it waited so long that retention may soon
/// delete it; otherwise only a spent age budget counts.)
fn expiring(rule: &ExpiryRule, r: &Received, now: i64, retention_guard: bool) -> Option<String> {
    let d = r.delivery.as_ref().ok()?;
    let ts = r.msg.timestamp().to_millis().unwrap_or(now);
    if retention_guard {
        rule.why(r.msg.topic(), ts, d.routed_at, now)
    } else {
        rule.budget_spent(d.routed_at, now)
    }
}

async fn sleep_until_ms(due: Option<i64>) {
    let wait = due.map(|d| d - now_ms()).unwrap_or(0).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
}
