//! Configuration: one TOML file, layered as built-in defaults → file →
//! `HERALD__…` environment overrides (`HERALD__KAFKA__BOOTSTRAP_SERVERS`,
//! `HERALD__DESTINATIONS__SLACK__URL`, …). Unknown keys are errors, and every
//! error names the key it is about.

use crate::retry::RetryPolicy;
use crate::routing::RouteConfig;
use crate::time::{serde_duration, serde_durations, serde_opt_duration};
use crate::topics::{is_valid_name, TopicNames};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

mod kafka;
mod log;
mod registry;
pub use kafka::KafkaConfig;
pub use log::LogConfig;
pub use registry::{OutputConfig, OutputFormat, RegistryAuth, SchemaRegistryConfig};

/// Prefix of environment variables that override the file.
pub const ENV_PREFIX: &str = "HERALD__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("environment override {var}: {message}")]
    Env { var: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub topics: TopicsConfig,
    #[serde(default)]
    pub router: RouterConfig,
    #[serde(default)]
    pub adapter: AdapterConfig,
    /// Destinations by name (`[a-z0-9-]`); each gets its own topic, consumer
    /// group, retry ladder and DLQ.
    #[serde(default)]
    pub destinations: BTreeMap<String, DestinationConfig>,
    /// The inbound gateway's HTTP server (`herald-gateway`).
    #[serde(default)]
    pub gateway: crate::sources::GatewayConfig,
    /// Inbound webhook sources by name (`[a-z0-9-]`), served by
    /// `herald-gateway` at `POST /webhooks/<name>`.
    #[serde(default)]
    pub sources: BTreeMap<String, crate::sources::SourceConfig>,
    /// A Confluent-compatible Schema Registry for input records in the
    /// Confluent wire format; without it such records are invalid.
    #[serde(default)]
    pub schema_registry: Option<SchemaRegistryConfig>,
    /// How Herald's own records are framed.
    #[serde(default)]
    pub output: OutputConfig,
    /// The delivery log (`herald-log`).
    #[serde(default)]
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    /// Replaces `herald` in every topic and group name.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The topic producers write events to.
    #[serde(default = "default_input")]
    pub input: String,
    /// Partitions of the topics `herald topics apply` creates.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    /// Retention of destination, retry and attempts topics.
    #[serde(default = "default_retention", with = "serde_duration")]
    pub retention: Duration,
    /// Retention of DLQ and invalid topics: long, since they wait for people.
    #[serde(default = "default_dlq_retention", with = "serde_duration")]
    pub dlq_retention: Duration,
    /// Retention of the ledgers (compacted and deleted: keyed by unique
    /// events, they would otherwise grow forever). Default: `retention`.
    /// Must outlast every destination's retry budget.
    #[serde(
        default,
        with = "serde_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub ledger_retention: Option<Duration>,
}

impl TopicsConfig {
    /// `ledger_retention`, or `retention` when unset.
    pub fn ledger_retention(&self) -> Duration {
        self.ledger_retention.unwrap_or(self.retention)
    }
}

fn default_prefix() -> String {
    "herald".into()
}
fn default_input() -> String {
    "events".into()
}
fn default_partitions() -> i32 {
    6
}
fn default_replication() -> i32 {
    3
}
fn default_retention() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn default_dlq_retention() -> Duration {
    Duration::from_secs(30 * 86_400)
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            prefix: default_prefix(),
            input: default_input(),
            partitions: default_partitions(),
            replication_factor: default_replication(),
            retention: default_retention(),
            dlq_retention: default_dlq_retention(),
            ledger_retention: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// A transaction closes as soon as the input has nothing more ready,
    /// or after this many input records… Each commit has a fixed cost
    /// (broker round trips, a marker on every partition written); under
    /// load records queue up while one commits, so batches grow by
    /// themselves and this bound caps them (see `herald_core::batch` and
    /// docs/benchmarks.md).
    #[serde(default = "default_batch_records")]
    pub batch_max_records: usize,
    /// …or this long after its first record, whichever comes first.
    #[serde(default = "default_batch_wait", with = "serde_duration")]
    pub batch_max_wait: Duration,
    /// Keeps a batch open at least this long after its first record even
    /// when the input has nothing ready: fewer, larger transactions (less
    /// CPU at low rates) for this much more latency. `"0s"` (the default)
    /// closes a batch as soon as the input runs dry; at most
    /// `batch_max_wait`.
    #[serde(default, with = "serde_duration")]
    pub batch_linger: Duration,
    /// `transactional.id` of this router instance. Defaults to
    /// `<prefix>.router.<hostname>`; must be unique per running instance.
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// Address of `/metrics`, `/healthz`, `/readyz`.
    #[serde(default = "default_router_listen")]
    pub listen: String,
    /// A second copy of an event (same identity) arriving within this window
    /// is dropped. `"0s"` turns duplicate suppression off.
    #[serde(default = "default_dedupe_window", with = "serde_duration")]
    pub dedupe_window: Duration,
    /// Most identities remembered at once (about 70 bytes each); beyond it
    /// the oldest are forgotten early.
    #[serde(default = "default_dedupe_max_entries")]
    pub dedupe_max_entries: usize,
    /// Fields that make an event's identity, as paths like routing rules'
    /// (`source`, `id`, `type`, `subject`, `tenant`, `data.order_id`).
    /// Default: CloudEvents identity, `source` + `id`.
    #[serde(default = "default_identity")]
    pub identity: Vec<String>,
    /// Largest record the router writes (value + key + headers). An event
    /// whose Delivery would be larger goes to the invalid topic (reason
    /// `too-large`, payload truncated) instead of failing its transaction.
    /// Keep it below the destination topics' `max.message.bytes` (broker
    /// default about 1 MiB).
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
}

