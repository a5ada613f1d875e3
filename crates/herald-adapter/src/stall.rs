//! Partitions that are assigned and flowing but no longer fetched.
//!
//! librdkafka can leave a partition assigned with its fetcher never started
//! or stuck (its start op outdated by a concurrent pause or resume,
//! librdkafka #2190 and #5591; an offset reset whose answer is dropped).
//! Nothing reports it: the partition simply never yields a record again and
//! its events wait until retention deletes them. The scheduler avoids the
//! known trigger, and this watch is the guarantee behind it: a partition
//! that the driver lets flow, with nothing of it unfinished, that has not
//! delivered a record for [`STALL_AFTER`] although the lag probe read a
//! record waiting at the group's committed offset, is stalled. The driver
//! seeks it to that offset (librdkafka's documented workaround); a second
//! stall soon after, or a failed seek, makes it re-join the group with a
//! fresh consumer. Decisions only; the driver does the I/O.

use crate::offsets::Tp;
use herald_core::lagprobe::PartitionLag;
use std::collections::HashMap;
use std::time::Duration;

/// How long a flowing partition with a record waiting may stay silent.
pub const STALL_AFTER: Duration = Duration::from_secs(30);

/// A partition stalled again within this many [`STALL_AFTER`]s of being
/// healed by a seek: seeking did not help, so the consumer is replaced.
const REPEAT_WINDOW: i64 = 10;

/// What the driver knows about one assigned partition now.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed<'a> {
    /// The scheduler lets it flow (no pause reason).
    pub flowing: bool,
    /// No received record of it is unfinished.
    pub idle: bool,
    /// One past the highest offset received from it, if any.
    pub next: Option<i64>,
    /// The lag probe's last measurement of it.
    pub lag: Option<&'a PartitionLag>,
}

/// What to do about a stalled partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heal {
    /// Seek to the group's committed offset.
    Seek { tp: Tp, offset: i64 },
    /// Seeking did not help: re-join the group with a fresh consumer.
    Rejoin { tp: Tp },
}

#[derive(Debug)]
struct Watch {
    /// Since when it has been flowing, idle and silent.
    quiet_since: i64,
    last_heal: Option<i64>,
}

#[derive(Debug)]
pub struct StallWatch {
    after_ms: i64,
    parts: HashMap<Tp, Watch>,
}

impl StallWatch {
    pub fn new(after: Duration) -> Self {
        Self {
            after_ms: after.as_millis() as i64,
            parts: HashMap::new(),
        }
    }

    pub fn assigned(&mut self, tp: &Tp, now: i64) {
        self.parts.insert(
            tp.clone(),
            Watch {
                quiet_since: now,
                last_heal: None,
            },
        );
    }

    pub fn revoked(&mut self, tp: &Tp) {
        self.parts.remove(tp);
    }

    /// A record of `tp` was received.
    pub fn activity(&mut self, tp: &Tp, now: i64) {
        if let Some(w) = self.parts.get_mut(tp) {
            w.quiet_since = now;
        }
    }

