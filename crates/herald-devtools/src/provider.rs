//! A stand-in for a webhook provider (Stripe): signed events posted to the
//! gateway at a steady rate, with a share of them sent again the way a
//! provider retries a delivery it is not sure arrived. Used by the demo and
//! the gateway benchmark.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Stripe's `Stripe-Signature` header for `body` signed at `t` (Unix
/// seconds) with the endpoint secret, as Stripe computes it: hex HMAC-SHA256
/// of `"<t>.<body>"` keyed by the secret's bytes.
pub fn stripe_signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let sig: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={sig}")
}

/// Event types the demo provider sends, in rotation.
pub const STRIPE_TYPES: [&str; 4] = [
    "customer.subscription.created",
    "invoice.paid",
    "invoice.payment_failed",
    "customer.subscription.deleted",
];

/// A Stripe-shaped event body: `evt_<run>_<n>` about customer `cus_<n % 20>`.
pub fn stripe_event(run: &str, n: u64) -> Vec<u8> {
    serde_json::json!({
        "id": format!("evt_{run}_{n}"),
        "object": "event",
        "type": STRIPE_TYPES[(n % STRIPE_TYPES.len() as u64) as usize],
        "created": herald_core::time::now_ms() / 1000,
        "data": {"object": {
            "id": format!("sub_{n}"),
            "customer": format!("cus_{}", n % 20),
            "amount_due": 1200 + n % 7 * 100,
        }},
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked against Stripe's own library (stripe 16.1.0,
    /// `WebhookSignature.generate_signature_header('{}', 'whsec_test', 1700000000)`).
    #[test]
    fn matches_stripes_library() {
        assert_eq!(
            stripe_signature("whsec_test", 1_700_000_000, b"{}"),
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }
}
