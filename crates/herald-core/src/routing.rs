//! Routing rules: which destinations hear about an event. Rules are data in
//! the config (event-type patterns, tenants, field equality), evaluated by
//! the router for every valid event.

use crate::config::ConfigError;
use crate::envelope::Event;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Event-type patterns; `*` matches any run of characters, so
    /// `subscription.*` matches `subscription.started`. Default: every type.
    #[serde(default = "default_types")]
    pub event_types: Vec<String>,
    /// Only these tenants; empty means every tenant.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Field equality, all of which must hold: `"data.plan" = "pro"`,
    /// `subject = "cus_1"`. Paths start at `id`, `source`, `type`, `subject`,
    /// `tenant` or `data`.
    #[serde(default, rename = "where")]
    pub fields: BTreeMap<String, serde_json::Value>,
}

fn default_types() -> Vec<String> {
    vec!["*".into()]
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            event_types: default_types(),
            tenants: Vec::new(),
            fields: BTreeMap::new(),
        }
    }
}

impl RouteConfig {
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.event_types.is_empty() {
            return Err(ConfigError::Invalid {
                key: format!("{key}.event_types"),
                message: "needs at least one pattern (\"*\" for every type)".into(),
            });
        }
        for path in self.fields.keys() {
            if !is_field_path(path) {
                return Err(ConfigError::Invalid {
                    key: format!("{key}.where.{path}"),
                    message: "paths start at id, source, type, subject, tenant or data".into(),
                });
            }
        }
        Ok(())
    }

    /// Whether `event` (with its payload parsed as `data`) matches.
    pub fn matches(&self, event: &Event, data: &serde_json::Value) -> bool {
        if !self
            .event_types
            .iter()
            .any(|p| glob_match(p, &event.r#type))
        {
            return false;
        }
        if !self.tenants.is_empty()
            && !event
                .tenant
                .as_ref()
                .is_some_and(|t| self.tenants.iter().any(|x| x == t))
        {
            return false;
        }
        self.fields
            .iter()
            .all(|(path, want)| field_value(event, data, path).is_some_and(|got| &got == want))
    }
}

/// Whether `path` starts at an event attribute or `data`.
pub fn is_field_path(path: &str) -> bool {
    let root = path.split('.').next().unwrap_or_default();
    matches!(
        root,
        "id" | "source" | "type" | "subject" | "tenant" | "data"
    )
}

/// The value at `path` (`id`, `source`, `type`, `subject`, `tenant`, or
/// `data.a.b`, with the payload parsed as `data`).
pub fn field_value(
    event: &Event,
    data: &serde_json::Value,
    path: &str,
) -> Option<serde_json::Value> {
    let mut parts = path.split('.');
    let attr = |s: &Option<String>| s.clone().map(serde_json::Value::String);
    match parts.next()? {
        "id" => Some(event.id.clone().into()),
        "source" => Some(event.source.clone().into()),
        "type" => Some(event.r#type.clone().into()),
        "subject" => attr(&event.subject),
        "tenant" => attr(&event.tenant),
        "data" => {
            let mut cur = data;
            for p in parts {
                cur = match cur {
                    serde_json::Value::Object(m) => m.get(p)?,
                    serde_json::Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
                    _ => return None,
                };
            }
            Some(cur.clone())
        }
        _ => None,
    }
}

/// Glob matching with `*` as the only wildcard.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ty: &str, tenant: Option<&str>) -> Event {
        Event {
            id: "1".into(),
            source: "/billing".into(),
            r#type: ty.into(),
            time: None,
            subject: Some("cus_1".into()),
            tenant: tenant.map(Into::into),
            data: "{}".into(),
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("subscription.*", "subscription.started"));
        assert!(!glob_match("subscription.*", "payment.failed"));
        assert!(glob_match("*.failed", "payment.failed"));
        assert!(glob_match("a*b*c", "a-x-b-y-c"));
        assert!(!glob_match("a*b*c", "a-x-c-y-b"));
        assert!(!glob_match("ab*ba", "aba"));
        assert!(glob_match("exact", "exact"));
    }

    #[test]
    fn rules_combine_type_tenant_and_fields() {
        let mut r = RouteConfig {
            event_types: vec!["payment.*".into()],
            tenants: vec!["acme".into()],
            fields: BTreeMap::new(),
        };
        r.fields.insert("data.plan.tier".into(), "pro".into());
        r.fields.insert("subject".into(), "cus_1".into());
        let data = serde_json::json!({"plan": {"tier": "pro"}});
        assert!(r.matches(&event("payment.failed", Some("acme")), &data));
        assert!(!r.matches(&event("payment.failed", Some("other")), &data));
        assert!(!r.matches(&event("payment.failed", None), &data));
        assert!(!r.matches(&event("user.signed_up", Some("acme")), &data));
        let free = serde_json::json!({"plan": {"tier": "free"}});
        assert!(!r.matches(&event("payment.failed", Some("acme")), &free));
    }
}
