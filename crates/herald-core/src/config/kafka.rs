//! `[kafka]`: bootstrap servers, extra librdkafka properties, and the
//! properties whose values are secrets (resolved at load, never shown).

use super::{invalid, ConfigError, SecretRef};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list.
    #[serde(default = "default_bootstrap")]
    pub bootstrap_servers: String,
    /// Extra librdkafka properties for every client (security settings,
    /// `client.rack`, …). Herald's own settings win where they overlap.
    #[serde(default)]
    pub client: BTreeMap<String, String>,
    /// librdkafka properties whose values are secrets, by reference
    /// (`"sasl.password" = "env:KAFKA_PASSWORD"`, `"ssl.ca.pem" =
    /// "file:/etc/herald/ca.pem"`): resolved when the config is loaded (an
    /// error names the property and the variable or file, never the value).
    #[serde(default)]
    pub client_secrets: BTreeMap<String, SecretRef>,
    /// `client_secrets` resolved; never serialized, `Debug` shows no value.
    #[serde(skip)]
    pub(crate) resolved_secrets: ResolvedSecrets,
}

/// Resolved secret properties. `Debug` lists the property names only.
#[derive(Clone, Default)]
pub(crate) struct ResolvedSecrets(pub(crate) BTreeMap<String, String>);

impl fmt::Debug for ResolvedSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// librdkafka properties that name files the client reads at start.
const CLIENT_FILE_PROPERTIES: [&str; 5] = [
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.keystore.location",
    "ssl.crl.location",
];

impl KafkaConfig {
    /// Every extra client property: `client`, then the resolved
    /// `client_secrets`.
    pub fn client_properties(&self) -> impl Iterator<Item = (&String, &String)> {
        self.client.iter().chain(&self.resolved_secrets.0)
    }

    /// The secret properties and the client's own settings, resolved and
    /// checked: unreadable certificate files and unresolvable secrets are
    /// refused by key.
    pub(super) fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        for prop in CLIENT_FILE_PROPERTIES {
            if let Some(path) = self.client.get(prop) {
                // `probe`: librdkafka looks in the system's usual places.
                if prop == "ssl.ca.location" && path == "probe" {
                    continue;
                }
                std::fs::File::open(path).map_err(|e| {
                    invalid(
                        format!("kafka.client.\"{prop}\""),
                        format!("cannot read {path}: {e}"),
                    )
                })?;
            }
        }
        let mut resolved = BTreeMap::new();
        for (prop, secret) in &self.client_secrets {
            let key = format!("kafka.client_secrets.\"{prop}\"");
            if self.client.contains_key(prop) {
                return Err(invalid(key, "also set in kafka.client; keep one"));
            }
            resolved.insert(prop.clone(), secret.resolve(&key)?);
        }
        self.resolved_secrets = ResolvedSecrets(resolved);
        Ok(())
    }
}

fn default_bootstrap() -> String {
    "127.0.0.1:9092".into()
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: default_bootstrap(),
            client: BTreeMap::new(),
            client_secrets: BTreeMap::new(),
            resolved_secrets: ResolvedSecrets::default(),
        }
    }
}
