//! Test support for Herald's end-to-end tests: a real Kafka broker (started
//! with `scripts/kafka.sh` unless `KAFKA_BOOTSTRAP_SERVERS` names one), the
//! real service binaries as child processes, a unique topic prefix per test,
//! and helpers that wait on conditions instead of sleeping.
//!
//! Nothing here mocks Kafka: a test that cannot reach a broker fails.

#![allow(unsafe_code)] // kill(2) for SIGTERM/SIGKILL of child processes.

use herald_core::codec::AvroRecord;
use herald_core::config::Config;
use herald_core::envelope::{DeadLetter, Delivery};
use herald_core::headers as h;
use herald_core::kafka::{
    add_header, apply_topics, client_config, header_str, read_topic_to_end, topic_plan,
};
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod services;
pub use services::{own_kafka, python, SecureKafka, StopKafka};

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The broker's bootstrap address. Starts the local broker when
/// `KAFKA_BOOTSTRAP_SERVERS` is unset; panics (failing the test) when no
/// broker can be had.
pub fn bootstrap() -> String {
    static ADDR: OnceLock<String> = OnceLock::new();
    ADDR.get_or_init(|| {
        if let Ok(addr) = std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
            if !addr.trim().is_empty() {
                return addr;
            }
        }
        let out = Command::new(repo_root().join("scripts/kafka.sh"))
            .arg("start")
            .stderr(Stdio::inherit())
            .output()
            .expect("running scripts/kafka.sh start");
        assert!(
            out.status.success(),
            "scripts/kafka.sh start failed: these tests need a real Kafka broker"
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .lines()
            .last()
            .expect("kafka.sh prints the address")
            .trim()
            .to_string()
    })
    .clone()
}

/// Path of a workspace binary, built once if missing.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let path = target.join("debug").join(name);
    BUILT.get_or_init(|| {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "--bins",
                "-p",
                "herald-router",
                "-p",
                "herald-adapter",
                "-p",
                "herald-cli",
                "-p",
                "herald-devtools",
                "-p",
                "herald-gateway",
            ])
            .current_dir(repo_root())
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building the service binaries failed");
    });
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Polls `cond` until it holds or `timeout` passes; panics with `what`.
pub async fn wait_until<F: FnMut() -> bool>(what: &str, timeout: Duration, mut cond: F) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A destination in a test pipeline.
pub struct Dest {
    pub name: &'static str,
    pub url: String,
    /// Extra TOML lines for `[destinations.<name>]`.
    pub extra: String,
}

impl Dest {
    pub fn new(name: &'static str, url: String) -> Self {
        Self {
            name,
            url,
            extra: String::new(),
        }
    }

    pub fn with(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }
}

/// A signing secret the sinks verify.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// `b`, checking the Standard Webhooks signature made with [`SECRET`].
pub fn signed(mut b: herald_devtools::Behaviour) -> herald_devtools::Behaviour {
    b.secret = Some(SECRET.to_string());
    b
}