fn default_max_event_bytes() -> usize {
    900 * 1024
}

fn default_dedupe_window() -> Duration {
    Duration::from_secs(600)
}
fn default_dedupe_max_entries() -> usize {
    1_000_000
}
fn default_identity() -> Vec<String> {
    vec!["source".into(), "id".into()]
}

fn default_batch_records() -> usize {
    2000
}
fn default_batch_wait() -> Duration {
    Duration::from_millis(100)
}
fn default_router_listen() -> String {
    "0.0.0.0:9464".into()
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            batch_max_records: default_batch_records(),
            batch_max_wait: default_batch_wait(),
            batch_linger: Duration::ZERO,
            transactional_id: None,
            listen: default_router_listen(),
            dedupe_window: default_dedupe_window(),
            dedupe_max_entries: default_dedupe_max_entries(),
            identity: default_identity(),
            max_event_bytes: default_max_event_bytes(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterConfig {
    /// Address of `/metrics`, `/healthz`, `/readyz` (overridable per process
    /// with `--listen`).
    #[serde(default = "default_adapter_listen")]
    pub listen: String,
    /// How often finished offsets are committed.
    #[serde(default = "default_commit_interval", with = "serde_duration")]
    pub commit_interval: Duration,
    /// On SIGTERM, how long in-flight deliveries may take to finish.
    #[serde(default = "default_shutdown_grace", with = "serde_duration")]
    pub shutdown_grace: Duration,
    /// This process's stable name in its consumer group (static membership:
    /// `group.instance.id` = `<group>.<instance_id>`), so a restarted
    /// adapter gets its partitions back at once instead of after the
    /// session timeout. Unset (default): dynamic membership, which leaves
    /// the group on a graceful stop. Must differ between adapters of one
    /// destination (`--instance-id`, e.g. a StatefulSet pod name).
    #[serde(default)]
    pub instance_id: Option<String>,
}

fn default_adapter_listen() -> String {
    "0.0.0.0:9465".into()
}
fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(20)
}

impl Default for AdapterConfig {
    fn default() -> Self {
        Self {
            listen: default_adapter_listen(),
            commit_interval: default_commit_interval(),
            shutdown_grace: default_shutdown_grace(),
            instance_id: None,
        }
    }
}

/// The kinds of destination Herald can deliver to.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DestinationKind {
    /// POST the event as JSON, signed per Standard Webhooks.
    Webhook,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    pub kind: DestinationKind,
    /// Where to send deliveries (http or https).
    pub url: String,
    /// Signing secret (`whsec_…`), by reference: `env:NAME` or `file:PATH`.
    /// A literal value is accepted for local use and never logged.
    #[serde(default)]
    pub secret: Option<SecretRef>,
    /// Several secrets during rotation: every one signs each request.
    #[serde(default)]
    pub extra_secrets: Vec<SecretRef>,
    /// Whole-request timeout.
    #[serde(default = "default_timeout", with = "serde_duration")]
    pub timeout: Duration,
    /// Deliveries in flight at once, per adapter process: the ceiling of
    /// the adaptive limit.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Lower the in-flight limit on back-pressure (timeouts, 429, 5xx,
    /// latency spikes: ×0.9) and raise it back one slot at a time. Off by
    /// default: it decreases per failed response, so a destination that
    /// times out at random (not from load) is driven down to one request
    /// in flight; turn it on for destinations whose failures mean "slow down".
    #[serde(default)]
    pub adaptive_concurrency: bool,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Which events this destination hears about.
    #[serde(default)]
    pub route: RouteConfig,
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// Requests per second, per adapter process; unlimited when absent.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
}

