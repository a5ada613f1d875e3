//! Duplicate suppression at the router. Producers retry, and a retried
//! produce can land twice; within the configured window the second copy of
//! an event is dropped before it fans out.
//!
//! An event's identity is `herald_core::identity` of its configured identity
//! fields (CloudEvents `source` + `id` by default). State is per input partition —
//! producers key by entity, so copies of one event share a partition — and
//! is backed by a compacted changelog topic written in the router's
//! transaction, one changelog partition per input partition, and read back
//! when a partition is assigned. Marks made by a batch are staged and only
//! applied once its transaction commits, so an aborted batch re-routes
//! exactly as before.

pub use herald_core::identity::{key, parse_key, Identity};
use std::collections::{HashMap, VecDeque};

#[derive(Default)]
struct Partition {
    seen: HashMap<Identity, i64>,
    /// (seen_at, identity) in insertion order, for expiry.
    order: VecDeque<(i64, Identity)>,
}

/// Committed dedupe state of the partitions this router owns.
pub struct Dedupe {
    window_ms: i64,
    max_entries: usize,
    parts: HashMap<i32, Partition>,
    /// Marks of the open batch: (partition, identity, seen_at).
    staged: Vec<(i32, Identity, i64)>,
}

impl Dedupe {
    pub fn new(window: std::time::Duration, max_entries: usize) -> Self {
        Self {
            window_ms: window.as_millis() as i64,
            max_entries: max_entries.max(1),
            parts: HashMap::new(),
            staged: Vec::new(),
        }
    }

    /// Whether `id` was seen on `partition` within the window (committed or
    /// earlier in this batch). If not, stages it.
    pub fn check(&mut self, partition: i32, id: Identity, now: i64) -> bool {
        let committed = self
            .parts
            .get(&partition)
            .and_then(|p| p.seen.get(&id))
            .is_some_and(|at| now - at <= self.window_ms);
        if committed
            || self
                .staged
                .iter()
                .any(|(p, i, _)| *p == partition && *i == id)
        {
            return true;
        }
        self.staged.push((partition, id, now));
        false
    }

    /// The batch committed: its marks become state.
    pub fn commit(&mut self) {
        for (p, id, at) in std::mem::take(&mut self.staged) {
            self.insert(p, id, at);
        }
    }

    /// The batch aborted: forget its marks.
    pub fn abort(&mut self) {
        self.staged.clear();
    }

    /// Restores one mark read from the changelog.
    pub fn insert(&mut self, partition: i32, id: Identity, at: i64) {
        let part = self.parts.entry(partition).or_default();
        if part.seen.insert(id, at).is_none() {
            part.order.push_back((at, id));
        }
    }

    /// Drops marks older than the window and, beyond `max_entries` in all,
    /// the oldest marks. Returns how many were dropped early for space.
    pub fn evict(&mut self, now: i64) -> usize {
        let total: usize = self.parts.values().map(|p| p.seen.len()).sum();
        let per_part_cap = self.max_entries / self.parts.len().max(1);
        let mut dropped_for_space = 0;
        for part in self.parts.values_mut() {
            while let Some(&(at, id)) = part.order.front() {
                let expired = now - at > self.window_ms;
                let over = total > self.max_entries && part.seen.len() > per_part_cap;
                if !expired && !over {
                    break;
                }
                part.order.pop_front();
                // A re-inserted identity keeps its newest time.
                if part.seen.get(&id) == Some(&at) {
                    part.seen.remove(&id);
                    if !expired {
                        dropped_for_space += 1;
                    }
                }
            }
        }
        dropped_for_space
    }

    pub fn forget_partition(&mut self, partition: i32) {
        self.parts.remove(&partition);
        self.staged.retain(|(p, _, _)| *p != partition);
    }

    pub fn entries(&self) -> usize {
        self.parts.values().map(|p| p.seen.len()).sum()
    }

    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn staged_marks_apply_only_on_commit() {
        let mut d = Dedupe::new(Duration::from_secs(60), 100);
        assert!(!d.check(0, 1, 0));
        assert!(d.check(0, 1, 0), "second copy in the same batch");
        assert!(!d.check(1, 1, 0), "other partition is independent");
        d.abort();
        assert!(!d.check(0, 1, 0), "aborted batch left no mark");
        d.commit();
        assert!(d.check(0, 1, 10));
        assert!(!d.check(0, 1, 70_001), "outside the window");
    }

    #[test]
    fn eviction_by_age_and_space() {
        let mut d = Dedupe::new(Duration::from_secs(10), 3);
        for i in 0..5 {
            d.insert(0, i, i as i64 * 1000);
        }
        assert_eq!(d.evict(5_000), 2, "two oldest dropped for space");
        assert_eq!(d.entries(), 3);
        assert_eq!(d.evict(100_000), 0);
        assert_eq!(d.entries(), 0);
    }
}