/// One test's pipeline: its own topic prefix, input topic, config file and
/// child processes, all cleaned up on drop.
pub struct Pipeline {
    pub prefix: String,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub config: Config,
    router: Option<Child>,
    adapters: HashMap<String, Child>,
    gateway: Option<Child>,
    /// `herald-log`, when started.
    log: Option<Child>,
    logs: Vec<PathBuf>,
    /// Extra environment for the services started from now on (e.g.
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`); later entries win, `RUST_LOG` included.
    pub env: Vec<(String, String)>,
    /// Extra flags for the router and adapters (e.g. `--log-format json`).
    pub args: Vec<String>,
}

impl Pipeline {
    /// Writes the config and creates the topics.
    pub async fn new(test: &str, dests: Vec<Dest>) -> Self {
        let prefix = format!("t{}-{}", rand::random::<u32>(), test.replace('_', "-"));
        let dir = tempfile::tempdir().expect("temp dir");
        let mut toml = format!(
            r#"
[kafka]
bootstrap_servers = "{bootstrap}"
# A killed member's partitions move after 6 s (the broker's minimum), not 45 s.
client = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "1000" }}

[topics]
prefix = "{prefix}"
input = "{prefix}.events"
partitions = 3
replication_factor = 1

[router]
batch_max_records = 200
batch_max_wait = "50ms"
transactional_id = "{prefix}.router"
listen = "127.0.0.1:0"

[adapter]
listen = "127.0.0.1:0"
commit_interval = "200ms"
shutdown_grace = "5s"
"#,
            bootstrap = bootstrap()
        );
        for d in &dests {
            toml.push_str(&format!(
                "\n[destinations.{}]\nkind = \"webhook\"\nurl = \"{}\"\n",
                d.name, d.url
            ));
            // Test defaults, unless the test sets the key itself.
            let defaults = [
                ("secret", format!("\"{SECRET}\"")),
                ("timeout", "\"1s\"".to_string()),
                ("concurrency", "16".to_string()),
                ("retry.tiers", "[\"1s\", \"2s\"]".to_string()),
                ("retry.jitter", "0.0".to_string()),
            ];
            for (key, value) in defaults {
                if !d
                    .extra
                    .lines()
                    .any(|l| l.trim_start().starts_with(&format!("{key} ")))
                {
                    toml.push_str(&format!("{key} = {value}\n"));
                }
            }
            toml.push_str(&d.extra);
        }
        let config_path = dir.path().join("herald.toml");
        std::fs::write(&config_path, &toml).expect("write config");
        let config = Config::load_with_env(Some(&config_path), std::iter::empty())
            .expect("test config is valid");
        apply_topics(&config, &topic_plan(&config))
            .await
            .expect("creating topics");
        Self {
            prefix,
            dir,
            config_path,
            config,
            router: None,
            adapters: HashMap::new(),
            gateway: None,
            log: None,
            logs: Vec::new(),
            env: Vec::new(),
            args: Vec::new(),
        }
    }

    fn spawn(&mut self, name: &str, args: &[&str]) -> Child {
        let log = self.dir.path().join(format!(
            "{}-{}.log",
            service_label(name, args),
            self.logs.len()
        ));
        let file = std::fs::File::create(&log).expect("log file");
        self.logs.push(log);
        Command::new(bin(name))
            .args(args)
            .args(&self.args)
            .env("RUST_LOG", "info,herald_adapter=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(file.try_clone().expect("log fd"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"))
    }

    pub fn start_router(&mut self) {
        let cfg = self.config_path.display().to_string();
        let child = self.spawn("herald-router", &["--config", &cfg]);
        self.router = Some(child);
    }

    /// SIGKILL: no chance to commit or abort anything.
    pub fn kill_router(&mut self) {
        if let Some(mut c) = self.router.take() {
            c.kill().expect("SIGKILL router");
            c.wait().expect("reap router");
        }
    }

    pub fn start_adapter(&mut self, destination: &str) {
        let cfg = self.config_path.display().to_string();
        let child = self.spawn(
            "herald-adapter",
            &["--config", &cfg, "--destination", destination],
        );
        self.adapters.insert(destination.to_string(), child);
    }

    pub fn start_all(&mut self) {
        self.start_router();
        let names: Vec<String> = self.config.destinations.keys().cloned().collect();
        for d in names {
            self.start_adapter(&d);
        }
    }

    /// Runs the `herald` CLI with this pipeline's config.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin("herald"))
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .output()
            .expect("running herald")
    }

    pub fn input(&self) -> String {
        self.config.topics.input.clone()
    }

    /// Produces structured CloudEvents `<prefix>-0 .. <prefix>-(n-1)` of the
    /// given type; returns their ids.
    pub async fn produce_events(&self, n: usize, event_type: &str) -> Vec<String> {
        let producer = self.producer();
        let ids: Vec<String> = (0..n).map(|i| format!("{}-{i}", self.prefix)).collect();
        let sends = ids.iter().enumerate().map(|(i, id)| {
            let value = serde_json::json!({
                "specversion": "1.0", "id": id, "source": "/tests", "type": event_type,
                "subject": format!("cus_{}", i % 50), "data": {"n": i},
            })
            .to_string();
            let key = format!("cus_{}", i % 50);
            let producer = producer.clone();
            let topic = self.input();
            let headers = add_header(
                OwnedHeaders::new(),
                h::TRACEPARENT,
                &format!("00-{:032x}-{:016x}-01", i + 1, i + 1),
            );
            async move {
                producer
                    .send(
                        FutureRecord::to(&topic)
                            .key(&key)
                            .payload(&value)
                            .headers(headers),
                        Duration::from_secs(30),
                    )
                    .await
                    .map_err(|(e, _)| e)
                    .expect("produce");
            }
        });
        futures::future::join_all(sends).await;
        ids
    }

    pub async fn produce_raw(&self, value: &[u8], headers: Option<OwnedHeaders>) {
        let topic = self.input();
        let mut rec = FutureRecord::<str, [u8]>::to(&topic)
            .key("raw")
            .payload(value);
        if let Some(hs) = headers {
            rec = rec.headers(hs);
        }
        self.producer()
            .send(rec, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }

    pub fn producer(&self) -> FutureProducer {
        client_config(&self.config)
            .set("linger.ms", "5")
            .create()
            .expect("producer")
    }

    pub async fn read(&self, topic: &str) -> Vec<OwnedMessage> {
        read_topic_to_end(&self.config, topic)
            .await
            .expect("reading topic")
    }

    /// Dead letters of a destination.
    pub async fn dead_letters(&self, dest: &str) -> Vec<(DeadLetter, OwnedMessage)> {
        self.read(&self.config.topic_names().dlq(dest))
            .await
            .into_iter()
            .map(|m| {
                (
                    DeadLetter::from_avro(m.payload().expect("dlq value"))
                        .expect("dead letter decodes"),
                    m,
                )
            })
            .collect()
    }

    /// Event ids on a destination topic, with how often each appears.
    pub async fn routed_ids(&self, dest: &str) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for m in self.read(&self.config.topic_names().dest(dest)).await {
            let d = Delivery::from_avro(m.payload().expect("value")).expect("delivery decodes");
            *out.entry(d.event.id).or_default() += 1;
        }
        out
    }

    /// Whether the router group has committed the end of every input
    /// partition: every record produced so far is routed.
    pub fn router_caught_up(&self) -> bool {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
        let consumer: BaseConsumer = client_config(&self.config)
            .set("group.id", self.config.topic_names().router_group())
            .create()
            .expect("consumer");
        let input = self.input();
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.config.topics.partitions {
            tpl.add_partition(&input, p);
        }
        let Ok(committed) = consumer.committed_offsets(tpl, Duration::from_secs(10)) else {
            return false;
        };
        committed.elements().iter().all(|e| {
            let (_, high) = consumer
                .fetch_watermarks(&input, e.partition(), Duration::from_secs(10))
                .expect("watermarks");
            match e.offset() {
                Offset::Offset(o) => o >= high,
                _ => high == 0,
            }
        })
    }

    /// Whether `group` has committed past the last record of every
    /// partition of `topic` (transaction markers after it do not count).
    pub async fn group_caught_up(&self, group: &str, topic: &str) -> bool {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
        let mut last: HashMap<i32, i64> = HashMap::new();
        for m in self.read(topic).await {
            last.insert(m.partition(), m.offset());
        }
        let consumer: BaseConsumer = client_config(&self.config)
            .set("group.id", group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in last.keys() {
            tpl.add_partition(topic, *p);
        }
        let Ok(committed) = consumer.committed_offsets(tpl, Duration::from_secs(10)) else {
            return false;
        };
        committed
            .elements()
            .iter()
            .all(|e| matches!(e.offset(), Offset::Offset(o) if o > last[&e.partition()]))
    }

    /// SIGKILL to an adapter: no chance to finish or commit anything.
    pub fn kill_adapter(&mut self, destination: &str) {
        let mut c = self.adapters.remove(destination).expect("adapter running");
        c.kill().expect("SIGKILL adapter");
        c.wait().expect("reap adapter");
    }

    /// The service logs so far, for failure messages.
    pub fn logs(&self) -> String {
        self.logs
            .iter()
            .map(|p| {
                format!(
                    "==== {} ====\n{}",
                    p.display(),
                    std::fs::read_to_string(p).unwrap_or_default()
                )
            })
            .collect()
    }
}

/// Names a service's log file: the binary, plus the destination for an
/// adapter (`herald-adapter-flaky`).
fn service_label(name: &str, args: &[&str]) -> String {
    match args.iter().position(|a| *a == "--destination") {
        Some(i) if i + 1 < args.len() => format!("{name}-{}", args[i + 1]),
        _ => name.to_string(),
    }
}

impl Pipeline {
    /// The bound admin address (`/metrics`) of the most recently started
    /// `herald-router` (service `"router"`) or adapter of a destination
    /// (service = the destination's name), read from the "Serving /metrics"
    /// line it logs (the test config listens on port 0).
    pub async fn admin_addr(&self, service: &str) -> std::net::SocketAddr {
        let label = match service {
            "router" => "herald-router".to_string(),
            "gateway" => "herald-gateway".to_string(),
            _ => format!("herald-adapter-{service}"),
        };
        self.logged_addr(&label, "Serving /metrics").await
    }

    /// The `127.0.0.1:<port>` on the first line containing `marker` in the
    /// most recent log of service `label`, waiting for it to appear.
    pub(crate) async fn logged_addr(&self, label: &str, marker: &str) -> std::net::SocketAddr {
        let log = self
            .logs
            .iter()
            .rev()
            .find(|p| {
                let file = p.file_name().and_then(|f| f.to_str()).unwrap_or_default();
                file.strip_prefix(label).is_some_and(|rest| {
                    rest.starts_with('-')
                        && rest[1..].trim_end_matches(".log").parse::<usize>().is_ok()
                })
            })
            .unwrap_or_else(|| panic!("{label} was not started"))
            .clone();
        let mut found = None;
        wait_until(
            &format!("{label} logs `{marker}` with its address"),
            Duration::from_secs(30),
            || {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                found = text.lines().filter(|l| l.contains(marker)).find_map(|l| {
                    let at = l.find("127.0.0.1:")?;
                    let port: String = l[at + "127.0.0.1:".len()..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    format!("127.0.0.1:{port}").parse().ok()
                });
                found.is_some()
            },
        )
        .await;
        found.expect("address found")
    }
}

/// A header value as a string.
pub fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    header_str(m, name).map(str::to_string)
}

fn terminate(c: &mut Child) {
    let _ = unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}

impl Pipeline {
    /// SIGTERM to a running adapter, waiting for it to exit; returns whether
    /// it exited successfully.
    pub fn stop_adapter(&mut self, destination: &str) -> bool {
        let mut c = self.adapters.remove(destination).expect("adapter running");
        terminate(&mut c);
        c.try_wait().ok().flatten().is_some_and(|s| s.success())
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Some(mut c) = self.router.take() {
            terminate(&mut c);
        }
        for (_, mut c) in self.adapters.drain() {
            terminate(&mut c);
        }
        if let Some(mut c) = self.gateway.take() {
            terminate(&mut c);
        }
        if let Some(mut c) = self.log.take() {
            terminate(&mut c);
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

// ---- several adapter instances of one destination, topic configs ----

impl Pipeline {
    /// Starts another adapter process for `destination` with its own
    /// static-membership name (`--instance-id`), tracked as
    /// `<destination>#<instance>`.
    pub fn start_adapter_instance(&mut self, destination: &str, instance: &str) {
        let cfg = self.config_path.display().to_string();
        let child = self.spawn(
            "herald-adapter",
            &[
                "--config",
                &cfg,
                "--destination",
                destination,
                "--instance-id",
                instance,
            ],
        );
        self.adapters
            .insert(format!("{destination}#{instance}"), child);
    }

