//! An event's identity: a 128-bit hash of its configured identity fields
//! (`router.identity`, CloudEvents `source` + `id` by default). The router
//! drops copies of an identity seen within its dedupe window; anything else
//! that must recognise "the same event" (a ledger, say) keys by the same
//! function so both agree.
//!
//! An event that lacks one of its identity fields has no identity: hashing a
//! placeholder would give every such event the same identity, and all but the
//! first would be dropped as copies. The router sends them to the invalid
//! topic with reason `identity` instead.

use crate::envelope::Event;
use crate::routing::field_value;
use sha2::{Digest, Sha256};

/// An event's identity hash.
pub type Identity = u128;

/// Identity of `event` from `fields` (paths as in routing rules), or `None`
/// when a field is missing or JSON `null`.
pub fn identity(event: &Event, data: &serde_json::Value, fields: &[String]) -> Option<Identity> {
    let mut h = Sha256::new();
    for f in fields {
        match field_value(event, data, f)? {
            serde_json::Value::Null => return None,
            // As before identities could be missing: marks already in a
            // changelog keep matching.
            serde_json::Value::String(s) => h.update(s.as_bytes()),
            v => h.update(v.to_string().as_bytes()),
        }
        h.update([0]);
    }
    let digest = h.finalize();
    Some(u128::from_be_bytes(
        digest[..16].try_into().expect("16 bytes"),
    ))
}

/// The first of `fields` that `event` lacks, for error messages.
pub fn missing_field<'a>(
    event: &Event,
    data: &serde_json::Value,
    fields: &'a [String],
) -> Option<&'a str> {
    fields
        .iter()
        .find(|f| {
            matches!(
                field_value(event, data, f),
                None | Some(serde_json::Value::Null)
            )
        })
        .map(String::as_str)
}

/// An identity as 32 lower-case hex digits (changelog and ledger keys).
pub fn key(id: Identity) -> String {
    format!("{id:032x}")
}

/// Inverse of [`key`].
pub fn parse_key(k: &[u8]) -> Option<Identity> {
    let s = std::str::from_utf8(k).ok()?;
    if s.len() != 32 {
        return None;
    }
    u128::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> Event {
        Event {
            id: id.into(),
            source: "/s".into(),
            r#type: "t".into(),
            time: None,
            subject: None,
            tenant: None,
            data: "{}".into(),
        }
    }

    fn fields(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn identity_is_stable_and_field_sensitive() {
        let by_id = fields(&["source", "id"]);
        let none = serde_json::json!({});
        assert_eq!(
            identity(&event("a"), &none, &by_id),
            identity(&event("a"), &none, &by_id)
        );
        assert_ne!(
            identity(&event("a"), &none, &by_id),
            identity(&event("b"), &none, &by_id)
        );
        let data = serde_json::json!({"order": 7});
        let by_order = fields(&["data.order"]);
        assert_eq!(
            identity(&event("a"), &data, &by_order),
            identity(&event("b"), &data, &by_order)
        );
        let id = identity(&event("a"), &none, &by_id).unwrap();
        assert_eq!(parse_key(key(id).as_bytes()), Some(id));
        assert_eq!(parse_key(b"xyz"), None);
    }

    #[test]
    fn a_missing_or_null_identity_field_means_no_identity() {
        let f = fields(&["type", "data.order_id"]);
        let missing = serde_json::json!({"other": 1});
        assert_eq!(identity(&event("a"), &missing, &f), None);
        assert_eq!(
            missing_field(&event("a"), &missing, &f),
            Some("data.order_id")
        );
        let null = serde_json::json!({"order_id": null});
        assert_eq!(identity(&event("a"), &null, &f), None);
        let subject = fields(&["subject"]);
        assert_eq!(identity(&event("a"), &missing, &subject), None);
        let present = serde_json::json!({"order_id": 0});
        assert!(identity(&event("a"), &present, &f).is_some());
        assert_eq!(missing_field(&event("a"), &present, &f), None);
    }
}
