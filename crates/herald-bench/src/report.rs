//! The run's results as `benchmarks.json` (everything, every repetition)
//! and `benchmarks.md` (tables, ratios, and the analysis from `notes.md`
//! with this run's figures filled in).

use crate::ctx::Plan;
use crate::scenarios::broker::BrokerResult;
use crate::scenarios::latency::{FootprintSummary, IsolationResult, RateResult};
use crate::scenarios::throughput::{AdapterResult, RouterResult};
use crate::stats::{paired_ratio, Summary};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The analysis closing `benchmarks.md`. `{{name}}` placeholders are
/// replaced by this run's figures (see [`Results::placeholders`]).
const NOTES: &str = include_str!("notes.md");

/// The machine the run happened on, from `/proc`.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub logical_cpus: usize,
    pub cpu_mhz: String,
    pub memory_gib: f64,
    pub kernel: String,
    /// `/proc/loadavg` when the run started: how busy the box already was.
    pub load_average_at_start: String,
}

impl Machine {
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_else(|| "unknown".into())
        };
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kb: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        Self {
            cpu_model: field("model name"),
            logical_cpus: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            cpu_mhz: field("cpu MHz"),
            memory_gib: (mem_kb / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: read("/proc/sys/kernel/osrelease"),
            load_average_at_start: read("/proc/loadavg"),
        }
    }
}

/// Record sizes of the workload.
#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    /// Input event (structured CloudEvents JSON), bytes.
    pub input_event: usize,
    /// Delivery envelope on a destination topic (Avro), bytes.
    pub delivery: usize,
    /// HTTP request body (CloudEvents JSON), bytes.
    pub http_body: usize,
}

/// Everything a run measured. Scenarios that were not run (`--only`) or
/// failed are `None`; failures are listed in `errors`.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub generated_at: String,
    pub command: String,
    pub git: String,
    pub duration_s: f64,
    pub machine: Machine,
    pub plan: Plan,
    /// Herald settings the scenarios use (everything else is the default).
    pub settings: BTreeMap<&'static str, String>,
    pub sizes: Sizes,
    pub router: Option<RouterResult>,
    pub adapter: Option<AdapterResult>,
    pub latency: Option<Vec<RateResult>>,
    pub isolation: Option<IsolationResult>,
    pub gateway: Option<crate::scenarios::gateway::GatewayResult>,
    pub peer: Option<crate::scenarios::peer::PeerResult>,
    pub footprint: Option<FootprintResult>,
    pub broker: Option<BrokerResult>,
    /// The headline ratios, by name.
    pub ratios: BTreeMap<String, Summary>,
    pub errors: Vec<String>,
}

/// Scenario 5: per service at each offered rate (from scenario 3's runs),
/// and per process at saturation next to the baselines (from 1 and 2).
#[derive(Debug, Clone, Serialize)]
pub struct FootprintResult {
    pub at_rate: BTreeMap<String, BTreeMap<String, FootprintSummary>>,
    pub saturated: BTreeMap<String, FootprintSummary>,
}

impl FootprintResult {
    pub fn build(
        latency: Option<&[RateResult]>,
        router: Option<&RouterResult>,
        adapter: Option<&AdapterResult>,
    ) -> Option<Self> {
        let at_rate: BTreeMap<String, BTreeMap<String, FootprintSummary>> = latency
            .unwrap_or_default()
            .iter()
            .map(|r| (format!("{}", r.rate), r.footprint.clone()))
            .collect();
        let mut saturated = BTreeMap::new();
        let side = |s: &crate::scenarios::throughput::Side| FootprintSummary {
            peak_rss_mb: s.peak_rss_mb.clone(),
            steady_rss_mb: s.steady_rss_mb.clone(),
            cpu_s_per_million: s.cpu_s_per_million.clone(),
        };
        if let Some(r) = router {
            for (k, s) in &r.sides {
                saturated.insert(k.clone(), side(s));
            }
        }
        if let Some(a) = adapter {
            for l in &a.levels {
                for (k, s) in &l.sides {
                    saturated.insert(format!("{k} c={}", l.concurrency), side(s));
                }
            }
        }
        (!at_rate.is_empty() || !saturated.is_empty()).then_some(Self { at_rate, saturated })
    }
}

fn ratio_of_medians(a: &Summary, b: &Summary) -> Summary {
    Summary::of(vec![a.median / b.median])
}

