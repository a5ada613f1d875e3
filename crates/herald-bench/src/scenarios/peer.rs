//! Scenario 7: the peer a Java shop would build instead of Herald — Spring
//! Kafka's non-blocking retries (`crates/herald-bench/peer`: retry topics
//! with delays, a dead-letter topic, a signed POST per record) — beside
//! Herald's adapter and the raw reqwest loop, on the same broker and sink.
//!
//! Both sides get the same partitions, concurrency (the peer's listener
//! concurrency = partitions), timeout, retry ladder ([`TIERS_MS`]) and
//! attempt budget. The peer reads the events topic a backend writes (it has
//! no router); the adapter reads its destination topic, pre-filled with the
//! deliveries the router would write for the same events.
//!
//! - throughput: deliveries/s, CPU per delivery and RSS, repetitions of the
//!   three sides interleaved;
//! - faults: 30% of requests answered 503 — delivered, dead-lettered,
//!   duplicated, lost, and the time until every event ended;
//! - SIGKILL: each side killed once mid-run and restarted — lost and
//!   duplicated;
//! - latency: producer → peer → sink at the latency scenario's rates.

pub use super::peer_settle::Outcome;
use crate::ctx::Ctx;
use crate::procs::Service;
use crate::scenarios::latency::{Percentiles, ServiceCost};
use crate::scenarios::throughput::{delivery_record_to, measure, Run, Side};
use crate::stats::{paired_ratio, Summary};
use crate::workload::{self, DestSpec};
use anyhow::{bail, Context};
use rdkafka::message::OwnedHeaders;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The retry ladder of both sides: Herald's tiers, the peer's retry topics.
/// Three attempts in all.
const TIERS_MS: [u64; 2] = [1000, 5000];
const TIMEOUT_MS: u64 = 5000;

/// The peer's end-to-end latency at one offered rate.
#[derive(Debug, Clone, Serialize)]
pub struct PeerLatency {
    pub rate: f64,
    pub achieved_rate: f64,
    pub measured_events: u64,
    pub missing: u64,
    pub latency: Percentiles,
    pub cost: ServiceCost,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerResult {
    /// `java -version`'s first line.
    pub java: String,
    /// Partitions, the adapter's concurrency, the peer's listener
    /// concurrency and the raw loop's workers.
    pub concurrency: usize,
    pub backlog: u64,
    /// Seconds of warm-up before the peer's measured window, and before
    /// the adapter's and the raw loop's.
    pub warmup_s: f64,
    pub others_warmup_s: f64,
    /// `adapter`, `peer`, `http-loop`.
    pub throughput: BTreeMap<String, Side>,
    /// `adapter`, `peer`.
    pub faults: BTreeMap<String, Outcome>,
    pub kill: BTreeMap<String, Outcome>,
    pub latency: Vec<PeerLatency>,
}

impl PeerResult {
    pub fn ratios(&self) -> Vec<(String, Summary)> {
        let pick = |side: &str, f: fn(&Run) -> f64| -> Vec<f64> {
            self.throughput
                .get(side)
                .map(|s| s.runs.iter().map(f).collect())
                .unwrap_or_default()
        };
        vec![
            (
                "throughput: adapter / peer".into(),
                paired_ratio(&pick("adapter", |r| r.rate), &pick("peer", |r| r.rate)),
            ),
            (
                "cpu per delivery: adapter / peer".into(),
                paired_ratio(
                    &pick("adapter", |r| r.cpu_s_per_million),
                    &pick("peer", |r| r.cpu_s_per_million),
                ),
            ),
            (
                "peak rss: adapter / peer".into(),
                paired_ratio(
                    &pick("adapter", |r| r.peak_rss_mb),
                    &pick("peer", |r| r.peak_rss_mb),
                ),
            ),
            (
                "throughput: peer / http-loop".into(),
                paired_ratio(&pick("peer", |r| r.rate), &pick("http-loop", |r| r.rate)),
            ),
        ]
    }
}

/// The peer's runnable jar, built (or found up to date) by
/// `scripts/peer.sh build`.
pub(super) struct Peer {
    jar: PathBuf,
    java: String,
}

impl Peer {
    fn build(ctx: &Ctx) -> anyhow::Result<Self> {
        ctx.log("peer: building the Spring Kafka peer (scripts/peer.sh build)");
        let out = std::process::Command::new("bash")
            .arg(ctx.repo.join("scripts/peer.sh"))
            .arg("build")
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("running scripts/peer.sh build")?;
        if !out.status.success() {
            bail!("scripts/peer.sh build failed (the peer needs Java 17+ and Maven; see its message above)");
        }
        let jar = String::from_utf8(out.stdout)?
            .lines()
            .last()
            .map(|l| PathBuf::from(l.trim()))
            .context("scripts/peer.sh printed no jar")?;
        let v = std::process::Command::new("java")
            .arg("-version")
            .output()?;
        let java = String::from_utf8_lossy(&v.stderr)
            .lines()
            .next()
            .unwrap_or("java")
            .to_string();
        Ok(Self { jar, java })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        &self,
        ctx: &Ctx,
        topic: &str,
        group: &str,
        url: &str,
        concurrency: usize,
        log: &str,
    ) -> anyhow::Result<Service> {
        let backoff: Vec<String> = TIERS_MS.iter().map(u64::to_string).collect();
        let args = vec![
            // A heap limit like a container's; the JVM would otherwise take
            // up to a quarter of this box's 24 GiB.
            "-Xmx1g".to_string(),
            "-jar".into(),
            self.jar.display().to_string(),
            format!("--spring.kafka.bootstrap-servers={}", ctx.bootstrap),
            format!("--peer.topic={topic}"),
            format!("--peer.group={group}"),
            format!("--peer.url={url}"),
            format!("--peer.secret={}", workload::SECRET),
            format!("--peer.concurrency={concurrency}"),
            format!("--peer.timeout-ms={TIMEOUT_MS}"),
            format!("--peer.attempts={}", TIERS_MS.len() + 1),
            format!("--peer.backoff-ms={}", backoff.join(",")),
        ];
        Service::spawn(log, Path::new("java"), args, &[], &ctx.work, None)
    }
}

/// Waits until the peer logged its partition assignment.
async fn peer_ready(svc: &mut Service) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        svc.check_alive()?;
        let log = std::fs::read_to_string(&svc.log).unwrap_or_default();
        if log.contains("herald-peer: partitions assigned") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} got no partitions in 90 s", svc.name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A config with one destination `dest` posting to `url`, `partitions`
