//! Failure classification: one exhaustive table that decides, for every way
//! a delivery can end, whether it succeeded, is worth retrying, or never will
//! be. Error classes are the low-cardinality values of the
//! `herald-error-class` header and the `error_class` metric label.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    Timeout,
    Connect,
    Http429,
    Http5xx,
    Http4xx,
    Contract,
    Auth,
    Schema,
    Ssrf,
    /// The request could not be built (e.g. an event id that is not a valid
    /// HTTP header value): nothing was sent, and a retry builds the same one.
    Request,
    /// Never from an attempt: the delivery's age budget or its topic's
    /// retention ran out before it could be delivered.
    Expired,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 11] = [
        Self::Timeout,
        Self::Connect,
        Self::Http429,
        Self::Http5xx,
        Self::Http4xx,
        Self::Contract,
        Self::Auth,
        Self::Schema,
        Self::Ssrf,
        Self::Request,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Http429 => "http-429",
            Self::Http5xx => "http-5xx",
            Self::Http4xx => "http-4xx",
            Self::Contract => "contract",
            Self::Auth => "auth",
            Self::Schema => "schema",
            Self::Ssrf => "ssrf",
            Self::Request => "request",
            Self::Expired => "expired",
        }
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Try again later, through the retry ladder.
    Retryable,
    /// Retrying cannot help: dead-letter now.
    Permanent,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Success {
        status: u16,
    },
    Failure {
        class: ErrorClass,
        disposition: Disposition,
        status: Option<u16>,
        /// From `Retry-After` on 429 and 503 ([`parse_retry_after`]).
        retry_after: Option<Duration>,
    },
}

/// Transport failures, before any HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// No complete response within the timeout.
    Timeout,
    /// Could not connect, or the connection broke (reset, EOF) mid-request.
    Connect,
    /// The destination address was refused by policy before connecting.
    Ssrf,
    /// The request could not be built from the delivery (an invalid header
    /// value, URL or body): no connection was made, and it never will be.
    Request,
}

pub fn classify_transport(e: TransportError) -> Verdict {
    let (class, disposition) = match e {
        TransportError::Timeout => (ErrorClass::Timeout, Disposition::Retryable),
        TransportError::Connect => (ErrorClass::Connect, Disposition::Retryable),
        TransportError::Ssrf => (ErrorClass::Ssrf, Disposition::Permanent),
        TransportError::Request => (ErrorClass::Request, Disposition::Permanent),
    };
    Verdict::Failure {
        class,
        disposition,
        status: None,
        retry_after: None,
    }
}

/// Classifies an HTTP response status. Retryable: 408, 429 and 5xx except
/// 501. Permanent: every other 4xx, and 501 (the endpoint will never
/// implement the method). 401/403 are `auth` so credential problems stand
/// out from payload problems.
pub fn classify_status(status: u16, retry_after: Option<Duration>) -> Verdict {
    use Disposition::*;
    let (class, disposition) = match status {
        200..=299 => return Verdict::Success { status },
        408 => (ErrorClass::Http4xx, Retryable),
        429 => (ErrorClass::Http429, Retryable),
        401 | 403 => (ErrorClass::Auth, Permanent),
        501 => (ErrorClass::Http5xx, Permanent),
        500..=599 => (ErrorClass::Http5xx, Retryable),
        // 1xx/3xx reaching us means redirects were not followed or the
        // destination speaks something else: the contract is broken.
        100..=199 | 300..=399 => (ErrorClass::Contract, Permanent),
        _ => (ErrorClass::Http4xx, Permanent),
    };
    let retry_after = match (disposition, status) {
        (Retryable, 429 | 503) => retry_after,
        _ => None,
    };
    Verdict::Failure {
        class,
        disposition,
        status: Some(status),
        retry_after,
    }
}

/// Parses `Retry-After` (RFC 9110 10.2.3): delta-seconds, or an HTTP-date
/// (IMF-fixdate such as `Wed, 21 Oct 2015 07:28:00 GMT`, and the obsolete
/// RFC 850 and asctime forms) taken relative to now. A date already past
/// gives zero. Anything else is ignored (`None`): the normal ladder applies.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    parse_retry_after_at(v, std::time::SystemTime::now())
}

