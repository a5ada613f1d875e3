//! What the adapter does next, decided without I/O: which received records
//! are ready to attempt, which retry-tier records wait for their due time,
//! and which partitions must be paused for which reasons. The driver
//! (`driver.rs`) feeds it what Kafka and the delivery tasks report and
//! applies the pause/resume changes it returns.
//!
//! A partition is paused while it has any reason to be:
//! - `HELD`: a tier partition whose head record is not due yet (records of
//!   a tier are attempted in order, so everything behind the head waits);
//! - `CIRCUIT`: the destination's circuit is open — nothing is fetched, lag
//!   grows, no retry budget burns; the consumer is still polled (group
//!   liveness), it just gets nothing;
//! - `BACKPRESSURE`: the ready queue is full — fetching more would only
//!   fill memory;
//! - `RESTORING`: the ledger entries that describe this partition's
//!   uncommitted records are still being read (other partitions flow).
//!
//! Pausing is deferred until a partition has delivered its first record
//! in the assignment. librdkafka starts a partition's fetcher with an
//! asynchronous op guarded by a version barrier; a pause or resume issued
//! while that op is still queued can make it outdated, and the partition
//! then stays assigned and is never fetched (librdkafka issues #2190 and
//! #5591). A record from the partition proves its fetcher is running, so
//! from then on pause/resume are safe. Records that arrive while their
//! partition's ledger is still being read are parked and handed back by
//! [`Scheduler::restored`]. Revoked partitions are resumed by the revoke
//! callback, so no pause outlives an assignment inside librdkafka.

pub use crate::offsets::Tp;
use std::collections::{HashMap, HashSet, VecDeque};

pub const HELD: u8 = 1;
pub const CIRCUIT: u8 = 2;
pub const BACKPRESSURE: u8 = 4;
pub const RESTORING: u8 = 8;

/// One received record waiting to be attempted.
#[derive(Debug)]
pub struct Queued<M> {
    pub tp: Tp,
    pub item: M,
}

#[derive(Debug)]
pub struct Scheduler<M> {
    ready: VecDeque<Queued<M>>,
    /// Tier records not yet due, per partition, in offset order.
    held: HashMap<Tp, VecDeque<(i64, Queued<M>)>>,
    /// Pause reasons of every assigned partition.
    reasons: HashMap<Tp, u8>,
    /// What was last applied to the consumer (`true` = paused); absent for
    /// partitions whose state is unknown (just assigned).
    applied: HashMap<Tp, bool>,
    circuit_open: bool,
    /// Partitions allowed to flow while the circuit is open, because their
    /// head record is about to expire (see `drain_for_expiry`).
    draining: HashSet<Tp>,
    /// Partitions that delivered a record in this assignment: only these
    /// are paused or resumed (see the module notes).
    fetching: HashSet<Tp>,
    /// Records received while their partition's ledger was being read.
    parked: HashMap<Tp, Vec<M>>,
    /// Ready records at which intake pauses (resumes at half).
    ready_cap: usize,
}

impl<M> Scheduler<M> {
    pub fn new(ready_cap: usize) -> Self {
        Self {
            ready: VecDeque::new(),
            held: HashMap::new(),
            reasons: HashMap::new(),
            applied: HashMap::new(),
            circuit_open: false,
            draining: HashSet::new(),
            fetching: HashSet::new(),
            parked: HashMap::new(),
            ready_cap: ready_cap.max(1),
        }
    }

    /// Partitions were assigned: their ledger is being restored, and they
    /// follow the circuit.
    pub fn assign(&mut self, tps: impl IntoIterator<Item = Tp>) {
        for tp in tps {
            let mut r = RESTORING;
            if self.circuit_open {
                r |= CIRCUIT;
            }
            self.reasons.insert(tp.clone(), r);
            // Not paused inside librdkafka: the revoke resumed it, or it is
            // new to this consumer.
            self.applied.insert(tp.clone(), false);
            self.fetching.remove(&tp);
            self.parked.remove(&tp);
        }
    }

