//! Verifies a request's signature against a [`SchemeSpec`]: pure, no I/O.
//!
//! Every candidate signature in the header is compared with every key's
//! expected signature in constant time (per comparison); the first key that
//! matches is reported, so rotation can be watched. A scheme with a signed
//! timestamp refuses requests outside the tolerance either way (replays,
//! and clocks far ahead).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use herald_core::sources::{Encoding, Framing, HmacAlgorithm, Part, SchemeSpec};
use hmac::{Hmac, Mac};
use std::time::Duration;

/// Why a signature was refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No signature (or no timestamp the scheme needs).
    Missing,
    /// A header that does not parse.
    Malformed,
    /// A signed timestamp outside the tolerance.
    Stale,
    /// No key made any of the signatures.
    Mismatch,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Stale => "stale",
            Self::Mismatch => "mismatch",
        }
    }
}

/// Request headers by lower-case name.
pub trait HeaderLookup {
    fn get(&self, name: &str) -> Option<&str>;
}

impl HeaderLookup for axum::http::HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        axum::http::HeaderMap::get(self, name).and_then(|v| v.to_str().ok())
    }
}

/// Lower-case names to values: the tests' requests.
#[cfg(test)]
impl HeaderLookup for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        std::collections::HashMap::get(self, name).map(String::as_str)
    }
}

/// Reads `name`, or its alias (`webhook-x` → `svix-x`) when absent.
pub(crate) fn header<'a>(
    spec: &SchemeSpec,
    h: &'a impl HeaderLookup,
    name: &str,
) -> Option<&'a str> {
    h.get(name).or_else(|| {
        let (from, to) = spec.alias_prefix.as_ref()?;
        h.get(&format!("{to}{}", name.strip_prefix(from.as_str())?))
    })
}

