//! The retry ladder: which tier a failed delivery goes to next, when it is
//! due, and when the budget is spent.

use rand::Rng;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Tier delays, strictly increasing.
    pub tiers: Vec<Duration>,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The age budget, counted from when the event was routed (see
    /// [`RetryPolicy::next`]): no retry is scheduled past it.
    pub max_age: Duration,
    /// Each delay is stretched by a uniform random fraction in `[0, jitter)`.
    pub jitter: f64,
}

/// Where a retryable failure goes next.
#[derive(Debug, Clone, PartialEq)]
pub enum NextStep {
    Retry {
        tier: usize,
        /// The tier's nominal delay (names its topic).
        delay: Duration,
        /// When the next attempt is due, ms since the epoch (jitter included).
        /// Usually the tier's delay from now; later when a `Retry-After`
        /// asked for more than the largest tier (the record then waits on
        /// the last tier until this time).
        due_at: i64,
    },
    /// Attempts or age budget spent.
    Exhausted,
}

impl RetryPolicy {
    /// Decides the next step after `attempts_made` attempts (this one
    /// included).
    ///
    /// `age_origin` is where the age budget starts, ms since the epoch: the
    /// time the event was routed ([`crate::envelope::Delivery::age_origin`]),
    /// not its first attempt, so an event held back by an open circuit or a
    /// paused partition before any attempt still runs out of budget.
    ///
    /// `Retry-After` moves the delivery to the first tier whose delay covers
    /// it (never to an earlier tier than the ladder would pick). When no tier
    /// covers it, the delivery goes to the last tier but is due only after
    /// the full `Retry-After`: it is never tried early. Either way, a retry
    /// that could not be due within the age budget is not scheduled.
    pub fn next(
        &self,
        attempts_made: u32,
        age_origin: i64,
        now: i64,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> NextStep {
        let budget_end = age_origin.saturating_add(millis(self.max_age));
        if attempts_made >= self.max_attempts || now > budget_end {
            return NextStep::Exhausted;
        }
        let last = self.tiers.len() - 1;
        let ladder = (attempts_made.max(1) as usize - 1).min(last);
        let tier = match retry_after {
            Some(ra) => (ladder..=last)
                .find(|&i| self.tiers[i] >= ra)
                .unwrap_or(last),
            None => ladder,
        };
        let delay = self.tiers[tier];
        // What the destination asked for, when it is more than the tier's.
        let wait = match retry_after {
            Some(ra) if ra > delay => {
                if now.saturating_add(millis(ra)) > budget_end {
                    return NextStep::Exhausted;
                }
                ra
            }
            _ => delay,
        };
        let stretch = if self.jitter > 0.0 {
            rng.random_range(0.0..self.jitter)
        } else {
            0.0
        };
        let due_in = millis(wait) as f64 * (1.0 + stretch);
        NextStep::Retry {
            tier,
            delay,
            due_at: now.saturating_add(due_in as i64),
        }
    }

    /// The tier index whose topic carries `delay`, if any.
    pub fn tier_of(&self, delay: Duration) -> Option<usize> {
        self.tiers.iter().position(|d| *d == delay)
    }
}

/// A duration in ms, saturating (a `Retry-After` can be absurdly large).
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            tiers: [30, 120, 900, 3600].map(Duration::from_secs).to_vec(),
            max_attempts: 5,
            max_age: Duration::from_secs(86_400),
            jitter: 0.0,
        }
    }

    fn tier(p: &RetryPolicy, attempts: u32, ra: Option<u64>) -> Option<usize> {
        let mut rng = StdRng::seed_from_u64(1);
        match p.next(attempts, 0, 1000, ra.map(Duration::from_secs), &mut rng) {
            NextStep::Retry { tier, .. } => Some(tier),
            NextStep::Exhausted => None,
        }
    }

    #[test]
    fn ladder_climbs_then_exhausts() {
        let p = policy();
        assert_eq!(tier(&p, 1, None), Some(0));
        assert_eq!(tier(&p, 2, None), Some(1));
        assert_eq!(tier(&p, 3, None), Some(2));
        assert_eq!(tier(&p, 4, None), Some(3));
        assert_eq!(tier(&p, 5, None), None);
    }

    #[test]
    fn extra_attempts_stay_on_the_last_tier() {
        let p = RetryPolicy {
            max_attempts: 10,
            ..policy()
        };
        assert_eq!(tier(&p, 7, None), Some(3));
    }

    #[test]
    fn retry_after_picks_the_covering_tier() {
        let p = policy();
        assert_eq!(tier(&p, 1, Some(10)), Some(0));
        assert_eq!(tier(&p, 1, Some(30)), Some(0));
        assert_eq!(tier(&p, 1, Some(31)), Some(1));
        assert_eq!(tier(&p, 1, Some(600)), Some(2));
        assert_eq!(tier(&p, 1, Some(7200)), Some(3));
        // Never earlier than the ladder's own tier.
        assert_eq!(tier(&p, 3, Some(1)), Some(2));
    }

    #[test]
    fn age_budget() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(1);
        let now = 90_000_000;
        assert_eq!(p.next(1, 0, now, None, &mut rng), NextStep::Exhausted);
    }

    /// The budget counts from routing: an event routed long ago (held by an
    /// open circuit, say) is exhausted at its first failure, however recent
    /// that failure is.
    #[test]
    fn age_budget_counts_from_the_age_origin() {
        let p = policy(); // max_age 24h
        let mut rng = StdRng::seed_from_u64(1);
        let day = 86_400_000;
        let routed_at = 1_000;
        let now = routed_at + day + 1;
        assert_eq!(
            p.next(1, routed_at, now, None, &mut rng),
            NextStep::Exhausted
        );
        assert!(matches!(
            p.next(1, routed_at, routed_at + day, None, &mut rng),
            NextStep::Retry { tier: 0, .. }
        ));
    }

    /// A `Retry-After` longer than the largest tier keeps the record on the
    /// last tier but due only when the destination asked: never early.
    #[test]
    fn long_retry_after_is_honoured_on_the_last_tier() {
        let p = policy(); // last tier 1h, max_age 24h
        let mut rng = StdRng::seed_from_u64(1);
        let now = 10_000;
        let two_hours = Duration::from_secs(7200);
        assert_eq!(
            p.next(1, 0, now, Some(two_hours), &mut rng),
            NextStep::Retry {
                tier: 3,
                delay: Duration::from_secs(3600),
                due_at: now + 7_200_000,
            }
        );
        // With jitter it only gets later.
        let jittery = RetryPolicy {
            jitter: 0.5,
            ..policy()
        };
        for _ in 0..50 {
            let NextStep::Retry { tier, due_at, .. } =
                jittery.next(1, 0, now, Some(two_hours), &mut rng)
            else {
                panic!()
            };
            assert_eq!(tier, 3);
            assert!(
                (now + 7_200_000..now + 10_800_000).contains(&due_at),
                "{due_at}"
            );
        }
        // Covered by a tier: the tier's own delay, as before.
        let NextStep::Retry { due_at, .. } =
            p.next(1, 0, now, Some(Duration::from_secs(60)), &mut rng)
        else {
            panic!()
        };
        assert_eq!(due_at, now + 120_000);
    }

    /// A `Retry-After` that reaches past the age budget exhausts the
    /// delivery now rather than scheduling a retry that cannot happen.
    #[test]
    fn retry_after_past_the_age_budget_exhausts() {
        let p = policy(); // max_age 24h
        let mut rng = StdRng::seed_from_u64(1);
        let day = Duration::from_secs(86_400);
        assert_eq!(
            p.next(1, 0, 1_000, Some(day), &mut rng),
            NextStep::Exhausted
        );
        assert_eq!(
            p.next(1, 0, 1_000, Some(Duration::from_secs(u64::MAX)), &mut rng),
            NextStep::Exhausted
        );
        assert!(matches!(
            p.next(1, 0, 1_000, Some(day - Duration::from_secs(1)), &mut rng),
            NextStep::Retry { tier: 3, .. }
        ));
    }

    #[test]
    fn jitter_only_stretches_within_bounds() {
        let p = RetryPolicy {
            jitter: 0.1,
            ..policy()
        };
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let NextStep::Retry { due_at, .. } = p.next(1, 0, 0, None, &mut rng) else {
                panic!()
            };
            assert!((30_000..33_000).contains(&due_at), "{due_at}");
            seen.insert(due_at);
        }
        assert!(seen.len() > 50, "jitter should spread due times");
    }
}
