//! Inbound sources for `herald-gateway`: `[gateway]` (the HTTP server's
//! limits) and `[sources.<name>]` (one provider each: its signature scheme,
//! secrets, target topic, and where the event's id, type and subject come
//! from).
//!
//! A signature scheme is data ([`SchemeSpec`]): which header carries the
//! signature and how it is framed, what bytes are signed, the HMAC algorithm
//! and encoding, how the secret becomes a key, and whether a signed
//! timestamp bounds replays. Stripe, GitHub, Shopify and Standard Webhooks
//! are presets of it; `scheme = "hmac"` spells one out. The gateway's
//! verifier interprets a spec; nothing here does cryptography. The spec
//! and the presets are in [`scheme`].

use crate::config::{invalid, ConfigError, RateLimitConfig, SecretRef};

mod scheme;
use crate::time::{serde_duration, serde_opt_duration};
use scheme::preset;
pub use scheme::{parse_signed, Framing, KeyFormat, Part, SchemeSpec};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The gateway's HTTP server: where it listens and what it bounds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where providers send webhooks (`POST /webhooks/<source>`).
    #[serde(default = "default_gateway_listen")]
    pub listen: String,
    /// `/metrics`, `/healthz` and `/readyz`, kept off the public listener.
    #[serde(default = "default_gateway_admin_listen")]
    pub admin_listen: String,
    /// Largest request body accepted (413 beyond).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Whole-request bound: reading the body, verifying, writing to Kafka.
    #[serde(default = "default_request_timeout", with = "serde_duration")]
    pub request_timeout: Duration,
    /// How long to wait for Kafka's acknowledgement before answering 503
    /// (`message.timeout.ms`): shorter than the providers' own timeouts
    /// (GitHub 10 s, Stripe and Shopify a little more), so they see a 503 and
    /// retry rather than a dropped connection.
    #[serde(default = "default_ack_timeout", with = "serde_duration")]
    pub ack_timeout: Duration,
    /// Requests in flight at once; beyond it the gateway answers 503.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// `Retry-After` on 503 and 429 answers.
    #[serde(default = "default_retry_after", with = "serde_duration")]
    pub retry_after: Duration,
}

fn default_gateway_listen() -> String {
    "0.0.0.0:8088".into()
}
fn default_gateway_admin_listen() -> String {
    "0.0.0.0:9466".into()
}
fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(9)
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_max_in_flight() -> usize {
    1024
}
fn default_retry_after() -> Duration {
    Duration::from_secs(10)
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: default_gateway_listen(),
            admin_listen: default_gateway_admin_listen(),
            max_body_bytes: default_max_body_bytes(),
            request_timeout: default_request_timeout(),
            ack_timeout: default_ack_timeout(),
            max_in_flight: default_max_in_flight(),
            retry_after: default_retry_after(),
        }
    }
}

/// The signature schemes a source can use.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SchemeKind {
    /// `webhook-id` / `webhook-timestamp` / `webhook-signature` (or the
    /// `svix-` names), `whsec_` secrets.
    StandardWebhooks,
    /// `Stripe-Signature: t=…,v1=…`.
    Stripe,
    /// `X-Hub-Signature-256: sha256=<hex>`, identity from `X-GitHub-Delivery`.
    Github,
    /// `X-Shopify-Hmac-Sha256: <base64>`.
    Shopify,
    /// Spelled out in `[sources.<name>.hmac]`.
    Hmac,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Hex,
    Base64,
}

/// `[sources.<name>.hmac]`: a signature scheme spelled out.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HmacConfig {
    /// Header carrying the signature.
    pub header: String,
    #[serde(default = "default_algorithm")]
    pub algorithm: HmacAlgorithm,
    #[serde(default = "default_encoding")]
    pub encoding: Encoding,
    /// Text before the signature in the header (`sha256=`).
    #[serde(default)]
    pub prefix: String,
    /// What is signed: `{body}`, `{timestamp}` and `{header:Name}`
    /// placeholders around literal text.
    #[serde(default = "default_signed")]
    pub signed: String,
    /// Header carrying a signed Unix timestamp (seconds); with it, requests
    /// older or newer than the source's `tolerance` are refused.
    #[serde(default)]
    pub timestamp_header: Option<String>,
}

fn default_algorithm() -> HmacAlgorithm {
    HmacAlgorithm::Sha256
}
fn default_encoding() -> Encoding {
    Encoding::Hex
}
fn default_signed() -> String {
    "{body}".into()
}