    /// The partitions that are stalled now, and what to do about each.
    pub fn check<'a>(&mut self, now: i64, observe: impl Fn(&Tp) -> Observed<'a>) -> Vec<Heal> {
        let mut out = Vec::new();
        for (tp, w) in &mut self.parts {
            let o = observe(tp);
            if !o.flowing || !o.idle {
                // Held back on purpose, or busy with what it fetched.
                w.quiet_since = now;
                continue;
            }
            if now - w.quiet_since < self.after_ms {
                continue;
            }
            let Some(lag) = o.lag else { continue };
            // The probe must have looked well after the partition fell
            // silent (so finished records' commits have landed), and seen a
            // record there.
            if lag.measured_at_ms < w.quiet_since + self.after_ms / 2
                || lag.caught_up
                || lag.head_ts.is_none()
            {
                continue;
            }
            let committed = lag.committed.unwrap_or(lag.low).max(lag.low);
            if o.next.is_some_and(|next| committed < next) {
                // The broker has not taken our commit: not a fetch stall.
                continue;
            }
            let repeated = w
                .last_heal
                .is_some_and(|t| now - t < REPEAT_WINDOW * self.after_ms);
            out.push(if repeated {
                Heal::Rejoin { tp: tp.clone() }
            } else {
                Heal::Seek {
                    tp: tp.clone(),
                    offset: committed,
                }
            });
            w.last_heal = Some(now);
            w.quiet_since = now;
        }
        out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: i64 = 30_000;

    fn tp(p: i32) -> Tp {
        ("d".to_string(), p)
    }

    fn waiting(committed: i64, measured_at_ms: i64) -> PartitionLag {
        PartitionLag {
            committed: Some(committed),
            low: 0,
            high: committed + 3,
            lag_offsets: 3,
            head_ts: Some(1),
            head_due_ms: None,
            caught_up: false,
            age_ms: 0,
            retention_ms: None,
            measured_at_ms,
        }
    }

    fn watch() -> StallWatch {
        let mut w = StallWatch::new(Duration::from_millis(AFTER as u64));
        w.assigned(&tp(0), 0);
        w
    }

    fn flowing(lag: &PartitionLag) -> Observed<'_> {
        Observed {
            flowing: true,
            idle: true,
            next: Some(5),
            lag: Some(lag),
        }
    }

    #[test]
    fn a_silent_flowing_partition_with_a_record_waiting_is_sought_then_replaced() {
        let mut w = watch();
        let lag = waiting(5, 20_000);
        assert!(w.check(29_999, |_| flowing(&lag)).is_empty(), "not yet");
        assert_eq!(
            w.check(30_000, |_| flowing(&lag)),
            [Heal::Seek {
                tp: tp(0),
                offset: 5
            }]
        );
        // Silent again after the seek, with a newer measurement.
        let lag = waiting(5, 50_000);
        assert!(w.check(59_999, |_| flowing(&lag)).is_empty());
        assert_eq!(
            w.check(60_000, |_| flowing(&lag)),
            [Heal::Rejoin { tp: tp(0) }]
        );
    }

    #[test]
    fn held_busy_or_active_partitions_are_not_stalled() {
        let lag = waiting(5, 40_000);
        let mut w = watch();
        let paused = |_: &Tp| Observed {
            flowing: false,
            ..flowing(&lag)
        };
        assert!(w.check(60_000, paused).is_empty());
        assert!(w.check(60_001, |_| flowing(&lag)).is_empty(), "clock reset");

        let mut w = watch();
        let busy = |_: &Tp| Observed {
            idle: false,
            ..flowing(&lag)
        };
        assert!(w.check(60_000, busy).is_empty());

        let mut w = watch();
        w.activity(&tp(0), 45_000);
        assert!(w.check(60_000, |_| flowing(&lag)).is_empty());
    }

    #[test]
    fn only_a_recent_probe_that_saw_a_record_counts() {
        let mut w = watch();
        let stale = waiting(5, 10_000); // before the silence was half over
        assert!(w.check(40_000, |_| flowing(&stale)).is_empty());
        let caught_up = PartitionLag {
            caught_up: true,
            head_ts: None,
            ..waiting(5, 39_000)
        };
        assert!(w.check(40_000, |_| flowing(&caught_up)).is_empty());
        assert!(w
            .check(40_000, |_| Observed {
                lag: None,
                ..flowing(&caught_up)
            })
            .is_empty());
    }

    #[test]
    fn a_commit_the_broker_has_not_taken_is_not_a_fetch_stall() {
        let mut w = watch();
        let lag = waiting(3, 39_000); // we finished up to 5
        assert!(w.check(40_000, |_| flowing(&lag)).is_empty());
    }

    #[test]
    fn no_commit_yet_seeks_to_the_low_watermark() {
        let mut w = watch();
        let lag = PartitionLag {
            committed: None,
            low: 2,
            ..waiting(0, 39_000)
        };
        let o = |_: &Tp| Observed {
            next: None,
            ..flowing(&lag)
        };
        assert_eq!(
            w.check(40_000, o),
            [Heal::Seek {
                tp: tp(0),
                offset: 2
            }]
        );
        w.revoked(&tp(0));
        assert!(w.check(400_000, o).is_empty(), "forgotten when revoked");
    }
}