/// [`parse_retry_after`] with an explicit `now`.
pub fn parse_retry_after_at(v: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = v.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Larger than u64 seconds: as good as forever.
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disposition(status: u16) -> Option<Disposition> {
        match classify_status(status, None) {
            Verdict::Success { .. } => None,
            Verdict::Failure { disposition, .. } => Some(disposition),
        }
    }

    #[test]
    fn status_table() {
        use Disposition::*;
        let table: &[(u16, Option<Disposition>)] = &[
            (200, None),
            (201, None),
            (204, None),
            (301, Some(Permanent)),
            (400, Some(Permanent)),
            (401, Some(Permanent)),
            (403, Some(Permanent)),
            (404, Some(Permanent)),
            (408, Some(Retryable)),
            (409, Some(Permanent)),
            (410, Some(Permanent)),
            (422, Some(Permanent)),
            (429, Some(Retryable)),
            (500, Some(Retryable)),
            (501, Some(Permanent)),
            (502, Some(Retryable)),
            (503, Some(Retryable)),
            (504, Some(Retryable)),
            (599, Some(Retryable)),
        ];
        for (status, want) in table {
            assert_eq!(disposition(*status), *want, "status {status}");
        }
    }

    #[test]
    fn classes() {
        let class = |s| match classify_status(s, None) {
            Verdict::Failure { class, .. } => class,
            _ => panic!(),
        };
        assert_eq!(class(429), ErrorClass::Http429);
        assert_eq!(class(503), ErrorClass::Http5xx);
        assert_eq!(class(401), ErrorClass::Auth);
        assert_eq!(class(404), ErrorClass::Http4xx);
        assert_eq!(
            classify_transport(TransportError::Timeout),
            Verdict::Failure {
                class: ErrorClass::Timeout,
                disposition: Disposition::Retryable,
                status: None,
                retry_after: None
            }
        );
        assert!(matches!(
            classify_transport(TransportError::Ssrf),
            Verdict::Failure {
                disposition: Disposition::Permanent,
                ..
            }
        ));
    }

    #[test]
    fn retry_after_kept_only_where_meaningful() {
        let ra = Some(Duration::from_secs(5));
        let get = |s| match classify_status(s, ra) {
            Verdict::Failure { retry_after, .. } => retry_after,
            _ => None,
        };
        assert_eq!(get(429), ra);
        assert_eq!(get(503), ra);
        assert_eq!(get(500), None);
        assert_eq!(get(400), None);
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("-5"), None);
        assert_eq!(parse_retry_after("1.5"), None);
        assert_eq!(parse_retry_after(""), None);
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(
            parse_retry_after("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_http_date_is_relative_to_now() {
        use std::time::{SystemTime, UNIX_EPOCH};
        // Wed, 21 Oct 2015 07:28:00 GMT
        let date = UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let before = date - Duration::from_secs(90);
        let imf = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(
            parse_retry_after_at(imf, before),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after_at(&format!("  {imf} "), before),
            Some(Duration::from_secs(90))
        );
        // The obsolete forms HTTP/1.1 recipients must accept.
        for obsolete in [
            "Wednesday, 21-Oct-15 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2015",
        ] {
            assert_eq!(
                parse_retry_after_at(obsolete, before),
                Some(Duration::from_secs(90)),
                "{obsolete}"
            );
        }
        // Already past: retry now (the ladder still applies its own delay).
        assert_eq!(
            parse_retry_after_at(imf, date + Duration::from_secs(5)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after_at("Wed, 32 Oct 2015 07:28:00 GMT", before),
            None
        );
        assert_eq!(parse_retry_after_at("21 Oct 2015", before), None);
        // The wall-clock variant agrees on a date far in the future.
        let far = parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT").unwrap();
        let expect = (UNIX_EPOCH + Duration::from_secs(4_102_444_800))
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(
            far.abs_diff(expect) < Duration::from_secs(60),
            "{far:?} vs {expect:?}"
        );
    }

    /// A request that cannot be built is permanent and says so: it is not
    /// a connection problem, and retrying would build the same request.
    #[test]
    fn request_build_errors_are_permanent() {
        assert_eq!(
            classify_transport(TransportError::Request),
            Verdict::Failure {
                class: ErrorClass::Request,
                disposition: Disposition::Permanent,
                status: None,
                retry_after: None
            }
        );
        assert_eq!(ErrorClass::Request.as_str(), "request");
        assert_ne!(
            classify_transport(TransportError::Request),
            classify_transport(TransportError::Connect)
        );
    }

    #[test]
    fn class_names_are_the_contract() {
        let names: Vec<_> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "timeout", "connect", "http-429", "http-5xx", "http-4xx", "contract", "auth",
                "schema", "ssrf", "request", "expired"
            ]
        );
    }
}
