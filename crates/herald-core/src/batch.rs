//! When a router transaction's batch closes.
//!
//! A batch closes as soon as the input has nothing more ready (a poll that
//! returns nothing) once `batch_linger` has passed since its first record
//! (0 by default), or at `batch_max_records`, or `batch_max_wait` after its
//! first record, whichever comes first. At ordinary rates an event
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
    linger: Duration,
    max_wait: Duration,
    len: usize,
    /// (linger ends, max wait ends), from the first record.
    open: Option<(Instant, Instant)>,
}

impl BatchWindow {
    pub fn new(max_records: usize, linger: Duration, max_wait: Duration) -> Self {
        Self {
            max_records: max_records.max(1),
            linger: linger.min(max_wait),
            max_wait,
            len: 0,
            open: None,
        }
    }

    /// A record was added to the batch at `now`.
    pub fn took(&mut self, now: Instant) {
        self.len += 1;
        self.open
            .get_or_insert((now + self.linger, now + self.max_wait));
    }

    /// What to do next, at `now`.
    pub fn next(&self, now: Instant) -> Step {
        match self.open {
            None => Step::Poll(IDLE_POLL),
            Some(_) if self.len >= self.max_records => Step::Close,
            Some((_, until)) if now >= until => Step::Close,
            // Within the linger, wait for more; after it, only what is
            // ready already.
            Some((linger, _)) => Step::Poll(linger.saturating_duration_since(now)),
        }
    }

    /// Whether a poll that returned nothing at `now` closes the batch (an
    /// empty batch always "closes": there is nothing to route yet).
    pub fn closes_when_dry(&self, now: Instant) -> bool {
        self.open.is_none_or(|(linger, _)| now >= linger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_batch_waits_for_its_first_record() {
        let w = BatchWindow::new(10, Duration::ZERO, Duration::from_millis(100));
        assert_eq!(w.next(Instant::now()), Step::Poll(IDLE_POLL));
    }

    #[test]
    fn after_the_first_record_only_ready_records_are_taken() {
        let t0 = Instant::now();
        let mut w = BatchWindow::new(10, Duration::ZERO, Duration::from_millis(100));
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
        let mut w = BatchWindow::new(3, Duration::ZERO, Duration::from_secs(10));
        for _ in 0..3 {
            assert_ne!(w.next(t0), Step::Close);
            w.took(t0);
        }
        assert_eq!(w.next(t0), Step::Close);
    }

    #[test]
    fn max_wait_bounds_a_batch_that_never_runs_dry() {
        let t0 = Instant::now();
        let mut w = BatchWindow::new(1_000_000, Duration::ZERO, Duration::from_millis(100));
        w.took(t0);
        // Later records do not move the deadline.
        w.took(t0 + Duration::from_millis(60));
        assert_eq!(w.next(t0 + Duration::from_millis(100)), Step::Close);
    }

    #[test]
    fn a_dry_poll_closes_only_after_the_linger() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = BatchWindow::new(100, ms(20), ms(100));
        assert!(w.closes_when_dry(t0), "nothing taken: nothing to keep open");
        w.took(t0);
        assert_eq!(w.next(t0 + ms(5)), Step::Poll(ms(15)));
        assert!(!w.closes_when_dry(t0 + ms(5)));
        assert_eq!(w.next(t0 + ms(20)), Step::Poll(Duration::ZERO));
        assert!(w.closes_when_dry(t0 + ms(20)));
        // Without a linger, the first dry poll closes the batch.
        let mut w = BatchWindow::new(100, Duration::ZERO, ms(100));
        w.took(t0);
        assert!(w.closes_when_dry(t0));
    }

    #[test]
    fn the_linger_never_outlasts_max_wait() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = BatchWindow::new(100, ms(500), ms(100));
        w.took(t0);
        assert_eq!(w.next(t0), Step::Poll(ms(100)));
        assert_eq!(w.next(t0 + ms(100)), Step::Close);
    }

    #[test]
    fn zero_max_records_is_treated_as_one() {
        let t0 = Instant::now();
        let mut w = BatchWindow::new(0, Duration::ZERO, Duration::from_secs(1));
        w.took(t0);
        assert_eq!(w.next(t0), Step::Close);
    }
}
