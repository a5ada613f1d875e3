//! Standard Webhooks signing: `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "<id>.<timestamp>.<body>">`, keyed by the base64 part of a `whsec_` secret.
//! Several keys sign at once during rotation, space-separated.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("signing secret must look like whsec_<base64>")]
    BadPrefix,
    #[error("signing secret's key part is not valid base64")]
    BadBase64,
}

/// A decoded signing key. `Debug` does not show it.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    pub fn parse(secret: &str) -> Result<Self, SignatureError> {
        let b64 = secret
            .strip_prefix("whsec_")
            .ok_or(SignatureError::BadPrefix)?;
        STANDARD
            .decode(b64)
            .map(SigningKey)
            .map_err(|_| SignatureError::BadBase64)
    }

    /// The key's bytes (for verifiers that run their own HMAC).
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// `v1,<base64 signature>`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key size");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` value: one `v1,…` per key.
pub fn signature_header(keys: &[SigningKey], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| k.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether any signature in `header` was made by `key` (constant-time per
/// candidate). Used by receivers, Herald's test sinks among them.
pub fn verify(key: &SigningKey, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let want = key.sign(msg_id, timestamp, body);
    header.split(' ').any(|candidate| {
        candidate.len() == want.len()
            && candidate
                .bytes()
                .zip(want.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification.
    #[test]
    fn spec_test_vector() {
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = key.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rotation_signs_with_every_key_and_verifies_each() {
        let a = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let b = SigningKey::parse("whsec_c2Vjb25kLWtleS1mb3Itcm90YXRpb24=").unwrap();
        let h = signature_header(&[a.clone(), b.clone()], "id", 1, b"{}");
        assert_eq!(h.split(' ').count(), 2);
        assert!(verify(&a, "id", 1, b"{}", &h));
        assert!(verify(&b, "id", 1, b"{}", &h));
        assert!(!verify(&a, "id", 2, b"{}", &h));
        assert!(!verify(&a, "id", 1, b"{ }", &h));
    }

    #[test]
    fn bad_secrets() {
        assert_eq!(
            SigningKey::parse("abc").unwrap_err(),
            SignatureError::BadPrefix
        );
        assert_eq!(
            SigningKey::parse("whsec_!!").unwrap_err(),
            SignatureError::BadBase64
        );
    }
}
