//! What the probe knows about a partition, and the pure decisions made
//! from it: retention headroom, time retention from topic configs, and
//! counting records retention deleted before the group consumed them.

use std::collections::HashMap;

/// One partition as the last tick saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionLag {
    /// The group's committed offset; `None` when it never committed here.
    pub committed: Option<i64>,
    pub low: i64,
    pub high: i64,
    /// Records left to consume: high minus where the group reads next (its
    /// committed offset, or the low watermark when that is later or there
    /// is no commit); 0 when only transaction markers or aborted records
    /// are left.
    pub lag_offsets: i64,
    /// Kafka timestamp (ms) of the next record to consume; `None` when
    /// caught up or not known yet.
    pub head_ts: Option<i64>,
    /// That record's `herald-due-at` (retry tiers): it is only late once due.
    pub head_due_ms: Option<i64>,
    /// Nothing left to consume.
    pub caught_up: bool,
    /// How late the next record is at the tick: now minus the later of its
    /// timestamp and due time; 0 when caught up or not known.
    pub age_ms: i64,
    /// The topic's time retention; `None` without one (or not read yet).
    pub retention_ms: Option<i64>,
    /// When the tick measured this partition (ms since the epoch).
    pub measured_at_ms: i64,
}

impl PartitionLag {
    /// Since when the next record has been late: the later of its
    /// timestamp and its due time; `None` when caught up or not known.
    pub fn waiting_since_ms(&self) -> Option<i64> {
        self.head_ts
            .map(|t| t.max(self.head_due_ms.unwrap_or(i64::MIN)))
    }

    /// How long until retention may delete the next record to consume, at
    /// `now_ms`: negative once it may already be gone.
    pub fn headroom_ms(&self, now_ms: i64) -> Option<i64> {
        let head = if self.caught_up { None } else { self.head_ts };
        self.retention_ms.map(|r| headroom_ms(r, head, now_ms))
    }
}

/// Retention headroom of a partition whose next record to consume was
/// written at `head_ts` (`None`: caught up). Kafka deletes a segment once its
/// newest record is older than retention, so no record is deleted before its
/// own timestamp plus retention: this is a lower bound on the time left.
pub fn headroom_ms(retention_ms: i64, head_ts: Option<i64>, now_ms: i64) -> i64 {
    retention_ms - head_ts.map_or(0, |t| (now_ms - t).max(0))
}

/// Time retention from a topic's `cleanup.policy` and `retention.ms`:
/// `None` for compact-only topics and for `retention.ms = -1`.
pub(super) fn time_retention(
    cleanup_policy: Option<&str>,
    retention_ms: Option<&str>,
) -> Option<i64> {
    let deletes = cleanup_policy.is_none_or(|p| p.split(',').any(|x| x.trim() == "delete"));
    let ms: i64 = retention_ms?.trim().parse().ok()?;
    (deletes && ms >= 0).then_some(ms)
}

/// What the reader found at a partition's read position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Head {
    /// Nothing to consume below `high`.
    CaughtUp { high: i64 },
    /// The first record at or after the position.
    Record { ts: i64, due: Option<i64> },
}

/// Counts records retention deleted before the group consumed them, once:
/// an episode starts when a partition's committed offset is first seen
/// below its low watermark and ends when it no longer is; within it only
/// offsets not counted yet are added as the low watermark moves on.
#[derive(Debug, Default)]
pub(super) struct LossTracker {
    /// (topic, partition) -> low watermark counted up to.
    episodes: HashMap<(String, i32), i64>,
}

#[derive(Debug, Default, PartialEq)]
pub(super) struct Loss {
    pub(super) expired: u64,
    pub(super) new_episode: bool,
}

