//! Kafka header names. Headers are UTF-8 strings so kcat and the console
//! tools can read them.

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

// CloudEvents Kafka protocol binding, binary mode.
pub const CE_PREFIX: &str = "ce_";
pub const CE_SPECVERSION: &str = "ce_specversion";
pub const CE_ID: &str = "ce_id";
pub const CE_TYPE: &str = "ce_type";
pub const CE_SOURCE: &str = "ce_source";
pub const CE_TIME: &str = "ce_time";
pub const CE_SUBJECT: &str = "ce_subject";
pub const CE_TENANT: &str = "ce_tenant";
pub const CONTENT_TYPE: &str = "content-type";

// Delivery state.
pub const ATTEMPT: &str = "herald-attempt";
pub const DUE_AT: &str = "herald-due-at";
pub const FIRST_ATTEMPT_AT: &str = "herald-first-attempt-at";

// Origin, written once by the router.
pub const ORIGINAL_TOPIC: &str = "herald-original-topic";
pub const ORIGINAL_PARTITION: &str = "herald-original-partition";
pub const ORIGINAL_OFFSET: &str = "herald-original-offset";

// Last error.
pub const ERROR_CLASS: &str = "herald-error-class";
pub const ERROR_STATUS: &str = "herald-error-status";
pub const ERROR_MESSAGE: &str = "herald-error-message";

/// On `herald.invalid`: why the record was rejected (low cardinality).
pub const INVALID_REASON: &str = "herald-invalid-reason";
/// On DLQ records: `exhausted`, `permanent` or `poison`.
pub const DLQ_REASON: &str = "herald-dlq-reason";
/// On records written by `herald dlq replay`.
pub const REPLAYED_AT: &str = "herald-replayed-at";

/// Longest `herald-error-message` value, in bytes.
pub const MAX_ERROR_MESSAGE: usize = 512;

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(super::truncate("héllo", 2), "h…");
        assert_eq!(super::truncate("abc", 5), "abc");
    }
}