/// `[sources.<name>]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub scheme: SchemeKind,
    /// Signing secrets by reference (`env:NAME`, `file:PATH`); several while
    /// a provider rotates its key: a signature by any of them is accepted.
    pub secrets: Vec<SecretRef>,
    /// Topic to write to; Herald's input topic by default.
    #[serde(default)]
    pub topic: Option<String>,
    /// CloudEvents `source` of the events (`/sources/<name>` by default).
    /// With `id` it is the event's identity: the router's dedupe window
    /// drops a provider's retries of the same delivery.
    #[serde(default)]
    pub event_source: Option<String>,
    /// Largest clock difference accepted for schemes with a signed
    /// timestamp (5 minutes by default, as the providers' own libraries).
    #[serde(default, with = "serde_opt_duration")]
    pub tolerance: Option<Duration>,
    /// Where the event id comes from: `header:<Name>` or `body:<JSON pointer>`.
    #[serde(default)]
    pub id: Option<String>,
    /// Parts of the event type, joined with `.` after `type_prefix`; parts
    /// the request lacks are skipped.
    #[serde(default, rename = "type")]
    pub type_parts: Option<Vec<String>>,
    #[serde(default)]
    pub type_prefix: Option<String>,
    /// Candidates for the subject (the entity; also the Kafka key, so one
    /// entity's events stay in order): the first one present wins.
    #[serde(default)]
    pub subject: Option<Vec<String>>,
    /// Where the tenant comes from, if anywhere.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Provider headers kept on the record (lower-cased).
    #[serde(default)]
    pub keep_headers: Option<Vec<String>>,
    /// Requests per second from this source, per gateway process (429 with
    /// `Retry-After` beyond).
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    #[serde(default)]
    pub hmac: Option<HmacConfig>,
}

/// Where a value comes from in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// A request header (case-insensitive).
    Header(String),
    /// A JSON pointer into the body (`/data/object/id`).
    Body(String),
}

impl Field {
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(h) = s.strip_prefix("header:") {
            if h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "`{s}`: header names use letters, digits, '-' and '_'"
                ));
            }
            return Ok(Self::Header(h.to_ascii_lowercase()));
        }
        if let Some(p) = s.strip_prefix("body:") {
            if !p.starts_with('/') {
                return Err(format!(
                    "`{s}`: a body field is a JSON pointer such as body:/data/id"
                ));
            }
            return Ok(Self::Body(p.to_string()));
        }
        Err(format!("`{s}`: use header:<Name> or body:<JSON pointer>"))
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Header(h) => write!(f, "header:{h}"),
            Self::Body(p) => write!(f, "body:{p}"),
        }
    }
}

/// A source with its preset's defaults filled in.
#[derive(Debug, Clone)]
pub struct ResolvedSource {
    pub name: String,
    pub scheme: SchemeSpec,
    pub topic: String,
    pub event_source: String,
    pub tolerance: Duration,
    pub id: Field,
    pub type_parts: Vec<Field>,
    pub type_prefix: String,
    pub subject: Vec<Field>,
    pub tenant: Option<Field>,
    pub keep_headers: Vec<String>,
}

