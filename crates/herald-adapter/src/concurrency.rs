//! Adaptive concurrency: how many deliveries may be in flight, adjusted to
//! what the destination can take. Additive increase (one more slot per
//! limit's worth of successes, and only while the limit is actually reached
//! and latency is normal); multiplicative decrease (×0.9) on back-pressure —
//! timeouts, connection errors, 429 and 5xx — or when a response takes more
//! than twice the smoothed latency. The configured `concurrency` is the
//! ceiling; the floor is one.

use std::time::Duration;

/// Smoothing of the latency average.
const ALPHA: f64 = 0.1;
/// Responses slower than this multiple of the average count as back-pressure.
const SPIKE: f64 = 2.0;
/// Samples before latency spikes are judged.
const WARMUP: u32 = 20;
const DECREASE: f64 = 0.9;

#[derive(Debug, Clone)]
pub struct Adaptive {
    limit: f64,
    max: f64,
    rtt: f64,
    samples: u32,
    enabled: bool,
}

/// What one finished delivery says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Answered without back-pressure.
    Ok,
    /// Timeout, connection error, 429 or 5xx.
    BackPressure,
    /// Nothing to learn (a 4xx, a poison record, a skipped duplicate).
    None,
}

impl Adaptive {
    /// Starts at the ceiling, so a healthy destination is never slowed.
    pub fn new(max: usize, enabled: bool) -> Self {
        Self {
            limit: max as f64,
            max: max as f64,
            rtt: 0.0,
            samples: 0,
            enabled,
        }
    }

    /// Deliveries allowed in flight now.
    pub fn limit(&self) -> usize {
        if self.enabled {
            (self.limit.floor() as usize).max(1)
        } else {
            self.max as usize
        }
    }

    /// Learns from one finished delivery; `saturated` says whether the limit
    /// was reached when it started. Returns whether the limit changed.
    pub fn observe(&mut self, signal: Signal, latency: Duration, saturated: bool) -> bool {
        if !self.enabled {
            return false;
        }
        let before = self.limit();
        let secs = latency.as_secs_f64();
        match signal {
            Signal::None => {}
            Signal::BackPressure => self.limit = (self.limit * DECREASE).max(1.0),
            Signal::Ok => {
                let spike = self.samples >= WARMUP && secs > self.rtt * SPIKE;
                self.rtt = if self.samples == 0 {
                    secs
                } else {
                    self.rtt + ALPHA * (secs - self.rtt)
                };
                self.samples = self.samples.saturating_add(1);
                if spike {
                    self.limit = (self.limit * DECREASE).max(1.0);
                } else if saturated {
                    self.limit = (self.limit + 1.0 / self.limit).min(self.max);
                }
            }
        }
        self.limit() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(10);

    #[test]
    fn backs_off_multiplicatively_and_recovers_additively() {
        let mut a = Adaptive::new(64, true);
        assert_eq!(a.limit(), 64);
        for _ in 0..10 {
            a.observe(Signal::BackPressure, MS, true);
        }
        assert_eq!(a.limit(), 22, "64 × 0.9^10");
        // Recovery needs the limit to be reached: idle successes teach nothing.
        for _ in 0..100 {
            a.observe(Signal::Ok, MS, false);
        }
        assert_eq!(a.limit(), 22);
        for _ in 0..22 {
            a.observe(Signal::Ok, MS, true);
        }
        assert_eq!(
            a.limit(),
            23,
            "one more slot per limit's worth of successes"
        );
        for _ in 0..10_000 {
            a.observe(Signal::Ok, MS, true);
        }
        assert_eq!(a.limit(), 64, "capped at the configured concurrency");
    }

    #[test]
    fn latency_spikes_count_as_back_pressure_after_warmup() {
        let mut a = Adaptive::new(10, true);
        for _ in 0..WARMUP {
            a.observe(Signal::Ok, MS, true);
        }
        assert!(a.observe(Signal::Ok, Duration::from_millis(100), true));
        assert_eq!(a.limit(), 9);
    }

    #[test]
    fn never_below_one_and_off_means_fixed() {
        let mut a = Adaptive::new(4, true);
        for _ in 0..100 {
            a.observe(Signal::BackPressure, MS, true);
        }
        assert_eq!(a.limit(), 1);
        let mut off = Adaptive::new(4, false);
        off.observe(Signal::BackPressure, MS, true);
        assert_eq!(off.limit(), 4);
    }
}