/// The circuit breaker: stop sending to a destination that is down.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitConfig {
    /// Consecutive timeouts, connection errors, 429s or 5xx that open the
    /// circuit; 0 turns the breaker off.
    #[serde(default = "default_circuit_threshold")]
    pub failure_threshold: u32,
    /// How long an open circuit waits before one probe delivery.
    #[serde(default = "default_circuit_cooldown", with = "serde_duration")]
    pub cooldown: Duration,
    /// Each failed probe doubles the wait, up to this.
    #[serde(default = "default_circuit_max_cooldown", with = "serde_duration")]
    pub max_cooldown: Duration,
}

fn default_circuit_threshold() -> u32 {
    20
}
fn default_circuit_cooldown() -> Duration {
    Duration::from_secs(15)
}
fn default_circuit_max_cooldown() -> Duration {
    Duration::from_secs(300)
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            failure_threshold: default_circuit_threshold(),
            cooldown: default_circuit_cooldown(),
            max_cooldown: default_circuit_max_cooldown(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests that may go at once after a quiet spell (default: one
    /// second's worth).
    #[serde(default)]
    pub burst: Option<u32>,
}

impl RateLimitConfig {
    /// A full bucket for this limit.
    pub fn bucket(&self, now_ms: i64) -> crate::ratelimit::TokenBucket {
        let burst = self.burst.unwrap_or(self.per_second.ceil() as u32);
        crate::ratelimit::TokenBucket::new(self.per_second, burst, now_ms)
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_concurrency() -> usize {
    16
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Delay of each retry tier, shortest first. Each becomes a topic
    /// `<prefix>.dest.<name>.retry.<delay>`.
    #[serde(default = "default_tiers", with = "serde_durations")]
    pub tiers: Vec<Duration>,
    /// Attempts in all, the first included. Default: one per tier plus one.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// No retry is scheduled once the first attempt is older than this.
    #[serde(default = "default_max_age", with = "serde_duration")]
    pub max_age: Duration,
    /// Each delay is stretched by a random fraction up to this (0.1 = +10%).
    #[serde(default = "default_jitter")]
    pub jitter: f64,
}

fn default_tiers() -> Vec<Duration> {
    [30, 120, 900, 3600]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
}
fn default_max_age() -> Duration {
    Duration::from_secs(86_400)
}
fn default_jitter() -> f64 {
    0.1
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            tiers: default_tiers(),
            max_attempts: None,
            max_age: default_max_age(),
            jitter: default_jitter(),
        }
    }
}

impl RetryConfig {
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            tiers: self.tiers.clone(),
            max_attempts: self.max_attempts.unwrap_or(self.tiers.len() as u32 + 1),
            max_age: self.max_age,
            jitter: self.jitter,
        }
    }
}

/// A secret given by reference. Its `Debug` never shows the value.
#[derive(Clone, Deserialize, Serialize)]
#[serde(transparent)]
pub struct SecretRef(String);

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.starts_with("env:") || self.0.starts_with("file:") {
            write!(f, "SecretRef({})", self.0)
        } else {
            f.write_str("SecretRef(<literal, redacted>)")
        }
    }
}

impl SecretRef {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The reference as written (`env:NAME`, `file:PATH`, or a literal).
    pub fn reference(&self) -> &str {
        &self.0
    }

    /// Reads the secret. Errors name the variable or file, never the value.
    pub fn resolve(&self, key: &str) -> Result<String, ConfigError> {
        if let Some(var) = self.0.strip_prefix("env:") {
            std::env::var(var)
                .map_err(|_| invalid(key, format!("environment variable {var} is not set")))
        } else if let Some(path) = self.0.strip_prefix("file:") {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .map_err(|e| invalid(key, format!("cannot read secret file {path}: {e}")))
        } else {
            Ok(self.0.clone())
        }
    }
}

