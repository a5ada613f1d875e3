//! `herald-bench`: how fast Herald is, and what it costs compared with
//! writing it by hand, as ratios against baselines measured side by side in
//! the same run on the local real broker. Writes `docs/benchmarks.md` and
//! `docs/benchmarks.json`.
//!
//! ```text
//! cargo build --release -p herald-bench -p herald-router -p herald-adapter -p herald-devtools
//! target/release/herald-bench            # full run, about 12 minutes
//! target/release/herald-bench --quick    # every scenario for a few seconds
//! ```

mod baseline;
mod ctx;
mod procs;
mod raw_gateway;
mod report;
mod scenarios;
mod sink;
mod stats;
mod workload;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ctx::{Ctx, Plan};
use report::{FootprintResult, Machine, Results, Sizes};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SCENARIOS: [&str; 7] = [
    "broker",
    "router",
    "adapter",
    "latency",
    "isolation",
    "gateway",
    "peer",
];

/// Benchmarks Herald's router and adapter against hand-written baselines on
/// a real Kafka broker: throughput, end-to-end latency, isolation, footprint
/// and the broker's own ceiling. Writes benchmarks.md and benchmarks.json.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Run every scenario for a few seconds, once: checks the bench works.
    #[arg(long)]
    quick: bool,
    /// Directory for benchmarks.md and benchmarks.json (default: the
    /// repository's docs/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Kafka bootstrap servers. Without it, `scripts/kafka.sh start` starts
    /// (or reuses) the local broker.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    bootstrap: Option<String>,
    /// A Herald config whose `[kafka]` section (bootstrap servers, `client`
    /// properties, `client_secrets`) every client of the run uses: for a
    /// secured cluster. The broker scenario (Kafka's Java perf tools) is not
    /// run with it.
    #[arg(long)]
    kafka_config: Option<PathBuf>,
    /// Directory holding herald-router and herald-adapter (default: the one
    /// this executable is in, e.g. target/release).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Only these scenarios: broker, router, adapter, latency, isolation,
    /// gateway, peer (footprint comes from router, adapter and latency).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Repetitions of each measurement (default 3, or 1 with --quick).
    #[arg(long)]
    reps: Option<usize>,
    /// Offered rates of the latency scenario, events/s.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// Offered rate of the isolation scenario, events/s.
    #[arg(long)]
    isolation_rate: Option<f64>,
    /// Keep the configs and service logs of the run (otherwise deleted
    /// unless a scenario failed).
    #[arg(long)]
    keep_work: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Baseline: raw rdkafka consume → produce copy (runs until SIGTERM).
    #[command(hide = true)]
    Copy {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        transactional: bool,
    },
    /// Baseline: raw reqwest POST loop (runs until SIGTERM).
    #[command(hide = true)]
    HttpLoop {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        destination: String,
        #[arg(long)]
        run: String,
        #[arg(long)]
        count: u64,
    },
    /// Baseline: a bare HTTP route that writes each body to Kafka (runs
    /// until SIGTERM).
    #[command(hide = true)]
    RawGateway {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        listen: String,
    },
}

/// The repository this binary was built from.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.cmd {
        Some(Cmd::Copy {
            config,
            transactional,
        }) => return baseline::copy(config, *transactional).await,
        Some(Cmd::HttpLoop {
            config,
            destination,
            run,
            count,
        }) => return baseline::http_loop(config, destination, run, *count).await,
        Some(Cmd::RawGateway { config, listen }) => {
            return raw_gateway::raw_gateway(config, listen).await
        }
        None => {}
    }
    bench(args).await
}

