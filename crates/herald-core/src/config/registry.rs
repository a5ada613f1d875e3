//! `[schema_registry]`: where the router looks up the writer schemas of
//! input records framed in the Confluent wire format (magic byte 0, a 4-byte
//! schema id, the Avro body), and how it authenticates.

use super::{invalid, ConfigError, SecretRef};
use crate::time::serde_duration;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// Base URL of a Confluent-compatible Schema Registry API
    /// (`https://psrc-….confluent.cloud`, `http://registry:8081`,
    /// Apicurio's `…/apis/ccompat/v7`).
    pub url: String,
    /// Basic-auth user (Confluent Cloud: the API key); needs `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password (Confluent Cloud: the API secret), by reference.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// A bearer token instead of basic auth, by reference.
    #[serde(default)]
    pub bearer_token: Option<SecretRef>,
    /// PEM file of the CA that signed the registry's certificate, when it
    /// is not in the system's trust store.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Timeout of one registry request.
    #[serde(default = "default_timeout", with = "serde_duration")]
    pub timeout: Duration,
    /// How long the router keeps retrying an unreachable registry for a
    /// schema id it has not seen before, holding its batch, before it sends
    /// the records framed with that id to the invalid topic (reason
    /// `registry`). Ids seen once are cached for the process's life (a
    /// registry never changes what an id means), so an outage only touches
    /// records written with a schema new to this router.
    #[serde(default = "default_outage_hold", with = "serde_duration")]
    pub outage_hold: Duration,
}

/// How Herald frames the Avro records it writes (deliveries, attempts,
/// dead letters, ledger entries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFormat {
    /// Avro single-object encoding: readable with `schemas/` alone.
    #[default]
    SingleObject,
    /// The Confluent wire format, schemas registered under
    /// `<topic>-value` in `[schema_registry]`: readable by any registry-aware
    /// consumer (Kafka Connect, ksqlDB, Flink, confluent-kafka).
    Registry,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    #[serde(default)]
    pub format: OutputFormat,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_outage_hold() -> Duration {
    Duration::from_secs(60)
}

/// How the client authenticates, secrets resolved.
#[derive(Clone)]
pub enum RegistryAuth {
    None,
    Basic { username: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

impl SchemaRegistryConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let u = self.url.trim();
        if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() < "http://x".len() {
            return Err(invalid(
                "schema_registry.url",
                "must be an http:// or https:// URL",
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(invalid(
                "schema_registry.password",
                "needs schema_registry.username",
            ));
        }
        if self.username.is_some() && self.password.is_none() {
            return Err(invalid(
                "schema_registry.username",
                "needs schema_registry.password (by reference: env:NAME or file:PATH)",
            ));
        }
        if self.username.is_some() && self.bearer_token.is_some() {
            return Err(invalid(
                "schema_registry.bearer_token",
                "set either username/password or bearer_token, not both",
            ));
        }
        if self.timeout.is_zero() {
            return Err(invalid("schema_registry.timeout", "must be more than zero"));
        }
        Ok(())
    }

    /// Resolves the credentials and reads the CA file; errors name the key.
    pub fn auth(&self) -> Result<RegistryAuth, ConfigError> {
        if let (Some(user), Some(pw)) = (&self.username, &self.password) {
            return Ok(RegistryAuth::Basic {
                username: user.clone(),
                password: pw.resolve("schema_registry.password")?,
            });
        }
        if let Some(t) = &self.bearer_token {
            return Ok(RegistryAuth::Bearer(
                t.resolve("schema_registry.bearer_token")?,
            ));
        }
        Ok(RegistryAuth::None)
    }

    /// The CA certificate's PEM, if one is configured.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        self.ca_file
            .as_ref()
            .map(|p| {
                std::fs::read(p).map_err(|e| {
                    invalid("schema_registry.ca_file", format!("cannot read {p}: {e}"))
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, RegistryAuth};

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_toml_with_env(
            toml,
            "t.toml",
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn broken_registry_settings_are_refused_by_key() {
        let cases = [
            ("url = \"registry:8081\"", "schema_registry.url"),
            (
                "url = \"http://r\"\nusername = \"u\"",
                "schema_registry.username",
            ),
            (
                "url = \"http://r\"\npassword = \"env:X\"",
                "schema_registry.password",
            ),
            (
                "url = \"http://r\"\nusername = \"u\"\npassword = \"p\"\nbearer_token = \"t\"",
                "schema_registry.bearer_token",
            ),
            (
                "url = \"http://r\"\ntimeout = \"0s\"",
                "schema_registry.timeout",
            ),
            ("url = \"http://r\"\nurls = \"x\"", "urls"),
        ];
        let err = load("[output]\nformat = \"registry\"\n", &[]).unwrap_err();
        assert!(
            err.contains("output.format") && err.contains("[schema_registry]"),
            "{err}"
        );
        let err = load("[output]\nformat = \"confluent\"\n", &[]).unwrap_err();
        assert!(
            err.contains("single-object") && err.contains("registry"),
            "{err}"
        );
        for (body, key) in cases {
            let err = load(&format!("[schema_registry]\n{body}\n"), &[]).unwrap_err();
            assert!(err.contains(key), "{body}: {err}");
        }
    }

    #[test]
    fn credentials_resolve_by_reference_and_never_show() {
        let c = load(
            "[schema_registry]\nurl = \"https://sr\"\nusername = \"key\"\npassword = \"env:HERALD_TEST_SR_PW\"\n",
            &[],
        )
        .unwrap();
        let r = c.schema_registry.as_ref().unwrap();
        let err = r.auth().unwrap_err().to_string();
        assert!(
            err.contains("schema_registry.password") && err.contains("HERALD_TEST_SR_PW"),
            "{err}"
        );
        std::env::set_var("HERALD_TEST_SR_PW", "s3cr3t-value");
        let auth = r.auth().unwrap();
        assert!(
            matches!(&auth, RegistryAuth::Basic { username, password } if username == "key" && password == "s3cr3t-value")
        );
        assert!(!format!("{auth:?}").contains("s3cr3t"));
        let missing_ca = load(
            "[schema_registry]\nurl = \"https://sr\"\nca_file = \"/no/such/ca.pem\"\n",
            &[],
        )
        .unwrap();
        let err = missing_ca
            .schema_registry
            .unwrap()
            .ca_pem()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("schema_registry.ca_file") && err.contains("/no/such/ca.pem"),
            "{err}"
        );
    }
}