impl Config {
    /// Loads `path` (if given), applies `HERALD__…` overrides from the process
    /// environment, and validates.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let (text, name) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?,
                p.display().to_string(),
            ),
            None => (String::new(), "<defaults>".to_string()),
        };
        Self::from_toml_with_env(&text, &name, env)
    }

    pub fn from_toml_with_env(
        text: &str,
        name: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: name.to_string(),
                    message: e.to_string(),
                })?;
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        overrides.sort();
        for (var, value) in overrides {
            apply_override(&mut table, &var, &value)?;
        }
        let mut config: Config =
            Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Parse {
                path: name.to_string(),
                message: e.to_string(),
            })?;
        config.validate()?;
        config.kafka.resolve_secrets()?;
        Ok(config)
    }

    pub fn topic_names(&self) -> TopicNames {
        TopicNames::new(self.topics.prefix.clone())
    }

    pub fn destination(&self, name: &str) -> Result<&DestinationConfig, ConfigError> {
        self.destinations.get(name).ok_or_else(|| {
            invalid(
                format!("destinations.{name}"),
                format!(
                    "no such destination; configured: {}",
                    self.destinations
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    }

    /// Checks what serde cannot: names, ranges, URLs, patterns, secrets.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_valid_name(&self.topics.prefix) {
            return Err(invalid("topics.prefix", "use only a-z, 0-9, '.' and '-'"));
        }
        if self.topics.input.is_empty() {
            return Err(invalid("topics.input", "must not be empty"));
        }
        if self.topics.partitions < 1 {
            return Err(invalid("topics.partitions", "must be at least 1"));
        }
        if self.topics.replication_factor < 1 {
            return Err(invalid("topics.replication_factor", "must be at least 1"));
        }
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return Err(invalid("kafka.bootstrap_servers", "must not be empty"));
        }
        if self.router.batch_max_records == 0 {
            return Err(invalid("router.batch_max_records", "must be at least 1"));
        }
        if self.router.batch_linger > self.router.batch_max_wait {
            return Err(invalid(
                "router.batch_linger",
                "must not be longer than router.batch_max_wait",
            ));
        }
        if !(4096..=100 * 1024 * 1024).contains(&self.router.max_event_bytes) {
            return Err(invalid(
                "router.max_event_bytes",
                "must be between 4096 and 104857600 bytes",
            ));
        }
        if self.router.identity.is_empty() {
            return Err(invalid("router.identity", "needs at least one field"));
        }
        for path in &self.router.identity {
            if !crate::routing::is_field_path(path) {
                return Err(invalid(
                    "router.identity",
                    format!("`{path}`: paths start at id, source, type, subject, tenant or data"),
                ));
            }
        }
        for (name, d) in &self.destinations {
            let key = |k: &str| format!("destinations.{name}.{k}");
            if !is_valid_name(name) || name.contains('.') {
                return Err(invalid(
                    format!("destinations.{name}"),
                    "destination names use only a-z, 0-9 and '-'",
                ));
            }
            if !(d.url.starts_with("http://") || d.url.starts_with("https://"))
                || d.url.len() < "http://x".len()
            {
                return Err(invalid(key("url"), "must be an http:// or https:// URL"));
            }
            if d.concurrency == 0 {
                return Err(invalid(key("concurrency"), "must be at least 1"));
            }
            if d.timeout.is_zero() {
                return Err(invalid(key("timeout"), "must be more than zero"));
            }
            let r = &d.retry;
            if r.tiers.is_empty() {
                return Err(invalid(key("retry.tiers"), "needs at least one delay"));
            }
            if r.tiers.windows(2).any(|w| w[0] >= w[1]) {
                return Err(invalid(
                    key("retry.tiers"),
                    "delays must be strictly increasing",
                ));
            }
            if r.tiers.iter().any(|t| t.is_zero()) {
                return Err(invalid(key("retry.tiers"), "delays must be more than zero"));
            }
            if let Some(rl) = &d.rate_limit {
                if !(rl.per_second > 0.0 && rl.per_second.is_finite()) {
                    return Err(invalid(
                        key("rate_limit.per_second"),
                        "must be more than zero",
                    ));
                }
                if rl.burst == Some(0) {
                    return Err(invalid(key("rate_limit.burst"), "must be at least 1"));
                }
            }
            if d.circuit.cooldown.is_zero() {
                return Err(invalid(key("circuit.cooldown"), "must be more than zero"));
            }
            if r.max_attempts == Some(0) {
                return Err(invalid(key("retry.max_attempts"), "must be at least 1"));
            }
            if !(0.0..=1.0).contains(&r.jitter) {
                return Err(invalid(key("retry.jitter"), "must be between 0 and 1"));
            }
            // A delivery may still be retried until its age budget ends, then
            // wait on the longest tier: its ledger entry must outlive that.
            let budget = r.max_age + r.tiers.last().copied().unwrap_or_default();
            if self.topics.ledger_retention() < budget {
                return Err(invalid(
                    "topics.ledger_retention",
                    format!(
                        "{} is shorter than destination {name}'s retry budget \
                         (retry.max_age + its longest tier = {}); set it (it defaults to \
                         topics.retention) to at least that",
                        crate::time::compact_duration(self.topics.ledger_retention()),
                        crate::time::compact_duration(budget)
                    ),
                ));
            }
            d.route.validate(&key("route"))?;
        }
        crate::sources::validate(&self.gateway, &self.sources, &self.topics.input)?;
        if let Some(r) = &self.schema_registry {
            r.validate()?;
        }
        self.log.validate()?;
        if self.output.format == OutputFormat::Registry && self.schema_registry.is_none() {
            return Err(invalid(
                "output.format",
                "\"registry\" needs a [schema_registry] section (url) to register Herald's schemas in",
            ));
        }
        Ok(())
    }

    /// Resolves and parses the signing secrets of `destination` (or of every
    /// destination). Separate from [`Config::validate`] so the router, which
    /// signs nothing, does not need access to any secret.
    pub fn check_secrets(&self, destination: Option<&str>) -> Result<(), ConfigError> {
        for (name, d) in &self.destinations {
            if destination.is_some_and(|only| only != name) {
                continue;
            }
            for (i, s) in d.secret.iter().chain(d.extra_secrets.iter()).enumerate() {
                let k = if i == 0 && d.secret.is_some() {
                    format!("destinations.{name}.secret")
                } else {
                    format!("destinations.{name}.extra_secrets")
                };
                let value = s.resolve(&k)?;
                crate::signature::SigningKey::parse(&value)
                    .map_err(|e| invalid(k.clone(), e.to_string()))?;
            }
        }
        Ok(())
    }
}

