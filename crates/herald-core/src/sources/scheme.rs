//! Signature schemes as data ([`SchemeSpec`]) and the presets for the
//! providers Herald knows: Standard Webhooks, Stripe, GitHub, Shopify.

use super::{Encoding, Field, HmacAlgorithm, SchemeKind};

/// How the signature header is framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// One signature after a fixed prefix (`sha256=…`).
    Prefixed(String),
    /// `t=<unix>,v1=<sig>,v1=<sig>,…` (Stripe): the timestamp travels inside.
    Stripe,
    /// Space-separated `v1,<sig>` (Standard Webhooks).
    VersionedList,
}

/// One piece of the signed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Body,
    Timestamp,
    Header(String),
}

/// How a secret becomes the HMAC key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// The secret's bytes as they are.
    Raw,
    /// `whsec_<base64>`: the decoded base64 part.
    WhsecBase64,
}

/// A signature scheme as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemeSpec {
    /// Header with the signature (lower-case).
    pub header: String,
    /// Looked up when `header` is absent (Svix's `svix-*` names).
    pub alias_prefix: Option<(String, String)>,
    pub framing: Framing,
    pub signed: Vec<Part>,
    /// Header with the signed timestamp, unless the framing carries it.
    pub timestamp_header: Option<String>,
    pub algorithm: HmacAlgorithm,
    pub encoding: Encoding,
    pub key: KeyFormat,
    /// Whether a timestamp is part of the scheme (then `tolerance` applies).
    pub timestamped: bool,
}

/// Parses `{body}`, `{timestamp}`, `{header:Name}` and literal text.
pub fn parse_signed(template: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let end = rest
                    .find('}')
                    .ok_or_else(|| format!("`{template}`: unclosed `{{`"))?;
                let name = &rest[1..end];
                parts.push(match name {
                    "body" => Part::Body,
                    "timestamp" => Part::Timestamp,
                    _ => match Field::parse(name) {
                        Ok(Field::Header(h)) => Part::Header(h),
                        _ => {
                            return Err(format!(
                                "`{template}`: unknown placeholder `{{{name}}}` \
                                 (use {{body}}, {{timestamp}} or {{header:Name}})"
                            ))
                        }
                    },
                });
                rest = &rest[end + 1..];
            }
            Some(i) => {
                parts.push(Part::Literal(rest[..i].to_string()));
                rest = &rest[i..];
            }
            None => {
                parts.push(Part::Literal(rest.to_string()));
                rest = "";
            }
        }
    }
    if !parts.contains(&Part::Body) {
        return Err(format!(
            "`{template}`: the signed bytes must include {{body}}"
        ));
    }
    Ok(parts)
}

pub(super) struct Preset {
    pub(super) scheme: SchemeSpec,
    pub(super) id: Option<&'static str>,
    pub(super) type_parts: &'static [&'static str],
    pub(super) type_prefix: &'static str,
    pub(super) subject: &'static [&'static str],
    pub(super) keep_headers: &'static [&'static str],
}

pub(super) fn preset(kind: SchemeKind) -> Option<Preset> {
    let hmac_of_body = |header: &str, framing: Framing, encoding: Encoding| SchemeSpec {
        header: header.into(),
        alias_prefix: None,
        framing,
        signed: vec![Part::Body],
        timestamp_header: None,
        algorithm: HmacAlgorithm::Sha256,
        encoding,
        key: KeyFormat::Raw,
        timestamped: false,
    };
    Some(match kind {
        SchemeKind::StandardWebhooks => Preset {
            scheme: SchemeSpec {
                header: "webhook-signature".into(),
                alias_prefix: Some(("webhook-".into(), "svix-".into())),
                framing: Framing::VersionedList,
                signed: vec![
                    Part::Header("webhook-id".into()),
                    Part::Literal(".".into()),
                    Part::Timestamp,
                    Part::Literal(".".into()),
                    Part::Body,
                ],
                timestamp_header: Some("webhook-timestamp".into()),
                algorithm: HmacAlgorithm::Sha256,
                encoding: Encoding::Base64,
                key: KeyFormat::WhsecBase64,
                timestamped: true,
            },
            id: Some("header:webhook-id"),
            type_parts: &["body:/type"],
            type_prefix: "",
            subject: &[],
            keep_headers: &[],
        },
        SchemeKind::Stripe => Preset {
            scheme: SchemeSpec {
                header: "stripe-signature".into(),
                alias_prefix: None,
                framing: Framing::Stripe,
                signed: vec![Part::Timestamp, Part::Literal(".".into()), Part::Body],
                timestamp_header: None,
                algorithm: HmacAlgorithm::Sha256,
                encoding: Encoding::Hex,
                key: KeyFormat::Raw,
                timestamped: true,
            },
            id: Some("body:/id"),
            type_parts: &["body:/type"],
            type_prefix: "stripe",
            subject: &["body:/data/object/customer", "body:/data/object/id"],
            keep_headers: &[],
        },
        SchemeKind::Github => Preset {
            scheme: hmac_of_body(
                "x-hub-signature-256",
                Framing::Prefixed("sha256=".into()),
                Encoding::Hex,
            ),
            id: Some("header:X-GitHub-Delivery"),
            type_parts: &["header:X-GitHub-Event", "body:/action"],
            type_prefix: "github",
            subject: &["body:/repository/full_name", "body:/organization/login"],
            keep_headers: &[
                "x-github-event",
                "x-github-hook-id",
                "x-github-hook-installation-target-id",
            ],
        },
        SchemeKind::Shopify => Preset {
            scheme: hmac_of_body(
                "x-shopify-hmac-sha256",
                Framing::Prefixed(String::new()),
                Encoding::Base64,
            ),
            id: Some("header:X-Shopify-Webhook-Id"),
            type_parts: &["header:X-Shopify-Topic"],
            type_prefix: "shopify",
            subject: &["body:/admin_graphql_api_id", "body:/id"],
            keep_headers: &[
                "x-shopify-topic",
                "x-shopify-shop-domain",
                "x-shopify-api-version",
                "x-shopify-triggered-at",
            ],
        },
        SchemeKind::Hmac => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_templates_parse() {
        assert_eq!(
            parse_signed("{timestamp}.{body}"),
            Ok(vec![Part::Timestamp, Part::Literal(".".into()), Part::Body])
        );
        assert_eq!(
            parse_signed("v0:{header:X-Ts}:{body}"),
            Ok(vec![
                Part::Literal("v0:".into()),
                Part::Header("x-ts".into()),
                Part::Literal(":".into()),
                Part::Body
            ])
        );
        assert!(parse_signed("{timestamp}").unwrap_err().contains("{body}"));
        assert!(parse_signed("{bdy}")
            .unwrap_err()
            .contains("unknown placeholder"));
        assert!(parse_signed("{body").unwrap_err().contains("unclosed"));
    }
}