impl SourceConfig {
    /// This source with its scheme's defaults filled in; errors name the key.
    pub fn resolve(&self, name: &str, input_topic: &str) -> Result<ResolvedSource, ConfigError> {
        let key = |k: &str| format!("sources.{name}.{k}");
        let field = |k: &str, s: &str| Field::parse(s).map_err(|m| invalid(key(k), m));
        let preset = preset(self.scheme);
        let scheme = match (&preset, &self.hmac) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    key("hmac"),
                    "only for scheme = \"hmac\"; the other schemes are fixed by their providers",
                ))
            }
            (Some(p), None) => p.scheme.clone(),
            (None, None) => {
                return Err(invalid(
                    key("hmac"),
                    "scheme = \"hmac\" needs a [hmac] table (header, algorithm, encoding, signed)",
                ))
            }
            (None, Some(h)) => {
                let header = Field::parse(&format!("header:{}", h.header))
                    .map_err(|m| invalid(key("hmac.header"), m))?;
                let Field::Header(header) = header else {
                    unreachable!("parsed as a header")
                };
                let signed = parse_signed(&h.signed).map_err(|m| invalid(key("hmac.signed"), m))?;
                let timestamp_header = match &h.timestamp_header {
                    Some(t) => match Field::parse(&format!("header:{t}")) {
                        Ok(Field::Header(t)) => Some(t),
                        _ => {
                            return Err(invalid(key("hmac.timestamp_header"), "not a header name"))
                        }
                    },
                    None => None,
                };
                if signed.contains(&Part::Timestamp) && timestamp_header.is_none() {
                    return Err(invalid(
                        key("hmac.signed"),
                        "uses {timestamp}: set hmac.timestamp_header",
                    ));
                }
                SchemeSpec {
                    header,
                    alias_prefix: None,
                    framing: Framing::Prefixed(h.prefix.clone()),
                    signed,
                    timestamped: timestamp_header.is_some(),
                    timestamp_header,
                    algorithm: h.algorithm,
                    encoding: h.encoding,
                    key: KeyFormat::Raw,
                }
            }
        };
        let id = match (&self.id, preset.as_ref().and_then(|p| p.id)) {
            (Some(s), _) => field("id", s)?,
            (None, Some(d)) => field("id", d)?,
            (None, None) => {
                return Err(invalid(
                    key("id"),
                    "needed for scheme = \"hmac\": where the event id comes from \
                     (header:<Name> or body:<JSON pointer>)",
                ))
            }
        };
        let type_src: Vec<String> = match (&self.type_parts, &preset) {
            (Some(v), _) => v.clone(),
            (None, Some(p)) => p.type_parts.iter().map(|s| s.to_string()).collect(),
            (None, None) => Vec::new(),
        };
        if type_src.is_empty() && self.type_prefix.as_deref().unwrap_or("").is_empty() {
            return Err(invalid(
                key("type"),
                "needs at least one part (header:<Name> or body:<JSON pointer>) or a type_prefix",
            ));
        }
        let type_parts = type_src
            .iter()
            .map(|s| field("type", s))
            .collect::<Result<Vec<_>, _>>()?;
        let type_prefix = self
            .type_prefix
            .clone()
            .unwrap_or_else(|| preset.as_ref().map_or("", |p| p.type_prefix).to_string());
        if !type_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:/".contains(&b))
        {
            return Err(invalid(
                key("type_prefix"),
                "may use only letters, digits and . _ - : /",
            ));
        }
        let subject = match (&self.subject, &preset) {
            (Some(v), _) => v.clone(),
            (None, Some(p)) => p.subject.iter().map(|s| s.to_string()).collect(),
            (None, None) => Vec::new(),
        }
        .iter()
        .map(|s| field("subject", s))
        .collect::<Result<Vec<_>, _>>()?;
        let tenant = self
            .tenant
            .as_deref()
            .map(|s| field("tenant", s))
            .transpose()?;
        let keep_headers = match (&self.keep_headers, &preset) {
            (Some(v), _) => v.iter().map(|h| h.to_ascii_lowercase()).collect(),
            (None, Some(p)) => p.keep_headers.iter().map(|s| s.to_string()).collect(),
            (None, None) => Vec::new(),
        };
        for h in &keep_headers {
            if h.starts_with("ce_") || h.starts_with("herald-") || h == "traceparent" {
                return Err(invalid(
                    key("keep_headers"),
                    format!("`{h}` would overwrite a header Herald sets"),
                ));
            }
        }
        let tolerance = self.tolerance.unwrap_or(Duration::from_secs(300));
        if scheme.timestamped && tolerance.is_zero() {
            return Err(invalid(key("tolerance"), "must be more than zero"));
        }
        let event_source = self
            .event_source
            .clone()
            .unwrap_or_else(|| format!("/sources/{name}"));
        if event_source.is_empty() || event_source.chars().any(char::is_control) {
            return Err(invalid(
                key("event_source"),
                "must be non-empty text without control characters",
            ));
        }
        Ok(ResolvedSource {
            name: name.to_string(),
            scheme,
            topic: self
                .topic
                .clone()
                .unwrap_or_else(|| input_topic.to_string()),
            event_source,
            tolerance,
            id,
            type_parts,
            type_prefix,
            subject,
            tenant,
            keep_headers,
        })
    }

    /// The secrets' values, as HMAC keys for this source's scheme.
    pub fn keys(&self, name: &str) -> Result<Vec<Vec<u8>>, ConfigError> {
        let k = format!("sources.{name}.secrets");
        let format = preset(self.scheme).map_or(KeyFormat::Raw, |p| p.scheme.key);
        self.secrets
            .iter()
            .map(|s| {
                let v = s.resolve(&k)?;
                match format {
                    KeyFormat::Raw if v.is_empty() => Err(invalid(k.clone(), "a secret is empty")),
                    KeyFormat::Raw => Ok(v.into_bytes()),
                    KeyFormat::WhsecBase64 => crate::signature::SigningKey::parse(&v)
                        .map(|key| key.bytes().to_vec())
                        .map_err(|e| invalid(k.clone(), e.to_string())),
                }
            })
            .collect()
    }
}

