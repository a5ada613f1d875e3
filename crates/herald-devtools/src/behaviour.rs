//! What a sink route answers: the public [`Behaviour`] knobs, their
//! validated form ([`Active`]) and the per-request decision.

use std::time::Duration;

use anyhow::{bail, Context};
use axum::http::StatusCode;
use herald_core::signature::SigningKey;

/// How long a "timeout" request hangs when [`Behaviour::hang`] is zero.
pub const DEFAULT_HANG: Duration = Duration::from_secs(30);

/// How one route of a [`crate::Sink`] answers.
///
/// Per request the sink checks the signature (when `secret` is set), then
/// answers `fixed_status` if set, else rolls once in `[0, 1)` and compares the
/// roll against the cumulative ratios in the order timeout, 503, 429; a roll
/// past all of them is a success. Ratios are each in `[0, 1]`; when they sum
/// past 1 the later ones simply get what is left.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Fraction of requests answered only after `hang` (so the client times out).
    pub timeout_ratio: f64,
    /// Fraction answered 503.
    pub status_503_ratio: f64,
    /// Fraction answered 429 with `Retry-After: <retry_after_secs>`.
    pub status_429_ratio: f64,
    /// `Retry-After` seconds on 429 answers; no header when `None`.
    pub retry_after_secs: Option<u64>,
    /// When set, every request gets this status (e.g. 400, 404); overrides the ratios.
    pub fixed_status: Option<u16>,
    /// How long a "timeout" request hangs before answering 504 (default 30 s when zero).
    pub hang: Duration,
    /// Extra latency added to every request.
    pub latency: Duration,
    /// Status for successes; 204 when `None`.
    pub success_status: Option<u16>,
    /// If set, requests whose signature does not verify with this `whsec_`
    /// secret (including requests missing the signature headers) are answered
    /// 401 and counted as `bad_signatures`.
    pub secret: Option<String>,
}

impl Behaviour {
    /// Every request succeeds with 204.
    pub fn healthy() -> Self {
        Self::default()
    }

    /// Some requests hang (for the default 30 s, then 504), some get 503.
    pub fn flaky(timeout_ratio: f64, status_503_ratio: f64) -> Self {
        Self {
            timeout_ratio,
            status_503_ratio,
            ..Self::default()
        }
    }

    /// Every request gets `code`.
    pub fn status(code: u16) -> Self {
        Self {
            fixed_status: Some(code),
            ..Self::default()
        }
    }
}

/// A [`Behaviour`] checked once, so requests need no parsing or validation.
#[derive(Debug)]
pub(crate) struct Active {
    pub key: Option<SigningKey>,
    pub latency: Duration,
    pub fixed: Option<StatusCode>,
    pub success: StatusCode,
    /// Cumulative thresholds: timeout, then 503, then 429.
    pub timeout_below: f64,
    pub s503_below: f64,
    pub s429_below: f64,
    pub hang: Duration,
    pub retry_after_secs: Option<u64>,
}

/// What to do with a request whose signature (if checked) is fine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Respond(StatusCode),
    /// Wait this long, then answer 504.
    Hang(Duration),
    TooManyRequests,
}

impl Active {
    pub fn new(b: &Behaviour) -> anyhow::Result<Self> {
        for (name, r) in [
            ("timeout_ratio", b.timeout_ratio),
            ("status_503_ratio", b.status_503_ratio),
            ("status_429_ratio", b.status_429_ratio),
        ] {
            if !(0.0..=1.0).contains(&r) {
                bail!("{name} must be between 0 and 1, got {r}");
            }
        }
        let status = |code: u16, what: &str| {
            StatusCode::from_u16(code)
                .with_context(|| format!("{what} {code} is not an HTTP status"))
        };
        let key = b
            .secret
            .as_deref()
            // The error never includes the secret itself.
            .map(|s| SigningKey::parse(s).context("the route's signing secret is invalid"))
            .transpose()?;
        let timeout_below = b.timeout_ratio;
        let s503_below = timeout_below + b.status_503_ratio;
        Ok(Self {
            key,
            latency: b.latency,
            fixed: b
                .fixed_status
                .map(|c| status(c, "fixed_status"))
                .transpose()?,
            success: status(b.success_status.unwrap_or(204), "success_status")?,
            timeout_below,
            s503_below,
            s429_below: s503_below + b.status_429_ratio,
            hang: if b.hang.is_zero() {
                DEFAULT_HANG
            } else {
                b.hang
            },
            retry_after_secs: b.retry_after_secs,
        })
    }

    /// Whether requests need a random roll at all (healthy routes skip the
    /// shared random source entirely).
    pub fn needs_roll(&self) -> bool {
        self.fixed.is_none() && self.s429_below > 0.0
    }

    /// The answer for a roll in `[0, 1)`.
    pub fn decide(&self, roll: f64) -> Decision {
        if let Some(code) = self.fixed {
            Decision::Respond(code)
        } else if roll < self.timeout_below {
            Decision::Hang(self.hang)
        } else if roll < self.s503_below {
            Decision::Respond(StatusCode::SERVICE_UNAVAILABLE)
        } else if roll < self.s429_below {
            Decision::TooManyRequests
        } else {
            Decision::Respond(self.success)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_compare_against_cumulative_ratios() {
        let b = Behaviour {
            status_429_ratio: 0.2,
            hang: Duration::from_secs(3),
            ..Behaviour::flaky(0.1, 0.3)
        };
        let a = Active::new(&b).unwrap();
        assert!(a.needs_roll());
        assert_eq!(a.decide(0.0), Decision::Hang(Duration::from_secs(3)));
        assert_eq!(a.decide(0.099), Decision::Hang(Duration::from_secs(3)));
        assert_eq!(
            a.decide(0.1),
            Decision::Respond(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(
            a.decide(0.399),
            Decision::Respond(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(a.decide(0.4), Decision::TooManyRequests);
        assert_eq!(a.decide(0.61), Decision::Respond(StatusCode::NO_CONTENT));
    }

    #[test]
    fn fixed_status_overrides_ratios_and_zero_hang_means_default() {
        let a = Active::new(&Behaviour {
            fixed_status: Some(404),
            ..Behaviour::flaky(1.0, 0.0)
        })
        .unwrap();
        assert!(!a.needs_roll());
        assert_eq!(a.decide(0.0), Decision::Respond(StatusCode::NOT_FOUND));
        let a = Active::new(&Behaviour::flaky(1.0, 0.0)).unwrap();
        assert_eq!(a.decide(0.5), Decision::Hang(DEFAULT_HANG));
        assert!(!Active::new(&Behaviour::healthy()).unwrap().needs_roll());
    }

    #[test]
    fn invalid_behaviours_are_rejected_without_echoing_the_secret() {
        assert!(Active::new(&Behaviour::flaky(1.5, 0.0)).is_err());
        assert!(Active::new(&Behaviour::flaky(f64::NAN, 0.0)).is_err());
        assert!(Active::new(&Behaviour::status(42)).is_err());
        let err = Active::new(&Behaviour {
            secret: Some("not-a-secret-xyz".into()),
            ..Behaviour::healthy()
        })
        .unwrap_err();
        assert!(!format!("{err:#}").contains("not-a-secret-xyz"));
    }
}