impl Results {
    /// Fills `ratios` from the scenario results.
    pub fn compute_ratios(&mut self) {
        let mut r = BTreeMap::new();
        if let Some(x) = &self.router {
            for (k, v) in &x.ratios {
                r.insert(format!("throughput: {k}"), v.clone());
            }
            let cpu = |s: &str| {
                x.sides[s]
                    .runs
                    .iter()
                    .map(|r| r.cpu_s_per_million)
                    .collect::<Vec<_>>()
            };
            r.insert(
                "cpu per event: router / copy-txn".into(),
                paired_ratio(&cpu("router"), &cpu("copy-txn")),
            );
            let peak = |s: &str| {
                x.sides[s]
                    .runs
                    .iter()
                    .map(|r| r.peak_rss_mb)
                    .collect::<Vec<_>>()
            };
            r.insert(
                "peak rss: router / copy-txn".into(),
                paired_ratio(&peak("router"), &peak("copy-txn")),
            );
        }
        if let Some(x) = &self.adapter {
            for l in &x.levels {
                r.insert(
                    format!(
                        "throughput: adapter / http-loop, concurrency {}",
                        l.concurrency
                    ),
                    l.ratio.clone(),
                );
                let cpu = |s: &str| {
                    l.sides[s]
                        .runs
                        .iter()
                        .map(|r| r.cpu_s_per_million)
                        .collect::<Vec<_>>()
                };
                r.insert(
                    format!(
                        "cpu per delivery: adapter / http-loop, concurrency {}",
                        l.concurrency
                    ),
                    paired_ratio(&cpu("adapter"), &cpu("http-loop")),
                );
                let peak = |s: &str| {
                    l.sides[s]
                        .runs
                        .iter()
                        .map(|r| r.peak_rss_mb)
                        .collect::<Vec<_>>()
                };
                r.insert(
                    format!(
                        "peak rss: adapter / http-loop, concurrency {}",
                        l.concurrency
                    ),
                    paired_ratio(&peak("adapter"), &peak("http-loop")),
                );
            }
        }
        if let Some(x) = &self.gateway {
            for (k, v) in x.ratios() {
                r.insert(format!("inbound: {k}"), v);
            }
        }
        if let Some(x) = &self.peer {
            for (k, v) in x.ratios() {
                r.insert(format!("peer: {k}"), v);
            }
        }
        if let Some(x) = &self.isolation {
            r.insert(
                "isolation: healthy p99 with / without the flaky destination".into(),
                x.p99_ratio.clone(),
            );
            r.insert(
                "isolation: healthy p50 with / without the flaky destination".into(),
                x.p50_ratio.clone(),
            );
        }
        if let Some(b) = &self.broker {
            if let Some(x) = &self.router {
                let fanout = x.destinations as f64;
                // The router also writes one dedupe-changelog record per
                // event when dedupe is on (the default).
                let dedupe = !herald_core::config::RouterConfig::default()
                    .dedupe_window
                    .is_zero();
                let router_fanout = fanout + f64::from(u8::from(dedupe));
                let out = Summary::of(vec![x.sides["router"].rate.median * router_fanout]);
                r.insert(
                    "ceiling: router output records/s / producer perf".into(),
                    ratio_of_medians(&out, &b.producer),
                );
                r.insert(
                    "ceiling: router input records/s / consumer perf".into(),
                    ratio_of_medians(&x.sides["router"].rate, &b.consumer),
                );
                let out = Summary::of(vec![x.sides["copy-txn"].rate.median * fanout]);
                r.insert(
                    "ceiling: copy-txn output records/s / producer perf".into(),
                    ratio_of_medians(&out, &b.producer),
                );
            }
            if let Some(l) = self
                .adapter
                .as_ref()
                .and_then(|a| a.levels.iter().max_by_key(|l| l.concurrency))
            {
                r.insert(
                    format!(
                        "ceiling: adapter (concurrency {}) records/s / consumer perf",
                        l.concurrency
                    ),
                    ratio_of_medians(&l.sides["adapter"].rate, &b.consumer),
                );
            }
        }
        self.ratios = r;
    }

