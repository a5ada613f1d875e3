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
    /// No retry once the first attempt is older than this.
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
        due_at: i64,
    },
    /// Attempts or age budget spent.
    Exhausted,
}

impl RetryPolicy {
    /// Decides the next step after `attempts_made` attempts (this one
    /// included) of a delivery first attempted at `first_attempt_at`.
    /// `Retry-After` moves the delivery to the first tier whose delay covers
    /// it (never to an earlier tier than the ladder would pick); when none
    /// covers it, the last tier.
    pub fn next(
        &self,
        attempts_made: u32,
        first_attempt_at: i64,
        now: i64,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> NextStep {
        if attempts_made >= self.max_attempts
            || now.saturating_sub(first_attempt_at) > self.max_age.as_millis() as i64
        {
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
        let stretch = if self.jitter > 0.0 {
            rng.random_range(0.0..self.jitter)
        } else {
            0.0
        };
        let due_in = delay.as_millis() as f64 * (1.0 + stretch);
        NextStep::Retry {
            tier,
            delay,
            due_at: now + due_in as i64,
        }
    }

    /// The tier index whose topic carries `delay`, if any.
    pub fn tier_of(&self, delay: Duration) -> Option<usize> {
        self.tiers.iter().position(|d| *d == delay)
    }
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
