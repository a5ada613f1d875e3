//! The parameters of a run ([`Plan`]), the four destinations and the
//! Herald configuration the services under test read.

use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The signing secret every destination signs with and the sink verifies.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Event types the workload uses, cycled per event.
pub const EVENT_TYPES: [&str; 4] = [
    "subscription.started",
    "payment.failed",
    "user.signed_up",
    "invoice.paid",
];

/// Sizes and timings of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub mode: &'static str,
    /// Records produced (one per event number; copies and invalid ones included).
    pub events: u64,
    pub partitions: i32,
    /// Producing is spread over this long, so faults hit it mid-stream.
    #[serde(with = "secs")]
    pub produce_for: Duration,
    /// retention.ms of the `down` destination's topic and retry tiers.
    #[serde(with = "secs")]
    pub down_retention: Duration,
    /// `down` answers 503 from the start of producing for this long.
    #[serde(with = "secs")]
    pub down_for: Duration,
    #[serde(with = "secs")]
    pub router_kill_every: Duration,
    #[serde(with = "secs")]
    pub adapter_kill_every: Duration,
    /// Broker SIGKILLs, as offsets from the start of producing.
    #[serde(with = "secs_vec")]
    pub broker_kills_at: Vec<Duration>,
    /// How long the broker stays dead before it is started again.
    #[serde(with = "secs")]
    pub broker_down: Duration,
    /// A second adapter of `flaky` joins or leaves this often.
    #[serde(with = "secs")]
    pub churn_every: Duration,
    /// Bound on each wait for every pair to reach a terminal state.
    #[serde(with = "secs")]
    pub converge_timeout: Duration,
    /// A wait also ends when nothing has changed for this long.
    #[serde(with = "secs")]
    pub stall: Duration,
    /// Share of valid events produced a second time (same id and key).
    pub duplicate_share: f64,
    /// One record in this many is malformed; one in `ctl_every` has a
    /// control character in its id.
    pub malformed_every: u64,
    pub ctl_every: u64,
    /// Records of about 1 MB (above router.max_event_bytes' ~900 KiB default).
    pub oversized: u64,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

mod secs_vec {
    pub fn serialize<S: serde::Serializer>(
        v: &[std::time::Duration],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| d.as_secs_f64()))
    }
}

impl Plan {
    /// The by-hand run: 100,000 events by default.
    pub fn full(events: u64) -> Self {
        Self {
            mode: "full",
            events,
            partitions: 3,
            produce_for: Duration::from_secs(150),
            // Longer than the outage is what matters (the `down` destination
            // must outlive its topics' retention). 240 s rather than 90 s:
            // records are dead-lettered as expired at 80% of retention, and
            // the 20% left must cover what can stop an adapter meanwhile — a
            // broker SIGKILL and restart takes 30-40 s on a loaded 2-core
            // machine, so a 90 s retention (18 s left) lost records to it
            // whatever the adapter did. Real retentions are hours to days.
            down_retention: Duration::from_secs(240),
            down_for: Duration::from_secs(260),
            router_kill_every: Duration::from_secs(12),
            adapter_kill_every: Duration::from_secs(7),
            broker_kills_at: vec![Duration::from_secs(40), Duration::from_secs(105)],
            broker_down: Duration::from_secs(5),
            churn_every: Duration::from_secs(15),
            converge_timeout: Duration::from_secs(20 * 60),
            stall: Duration::from_secs(150),
            duplicate_share: 0.03,
            malformed_every: 200,
            ctl_every: 500,
            oversized: 10,
        }
    }

    /// The CI size: every fault kind, a few minutes on a 2-core box.
    pub fn quick(events: Option<u64>) -> Self {
        Self {
            mode: "quick",
            events: events.unwrap_or(3000),
            produce_for: Duration::from_secs(45),
            down_retention: Duration::from_secs(60),
            down_for: Duration::from_secs(95),
            router_kill_every: Duration::from_secs(9),
            adapter_kill_every: Duration::from_secs(6),
            broker_kills_at: vec![Duration::from_secs(14), Duration::from_secs(36)],
            broker_down: Duration::from_secs(3),
            churn_every: Duration::from_secs(10),
            converge_timeout: Duration::from_secs(240),
            stall: Duration::from_secs(75),
            oversized: 3,
            ..Self::full(3000)
        }
    }
}

/// One destination of the run.
#[derive(Debug, Clone, Serialize)]
pub struct DestPlan {
    pub name: &'static str,
    /// What the sink does to it.
    pub behaviour: &'static str,
    /// Event-type patterns it is routed (`*` or `prefix.*`).
    pub event_types: Vec<&'static str>,
    #[serde(with = "secs")]
    pub timeout: Duration,
}

impl DestPlan {
    pub fn matches(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => event_type.starts_with(prefix),
            None => *p == event_type,
        })
    }
}

pub fn destinations() -> Vec<DestPlan> {
    vec![
        DestPlan {
            name: "healthy",
            behaviour: "answers 204",
            event_types: vec!["*"],
            timeout: Duration::from_secs(2),
        },
        DestPlan {
            name: "flaky",
            behaviour: "30% answered 503; a second adapter instance joins and leaves",
            event_types: vec!["*"],
            timeout: Duration::from_secs(2),
        },
        DestPlan {
            name: "slow",
            behaviour: "10% hang 3 s then 504 (timeout 1 s); 2 s in every 10 s every request is processed but answered after 1.5 s",
            event_types: vec!["payment.*", "invoice.*"],
            timeout: Duration::from_secs(1),
        },
        DestPlan {
            name: "down",
            behaviour: "503 to everything for longer than its topics' retention, then healthy",
            event_types: vec!["subscription.*", "user.*", "payment.*"],
            timeout: Duration::from_secs(2),
        },
    ]
}

/// Writes the Herald config for the run and returns its path.
pub fn write_config(
    dir: &Path,
    bootstrap: &str,
    prefix: &str,
    partitions: i32,
    url: impl Fn(&str) -> String,
) -> anyhow::Result<PathBuf> {
    let mut toml = format!(
        r#"[kafka]
bootstrap_servers = "{bootstrap}"
# A killed member's partitions move after 6 s, not 45 s.
client = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "1000" }}

[topics]
prefix = "{prefix}"
input = "{prefix}.events"
partitions = {partitions}
replication_factor = 1

[router]
batch_max_records = 500
batch_max_wait = "50ms"
transactional_id = "{prefix}.router"

[adapter]
commit_interval = "500ms"
shutdown_grace = "5s"
"#
    );
    for d in destinations() {
        let types: Vec<String> = d.event_types.iter().map(|t| format!("\"{t}\"")).collect();
        toml.push_str(&format!(
            r#"
[destinations.{name}]
kind = "webhook"
url = "{url}"
secret = "{SECRET}"
timeout = "{timeout}ms"
concurrency = 16
retry.tiers = ["1s", "2s", "4s"]
circuit.cooldown = "2s"
circuit.max_cooldown = "10s"
route.event_types = [{types}]
"#,
            name = d.name,
            url = url(d.name),
            timeout = d.timeout.as_millis(),
            types = types.join(", ")
        ));
    }
    let path = dir.join("herald.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}