    /// SIGTERM to an instance started with [`Self::start_adapter_instance`].
    pub fn stop_adapter_instance(&mut self, destination: &str, instance: &str) -> bool {
        self.stop_adapter(&format!("{destination}#{instance}"))
    }

    /// SIGKILL to an instance started with [`Self::start_adapter_instance`].
    pub fn kill_adapter_instance(&mut self, destination: &str, instance: &str) {
        self.kill_adapter(&format!("{destination}#{instance}"));
    }

    /// Sets topic-level configs (e.g. `retention.ms`, `max.message.bytes`).
    pub async fn alter_topic(&self, topic: &str, configs: &[(&str, &str)]) {
        use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
        use rdkafka::client::DefaultClientContext;
        let admin: AdminClient<DefaultClientContext> =
            client_config(&self.config).create().expect("admin client");
        let mut change = AlterConfig::new(ResourceSpecifier::Topic(topic));
        for (k, v) in configs {
            change = change.set(k, v);
        }
        let res = admin
            .alter_configs(&[change], &AdminOptions::new())
            .await
            .expect("alter_configs");
        for r in res {
            r.unwrap_or_else(|e| panic!("altering {topic}: {e:?}"));
        }
    }

    /// The text of every service log so far that matches `service` (e.g.
    /// `herald-adapter-slow`).
    pub fn log_of(&self, service: &str) -> String {
        self.logs
            .iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| f.starts_with(service))
            })
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect()
    }
}
