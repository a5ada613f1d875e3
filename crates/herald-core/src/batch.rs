//! When a router transaction's batch closes.
//!
//! A batch closes as soon as the input has nothing more ready (a poll that
//! returns nothing), or at `batch_max_records`, or `batch_max_wait` after
//! its first record, whichever comes first. At ordinary rates an event
//! therefore waits only for the records already in the consumer's queue,
//! not for a timer; under load the queue refills while a transaction
//! commits, so batches grow by themselves and the commit's fixed cost is
//! shared by many records. The raw transactional copy in `herald-bench`
//! batches by the same rule, so their ratio compares like with like.

use std::time::{Duration, Instant};

/// How long a poll waits for the first record of a batch before the loop
/// goes round (to check for a stop, the broker, the consumer's health).
pub const IDLE_POLL: Duration = Duration::from_millis(200);

/// What the batch loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Poll for at most this long; a poll that returns nothing closes the
    /// batch.
    Poll(Duration),
    /// The batch is full or old enough: close it.
    Close,
}

/// The state of one batch being filled.
#[derive(Debug, Clone)]
pub struct BatchWindow {
    max_records: usize,
    max_wait: Duration,
    len: usize,
    deadline: Option<Instant>,
}

impl BatchWindow {
    pub fn new(max_records: usize, max_wait: Duration) -> Self {
        Self {
            max_records: max_records.max(1),
            max_wait,
            len: 0,
            deadline: None,
        }
    }

    /// A record was added to the batch at `now`.
    pub fn took(&mut self, now: Instant) {
        self.len += 1;
        self.deadline.get_or_insert(now + self.max_wait);
    }

    /// What to do next, at `now`.
    pub fn next(&self, now: Instant) -> Step {
        match self.deadline {
            None => Step::Poll(IDLE_POLL),
            Some(_) if self.len >= self.max_records => Step::Close,
            Some(d) if now >= d => Step::Close,
            // Only what is ready already: never wait for more.
            Some(_) => Step::Poll(Duration::ZERO),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_batch_waits_for_its_first_record() {
        let w = BatchWindow::new(10, Duration::from_millis(100));
        assert_eq!(w.next(Instant::now()), Step::Poll(IDLE_POLL));
    }

    #[test]
    fn after_the_first_record_only_ready_records_are_taken() {
        let t0 = Instant::now();
        let mut w = BatchWindow::new(10, Duration::from_millis(100));
        w.took(t0);
        assert_eq!(w.next(t0), Step::Poll(Duration::ZERO));
        assert_eq!(
            w.next(t0 + Duration::from_millis(99)),
            Step::Poll(Duration::ZERO)
        );
    }

    #[test]
    fn a_full_batch_closes() {
        let t0 = Instant::now();
        let mut w = BatchWindow::new(3, Duration::from_secs(10));
        for _ in 0..3 {
            assert_ne!(w.next(t0), Step::Close);
            w.took(t0);
        }
        assert_eq!(w.next(t0), Step::Close);
    }

    #[test]
    fn max_wait_bounds_a_batch_that_never_runs_dry() {
        let t0 = Instant::now();
        let mut w = BatchWindow::new(1_000_000, Duration::from_millis(100));
        w.took(t0);
        // Later records do not move the deadline.
        w.took(t0 + Duration::from_millis(60));
        assert_eq!(w.next(t0 + Duration::from_millis(100)), Step::Close);
    }

    #[test]
    fn zero_max_records_is_treated_as_one() {
        let t0 = Instant::now();
        let mut w = BatchWindow::new(0, Duration::from_secs(1));
        w.took(t0);
        assert_eq!(w.next(t0), Step::Close);
    }
}
