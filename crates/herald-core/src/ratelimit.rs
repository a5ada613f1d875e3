//! A token bucket: requests per second to one destination per adapter
//! process (SaaS APIs publish such limits; staying under them is cheaper
//! than collecting 429s), and requests per second from one inbound source
//! per gateway process.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last_ms: i64,
}

impl TokenBucket {
    /// `rate` tokens per second, at most `burst` saved up; starts full.
    pub fn new(rate: f64, burst: u32, now_ms: i64) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate,
            burst,
            tokens: burst,
            last_ms: now_ms,
        }
    }

    fn refill(&mut self, now_ms: i64) {
        let elapsed = (now_ms - self.last_ms).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last_ms = now_ms;
    }

    /// Takes a token if one is there.
    pub fn try_take(&mut self, now_ms: i64) -> bool {
        self.refill(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until a token is there.
    pub fn wait(&mut self, now_ms: i64) -> Duration {
        self.refill(now_ms);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let mut b = TokenBucket::new(10.0, 3, 0);
        assert!(b.try_take(0) && b.try_take(0) && b.try_take(0));
        assert!(!b.try_take(0));
        assert_eq!(b.wait(0), Duration::from_millis(100));
        assert!(!b.try_take(99));
        assert!(b.try_take(100));
        // One second refills ten, capped at the burst of three.
        let taken = (0..10).filter(|_| b.try_take(1_100)).count();
        assert_eq!(taken, 3);
    }
}
