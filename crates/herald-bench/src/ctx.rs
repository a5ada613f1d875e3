//! The parameters of a run ([`Plan`]) and what every scenario shares
//! ([`Ctx`]): the broker, the binaries, a work directory for configs and
//! logs, the sink, and progress output.

use crate::procs::{free_port, Service};
use crate::sink::Sink;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long and how often each scenario runs.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub mode: &'static str,
    /// Repetitions of each measurement (each side of a ratio).
    pub reps: usize,
    /// Partitions of every topic.
    pub partitions: i32,
    /// Throughput scenarios: time after the first record is processed that
    /// is not measured…
    #[serde(with = "secs")]
    pub warmup: Duration,
    /// …and the measured window after it.
    #[serde(with = "secs")]
    pub measure: Duration,
    /// Input events pre-filled for router throughput.
    pub router_backlog: u64,
    /// Deliveries pre-filled for adapter throughput.
    pub adapter_backlog: u64,
    pub concurrencies: Vec<usize>,
    /// Offered rates of the latency scenario, events/s.
    pub rates: Vec<f64>,
    /// Offered rate of the isolation scenario, events/s.
    pub isolation_rate: f64,
    /// Latency scenarios: produced but not measured, then measured.
    #[serde(with = "secs")]
    pub latency_warmup: Duration,
    #[serde(with = "secs")]
    pub latency_measure: Duration,
    /// How long to wait for the last measured events to arrive.
    #[serde(with = "secs")]
    pub drain_timeout: Duration,
    /// Peer scenario: the peer's (a JVM's) warm-up before its window…
    #[serde(with = "secs")]
    pub peer_warmup: Duration,
    /// …partitions and concurrency of both sides…
    pub peer_concurrency: usize,
    /// …events of the 30%-503 runs…
    pub peer_fault_events: u64,
    /// …and of the SIGKILL runs.
    pub peer_kill_events: u64,
    /// Records per Kafka perf-tool run.
    pub perf_records: u64,
    pub perf_reps: usize,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

impl Plan {
    pub fn full() -> Self {
        Self {
            mode: "full",
            reps: 3,
            partitions: 3,
            warmup: Duration::from_secs(2),
            measure: Duration::from_secs(8),
            router_backlog: 600_000,
            adapter_backlog: 250_000,
            concurrencies: vec![1, 16, 64],
            rates: vec![250.0, 500.0, 1000.0],
            isolation_rate: 500.0,
            latency_warmup: Duration::from_secs(3),
            latency_measure: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            peer_warmup: Duration::from_secs(15),
            peer_concurrency: 16,
            peer_fault_events: 5_000,
            peer_kill_events: 50_000,
            perf_records: 400_000,
            perf_reps: 4,
        }
    }

    /// Every scenario for a few seconds: checks the bench works, not speed.
    pub fn quick() -> Self {
        Self {
            mode: "quick",
            reps: 1,
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(2),
            router_backlog: 30_000,
            adapter_backlog: 20_000,
            latency_warmup: Duration::from_secs(1),
            latency_measure: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(20),
            peer_warmup: Duration::from_secs(3),
            peer_fault_events: 300,
            peer_kill_events: 3_000,
            perf_records: 20_000,
            perf_reps: 1,
            ..Self::full()
        }
    }
}

impl Plan {
    /// The peer's latency rates: the latency scenario's (the first only in
    /// quick mode).
    pub fn peer_rates(&self) -> Vec<f64> {
        let n = if self.mode == "quick" {
            1
        } else {
            self.rates.len()
        };
        self.rates.iter().copied().take(n).collect()
    }
}

pub struct Ctx {
    pub plan: Plan,
    pub bootstrap: String,
    /// Where herald-router, herald-adapter live.
    pub bins: PathBuf,
    /// This executable, for the baseline subcommands.
    pub self_exe: PathBuf,
    pub repo: PathBuf,
    /// Configs and logs of this run.
    pub work: PathBuf,
    /// Unique per run: the prefix of every topic and group it creates.
    pub run: String,
    pub sink: Sink,
    pub http: reqwest::Client,
    started: Instant,
}

impl Ctx {
    pub fn new(
        plan: Plan,
        bootstrap: String,
        bins: PathBuf,
        repo: PathBuf,
        work: PathBuf,
        run: String,
        sink: Sink,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            plan,
            bootstrap,
            bins,
            self_exe: std::env::current_exe()?,
            repo,
            work,
            run,
            sink,
            http: reqwest::Client::builder().build()?,
            started: Instant::now(),
        })
    }

    pub fn log(&self, msg: impl AsRef<str>) {
        eprintln!(
            "[herald-bench +{:>4}s] {}",
            self.started.elapsed().as_secs(),
            msg.as_ref()
        );
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Starts `herald-router` with `config`.
    pub fn start_router(
        &self,
        config: &std::path::Path,
        log_name: &str,
    ) -> anyhow::Result<Service> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let args = [
            "--config".into(),
            config.display().to_string(),
            "--listen".into(),
            addr.clone(),
        ];
        Service::spawn(
            log_name,
            &self.bins.join("herald-router"),
            args,
            &[],
            &self.work,
            Some(addr),
        )
    }

    /// Starts `herald-adapter` for `destination`, with `env` overrides.
    pub fn start_adapter(
        &self,
        config: &std::path::Path,
        destination: &str,
        env: &[(String, String)],
        log_name: &str,
    ) -> anyhow::Result<Service> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let args = [
            "--config".into(),
            config.display().to_string(),
            "--destination".into(),
            destination.to_string(),
            "--listen".into(),
            addr.clone(),
        ];
        Service::spawn(
            log_name,
            &self.bins.join("herald-adapter"),
            args,
            env,
            &self.work,
            Some(addr),
        )
    }

    /// Starts the raw reqwest loop POSTing the `count` events of `run` to
    /// `destination`'s URL with its client settings.
    pub fn start_http_loop(
        &self,
        config: &std::path::Path,
        destination: &str,
        run: &str,
        count: u64,
        env: &[(String, String)],
        log_name: &str,
    ) -> anyhow::Result<Service> {
        let args = [
            "http-loop".to_string(),
            "--config".into(),
            config.display().to_string(),
            "--destination".into(),
            destination.to_string(),
            "--run".into(),
            run.to_string(),
            "--count".into(),
            count.to_string(),
        ];
        self.start_baseline(&args, env, log_name)
    }

    /// Starts a baseline subcommand of this executable.
    pub fn start_baseline(
        &self,
        args: &[String],
        env: &[(String, String)],
        log_name: &str,
    ) -> anyhow::Result<Service> {
        Service::spawn(log_name, &self.self_exe, args, env, &self.work, None)
    }
}