    /// Partitions were revoked: nothing more is started for them. Returns
    /// how many queued records were dropped (their offsets stay uncommitted,
    /// so the new owner reads them).
    pub fn revoke(&mut self, tps: &[Tp]) -> usize {
        let gone: HashSet<&Tp> = tps.iter().collect();
        let before = self.ready.len();
        self.ready.retain(|q| !gone.contains(&q.tp));
        let mut dropped = before - self.ready.len();
        for tp in tps {
            dropped += self.held.remove(tp).map_or(0, |q| q.len());
            dropped += self.parked.remove(tp).map_or(0, |p| p.len());
            self.reasons.remove(tp);
            self.applied.remove(tp);
            self.draining.remove(tp);
            self.fetching.remove(tp);
        }
        dropped
    }

    /// The ledger of these partitions is loaded: their records may flow.
    /// Returns the records parked meanwhile, in the order received, for the
    /// caller to take in as if they had just arrived.
    pub fn restored(&mut self, tps: &[Tp]) -> Vec<M> {
        let mut out = Vec::new();
        for tp in tps {
            if let Some(r) = self.reasons.get_mut(tp) {
                *r &= !RESTORING;
            }
            out.extend(self.parked.remove(tp).unwrap_or_default());
        }
        out
    }

    /// A record of `tp` was received: its fetcher runs, so its pause state
    /// may now be applied.
    pub fn received(&mut self, tp: &Tp) {
        if self.reasons.contains_key(tp) && !self.fetching.contains(tp) {
            self.fetching.insert(tp.clone());
        }
    }

    /// Whether `tp`'s ledger is still being read (its records must be
    /// parked, not attempted).
    pub fn is_restoring(&self, tp: &Tp) -> bool {
        self.reasons.get(tp).is_some_and(|r| r & RESTORING != 0)
    }

    /// Keeps a record of a restoring partition until [`Self::restored`].
    pub fn park(&mut self, tp: Tp, item: M) {
        self.parked.entry(tp).or_default().push(item);
    }

    /// Whether `tp` is assigned and nothing holds it back.
    pub fn is_flowing(&self, tp: &Tp) -> bool {
        self.reasons.get(tp) == Some(&0)
    }

    pub fn is_assigned(&self, tp: &Tp) -> bool {
        self.reasons.contains_key(tp)
    }

    /// The circuit opened or closed (a half-open circuit lets records flow
    /// for its probe, so it counts as closed here).
    pub fn set_circuit(&mut self, open: bool) {
        self.circuit_open = open;
        self.draining.clear();
        for r in self.reasons.values_mut() {
            if open {
                *r |= CIRCUIT;
            } else {
                *r &= !CIRCUIT;
            }
        }
    }

    /// While the circuit is open, lets `tp` flow so that records about to
    /// outlive their budget or the topic's retention can be dead-lettered
    /// as expired instead of being deleted unseen. Ends at the first record
    /// of the partition that is not expiring ([`Self::push`] with
    /// `expiring = false`).
    pub fn drain_for_expiry(&mut self, tp: &Tp) {
        if self.circuit_open && self.reasons.contains_key(tp) {
            self.draining.insert(tp.clone());
            if let Some(r) = self.reasons.get_mut(tp) {
                *r &= !CIRCUIT;
            }
        }
    }

