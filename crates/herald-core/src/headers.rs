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
/// What was cut from a dead letter to make it fit its topic: `history` or `data`.
pub const TRUNCATED: &str = "herald-truncated";
/// On records written by `herald dlq replay`.
pub const REPLAYED_AT: &str = "herald-replayed-at";
/// On invalid records whose payload was cut to fit: its size before.
pub const ORIGINAL_SIZE: &str = "herald-original-size";
/// On input records re-produced by `herald invalid replay`: the invalid
/// record they came from, `<topic>/<partition>/<offset>`.
pub const REPLAYED_FROM: &str = "herald-replayed-from";

/// The headers the router adds to a record it sends to the invalid topic
/// (after the producer's own); `herald invalid replay` drops them.
pub const INVALID_ADDED: [&str; 7] = [
    INVALID_REASON,
    ERROR_CLASS,
    ERROR_MESSAGE,
    ORIGINAL_TOPIC,
    ORIGINAL_PARTITION,
    ORIGINAL_OFFSET,
    ORIGINAL_SIZE,
];

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

/// Reads at most `max` bytes of a response body, chunk by chunk, and stops
/// there: an error response's body only feeds `herald-error-message` and
/// the attempt's excerpt, and a destination that answers 500 with a
/// gigabyte (or an endless stream) must cost neither memory nor time beyond
/// that. The connection is dropped with the rest unread. The bytes are read
/// as UTF-8 (lossily), cut on a character boundary; a body that fails
/// mid-way gives what arrived before.
pub async fn read_excerpt(mut resp: reqwest::Response, max: usize) -> String {
    let mut buf: Vec<u8> = Vec::with_capacity(max.min(8192));
    while buf.len() < max {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = max - buf.len();
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf);
    // A multi-byte character cut at `max` becomes U+FFFD (3 bytes), which
    // can push the text past `max`: cut back to a character boundary.
    let mut out = text.into_owned();
    if out.len() > max {
        let mut end = max;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(super::truncate("héllo", 2), "h…");
        assert_eq!(super::truncate("abc", 5), "abc");
    }
}