async fn bench(args: Args) -> anyhow::Result<()> {
    for s in &args.only {
        if !SCENARIOS.contains(&s.as_str()) {
            bail!(
                "unknown scenario `{s}`; choose from {}",
                SCENARIOS.join(", ")
            );
        }
    }
    let mut plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    if let Some(r) = args.reps {
        plan.reps = r.max(1);
    }
    if !args.rates.is_empty() {
        plan.rates = args.rates.clone();
    }
    if let Some(r) = args.isolation_rate {
        plan.isolation_rate = r;
    }
    let repo = repo_root();
    let out = args.out.clone().unwrap_or_else(|| repo.join("docs"));
    let bins = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("executable has a directory")?
            .to_path_buf(),
    };
    for b in ["herald-router", "herald-adapter"] {
        if !bins.join(b).exists() {
            bail!(
                "{} not found in {}; build it first: cargo build --release -p herald-bench -p herald-router -p herald-adapter -p herald-devtools",
                b,
                bins.display()
            );
        }
    }
    let secured = match &args.kafka_config {
        Some(path) => {
            let c = herald_core::config::Config::load(Some(path))
                .with_context(|| format!("--kafka-config {}", path.display()))?;
            let b = c.kafka.bootstrap_servers.clone();
            workload::use_kafka_config(c.kafka);
            Some(b)
        }
        None => None,
    };
    for java in ["broker", "peer"] {
        if secured.is_some() && args.only.iter().any(|o| o == java) {
            bail!("--only {java} cannot run with --kafka-config: it runs Java clients, which take Java client settings");
        }
    }
    let bootstrap =
        match secured.or_else(|| args.bootstrap.clone().filter(|b| !b.trim().is_empty())) {
            Some(b) => b,
            None => start_local_broker(&repo)?,
        };
    check_broker(&bootstrap).await?;

    let run = format!(
        "hb{:06x}",
        (std::process::id() as u64 ^ sink::now_us()) & 0xff_ffff
    );
    let work = std::env::temp_dir().join(format!("herald-bench-{run}"));
    std::fs::create_dir_all(&work)?;
    let sink = sink::Sink::start().await?;
    let ctx = Ctx::new(
        plan,
        bootstrap.clone(),
        bins,
        repo.clone(),
        work.clone(),
        run.clone(),
        sink,
    )?;
    ctx.log(format!(
        "{} run {run} against {bootstrap}; binaries from {}; work dir {}",
        ctx.plan.mode,
        ctx.bins.display(),
        work.display()
    ));

    let want = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    let sizes = sizes(&run);
    let mut errors = Vec::new();
    let mut note = |name: &str, e: anyhow::Error| {
        ctx.log(format!("{name} scenario FAILED: {e:#}"));
        errors.push(format!("{name}: {e:#}"));
    };

    // The broker's ceiling: half the repetitions now, half at the end.
    let perf_reps = if want("broker") && args.kafka_config.is_none() {
        ctx.plan.perf_reps
    } else {
        0
    };
    let mut perf_runs = Vec::new();
    let mut broker_failed = false;
    for rep in 0..perf_reps.div_ceil(2) {
        match scenarios::broker::broker_rep(&ctx, sizes.delivery, rep).await {
            Ok(r) => perf_runs.push(r),
            Err(e) => {
                note("broker", e);
                broker_failed = true;
                break;
            }
        }
    }
    let mut router = None;
    if want("router") {
        match scenarios::throughput::router(&ctx).await {
            Ok(r) => router = Some(r),
            Err(e) => note("router", e),
        }
    }
    let mut adapter = None;
    if want("adapter") {
        match scenarios::throughput::adapter(&ctx).await {
            Ok(r) => adapter = Some(r),
            Err(e) => note("adapter", e),
        }
    }
    let mut latency = None;
    if want("latency") {
        match scenarios::latency::latency(&ctx).await {
            Ok(r) => latency = Some(r),
            Err(e) => note("latency", e),
        }
    }
    let mut gateway = None;
    if want("gateway") {
        match scenarios::gateway::gateway(&ctx).await {
            Ok(r) => gateway = Some(r),
            Err(e) => note("gateway", e),
        }
    }
    let mut isolation = None;
    if want("isolation") {
        match scenarios::latency::isolation(&ctx).await {
            Ok(r) => isolation = Some(r),
            Err(e) => note("isolation", e),
        }
    }
    let mut peer = None;
    if want("peer") && args.kafka_config.is_none() {
        match scenarios::peer::peer(&ctx).await {
            Ok(r) => peer = Some(r),
            Err(e) => note("peer", e),
        }
    }
    if !broker_failed {
        for rep in perf_reps.div_ceil(2)..perf_reps {
            match scenarios::broker::broker_rep(&ctx, sizes.delivery, rep).await {
                Ok(r) => perf_runs.push(r),
                Err(e) => {
                    note("broker", e);
                    broker_failed = true;
                    break;
                }
            }
        }
    }
    let broker = (want("broker") && !broker_failed && args.kafka_config.is_none())
        .then(|| scenarios::broker::result(&ctx, sizes.delivery, &perf_runs));
    // Whatever a failed scenario left behind.
    if let Err(e) = workload::delete_topics(&bootstrap, &run).await {
        ctx.log(format!("could not delete the run's topics: {e:#}"));
    }

    let footprint = FootprintResult::build(latency.as_deref(), router.as_ref(), adapter.as_ref());
    let mut results = Results {
        generated_at: utc_now(),
        command: command_line(args.quick),
        git: git_describe(&repo),
        duration_s: ctx.elapsed().as_secs_f64(),
        machine: Machine::read(),
        plan: ctx.plan.clone(),
        settings: settings(),
        sizes,
        router,
        adapter,
        latency,
        isolation,
        gateway,
        peer,
        footprint,
        broker,
        ratios: BTreeMap::new(),
        errors,
    };
    results.compute_ratios();
    results.write(&out)?;
    ctx.log(format!(
        "wrote {} and {}",
        out.join("benchmarks.md").display(),
        out.join("benchmarks.json").display()
    ));
    for (k, v) in &results.ratios {
        ctx.log(format!("{k}: {}", report::ratio(v)));
    }
    if !results.errors.is_empty() {
        ctx.log(format!("service logs kept in {}", work.display()));
        bail!(
            "{} scenario(s) failed: {}",
            results.errors.len(),
            results.errors.join("; ")
        );
    }
    if !args.keep_work {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

fn start_local_broker(repo: &Path) -> anyhow::Result<String> {
    let out = std::process::Command::new("bash")
        .arg(repo.join("scripts/kafka.sh"))
        .arg("start")
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running scripts/kafka.sh start")?;
    if !out.status.success() {
        bail!("scripts/kafka.sh start failed: the benchmark needs a real Kafka broker");
    }
    let text = String::from_utf8(out.stdout)?;
    text.lines()
        .last()
        .map(|l| l.trim().to_string())
        .context("kafka.sh printed no address")
}

/// Fails fast, and clearly, when there is no broker.
async fn check_broker(bootstrap: &str) -> anyhow::Result<()> {
    let b = bootstrap.to_string();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer = workload::client(&b).create()?;
        c.fetch_metadata(None, Duration::from_secs(15))
            .with_context(|| format!("no Kafka broker answers at {b}"))?;
        Ok(())
    })
    .await?
}

