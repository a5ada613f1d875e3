//! Which offsets are safe to commit. Deliveries finish out of order; a
//! partition's commit point is its lowest unfinished offset, so a crash
//! re-delivers what was in flight and never skips it. The record at the
//! commit point is also the one the lag in seconds is measured by.

use std::collections::{BTreeMap, HashMap};

/// A topic-partition.
pub type Tp = (String, i32);

#[derive(Debug, Default)]
struct Track {
    /// Unfinished offsets -> since when each could be processed (ms).
    pending: BTreeMap<i64, i64>,
    /// One past the highest offset seen.
    next: i64,
    /// Last commit point requested (or -1).
    committed: i64,
    /// Last commit point the broker confirmed (or -1).
    confirmed: i64,
    /// Delivery tasks running for this partition.
    running: usize,
}

#[derive(Debug, Default)]
pub struct OffsetTracker {
    parts: HashMap<Tp, Track>,
}

impl OffsetTracker {
    /// A record was received and is now unfinished; it could be processed
    /// from `ready_at` (ms since the epoch) on.
    pub fn start(&mut self, tp: &Tp, offset: i64, ready_at: i64) {
        let t = self.parts.entry(tp.clone()).or_insert_with(|| Track {
            committed: -1,
            confirmed: -1,
            ..Track::default()
        });
        t.pending.insert(offset, ready_at);
        t.next = t.next.max(offset + 1);
    }

    /// A delivery task started for a record of `tp`.
    pub fn begin(&mut self, tp: &Tp) {
        if let Some(t) = self.parts.get_mut(tp) {
            t.running += 1;
        }
    }

    /// A record's outcome is durable. Unknown partitions (revoked since) are
    /// ignored.
    pub fn finish(&mut self, tp: &Tp, offset: i64) {
        if let Some(t) = self.parts.get_mut(tp) {
            t.pending.remove(&offset);
            t.running = t.running.saturating_sub(1);
        }
    }

    /// A task gave up on a record (the adapter is stopping): it stays
    /// unfinished, so its offset is never committed past.
    pub fn abandon(&mut self, tp: &Tp, _offset: i64) {
        if let Some(t) = self.parts.get_mut(tp) {
            t.running = t.running.saturating_sub(1);
        }
    }

    /// Delivery tasks still running for any of `tps`.
    pub fn running(&self, tps: &[Tp]) -> usize {
        tps.iter()
            .filter_map(|tp| self.parts.get(tp))
            .map(|t| t.running)
            .sum()
    }

    /// The broker answered an offset commit: on success the point is
    /// confirmed; on failure the partition's point is asked for again by
    /// the next [`Self::take_commits`] (unless a later commit moved it).
    pub fn commit_result(&mut self, tp: &Tp, offset: i64, ok: bool) {
        if let Some(t) = self.parts.get_mut(tp) {
            if ok {
                t.confirmed = t.confirmed.max(offset);
            } else if t.committed == offset {
                t.committed = t.confirmed;
            }
        }
    }

    /// Offsets to commit now: for each partition whose commit point moved,
    /// the point (the next offset to read after a restart). Marks them
    /// committed.
    pub fn take_commits(&mut self) -> Vec<(Tp, i64)> {
        let mut out = Vec::new();
        for (tp, t) in &mut self.parts {
            let point = t.pending.keys().next().copied().unwrap_or(t.next);
            if point > t.committed {
                t.committed = point;
                out.push((tp.clone(), point));
            }
        }
        out
    }

    /// Forgets partitions that were revoked, returning their final commit
    /// points (where they moved since the last confirmed commit).
    pub fn revoke(&mut self, tps: &[Tp]) -> Vec<(Tp, i64)> {
        let mut out = Vec::new();
        for tp in tps {
            if let Some(t) = self.parts.remove(tp) {
                let point = t.pending.keys().next().copied().unwrap_or(t.next);
                if point > t.confirmed {
                    out.push((tp.clone(), point));
                }
            }
        }
        out
    }

    /// Per partition, since when the record at its commit point (the lowest
    /// unfinished offset) has been waiting; `None` when nothing is unfinished.
    pub fn oldest(&self) -> Vec<(&Tp, Option<i64>)> {
        self.parts
            .iter()
            .map(|(tp, t)| (tp, t.pending.values().next().copied()))
            .collect()
    }

    /// Whether no received record of `tp` is unfinished.
    pub fn idle(&self, tp: &Tp) -> bool {
        self.parts.get(tp).is_none_or(|t| t.pending.is_empty())
    }

    /// One past the highest offset received from `tp`, if any.
    pub fn next(&self, tp: &Tp) -> Option<i64> {
        self.parts.get(tp).map(|t| t.next)
    }

    /// Unfinished records across all partitions.
    pub fn unfinished(&self) -> usize {
        self.parts.values().map(|t| t.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> Tp {
        ("t".into(), 0)
    }

    #[test]
    fn commits_only_below_the_lowest_unfinished() {
        let mut o = OffsetTracker::default();
        for off in 10..15 {
            o.start(&tp(), off, 1000 + off);
        }
        assert_eq!(o.take_commits(), vec![(tp(), 10)]);
        assert_eq!(o.oldest(), vec![(&tp(), Some(1010))]);
        o.finish(&tp(), 12);
        o.finish(&tp(), 13);
        assert_eq!(o.take_commits(), vec![]);
        o.finish(&tp(), 10);
        assert_eq!(o.take_commits(), vec![(tp(), 11)]);
        o.finish(&tp(), 11);
        o.finish(&tp(), 14);
        assert_eq!(o.take_commits(), vec![(tp(), 15)]);
        assert_eq!(o.unfinished(), 0);
        assert_eq!(o.oldest(), vec![(&tp(), None)]);
    }

    #[test]
    fn revoke_forgets_and_reports_final_point() {
        let mut o = OffsetTracker::default();
        o.start(&tp(), 0, 0);
        o.start(&tp(), 1, 0);
        o.finish(&tp(), 0);
        assert_eq!(o.revoke(&[tp()]), vec![(tp(), 1)]);
        o.finish(&tp(), 1);
        assert_eq!(o.take_commits(), vec![]);
    }

    #[test]
    fn a_failed_commit_is_asked_for_again() {
        let mut o = OffsetTracker::default();
        o.start(&tp(), 0, 0);
        o.finish(&tp(), 0);
        assert_eq!(o.take_commits(), vec![(tp(), 1)]);
        assert_eq!(o.take_commits(), vec![], "in flight: not asked twice");
        o.commit_result(&tp(), 1, false);
        assert_eq!(o.take_commits(), vec![(tp(), 1)], "retried after failure");
        o.commit_result(&tp(), 1, true);
        assert_eq!(o.take_commits(), vec![]);
        // A revoke re-commits anything not confirmed.
        o.start(&tp(), 1, 0);
        o.finish(&tp(), 1);
        assert_eq!(o.take_commits(), vec![(tp(), 2)]);
        assert_eq!(o.revoke(&[tp()]), vec![(tp(), 2)]);
    }

    #[test]
    fn running_tasks_are_counted_per_partition() {
        let mut o = OffsetTracker::default();
        o.start(&tp(), 0, 0);
        o.start(&tp(), 1, 0);
        o.begin(&tp());
        o.begin(&tp());
        assert_eq!(o.running(&[tp()]), 2);
        o.finish(&tp(), 0);
        o.abandon(&tp(), 1);
        assert_eq!(o.running(&[tp()]), 0);
        assert_eq!(
            o.take_commits(),
            vec![(tp(), 1)],
            "abandoned stays unfinished"
        );
    }
}