    /// A received record. `due` is a tier record's due time (ms); it is held
    /// while not due, or while earlier records of its partition are held.
    /// `expiring` says it is past its budget or near retention (it is
    /// settled at once, ahead of the circuit).
    pub fn push(&mut self, q: Queued<M>, due: Option<i64>, expiring: bool, now: i64) {
        let tp = q.tp.clone();
        if self.draining.contains(&tp) && !expiring {
            // Drained what was about to expire; the circuit holds the rest.
            self.draining.remove(&tp);
            if let Some(r) = self.reasons.get_mut(&tp) {
                *r |= CIRCUIT;
            }
        }
        let holding = self.held.get(&tp).is_some_and(|h| !h.is_empty());
        match due {
            Some(due) if !expiring && (holding || due > now) => {
                self.held.entry(tp.clone()).or_default().push_back((due, q));
                if let Some(r) = self.reasons.get_mut(&tp) {
                    *r |= HELD;
                }
            }
            _ => {
                self.ready.push_back(q);
                if self.ready.len() >= self.ready_cap {
                    if let Some(r) = self.reasons.get_mut(&tp) {
                        *r |= BACKPRESSURE;
                    }
                }
            }
        }
    }

    /// Moves due tier records to the ready queue. Returns how many moved.
    pub fn release_due(&mut self, now: i64) -> usize {
        let mut moved = 0;
        let mut emptied = Vec::new();
        for (tp, q) in self.held.iter_mut() {
            while q.front().is_some_and(|(due, _)| *due <= now) {
                let (_, item) = q.pop_front().expect("front exists");
                self.ready.push_back(item);
                moved += 1;
            }
            if q.is_empty() {
                emptied.push(tp.clone());
            }
        }
        for tp in emptied {
            self.held.remove(&tp);
            if let Some(r) = self.reasons.get_mut(&tp) {
                *r &= !HELD;
            }
        }
        moved
    }

    /// When the next held record is due.
    pub fn next_due(&self) -> Option<i64> {
        self.held
            .values()
            .filter_map(|q| q.front().map(|(due, _)| *due))
            .min()
    }

    /// Held records in all.
    pub fn held_len(&self) -> usize {
        self.held.values().map(VecDeque::len).sum()
    }

    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// The next ready record whose partition is still assigned.
    pub fn pop_ready(&mut self) -> Option<Queued<M>> {
        let q = self.ready.pop_front()?;
        self.relieve();
        Some(q)
    }

    /// Lifts back-pressure once the ready queue is down to half its cap.
    fn relieve(&mut self) {
        if self.ready.len() <= self.ready_cap / 2 {
            for r in self.reasons.values_mut() {
                *r &= !BACKPRESSURE;
            }
        }
    }

    /// Removes and returns the ready records `settle_now` picks (expired
    /// ones, settled without an attempt even while the circuit is open).
    pub fn take_ready_where(&mut self, mut settle_now: impl FnMut(&M) -> bool) -> Vec<Queued<M>> {
        let mut out = Vec::new();
        let mut keep = VecDeque::with_capacity(self.ready.len());
        for q in self.ready.drain(..) {
            if settle_now(&q.item) {
                out.push(q);
            } else {
                keep.push_back(q);
            }
        }
        self.ready = keep;
        self.relieve();
        out
    }

    /// Pause (`true`) or resume (`false`) calls needed to bring the consumer
    /// to the decided state. Marks them applied. Partitions that have not
    /// delivered a record yet are left alone (see the module notes).
    pub fn pause_changes(&mut self) -> Vec<(Tp, bool)> {
        let mut out = Vec::new();
        for (tp, r) in &self.reasons {
            if !self.fetching.contains(tp) {
                continue;
            }
            let want = *r != 0;
            if self.applied.get(tp) != Some(&want) {
                out.push((tp.clone(), want));
                self.applied.insert(tp.clone(), want);
            }
        }
        out.sort();
        out
    }

    /// Forgets that a change was applied (the call failed), so it is
    /// returned again by the next [`Self::pause_changes`].
    pub fn unapplied(&mut self, tp: &Tp) {
        self.applied.remove(tp);
    }

    /// Pause reasons of `tp` (0 = flowing).
    #[cfg(test)]
    pub fn reasons(&self, tp: &Tp) -> Option<u8> {
        self.reasons.get(tp).copied()
    }
}

#[cfg(test)]
mod tests;