fn sizes(run: &str) -> Sizes {
    use herald_core::codec::AvroRecord;
    let e = workload::event(run, 123_456, sink::now_us());
    let d = herald_core::envelope::Delivery {
        event: e.clone(),
        destination: "crm".into(),
        attempts: 0,
        routed_at: herald_core::time::now_ms(),
        first_attempt_at: None,
        due_at: 0,
        origin_topic: format!("{run}.events"),
        origin_partition: 1,
        origin_offset: 123_456,
        history: Vec::new(),
        produced_at: None,
    };
    Sizes {
        input_event: workload::event_json(&e).len(),
        delivery: d.to_avro().map(|v| v.len()).unwrap_or(0),
        http_body: workload::event_json(&e).len(),
    }
}

fn settings() -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    m.insert("router batching", {
        let r = herald_core::config::RouterConfig::default();
        format!(
            "defaults: a transaction closes when the input has nothing more ready, at {} records, or {} ms after its first record",
            r.batch_max_records,
            r.batch_max_wait.as_millis()
        )
    });
    m.insert("adapter", "defaults (commit every 1 s), webhook kind, signed (Standard Webhooks), 5 s timeout where not stated".into());
    m.insert(
        "retry tiers",
        "1 s and 5 s (flaky destination: 1 s and 2 s)".into(),
    );
    m.insert(
        "producers",
        "Herald's own: acks=all, idempotence, linger.ms=5, lz4".into(),
    );
    m.insert(
        "load generator",
        "one rdkafka producer, linger.ms=5, lz4, idempotence; events keyed by customer id".into(),
    );
    m
}

fn command_line(quick: bool) -> String {
    if quick {
        "herald-bench --quick".into()
    } else {
        "herald-bench".into()
    }
}

fn git_describe(repo: &Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head} with uncommitted changes")
    } else {
        head
    }
}

/// UTC now, RFC 3339 to the second.
fn utc_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
