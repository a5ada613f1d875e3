//! The circuit breaker: when a destination is down, stop sending it work
//! instead of burning every delivery's retry budget into the DLQ. While the
//! circuit is open the adapter pauses its partitions (lag grows, nothing is
//! attempted); after a cool-down one probe delivery is let through, and its
//! outcome closes the circuit or re-opens it with a longer cool-down.
//!
//! Only failures that say "the destination is unwell" count: timeouts,
//! connection errors, 429 and 5xx. A 4xx is the event's problem, not the
//! destination's, and successes reset the count.

use std::time::Duration;

/// Circuit states, with the gauge values `herald_adapter_circuit_state` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    /// Cooling down until the given time (ms since the epoch).
    Open {
        until: i64,
    },
    /// One probe delivery is in flight or may start.
    HalfOpen {
        probing: bool,
    },
}

impl State {
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen { .. } => 1,
            Self::Open { .. } => 2,
        }
    }
}

/// What a finished attempt says about the destination's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The destination answered 2xx.
    Up,
    /// Timeout, connection error, 429 or 5xx.
    Down,
    /// Anything else (a 4xx, a poison record): says nothing about health.
    Neutral,
}

#[derive(Debug, Clone)]
pub struct Breaker {
    state: State,
    consecutive_failures: u32,
    threshold: u32,
    base_cooldown: Duration,
    max_cooldown: Duration,
    cooldown: Duration,
}

impl Breaker {
    /// Opens after `threshold` consecutive `Down` outcomes; 0 disables.
    pub fn new(threshold: u32, cooldown: Duration, max_cooldown: Duration) -> Self {
        Self {
            state: State::Closed,
            consecutive_failures: 0,
            threshold,
            base_cooldown: cooldown,
            max_cooldown: max_cooldown.max(cooldown),
            cooldown,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Moves an open circuit whose cool-down is over to half-open. Returns
    /// whether the state changed.
    pub fn tick(&mut self, now: i64) -> bool {
        if let State::Open { until } = self.state {
            if now >= until {
                self.state = State::HalfOpen { probing: false };
                return true;
            }
        }
        false
    }

    /// How many deliveries may be in flight now, given the configured limit.
    pub fn allowed_in_flight(&self, limit: usize) -> usize {
        match self.state {
            State::Closed => limit,
            State::HalfOpen { probing: false } => 1,
            State::HalfOpen { probing: true } | State::Open { .. } => 0,
        }
    }

    /// A delivery is starting.
    pub fn on_start(&mut self) {
        if let State::HalfOpen { probing } = &mut self.state {
            *probing = true;
        }
    }

    /// Records an outcome. Returns the new state when it changed.
    pub fn on_outcome(&mut self, health: Health, now: i64) -> Option<State> {
        let before = self.state;
        match (health, self.state) {
            (Health::Neutral, State::HalfOpen { .. }) => {
                // The probe told us nothing; let another one through.
                self.state = State::HalfOpen { probing: false };
            }
            (Health::Neutral, _) => {}
            (Health::Up, _) => {
                self.consecutive_failures = 0;
                self.cooldown = self.base_cooldown;
                self.state = State::Closed;
            }
            (Health::Down, State::HalfOpen { .. }) => {
                self.cooldown = (self.cooldown * 2).min(self.max_cooldown);
                self.state = State::Open {
                    until: now + self.cooldown.as_millis() as i64,
                };
            }
            (Health::Down, State::Closed) => {
                self.consecutive_failures += 1;
                if self.threshold > 0 && self.consecutive_failures >= self.threshold {
                    self.state = State::Open {
                        until: now + self.cooldown.as_millis() as i64,
                    };
                }
            }
            // Stragglers that were in flight when the circuit opened.
            (Health::Down, State::Open { .. }) => {}
        }
        (self.state != before).then_some(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(3, Duration::from_secs(10), Duration::from_secs(40))
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let mut b = breaker();
        b.on_outcome(Health::Down, 0);
        b.on_outcome(Health::Down, 0);
        b.on_outcome(Health::Up, 0);
        b.on_outcome(Health::Down, 0);
        b.on_outcome(Health::Neutral, 0);
        b.on_outcome(Health::Down, 0);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(
            b.on_outcome(Health::Down, 5),
            Some(State::Open { until: 10_005 })
        );
        assert_eq!(b.allowed_in_flight(16), 0);
    }

    #[test]
    fn probes_after_cooldown_and_backs_off() {
        let mut b = breaker();
        for _ in 0..3 {
            b.on_outcome(Health::Down, 0);
        }
        assert!(!b.tick(9_999));
        assert!(b.tick(10_000));
        assert_eq!(b.allowed_in_flight(16), 1);
        b.on_start();
        assert_eq!(b.allowed_in_flight(16), 0, "one probe at a time");
        // Probe fails: open again for twice as long.
        assert_eq!(
            b.on_outcome(Health::Down, 10_000),
            Some(State::Open { until: 30_000 })
        );
        b.tick(30_000);
        b.on_start();
        b.on_outcome(Health::Down, 30_000);
        b.tick(70_000);
        b.on_start();
        // Capped at max_cooldown (40 s).
        assert_eq!(
            b.on_outcome(Health::Down, 70_000),
            Some(State::Open { until: 110_000 })
        );
        b.tick(110_000);
        b.on_start();
        assert_eq!(b.on_outcome(Health::Up, 110_000), Some(State::Closed));
        assert_eq!(b.allowed_in_flight(16), 16);
    }

    #[test]
    fn zero_threshold_never_opens() {
        let mut b = Breaker::new(0, Duration::from_secs(1), Duration::from_secs(1));
        for _ in 0..1000 {
            b.on_outcome(Health::Down, 0);
        }
        assert_eq!(b.state(), State::Closed);
    }
}
