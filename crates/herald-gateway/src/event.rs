//! A verified request as a Kafka record: CloudEvents binary mode (`ce_*`
//! headers), the provider's body bytes untouched as the value, keyed by the
//! entity the provider names. Pure, no I/O.
//!
//! A request the gateway cannot make a valid event of (no id where the
//! source says it is, a body that is not JSON) is still written: the router
//! sends it to the invalid topic with the reason, where it can be seen and
//! replayed once the source's config is fixed. Refusing it would make the
//! provider retry and eventually give up, losing it.

use crate::verify::HeaderLookup;
use herald_core::headers as h;
use herald_core::sources::{Field, ResolvedSource};

/// What goes to Kafka for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    /// The event id, when found.
    pub id: Option<String>,
    /// Why the router will refuse it, when it will.
    pub problem: Option<String>,
}

/// A JSON value as an attribute: strings as they are, numbers and booleans
/// in their JSON form; objects, arrays and null are not attributes.
fn scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

struct Request<'a, H: HeaderLookup> {
    src: &'a ResolvedSource,
    headers: &'a H,
    body: Option<serde_json::Value>,
}

impl<H: HeaderLookup> Request<'_, H> {
    fn field(&self, f: &Field) -> Option<String> {
        match f {
            Field::Header(name) => crate::verify::header(&self.src.scheme, self.headers, name)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string),
            Field::Body(pointer) => self.body.as_ref()?.pointer(pointer).and_then(scalar),
        }
    }
}

/// The record for a verified request from `src`, received at `time`
/// (RFC 3339).
pub fn record(
    src: &ResolvedSource,
    headers: &impl HeaderLookup,
    body: &[u8],
    time: &str,
) -> Record {
    let parsed = serde_json::from_slice::<serde_json::Value>(body);
    let mut problem = parsed
        .as_ref()
        .err()
        .map(|e| format!("body is not JSON: {e}"));
    let req = Request {
        src,
        headers,
        body: parsed.ok(),
    };
    let id = req.field(&src.id);
    if id.is_none() && problem.is_none() {
        problem = Some(format!("no event id at {}", src.id));
    }
    let parts: Vec<String> = std::iter::once(src.type_prefix.clone())
        .filter(|p| !p.is_empty())
        .chain(src.type_parts.iter().filter_map(|f| req.field(f)))
        .collect();
    let subject = src.subject.iter().find_map(|f| req.field(f));
    let tenant = src.tenant.as_ref().and_then(|f| req.field(f));
    let mut hs: Vec<(String, String)> = vec![
        (h::CE_SPECVERSION.into(), "1.0".into()),
        (h::CE_SOURCE.into(), src.event_source.clone()),
        (h::CE_TIME.into(), time.into()),
        (
            h::CONTENT_TYPE.into(),
            headers
                .get("content-type")
                .unwrap_or("application/json")
                .to_string(),
        ),
    ];
    if let Some(id) = &id {
        hs.push((h::CE_ID.into(), id.clone()));
    }
    if !parts.is_empty() {
        hs.push((h::CE_TYPE.into(), parts.join(".")));
    } else if problem.is_none() {
        problem = Some("no event type in the request".into());
    }
    if let Some(s) = &subject {
        hs.push((h::CE_SUBJECT.into(), s.clone()));
    }
    if let Some(t) = tenant {
        hs.push((h::CE_TENANT.into(), t));
    }
    for name in &src.keep_headers {
        if let Some(v) = headers.get(name) {
            hs.push((name.clone(), v.to_string()));
        }
    }
    Record {
        key: subject.or_else(|| id.clone()),
        headers: hs,
        id,
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::sources::SourceConfig;
    use std::collections::HashMap;

    type H = HashMap<String, String>;

    fn src(toml: &str) -> ResolvedSource {
        let s: SourceConfig = toml::from_str(toml).expect("source");
        s.resolve("p", "events").expect("resolves")
    }

    fn header<'a>(r: &'a Record, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn stripe_event_keyed_by_customer() {
        let s = src("scheme = \"stripe\"\nsecrets = [\"x\"]");
        let body = br#"{"id":"evt_1","type":"invoice.paid","data":{"object":{"id":"in_1","customer":"cus_9"}}}"#;
        let r = record(&s, &H::new(), body, "2026-01-01T00:00:00Z");
        assert_eq!(r.problem, None);
        assert_eq!(r.key.as_deref(), Some("cus_9"));
        assert_eq!(header(&r, "ce_id"), Some("evt_1"));
        assert_eq!(header(&r, "ce_type"), Some("stripe.invoice.paid"));
        assert_eq!(header(&r, "ce_source"), Some("/sources/p"));
        assert_eq!(header(&r, "ce_subject"), Some("cus_9"));
        assert_eq!(header(&r, "content-type"), Some("application/json"));
    }

    #[test]
    fn github_type_from_header_and_action_and_kept_headers() {
        let s = src("scheme = \"github\"\nsecrets = [\"x\"]");
        let hs = H::from([
            ("x-github-delivery".to_string(), "d-1".to_string()),
            ("x-github-event".to_string(), "issues".to_string()),
            ("x-github-hook-id".to_string(), "7".to_string()),
        ]);
        let body = br#"{"action":"opened","repository":{"full_name":"o/r"}}"#;
        let r = record(&s, &hs, body, "t");
        assert_eq!(header(&r, "ce_type"), Some("github.issues.opened"));
        assert_eq!(header(&r, "ce_id"), Some("d-1"));
        assert_eq!(r.key.as_deref(), Some("o/r"));
        assert_eq!(header(&r, "x-github-hook-id"), Some("7"));
        // No action: the event name alone.
        let r = record(&s, &hs, br#"{"zen":"x"}"#, "t");
        assert_eq!(header(&r, "ce_type"), Some("github.issues"));
        assert_eq!(r.key.as_deref(), Some("d-1"), "falls back to the id");
    }

    #[test]
    fn what_cannot_be_an_event_says_why() {
        let s = src("scheme = \"stripe\"\nsecrets = [\"x\"]");
        let r = record(&s, &H::new(), b"not json", "t");
        assert!(r.problem.as_deref().unwrap().contains("not JSON"));
        assert_eq!(header(&r, "ce_id"), None);
        let r = record(&s, &H::new(), br#"{"type":"x"}"#, "t");
        assert_eq!(r.problem.as_deref(), Some("no event id at body:/id"));
        let r = record(&s, &H::new(), br#"{"id":7}"#, "t");
        assert_eq!(header(&r, "ce_id"), Some("7"), "numbers are ids too");
        assert_eq!(header(&r, "ce_type"), Some("stripe"), "the prefix alone");
    }
}
