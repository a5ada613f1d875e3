//! Signed webhooks per Standard Webhooks: POST the CloudEvents JSON body with
//! `webhook-id` (the event id, stable across retries, so receivers can
//! de-duplicate), `webhook-timestamp` and `webhook-signature`.

use super::RequestBuilder;
use herald_core::config::DestinationConfig;
use herald_core::envelope::Delivery;
use herald_core::signature::{signature_header, SigningKey};
use std::time::{SystemTime, UNIX_EPOCH};

pub struct Webhook {
    url: reqwest::Url,
    keys: Vec<SigningKey>,
    headers: Vec<(String, String)>,
}

impl Webhook {
    pub fn new(name: &str, c: &DestinationConfig) -> anyhow::Result<Self> {
        let key = |k: &str| format!("destinations.{name}.{k}");
        let mut keys = Vec::new();
        if let Some(s) = &c.secret {
            keys.push(SigningKey::parse(&s.resolve(&key("secret"))?)?);
        }
        for s in &c.extra_secrets {
            keys.push(SigningKey::parse(&s.resolve(&key("extra_secrets"))?)?);
        }
        let url = reqwest::Url::parse(&c.url)
            .map_err(|e| anyhow::anyhow!("config key `{}`: {e}", key("url")))?;
        Ok(Self {
            url,
            keys,
            headers: c
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }
}

impl RequestBuilder for Webhook {
    fn build(&self, client: &reqwest::Client, delivery: &Delivery) -> reqwest::RequestBuilder {
        let body = serde_json::to_vec(&delivery.event.to_cloudevent_json())
            .expect("JSON values serialise");
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let id = &delivery.event.id;
        let mut req = client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("user-agent", concat!("Herald/", env!("CARGO_PKG_VERSION")))
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string());
        if !self.keys.is_empty() {
            req = req.header(
                "webhook-signature",
                signature_header(&self.keys, id, ts, &body),
            );
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        req.body(body)
    }
}