    /// `{{name}}` values for `notes.md`: every headline ratio by its name,
    /// plus a few figures.
    fn placeholders(&self) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = self
            .ratios
            .iter()
            .map(|(k, v)| (k.clone(), ratio(v)))
            .collect();
        if let Some(x) = &self.router {
            for (k, s) in &x.sides {
                m.insert(format!("rate: {k}"), summary(&s.rate));
            }
        }
        if let Some(x) = &self.adapter {
            for l in &x.levels {
                for (k, s) in &l.sides {
                    m.insert(
                        format!("rate: {k}, concurrency {}", l.concurrency),
                        summary(&s.rate),
                    );
                }
            }
        }
        for r in self.latency.iter().flatten() {
            m.insert(format!("p50 at {}", r.rate), summary(&r.latency.p50_ms));
            m.insert(format!("p99 at {}", r.rate), summary(&r.latency.p99_ms));
            // A median p50 past a second means the queue grew in the window.
            let verdict = if r.latency.p50_ms.median < 1000.0 {
                "kept up"
            } else {
                "did not keep up (the queue grew during the window)"
            };
            m.insert(format!("verdict at {}", r.rate), verdict.to_string());
        }
        m.insert("mode".into(), self.plan.mode.to_string());
        m
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("benchmarks.json"),
            serde_json::to_string_pretty(self)? + "\n",
        )?;
        std::fs::write(dir.join("benchmarks.md"), self.markdown())?;
        Ok(())
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let p = &self.plan;
        let m = &self.machine;
        let _ = writeln!(s, "# Herald benchmarks\n");
        let _ = writeln!(
            s,
            "Generated by `{}` on {} (git {}, {} mode, {:.1} minutes). \
             Regenerate rather than edit: the closing analysis comes from \
             `crates/herald-bench/src/notes.md`, with this run's figures filled in. \
             Every figure is also in `benchmarks.json`, repetition by repetition.\n",
            self.command,
            self.generated_at,
            self.git,
            p.mode,
            self.duration_s / 60.0
        );
        if p.mode != "full" {
            let _ = writeln!(s, "> **{} mode**: every scenario ran for a few seconds, once. These figures only show the bench works.\n", p.mode);
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s, "> **Scenarios that failed in this run:**\n>");
            for e in &self.errors {
                let _ = writeln!(s, "> - {}", e.lines().next().unwrap_or_default());
            }
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "## How to read this\n\n\
             The machine is shared and noisy, so absolute figures mean little from one run to the next; \
             each one is measured next to a baseline in the same run, and the **ratios** are the result. \
             A figure is the median of {reps} repetitions with the spread (min–max) in brackets. \
             A ratio is the median of the per-repetition ratios (each pair ran back to back, order rotated), \
             with their spread. Warm-up is excluded everywhere: throughput is measured from {w:.0} s after \
             the first record is processed, latency from events produced after a {lw:.0} s warm-up.\n",
            reps = p.reps,
            w = p.warmup.as_secs_f64(),
            lw = p.latency_warmup.as_secs_f64()
        );

        let _ = writeln!(s, "## Machine\n\n| | |\n|---|---|");
        let _ = writeln!(s, "| CPU | {} |", m.cpu_model);
        let _ = writeln!(
            s,
            "| logical CPUs | {} (at {} MHz) |",
            m.logical_cpus, m.cpu_mhz
        );
        let _ = writeln!(s, "| memory | {} GiB |", m.memory_gib);
        let _ = writeln!(s, "| kernel | {} |", m.kernel);
        let _ = writeln!(s, "| load average at start | {} |", m.load_average_at_start);
        let _ = writeln!(
            s,
            "| layout | one single-node KRaft broker (JVM), the services under test, the baselines and the bench's \
             own sink and load generator all share these CPUs |\n"
        );

        let _ = writeln!(s, "## Parameters\n\n| | |\n|---|---|");
        let _ = writeln!(s, "| repetitions | {} |", p.reps);
        let _ = writeln!(
            s,
            "| partitions per topic | {} (replication 1) |",
            p.partitions
        );
        let _ = writeln!(
            s,
            "| throughput windows | {:.0} s warm-up, {:.0} s measured |",
            p.warmup.as_secs_f64(),
            p.measure.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "| router backlog | {} events, 3 destinations (every event to each) |",
            p.router_backlog
        );
        let _ = writeln!(s, "| adapter backlog | {} deliveries |", p.adapter_backlog);
        let _ = writeln!(s, "| adapter concurrency | {:?} |", p.concurrencies);
        let _ = writeln!(
            s,
            "| latency | offered rates {:?} events/s, {:.0} s warm-up, {:.0} s measured, drain up to {:.0} s |",
            p.rates,
            p.latency_warmup.as_secs_f64(),
            p.latency_measure.as_secs_f64(),
            p.drain_timeout.as_secs_f64()
        );
        let _ = writeln!(s, "| isolation | {} events/s |", p.isolation_rate);
        let _ = writeln!(
            s,
            "| perf tools | {} records per run, {} runs |",
            p.perf_records, p.perf_reps
        );
        let z = &self.sizes;
        let _ = writeln!(
            s,
            "| record sizes | input event {} B (CloudEvents JSON), Delivery {} B (Avro), HTTP body {} B |",
            z.input_event, z.delivery, z.http_body
        );
        for (k, v) in &self.settings {
            let _ = writeln!(s, "| {k} | {v} |");
        }
        s.push('\n');

        let _ = writeln!(s, "## Ratios at a glance\n");
        if self.ratios.is_empty() {
            let _ = writeln!(s, "No ratios: no scenario completed.\n");
        }
        for (k, v) in &self.ratios {
            let _ = writeln!(s, "- {k}: **{}**", ratio(v));
        }
        s.push('\n');

        self.md_router(&mut s);
        self.md_adapter(&mut s);
        self.md_latency(&mut s);
        self.md_isolation(&mut s);
        crate::scenarios::gateway::markdown(self.gateway.as_ref(), &mut s);
        self.md_footprint(&mut s);
        self.md_broker(&mut s);
        crate::scenarios::peer_md::markdown(self.peer.as_ref(), self.latency.as_deref(), &mut s);

        let mut notes = NOTES.to_string();
        for (k, v) in self.placeholders() {
            notes = notes.replace(&format!("{{{{{k}}}}}"), &v);
        }
        s.push_str(&notes);
        if !s.ends_with('\n') {
            s.push('\n');
        }
        s
    }

    fn md_router(&self, s: &mut String) {
        let _ = writeln!(s, "## 1. Router throughput\n");
        let Some(x) = &self.router else {
            let _ = writeln!(s, "Not run.\n");
            return;
        };
        let _ = writeln!(
            s,
            "Events/s from a pre-filled input topic through to committed offsets, routed to {} destinations \
             (every event to each). `router` is herald-router (decode, validate, route, Avro Delivery, \
             one transaction per batch). `copy-txn` is a raw rdkafka consume → produce copy with the same \
             topics, partitions, batch limits, consumer and producer settings, output sizes and headers, \
             in transactions; `copy` is the same without transactions (flush, then commit offsets).\n",
            x.destinations
        );
        let _ = writeln!(
            s,
            "| | events/s | CPU s per M events | peak RSS MB |\n|---|---|---|---|"
        );
        for k in ["router", "copy-txn", "copy"] {
            if let Some(v) = x.sides.get(k) {
                let _ = writeln!(
                    s,
                    "| {k} | {} | {} | {} |",
                    summary(&v.rate),
                    summary(&v.cpu_s_per_million),
                    summary(&v.peak_rss_mb)
                );
            }
        }
        s.push('\n');
        for (k, v) in &x.ratios {
            let _ = writeln!(s, "- {k}: **{}**", ratio(v));
        }
        s.push('\n');
    }

    fn md_adapter(&self, s: &mut String) {
        let _ = writeln!(s, "## 2. Adapter throughput\n");
        let Some(x) = &self.adapter else {
            let _ = writeln!(s, "Not run.\n");
            return;
        };
        let _ = writeln!(
            s,
            "Deliveries/s arriving at the same local sink (answers 204 at once), from a pre-filled destination topic. \
             `adapter` is herald-adapter (consume, decode the Delivery, build and sign the request, POST, \
             write the attempt and ledger records, commit offsets), with adaptive concurrency off so the limit is exactly the \
             stated one. `http-loop` is a raw reqwest loop POSTing \
             the same signed {}-byte bodies at the same concurrency with the same client settings, and no Kafka.\n",
            x.body_bytes
        );
        let _ = writeln!(
            s,
            "| concurrency | adapter deliveries/s | http-loop deliveries/s | adapter / http-loop | adapter CPU s per M | http-loop CPU s per M |\n|---|---|---|---|---|---|"
        );
        for l in &x.levels {
            let (a, b) = (&l.sides["adapter"], &l.sides["http-loop"]);
            let _ = writeln!(
                s,
                "| {} | {} | {} | **{}** | {} | {} |",
                l.concurrency,
                summary(&a.rate),
                summary(&b.rate),
                ratio(&l.ratio),
                summary(&a.cpu_s_per_million),
                summary(&b.cpu_s_per_million)
            );
        }
        s.push('\n');
    }

    fn md_latency(&self, s: &mut String) {
        let _ = writeln!(s, "## 3. End-to-end latency\n");
        let Some(x) = &self.latency else {
            let _ = writeln!(s, "Not run.\n");
            return;
        };
        let _ = writeln!(
            s,
            "From the producer's send call to arrival at the sink, for every event produced in the window, at each of 3 \
             destinations (one adapter each), with Herald's default batching (see router batching \
             under Parameters; consumers read committed). The rates stay within what this 2-core box sustains with the \
             broker, the router, three adapters, the load generator and the sink all on it: in trial runs 1,500 to \
             2,000 events/s (4,500 to 6,000 deliveries/s) was at the knee (the queue grew in some runs and not in \
             others, with the machine's other load) and at 3,000 it always grew, so higher rates measure the queue, \
             not the pipeline. Events that never arrived within the drain timeout count as infinitely late.\n"
        );
        let _ = writeln!(s, "| offered events/s | deliveries/s | p50 ms | p99 ms | p99.9 ms | missing |\n|---|---|---|---|---|---|");
        for r in x {
            let l = &r.latency;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                r.rate,
                r.rate * 3.0,
                summary(&l.p50_ms),
                summary(&l.p99_ms),
                summary(&l.p999_ms),
                l.missing
            );
        }
        s.push('\n');
    }

    fn md_isolation(&self, s: &mut String) {
        let _ = writeln!(s, "## 4. Isolation\n");
        let Some(x) = &self.isolation else {
            let _ = writeln!(s, "Not run.\n");
            return;
        };
        let _ = writeln!(
            s,
            "The three healthy destinations' latency at {} events/s, without and with a fourth destination whose \
             requests time out 30% of the time (1 s timeout, retried through 1 s and 2 s tiers, then the DLQ). \
             The fourth destination has its own topic, retry tiers, consumer group and adapter process, as in \
             production; on this machine it still shares the CPUs and the broker with the others.\n",
            x.rate
        );
        let _ = writeln!(
            s,
            "| | p50 ms | p99 ms | p99.9 ms | missing |\n|---|---|---|---|---|"
        );
        for (k, l) in [
            ("without", &x.without),
            ("with the flaky destination", &x.with),
        ] {
            let _ = writeln!(
                s,
                "| {k} | {} | {} | {} | {} |",
                summary(&l.p50_ms),
                summary(&l.p99_ms),
                summary(&l.p999_ms),
                l.missing
            );
        }
        s.push('\n');
        let flaky: Vec<f64> = x
            .runs_with
            .iter()
            .filter_map(|r| r.flaky_requests)
            .map(|n| n as f64)
            .collect();
        let _ = writeln!(
            s,
            "The flaky destination received {} requests per run (median): requests that time out hold its \
             adapter's slots, so that adapter falls behind (its own lag grows) while the others go on.\n",
            summary(&Summary::of(flaky))
        );
        let _ = writeln!(
            s,
            "- healthy p99 with / without: **{}**",
            ratio(&x.p99_ratio)
        );
        let _ = writeln!(
            s,
            "- healthy p50 with / without: **{}**\n",
            ratio(&x.p50_ratio)
        );
    }

    fn md_footprint(&self, s: &mut String) {
        let _ = writeln!(s, "## 5. Footprint\n");
        let Some(x) = &self.footprint else {
            let _ = writeln!(s, "Not run.\n");
            return;
        };
        let _ = writeln!(
            s,
            "From `/proc/<pid>`: peak RSS is VmHWM, steady RSS the median VmRSS over the measurement window, CPU is \
             user + system time over the window divided by the events handled in it. At a fixed offered rate \
             (scenario 3's runs), per service; at low rates the CPU per event is mostly the fixed cost of an idle \
             service (librdkafka's polling and timers), well above the saturated figures further down:\n"
        );
        let _ = writeln!(s, "| offered events/s | service | peak RSS MB | steady RSS MB | CPU s per M events |\n|---|---|---|---|---|");
        let mut rates: Vec<(&String, f64)> = x
            .at_rate
            .keys()
            .map(|k| (k, k.parse().unwrap_or(0.0)))
            .collect();
        rates.sort_by(|a, b| a.1.total_cmp(&b.1));
        for (k, _) in rates {
            for (svc, f) in &x.at_rate[k] {
                let _ = writeln!(
                    s,
                    "| {k} | {svc} | {} | {} | {} |",
                    summary(&f.peak_rss_mb),
                    summary(&f.steady_rss_mb),
                    summary(&f.cpu_s_per_million)
                );
            }
        }
        s.push('\n');
        let _ = writeln!(
            s,
            "At saturation (scenarios 1 and 2), next to the baselines; a router event is one input record routed to 3 \
             destinations, an adapter event one delivery:\n"
        );
        let _ = writeln!(
            s,
            "| process | peak RSS MB | steady RSS MB | CPU s per M events |\n|---|---|---|---|"
        );
        for (k, f) in &x.saturated {
            let _ = writeln!(
                s,
                "| {k} | {} | {} | {} |",
                summary(&f.peak_rss_mb),
                summary(&f.steady_rss_mb),
                summary(&f.cpu_s_per_million)
            );
        }
        s.push('\n');
        for (k, v) in self
            .ratios
            .iter()
            .filter(|(k, _)| k.starts_with("cpu ") || k.starts_with("peak "))
        {
            let _ = writeln!(s, "- {k}: **{}**", ratio(v));
        }
        s.push('\n');
    }

    fn md_broker(&self, s: &mut String) {
        let _ = writeln!(s, "## 6. Broker ceiling\n");
        let Some(b) = &self.broker else {
            let _ = writeln!(s, "Not run.\n");
            return;
        };
        let _ = writeln!(
            s,
            "Kafka's own perf tools (kafka-tools {}) against the same broker: ProducerPerformance with {}-byte records \
             (a Delivery's size), tuned for throughput but as durable as Herald's writers (acks=all, idempotence, lz4, \
             linger.ms=20, batch.size=256 KiB), steady state after a 20% warm-up; ConsumerPerformance reading them back \
             (fetch rate, group join excluded). Half the runs happen before the other scenarios, half after them.\n",
            std::env::var("HERALD_KAFKA_VERSION").unwrap_or_else(|_| "4.3.1".into()),
            b.record_bytes
        );
        let _ = writeln!(s, "| tool | records/s |\n|---|---|");
        let _ = writeln!(s, "| ProducerPerformance | {} |", summary(&b.producer));
        let _ = writeln!(s, "| ConsumerPerformance | {} |\n", summary(&b.consumer));
        let _ = writeln!(
            s,
            "The router's output counts, per event, its Deliveries and its dedupe-changelog record; the copy's, its copies.\n"
        );
        for (k, v) in self.ratios.iter().filter(|(k, _)| k.starts_with("ceiling")) {
            let _ = writeln!(s, "- {k}: **{}**", ratio(v));
        }
        s.push('\n');
    }
}