/// partitions everywhere, and its topics created; its input topic is
/// pre-filled with `n` events and the destination topic with their
/// deliveries.
pub(super) async fn setup(
    ctx: &Ctx,
    prefix: &str,
    dest: &str,
    url: String,
    concurrency: usize,
    n: u64,
) -> anyhow::Result<(PathBuf, herald_core::config::Config)> {
    let spec = DestSpec::new(dest, url)
        .with(&format!("timeout = \"{}ms\"", TIMEOUT_MS))
        .with(&format!("concurrency = {concurrency}"))
        .with("adaptive_concurrency = false");
    let input = format!("{prefix}.events");
    let (path, cfg) = workload::write_config(
        &ctx.work,
        &ctx.bootstrap,
        prefix,
        &input,
        concurrency as i32,
        &[spec],
    )?;
    workload::create_topics(&cfg).await?;
    let dest_topic = cfg.topic_names().dest(dest);
    ctx.log(format!(
        "peer: pre-filling {input} and {dest_topic} with {n} records each"
    ));
    let (bootstrap, run, d) = (ctx.bootstrap.clone(), prefix.to_string(), dest.to_string());
    let routed_at = herald_core::time::now_ms();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        workload::prefill(&bootstrap, &input, n, |i| {
            let e = workload::event(&run, i, 0);
            let (key, value) = (workload::event_key(&e), workload::event_json(&e));
            (key, value, OwnedHeaders::new())
        })?;
        workload::prefill(&bootstrap, &dest_topic, n, |i| {
            delivery_record_to(&d, &run, i, routed_at)
        })
    })
    .await??;
    Ok((path, cfg))
}

pub async fn peer(ctx: &Ctx) -> anyhow::Result<PeerResult> {
    let peer = Peer::build(ctx)?;
    ctx.log(format!("peer: {} with {}", peer.jar.display(), peer.java));
    let c = ctx.plan.peer_concurrency;
    let throughput = throughput(ctx, &peer, c).await?;
    let faults = super::peer_settle::settle_runs(ctx, &peer, c, true).await?;
    let kill = super::peer_settle::settle_runs(ctx, &peer, c, false).await?;
    let mut latency = Vec::new();
    for &rate in &ctx.plan.peer_rates() {
        latency.push(latency_at(ctx, &peer, rate).await?);
    }
    Ok(PeerResult {
        java: peer.java.clone(),
        concurrency: c,
        backlog: ctx.plan.adapter_backlog,
        warmup_s: ctx.plan.peer_warmup.as_secs_f64(),
        others_warmup_s: ctx.plan.warmup.as_secs_f64(),
        throughput,
        faults,
        kill,
        latency,
    })
}

