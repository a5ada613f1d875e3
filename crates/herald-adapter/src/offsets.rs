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
    /// Last offset committed (or -1).
    committed: i64,
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
            ..Track::default()
        });
        t.pending.insert(offset, ready_at);
        t.next = t.next.max(offset + 1);
    }

    /// A record's outcome is durable. Unknown partitions (revoked since) are
    /// ignored.
    pub fn finish(&mut self, tp: &Tp, offset: i64) {
        if let Some(t) = self.parts.get_mut(tp) {
            t.pending.remove(&offset);
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
    /// points (where they moved).
    pub fn revoke(&mut self, tps: &[Tp]) -> Vec<(Tp, i64)> {
        let mut out = Vec::new();
        for tp in tps {
            if let Some(t) = self.parts.remove(tp) {
                let point = t.pending.keys().next().copied().unwrap_or(t.next);
                if point > t.committed {
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
}