/// Checks `[gateway]` and every `[sources.*]` (secrets are read only by the
/// gateway, [`SourceConfig::keys`]).
pub fn validate(
    gateway: &GatewayConfig,
    sources: &std::collections::BTreeMap<String, SourceConfig>,
    input_topic: &str,
) -> Result<(), ConfigError> {
    if gateway.max_body_bytes < 1024 {
        return Err(invalid("gateway.max_body_bytes", "must be at least 1024"));
    }
    if gateway.max_in_flight == 0 {
        return Err(invalid("gateway.max_in_flight", "must be at least 1"));
    }
    if gateway.ack_timeout.is_zero() || gateway.ack_timeout >= gateway.request_timeout {
        return Err(invalid(
            "gateway.ack_timeout",
            "must be more than zero and shorter than gateway.request_timeout",
        ));
    }
    for (name, s) in sources {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid(
                format!("sources.{name}"),
                "source names use only a-z, 0-9 and '-' (they are URL paths and metric labels)",
            ));
        }
        if s.secrets.is_empty() {
            return Err(invalid(
                format!("sources.{name}.secrets"),
                "needs at least one secret: the gateway has no unauthenticated route",
            ));
        }
        if let Some(t) = &s.topic {
            if t.is_empty()
                || t.len() > 249
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return Err(invalid(
                    format!("sources.{name}.topic"),
                    "not a valid topic name",
                ));
            }
        }
        if let Some(rl) = &s.rate_limit {
            if !(rl.per_second > 0.0 && rl.per_second.is_finite()) {
                return Err(invalid(
                    format!("sources.{name}.rate_limit.per_second"),
                    "must be more than zero",
                ));
            }
        }
        s.resolve(name, input_topic)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse() {
        assert_eq!(
            Field::parse("header:X-GitHub-Delivery"),
            Ok(Field::Header("x-github-delivery".into()))
        );
        assert_eq!(
            Field::parse("body:/data/id"),
            Ok(Field::Body("/data/id".into()))
        );
        assert!(Field::parse("body:data").is_err());
        assert!(Field::parse("query:x").is_err());
        assert!(Field::parse("header:").is_err());
    }

    fn source(toml: &str) -> SourceConfig {
        toml::from_str(toml).expect("source config")
    }

    #[test]
    fn presets_fill_defaults_and_hmac_needs_its_table() {
        let s = source("scheme = \"github\"\nsecrets = [\"x\"]");
        let r = s.resolve("gh", "in").expect("resolves");
        assert_eq!(r.id, Field::Header("x-github-delivery".into()));
        assert_eq!(r.type_prefix, "github");
        assert_eq!(r.topic, "in");
        assert_eq!(r.event_source, "/sources/gh");
        let e = source("scheme = \"hmac\"\nsecrets = [\"x\"]")
            .resolve("h", "in")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sources.h.hmac"), "{e}");
        let e = source("scheme = \"hmac\"\nsecrets = [\"x\"]\n[hmac]\nheader = \"X-Sig\"")
            .resolve("h", "in")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sources.h.id"), "{e}");
        let e = source(
            "scheme = \"hmac\"\nsecrets = [\"x\"]\nid = \"body:/id\"\ntype = [\"body:/t\"]\n\
             [hmac]\nheader = \"X-Sig\"\nsigned = \"{timestamp}.{body}\"",
        )
        .resolve("h", "in")
        .unwrap_err()
        .to_string();
        assert!(e.contains("timestamp_header"), "{e}");
        let e = source("scheme = \"stripe\"\nsecrets = [\"x\"]\n[hmac]\nheader = \"X\"")
            .resolve("s", "in")
            .unwrap_err()
            .to_string();
        assert!(e.contains("only for scheme"), "{e}");
    }

    #[test]
    fn standard_webhooks_keys_are_decoded_and_checked() {
        let s = source("scheme = \"standard-webhooks\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]");
        assert_eq!(s.keys("sw").expect("keys")[0].len(), 24);
        let bad = source("scheme = \"standard-webhooks\"\nsecrets = [\"nope\"]");
        assert!(bad
            .keys("sw")
            .unwrap_err()
            .to_string()
            .contains("sources.sw.secrets"));
    }
}
