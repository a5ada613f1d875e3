//! Summaries of repeated measurements: the median with the spread (min and
//! max) of the repetitions, paired ratios, and latency percentiles.

use serde::Serialize;

/// Repetitions of one figure.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: Vec<f64>,
}

impl Summary {
    /// Summarises `samples`; NaNs (repetitions without a figure) are left
    /// out, infinities (latencies of events that never arrived) are kept. An
    /// empty set summarises to NaN, which the report shows as "n/a".
    pub fn of(samples: Vec<f64>) -> Self {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
        v.sort_by(f64::total_cmp);
        let (min, max) = match (v.first(), v.last()) {
            (Some(a), Some(b)) => (*a, *b),
            _ => (f64::NAN, f64::NAN),
        };
        Self {
            median: median_sorted(&v),
            min,
            max,
            samples,
        }
    }

    /// Whether at least one repetition produced a number.
    pub fn is_valid(&self) -> bool {
        !self.median.is_nan()
    }
}

fn median_sorted(v: &[f64]) -> f64 {
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The median of `v` (NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    Summary::of(v.to_vec()).median
}

/// `a[i] / b[i]` for each repetition `i`. Repetitions of the two sides ran
/// next to each other, so each pair saw the same machine weather; the
/// spread of the pairs says how much the ratio itself moves.
pub fn paired_ratio(a: &[f64], b: &[f64]) -> Summary {
    Summary::of(a.iter().zip(b).map(|(x, y)| x / y).collect())
}

/// Nearest-rank percentile of sorted values; `p` in `[0, 100]`.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    // The epsilon keeps 99.9% of 1000 at rank 999 despite rounding.
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_ignores_failed_repetitions() {
        let s = Summary::of(vec![3.0, f64::NAN, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Summary::of(vec![4.0, 1.0]).median, 2.5);
        assert!(!Summary::of(vec![]).is_valid());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 50.0), Some(500));
        assert_eq!(percentile(&v, 99.0), Some(990));
        assert_eq!(percentile(&v, 99.9), Some(999));
        assert_eq!(percentile(&v, 100.0), Some(1000));
        assert_eq!(percentile(&[7], 0.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn ratios_pair_repetitions() {
        let r = paired_ratio(&[10.0, 20.0, 30.0], &[5.0, 10.0, 10.0]);
        assert_eq!((r.median, r.min, r.max), (2.0, 2.0, 3.0));
    }
}