async fn throughput(ctx: &Ctx, peer: &Peer, c: usize) -> anyhow::Result<BTreeMap<String, Side>> {
    const SIDES: [&str; 3] = ["adapter", "peer", "http-loop"];
    let (prefix, dest, n) = (format!("{}-p1", ctx.run), "fast", ctx.plan.adapter_backlog);
    let (path, cfg) = setup(ctx, &prefix, dest, ctx.sink.url("/fast"), c, n).await?;
    let names = cfg.topic_names();
    let mut runs: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    for rep in 0..ctx.plan.reps {
        for k in 0..SIDES.len() {
            let side = SIDES[(rep + k) % SIDES.len()];
            let log = format!("{prefix}.r{rep}-{side}");
            let mut svc = match side {
                "adapter" => {
                    // From the start of the backlog with an empty ledger.
                    workload::delete_group(&ctx.bootstrap, &names.adapter_group(dest)).await?;
                    workload::recreate_topic(&ctx.bootstrap, &cfg, &names.ledger(dest)).await?;
                    ctx.start_adapter(&path, dest, &[], &log)?
                }
                "peer" => peer.start(
                    ctx,
                    &cfg.topics.input,
                    &format!("{prefix}.peer.r{rep}"),
                    &ctx.sink.url("/fast"),
                    c,
                    &log,
                )?,
                _ => ctx.start_http_loop(&path, dest, &prefix, n, &[], &log)?,
            };
            let start = ctx.sink.fast_count() as f64;
            let total = if side == "http-loop" {
                f64::INFINITY
            } else {
                n as f64
            };
            // The JVM compiles its hot paths during the first seconds: the
            // peer is measured once warm, not while it warms up.
            let warmup = if side == "peer" {
                ctx.plan.peer_warmup
            } else {
                ctx.plan.warmup
            };
            let run = measure(ctx, &mut svc, warmup, total, || {
                Ok(ctx.sink.fast_count() as f64 - start)
            })
            .await;
            svc.stop();
            let run = run?;
            ctx.log(format!(
                "peer: rep {}/{} {side}: {:.0} deliveries/s, {:.1} CPU s per M, peak RSS {:.0} MB",
                rep + 1,
                ctx.plan.reps,
                run.rate,
                run.cpu_s_per_million,
                run.peak_rss_mb
            ));
            runs.entry(side.to_string()).or_default().push(run);
        }
    }
    workload::delete_topics(&ctx.bootstrap, &format!("{prefix}.")).await?;
    Ok(runs.into_iter().map(|(k, v)| (k, Side::of(v))).collect())
}

/// The peer at one offered rate: producer → events topic → peer → sink.
async fn latency_at(ctx: &Ctx, peer: &Peer, rate: f64) -> anyhow::Result<PeerLatency> {
    let p = &ctx.plan;
    let prefix = format!("{}-p4r{}", ctx.run, rate as u64);
    let topic = format!("{prefix}.events");
    workload::create_topic(&ctx.bootstrap, &topic, p.partitions).await?;
    let mut svc = peer.start(
        ctx,
        &topic,
        &format!("{prefix}.peer"),
        &ctx.sink.url("/d/peer"),
        p.partitions as usize,
        &format!("{prefix}-peer"),
    )?;
    peer_ready(&mut svc).await?;
    let (fps, measured, achieved) =
        super::latency::offer(ctx, std::slice::from_mut(&mut svc), &topic, &prefix, rate).await?;
    super::peer_settle::wait_for(&mut svc, p.drain_timeout, || {
        ctx.sink.measured("peer") as u64 >= measured
    })
    .await?;
    svc.stop();
    let lat = ctx.sink.arrivals("peer").latencies_us;
    let missing = measured.saturating_sub(lat.len() as u64);
    workload::delete_topics(&ctx.bootstrap, &format!("{prefix}.")).await?;
    let r = PeerLatency {
        rate,
        achieved_rate: achieved,
        measured_events: measured,
        missing,
        latency: Percentiles::of(lat, missing),
        cost: ServiceCost::of(&fps[0], measured),
    };
    ctx.log(format!(
        "peer: latency at {rate}/s: p50 {:.1} ms, p99 {:.1} ms, missing {missing}",
        r.latency.p50_ms, r.latency.p99_ms
    ));
    Ok(r)
}
