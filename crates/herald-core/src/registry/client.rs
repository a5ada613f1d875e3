//! A client for the Confluent Schema Registry REST API (also served by
//! Apicurio's `ccompat` API, Karapace and Redpanda): look a schema up by id,
//! register one under a subject, read a subject's latest version.

use crate::config::{ConfigError, RegistryAuth, SchemaRegistryConfig};
use serde::Deserialize;
use std::time::Duration;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered that the id or subject does not exist (404),
    /// or holds something Herald cannot use: final for that id.
    #[error("{0}")]
    NotFound(String),
    /// No answer, a timeout, 5xx, 408 or 429: worth retrying.
    #[error("schema registry unavailable: {0}")]
    Unavailable(String),
    /// Refused (401, 403, other 4xx): the configuration needs a fix.
    #[error("schema registry refused the request: {0}")]
    Refused(String),
}

/// The body the registry answers with for a schema.
#[derive(Debug, Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<serde_json::Value>,
}

/// A subject's version as the registry returns it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct SubjectVersion {
    pub id: u32,
    pub version: u32,
    pub schema: String,
}

#[derive(Clone)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
    auth: RegistryAuth,
}

impl RegistryClient {
    /// A client for the configured registry; secrets and the CA file are
    /// read here, and errors name their key.
    pub fn from_config(c: &SchemaRegistryConfig) -> Result<Self, ConfigError> {
        let mut b = reqwest::Client::builder()
            .timeout(c.timeout)
            .connect_timeout(c.timeout.min(Duration::from_secs(5)));
        if let Some(pem) = c.ca_pem()? {
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                crate::config::ConfigError::Invalid {
                    key: "schema_registry.ca_file".into(),
                    message: format!("not a PEM certificate: {e}"),
                }
            })?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(|e| ConfigError::Invalid {
            key: "schema_registry".into(),
            message: format!("cannot build the HTTP client: {e}"),
        })?;
        Ok(Self {
            base: c.url.trim().trim_end_matches('/').to_string(),
            http,
            auth: c.auth()?,
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self
            .http
            .request(method, format!("{}/{path}", self.base))
            .header(reqwest::header::ACCEPT, CONTENT_TYPE);
        match &self.auth {
            RegistryAuth::None => r,
            RegistryAuth::Basic { username, password } => r.basic_auth(username, Some(password)),
            RegistryAuth::Bearer(t) => r.bearer_auth(t),
        }
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        r: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T, RegistryError> {
        let resp = r
            .send()
            .await
            .map_err(|e| RegistryError::Unavailable(format!("{what}: {}", error_chain(&e))))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| RegistryError::Unavailable(format!("{what}: {}", error_chain(&e))))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                RegistryError::Unavailable(format!("{what}: unexpected answer ({e})"))
            });
        }
        let message = registry_message(&body);
        let text = format!("{what}: HTTP {} {message}", status.as_u16());
        Err(match status.as_u16() {
            404 => RegistryError::NotFound(text),
            408 | 429 | 500..=599 => RegistryError::Unavailable(text),
            _ => RegistryError::Refused(text),
        })
    }

    /// The Avro schema registered with `id`.
    pub async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        let what = format!("schema id {id}");
        let b: SchemaBody = self
            .send(
                self.request(reqwest::Method::GET, &format!("schemas/ids/{id}")),
                &what,
            )
            .await?;
        match b.schema_type.as_deref() {
            None | Some("AVRO") => {}
            Some(other) => {
                return Err(RegistryError::NotFound(format!(
                    "{what} is a {other} schema; Herald reads Avro input"
                )))
            }
        }
        if !b.references.is_empty() {
            return Err(RegistryError::NotFound(format!(
                "{what} references other schemas, which Herald does not resolve; \
                 register the event schema self-contained"
            )));
        }
        Ok(b.schema)
    }

    /// Registers `schema` (Avro) under `subject`; the registry returns the
    /// existing id when the same schema is already registered.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        #[derive(Deserialize)]
        struct Id {
            id: u32,
        }
        let r = self
            .request(
                reqwest::Method::POST,
                &format!("subjects/{}/versions", encode(subject)),
            )
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(serde_json::json!({ "schema": schema }).to_string());
        let id: Id = self
            .send(r, &format!("registering under subject {subject}"))
            .await?;
        Ok(id.id)
    }

    /// The latest version of `subject`, `None` when the subject is unknown.
    pub async fn latest(&self, subject: &str) -> Result<Option<SubjectVersion>, RegistryError> {
        self.version(subject, "latest").await
    }

    /// Version `version` (a number or `latest`) of `subject`, `None` when
    /// the subject or version is unknown.
    pub async fn version(
        &self,
        subject: &str,
        version: &str,
    ) -> Result<Option<SubjectVersion>, RegistryError> {
        let r = self.request(
            reqwest::Method::GET,
            &format!("subjects/{}/versions/{version}", encode(subject)),
        );
        match self
            .send(r, &format!("subject {subject} version {version}"))
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(RegistryError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The version numbers of `subject` (empty when it is unknown).
    pub async fn versions(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        let r = self.request(
            reqwest::Method::GET,
            &format!("subjects/{}/versions", encode(subject)),
        );
        match self.send(r, &format!("subject {subject}")).await {
            Ok(v) => Ok(v),
            Err(RegistryError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// The registry's `{"error_code": …, "message": …}`, or the body's start.
fn registry_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct E {
        error_code: Option<i64>,
        message: Option<String>,
    }
    match serde_json::from_slice::<E>(body) {
        Ok(E {
            error_code,
            message: Some(m),
        }) => match error_code {
            Some(c) => format!("({c}: {m})"),
            None => format!("({m})"),
        },
        _ => {
            let t = String::from_utf8_lossy(body);
            format!("({})", crate::headers::truncate(t.trim(), 200))
        }
    }
}

/// Percent-encodes a subject for a URL path segment.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_are_read_from_its_json_body() {
        assert_eq!(
            registry_message(br#"{"error_code":40403,"message":"Schema not found"}"#),
            "(40403: Schema not found)"
        );
        assert_eq!(
            registry_message(b"<html>bad gateway</html>"),
            "(<html>bad gateway</html>)"
        );
    }

    #[test]
    fn subjects_are_encoded_as_one_path_segment() {
        assert_eq!(encode("herald.events-value"), "herald.events-value");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }
}