impl LossTracker {
    pub(super) fn observe(
        &mut self,
        topic: &str,
        partition: i32,
        committed: Option<i64>,
        low: i64,
    ) -> Loss {
        let key = (topic.to_string(), partition);
        let Some(c) = committed.filter(|c| *c < low) else {
            self.episodes.remove(&key);
            return Loss::default();
        };
        match self.episodes.get_mut(&key) {
            Some(counted) => {
                let expired = (low - (*counted).max(c)).max(0) as u64;
                *counted = (*counted).max(low);
                Loss {
                    expired,
                    new_episode: false,
                }
            }
            None => {
                self.episodes.insert(key, low);
                Loss {
                    expired: (low - c) as u64,
                    new_episode: true,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headroom_is_retention_minus_the_age_of_the_next_record() {
        let now = 1_000_000;
        assert_eq!(headroom_ms(60_000, None, now), 60_000);
        assert_eq!(headroom_ms(60_000, Some(now - 45_000), now), 15_000);
        // Past retention (not deleted yet: segments go whole).
        assert_eq!(headroom_ms(60_000, Some(now - 70_000), now), -10_000);
        // A timestamp from a clock ahead of ours counts as new.
        assert_eq!(headroom_ms(60_000, Some(now + 5_000), now), 60_000);
        let lag = PartitionLag {
            committed: Some(3),
            low: 0,
            high: 10,
            lag_offsets: 7,
            head_ts: Some(now - 45_000),
            head_due_ms: None,
            caught_up: false,
            age_ms: 45_000,
            retention_ms: Some(60_000),
            measured_at_ms: now,
        };
        assert_eq!(lag.headroom_ms(now + 5_000), Some(10_000));
        let none = PartitionLag {
            retention_ms: None,
            ..lag.clone()
        };
        assert_eq!(none.headroom_ms(now), None);
        let caught_up = PartitionLag {
            caught_up: true,
            ..lag.clone()
        };
        assert_eq!(caught_up.headroom_ms(now), Some(60_000));
        // Late from its due time when that is later than its timestamp.
        let due = PartitionLag {
            head_due_ms: Some(now - 1_000),
            ..lag.clone()
        };
        assert_eq!(due.waiting_since_ms(), Some(now - 1_000));
        assert_eq!(lag.waiting_since_ms(), Some(now - 45_000));
    }

    #[test]
    fn time_retention_comes_from_policy_and_retention_ms() {
        assert_eq!(
            time_retention(Some("delete"), Some("604800000")),
            Some(604_800_000)
        );
        assert_eq!(time_retention(None, Some("1000")), Some(1000));
        assert_eq!(
            time_retention(Some("compact,delete"), Some("1000")),
            Some(1000)
        );
        assert_eq!(time_retention(Some("compact"), Some("1000")), None);
        assert_eq!(time_retention(Some("delete"), Some("-1")), None);
        assert_eq!(time_retention(Some("delete"), None), None);
    }

    #[test]
    fn a_loss_episode_is_counted_once() {
        let mut l = LossTracker::default();
        // Committed within the log: nothing lost.
        assert_eq!(l.observe("t", 0, Some(5), 5), Loss::default());
        // No commit: the group starts at the low watermark, loses nothing.
        assert_eq!(l.observe("t", 0, None, 50), Loss::default());
        // Retention passed the committed offset: 5..20 lost, one reset.
        let first = l.observe("t", 0, Some(5), 20);
        assert_eq!(
            first,
            Loss {
                expired: 15,
                new_episode: true
            }
        );
        // Same episode, nothing new.
        assert_eq!(l.observe("t", 0, Some(5), 20), Loss::default());
        // More deleted while still stuck: only the new ones.
        assert_eq!(
            l.observe("t", 0, Some(5), 26),
            Loss {
                expired: 6,
                new_episode: false
            }
        );
        // The committed offset moved but is still below: no second reset,
        // no double count.
        assert_eq!(l.observe("t", 0, Some(10), 26), Loss::default());
        // Other partitions are their own episodes.
        assert_eq!(
            l.observe("t", 1, Some(0), 3),
            Loss {
                expired: 3,
                new_episode: true
            }
        );
        // The consumer reset and committed: the episode ends; a later one
        // counts afresh.
        assert_eq!(l.observe("t", 0, Some(26), 26), Loss::default());
        assert_eq!(
            l.observe("t", 0, Some(30), 40),
            Loss {
                expired: 10,
                new_episode: true
            }
        );
    }
}