/// Sets `HERALD__A__B=value` at `a.b`. The value is read as a TOML value when
/// it parses as one (`5`, `true`, `["30s", "2m"]`) and as a string otherwise.
fn apply_override(table: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = var[ENV_PREFIX.len()..]
        .split("__")
        .map(|p| p.to_ascii_lowercase())
        .collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::Env {
            var: var.to_string(),
            message: "empty key segment".into(),
        });
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut cur = table;
    for p in parents {
        let entry = cur
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
            var: var.to_string(),
            message: format!("`{p}` is not a table in the config"),
        })?;
    }
    cur.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [destinations.crm]
        kind = "webhook"
        url = "http://127.0.0.1:8080/hook"
        route.event_types = ["subscription.*"]
    "#;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(
            text,
            "test.toml",
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn defaults_fill_in() {
        let c = parse(MINIMAL, &[]).unwrap();
        assert_eq!(c.topics.prefix, "herald");
        let d = c.destination("crm").unwrap();
        assert_eq!(d.retry.tiers.len(), 4);
        assert_eq!(d.retry.policy().max_attempts, 5);
        assert_eq!(d.concurrency, 16);
    }

    #[test]
    fn router_max_event_bytes_is_checked_by_name() {
        let c = parse(MINIMAL, &[]).unwrap();
        assert_eq!(c.router.max_event_bytes, 900 * 1024);
        let err = parse(
            &format!("{MINIMAL}\n[router]\nmax_event_bytes = 100\n"),
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("router.max_event_bytes"), "{err}");
    }

    #[test]
    fn a_batch_linger_longer_than_the_max_wait_is_refused_by_name() {
        let c = parse(MINIMAL, &[]).unwrap();
        assert_eq!(c.router.batch_linger, Duration::ZERO);
        let ok = parse(
            &format!("{MINIMAL}\n[router]\nbatch_linger = \"20ms\"\n"),
            &[],
        )
        .unwrap();
        assert_eq!(ok.router.batch_linger, Duration::from_millis(20));
        let err = parse(
            &format!("{MINIMAL}\n[router]\nbatch_linger = \"1s\"\nbatch_max_wait = \"100ms\"\n"),
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("router.batch_linger"), "{err}");
    }

    #[test]
    fn ledger_retention_defaults_to_retention_and_covers_the_retry_budget() {
        let topics = |t: &str| parse(&format!("[topics]\n{t}\n{MINIMAL}"), &[]);
        let days = |n: u64| Duration::from_secs(n * 86_400);
        let c = parse(MINIMAL, &[]).unwrap();
        assert_eq!(c.topics.ledger_retention, None);
        assert_eq!(c.topics.ledger_retention(), days(7));
        let c = topics("retention = \"3d\"").unwrap();
        assert_eq!(c.topics.ledger_retention(), days(3));
        let c = topics("ledger_retention = \"2d\"").unwrap();
        assert_eq!(c.topics.ledger_retention(), days(2));
        // Default budget: max_age 24h + longest tier 1h.
        let err = topics("ledger_retention = \"24h\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("topics.ledger_retention"), "{err}");
        assert!(err.contains("crm"), "{err}");
        let err = topics("retention = \"1d\"").unwrap_err().to_string();
        assert!(err.contains("topics.ledger_retention"), "{err}");
        topics("ledger_retention = \"25h\"").unwrap();
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = parse(&format!("{MINIMAL}\n[router]\nbatch_size = 3\n"), &[]).unwrap_err();
        assert!(err.to_string().contains("batch_size"), "{err}");
    }

    #[test]
    fn env_overrides_win_and_are_typed() {
        let c = parse(
            MINIMAL,
            &[
                ("HERALD__KAFKA__BOOTSTRAP_SERVERS", "k:1"),
                ("HERALD__DESTINATIONS__CRM__CONCURRENCY", "4"),
                ("HERALD__DESTINATIONS__CRM__RETRY__TIERS", r#"["1s","2s"]"#),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "k:1");
        let d = c.destination("crm").unwrap();
        assert_eq!(d.concurrency, 4);
        assert_eq!(
            d.retry.tiers,
            vec![Duration::from_secs(1), Duration::from_secs(2)]
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = parse(
            &MINIMAL.replace("http://127.0.0.1:8080/hook", "ftp://x"),
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("destinations.crm.url"), "{err}");
        let err = parse(
            &format!("{MINIMAL}\nretry.tiers = [\"2m\", \"30s\"]\n"),
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("destinations.crm.retry.tiers"),
            "{err}"
        );
        let err = parse(&format!("{MINIMAL}\ntimeout = \"soon\"\n"), &[]).unwrap_err();
        assert!(err.to_string().contains("soon"), "{err}");
    }

    #[test]
    fn kafka_client_secrets_resolve_and_files_are_checked_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let text = format!(
            "[kafka]\nclient = {{ \"security.protocol\" = \"SASL_SSL\", \"ssl.ca.location\" = \"{}\" }}\n\
             client_secrets = {{ \"sasl.password\" = \"file:{}\" }}\n",
            ca.display(),
            ca.display()
        );
        let c = parse(&text, &[]).unwrap();
        assert_eq!(
            c.kafka.resolved_secrets.0["sasl.password"],
            "-----BEGIN CERTIFICATE-----"
        );
        assert!(
            !format!("{c:?}").contains("BEGIN CERTIFICATE"),
            "Debug shows no secret"
        );
        let missing = text.replace("ca.pem\" }\n", "nope.pem\" }\n");
        let err = parse(&missing, &[]).unwrap_err().to_string();
        assert!(
            err.contains("kafka.client.\"ssl.ca.location\"") && err.contains("nope.pem"),
            "{err}"
        );
        let err = parse(
            "[kafka]\nclient_secrets = { \"sasl.password\" = \"env:HERALD_TEST_NO_SUCH_VAR\" }\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("kafka.client_secrets.\"sasl.password\"")
                && err.contains("HERALD_TEST_NO_SUCH_VAR"),
            "{err}"
        );
        let err = parse(
            "[kafka]\nclient = { \"sasl.password\" = \"x\" }\nclient_secrets = { \"sasl.password\" = \"y\" }\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("also set in kafka.client"), "{err}");
    }

    #[test]
    fn missing_secret_env_is_named_and_literal_is_not_echoed() {
        let c = parse(
            &format!("{MINIMAL}\nsecret = \"env:HERALD_TEST_NO_SUCH_VAR\"\n"),
            &[],
        )
        .unwrap();
        let err = c.check_secrets(None).unwrap_err();
        assert!(err.to_string().contains("HERALD_TEST_NO_SUCH_VAR"), "{err}");
        assert!(err.to_string().contains("destinations.crm.secret"), "{err}");
        assert!(c.check_secrets(Some("other")).is_ok());
        let c = parse(&format!("{MINIMAL}\nsecret = \"hunter2\"\n"), &[]).unwrap();
        let err = c.check_secrets(None).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let c = parse(
            &format!("{MINIMAL}\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"),
            &[],
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("MfKQ9r8"));
    }
}