/// The signatures in the header (decoded) and the timestamp, if framed in.
fn candidates<'v>(
    spec: &SchemeSpec,
    value: &'v str,
) -> Result<(Vec<Vec<u8>>, Option<&'v str>), Refusal> {
    let decode = |s: &str| -> Option<Vec<u8>> {
        match spec.encoding {
            Encoding::Hex => decode_hex(s.trim()),
            Encoding::Base64 => STANDARD.decode(s.trim()).ok(),
        }
    };
    match &spec.framing {
        Framing::Prefixed(prefix) => {
            let sig = value
                .trim()
                .strip_prefix(prefix.as_str())
                .ok_or(Refusal::Malformed)?;
            Ok((vec![decode(sig).ok_or(Refusal::Malformed)?], None))
        }
        Framing::Stripe => {
            let mut t = None;
            let mut sigs = Vec::new();
            for item in value.split(',') {
                let (k, v) = item.trim().split_once('=').ok_or(Refusal::Malformed)?;
                match k {
                    "t" => t = Some(v),
                    // Other schemes (v0, test-mode signatures) are ignored, as
                    // Stripe's libraries do; an undecodable v1 is skipped.
                    "v1" => sigs.extend(decode(v)),
                    _ => {}
                }
            }
            if t.is_none() {
                return Err(Refusal::Malformed);
            }
            Ok((sigs, t))
        }
        Framing::VersionedList => {
            let sigs = value
                .split(' ')
                .filter_map(|c| c.strip_prefix("v1,"))
                .filter_map(decode)
                .collect();
            Ok((sigs, None))
        }
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn mac(algorithm: HmacAlgorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut m =
            <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes any key size");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }
    match algorithm {
        HmacAlgorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
        HmacAlgorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, parts),
        HmacAlgorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, parts),
    }
}

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks the request; `Ok(i)`: key `i` made one of its signatures.
pub fn verify(
    spec: &SchemeSpec,
    keys: &[Vec<u8>],
    headers: &impl HeaderLookup,
    body: &[u8],
    now_s: i64,
    tolerance: Duration,
) -> Result<usize, Refusal> {
    let value = header(spec, headers, &spec.header).ok_or(Refusal::Missing)?;
    let (sigs, framed_ts) = candidates(spec, value)?;
    let timestamp = match (&spec.timestamp_header, framed_ts) {
        (_, Some(t)) => Some(t),
        (Some(name), None) => Some(header(spec, headers, name).ok_or(Refusal::Missing)?),
        (None, None) => None,
    };
    if let Some(t) = timestamp {
        let t: i64 = t.trim().parse().map_err(|_| Refusal::Malformed)?;
        if now_s.abs_diff(t) > tolerance.as_secs() {
            return Err(Refusal::Stale);
        }
    }
    let mut pieces: Vec<&[u8]> = Vec::with_capacity(spec.signed.len());
    for p in &spec.signed {
        pieces.push(match p {
            Part::Literal(s) => s.as_bytes(),
            Part::Body => body,
            Part::Timestamp => timestamp.ok_or(Refusal::Missing)?.trim().as_bytes(),
            Part::Header(name) => header(spec, headers, name)
                .ok_or(Refusal::Missing)?
                .as_bytes(),
        });
    }
    if sigs.is_empty() {
        return Err(Refusal::Malformed);
    }
    // Compare every pair, so the time taken does not say which key or which
    // candidate came close.
    let mut found = None;
    for (i, key) in keys.iter().enumerate() {
        let want = mac(spec.algorithm, key, &pieces);
        let hit = sigs.iter().fold(false, |acc, s| acc | equal(s, &want));
        if hit && found.is_none() {
            found = Some(i);
        }
    }
    found.ok_or(Refusal::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::sources::SourceConfig;
    use std::collections::HashMap;

    fn h(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect()
    }
    fn spec(toml: &str) -> (SchemeSpec, Vec<Vec<u8>>) {
        let s: SourceConfig = toml::from_str(toml).expect("source");
        (
            s.resolve("t", "in").expect("resolves").scheme,
            s.keys("t").expect("keys"),
        )
    }
    const FIVE_MIN: Duration = Duration::from_secs(300);

    /// GitHub's documented example ("Validating webhook deliveries").
    #[test]
    fn github_documented_vector() {
        let (s, keys) = spec("scheme = \"github\"\nsecrets = [\"It's a Secret to Everybody\"]");
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let hs = h(&[("X-Hub-Signature-256", sig)]);
        assert_eq!(verify(&s, &keys, &hs, b"Hello, World!", 0, FIVE_MIN), Ok(0));
        assert_eq!(
            verify(&s, &keys, &hs, b"Hello, World?", 0, FIVE_MIN),
            Err(Refusal::Mismatch)
        );
        assert_eq!(
            verify(&s, &keys, &h(&[]), b"Hello, World!", 0, FIVE_MIN),
            Err(Refusal::Missing)
        );
        let hs = h(&[("X-Hub-Signature-256", "md5=abc")]);
        assert_eq!(
            verify(&s, &keys, &hs, b"x", 0, FIVE_MIN),
            Err(Refusal::Malformed)
        );
    }

    /// The Standard Webhooks specification's example, through the svix-*
    /// header names too.
    #[test]
    fn standard_webhooks_spec_vector_and_aliases() {
        let (s, keys) = spec(
            "scheme = \"standard-webhooks\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]",
        );
        let body = br#"{"test": 2432232314}"#;
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let ts = 1614265330;
        for prefix in ["webhook", "svix"] {
            let hs = h(&[
                (&format!("{prefix}-id"), "msg_p5jXN8AQM9LWM0D4loKWxJek"),
                (&format!("{prefix}-timestamp"), "1614265330"),
                (
                    &format!("{prefix}-signature"),
                    &format!("v1,bm9wZQ== {sig}"),
                ),
            ]);
            assert_eq!(
                verify(&s, &keys, &hs, body, ts + 10, FIVE_MIN),
                Ok(0),
                "{prefix}"
            );
            assert_eq!(
                verify(&s, &keys, &hs, body, ts + 301, FIVE_MIN),
                Err(Refusal::Stale)
            );
            assert_eq!(
                verify(&s, &keys, &hs, body, ts - 301, FIVE_MIN),
                Err(Refusal::Stale)
            );
        }
    }

    #[test]
    fn stripe_header_with_rotation() {
        let (s, keys) = spec("scheme = \"stripe\"\nsecrets = [\"whsec_old\", \"whsec_new\"]");
        let body = br#"{"id":"evt_1","type":"customer.created"}"#;
        let t = 1_700_000_000i64;
        let signed = |k: &str| {
            let m = mac(
                HmacAlgorithm::Sha256,
                k.as_bytes(),
                &[t.to_string().as_bytes(), b".", body],
            );
            m.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        let header = format!("t={t},v1={},v0=deadbeef", signed("whsec_new"));
        let hs = h(&[("Stripe-Signature", &header)]);
        assert_eq!(verify(&s, &keys, &hs, body, t, FIVE_MIN), Ok(1));
        let hs = h(&[(
            "Stripe-Signature",
            &format!("t={t},v1={}", signed("whsec_other")),
        )]);
        assert_eq!(
            verify(&s, &keys, &hs, body, t, FIVE_MIN),
            Err(Refusal::Mismatch)
        );
        let hs = h(&[("Stripe-Signature", &format!("v1={}", signed("whsec_new")))]);
        assert_eq!(
            verify(&s, &keys, &hs, body, t, FIVE_MIN),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn generic_hmac_with_timestamp_header() {
        let (s, keys) = spec(
            "scheme = \"hmac\"\nsecrets = [\"k\"]\nid = \"body:/id\"\ntype = [\"body:/t\"]\n\
             [hmac]\nheader = \"X-Sig\"\nalgorithm = \"sha512\"\nencoding = \"base64\"\n\
             prefix = \"v0=\"\nsigned = \"v0:{timestamp}:{body}\"\ntimestamp_header = \"X-Ts\"",
        );
        let body = b"{}";
        let m = mac(HmacAlgorithm::Sha512, b"k", &[b"v0:", b"100", b":", body]);
        let sig = format!("v0={}", STANDARD.encode(m));
        let hs = h(&[("X-Sig", &sig), ("X-Ts", "100")]);
        assert_eq!(verify(&s, &keys, &hs, body, 100, FIVE_MIN), Ok(0));
        let hs = h(&[("X-Sig", &sig)]);
        assert_eq!(
            verify(&s, &keys, &hs, body, 100, FIVE_MIN),
            Err(Refusal::Missing)
        );
        let hs = h(&[("X-Sig", &sig), ("X-Ts", "soon")]);
        assert_eq!(
            verify(&s, &keys, &hs, body, 100, FIVE_MIN),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn sha1_and_hex_decoding() {
        assert_eq!(decode_hex("0aFf"), Some(vec![0x0a, 0xff]));
        assert_eq!(decode_hex("0a0"), None);
        assert_eq!(decode_hex("zz"), None);
        // RFC 2202 test case 2.
        let m = mac(
            HmacAlgorithm::Sha1,
            b"Jefe",
            &[b"what do ya want ", b"for nothing?"],
        );
        assert_eq!(
            decode_hex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
            Some(m)
        );
    }
}