/// A figure with sensible precision; "n/a" for none, "timeout" for events
/// that never arrived.
pub fn num(x: f64) -> String {
    if x.is_nan() {
        "n/a".into()
    } else if x.is_infinite() {
        "timeout".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// `median [min–max]`, or just the median for a single repetition.
pub fn summary(s: &Summary) -> String {
    if s.samples.len() > 1 && s.is_valid() {
        format!("{} [{}–{}]", num(s.median), num(s.min), num(s.max))
    } else {
        num(s.median)
    }
}

/// A ratio: `0.62× [0.58–0.66]`.
pub fn ratio(s: &Summary) -> String {
    let x = |v: f64| {
        if v.is_finite() {
            format!("{v:.2}")
        } else {
            num(v)
        }
    };
    if s.samples.len() > 1 && s.is_valid() {
        format!("{}× [{}–{}]", x(s.median), x(s.min), x(s.max))
    } else {
        format!("{}×", x(s.median))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(num(12345.6), "12346");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(1.2345), "1.23");
        assert_eq!(num(f64::NAN), "n/a");
        assert_eq!(num(f64::INFINITY), "timeout");
        assert_eq!(
            summary(&Summary::of(vec![1.0, 2.0, 3.0])),
            "2.00 [1.00–3.00]"
        );
        assert_eq!(ratio(&Summary::of(vec![0.5])), "0.50×");
    }

    #[test]
    fn machine_comes_from_proc() {
        let m = Machine::read();
        assert!(m.logical_cpus >= 1);
        assert!(m.memory_gib > 0.0);
    }
}
