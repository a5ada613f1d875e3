//! Scenarios 3, 4 and 5: the whole pipeline (router plus one adapter per
//! destination) at a fixed offered rate.
//!
//! A load generator produces events at the rate, each carrying its produce
//! time; the sink records produce-to-arrival latency for the events
//! produced inside the measurement window (after a warm-up that is not
//! measured). Production goes on a second past the window so the last
//! measured events travel under the same load, then the bench waits until
//! every measured event has arrived at every healthy destination (or the
//! drain timeout passes: the missing ones count as infinitely late).
//! `/proc` is sampled for every service over the same window.

use crate::ctx::Ctx;
use crate::procs::{Footprint, Service};
use crate::sink::now_us;
use crate::stats::{paired_ratio, percentile, Summary};
use crate::workload::{self, DestSpec, LoadGen};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Healthy destinations of the latency and isolation scenarios.
pub const HEALTHY: [&str; 3] = ["crm", "chat", "email"];

/// Latency percentiles over every measured arrival at the healthy
/// destinations, in milliseconds. Infinite when arrivals are missing.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

impl Percentiles {
    pub(crate) fn of(mut lat_us: Vec<u64>, missing: u64) -> Self {
        lat_us.extend(std::iter::repeat_n(u64::MAX, missing as usize));
        lat_us.sort_unstable();
        let ms = |p: f64| match percentile(&lat_us, p) {
            Some(u64::MAX) => f64::INFINITY,
            Some(us) => us as f64 / 1000.0,
            None => f64::NAN,
        };
        Self {
            p50_ms: ms(50.0),
            p99_ms: ms(99.0),
            p999_ms: ms(99.9),
        }
    }
}

/// What one service cost over the window.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceCost {
    pub peak_rss_mb: f64,
    pub steady_rss_mb: f64,
    pub cpu_s: f64,
    pub cpu_s_per_million: f64,
}

/// One pipeline run at a fixed rate.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineRun {
    pub rate: f64,
    /// What the load generator actually produced, events/s.
    pub achieved_rate: f64,
    /// Events produced in the measurement window.
    pub measured_events: u64,
    /// Measured deliveries that never arrived before the drain timeout.
    pub missing: u64,
    pub healthy: Percentiles,
    /// p99 per healthy destination.
    pub p99_ms_by_destination: BTreeMap<String, f64>,
    /// Requests the flaky destination saw (isolation scenario only).
    pub flaky_requests: Option<u64>,
    /// `router`, `adapter-<destination>`.
    pub services: BTreeMap<String, ServiceCost>,
}

/// Runs the pipeline once: healthy destinations, plus the flaky one if
/// `flaky`, at `rate` events/s.
pub async fn run_pipeline(
    ctx: &Ctx,
    prefix: &str,
    rate: f64,
    flaky: bool,
) -> anyhow::Result<PipelineRun> {
    let p = &ctx.plan;
    let mut dests: Vec<DestSpec> = HEALTHY
        .iter()
        .map(|d| DestSpec::new(d, ctx.sink.url(&format!("/d/{d}"))))
        .collect();
    if flaky {
        // 30% of requests hang past the timeout; retries go through two
        // short tiers, then the DLQ.
        ctx.sink.set_flaky_hang(Duration::from_secs(2));
        dests.push(
            DestSpec::new("flaky", ctx.sink.url("/flaky"))
                .with("timeout = \"1s\"")
                .with("retry.tiers = [\"1s\", \"2s\"]"),
        );
    }
    let input = format!("{prefix}.events");
    let (path, cfg) = workload::write_config(
        &ctx.work,
        &ctx.bootstrap,
        prefix,
        &input,
        p.partitions,
        &dests,
    )?;
    workload::create_topics(&cfg).await?;
    let result = drive(ctx, prefix, &path, &cfg, rate, flaky).await;
    workload::delete_topics(&ctx.bootstrap, &format!("{prefix}.")).await?;
    result
}

async fn drive(
    ctx: &Ctx,
    prefix: &str,
    path: &std::path::Path,
    cfg: &herald_core::config::Config,
    rate: f64,
    flaky: bool,
) -> anyhow::Result<PipelineRun> {
    let p = &ctx.plan;
    let mut services: Vec<Service> = vec![ctx.start_router(path, &format!("{prefix}-router"))?];
    for d in cfg.destinations.keys() {
        services.push(ctx.start_adapter(path, d, &[], &format!("{prefix}-adapter-{d}"))?);
    }
    for s in &mut services {
        s.wait_ready(&ctx.http, Duration::from_secs(60)).await?;
    }
    let flaky_before = ctx.sink.flaky_count();
    let (fps, measured, achieved) =
        offer(ctx, &mut services, &cfg.topics.input, prefix, rate).await?;

    // Drain: every measured event at every healthy destination.
    let deadline = Instant::now() + p.drain_timeout;
    while HEALTHY
        .iter()
        .any(|d| (ctx.sink.measured(d) as u64) < measured)
        && Instant::now() < deadline
    {
        for s in &mut services {
            s.check_alive()?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let flaky_requests = flaky.then(|| ctx.sink.flaky_count() - flaky_before);
    for s in &mut services {
        s.stop();
    }

    let mut all = Vec::new();
    let mut missing = 0;
    let mut by_dest = BTreeMap::new();
    for d in HEALTHY {
        let lat = ctx.sink.arrivals(d).latencies_us;
        let miss = measured.saturating_sub(lat.len() as u64);
        by_dest.insert(d.to_string(), Percentiles::of(lat.clone(), miss).p99_ms);
        missing += miss;
        all.extend(lat);
    }
    let costs = services
        .iter()
        .zip(&fps)
        .map(|(s, fp)| {
            let name = s
                .name
                .strip_prefix(&format!("{prefix}-"))
                .unwrap_or(&s.name)
                .to_string();
            (name, ServiceCost::of(fp, measured))
        })
        .collect();
    Ok(PipelineRun {
        rate,
        achieved_rate: achieved,
        measured_events: measured,
        missing,
        healthy: Percentiles::of(all, missing),
        p99_ms_by_destination: by_dest,
        flaky_requests,
        services: costs,
    })
}

/// Produces `rate` events/s to `topic` through the warm-up, the measured
/// window and one more second, sampling `/proc` of `services` over the
/// window. Returns their footprints, the events produced in the window and
/// the rate achieved.
pub(crate) async fn offer(
    ctx: &Ctx,
    services: &mut [Service],
    topic: &str,
    prefix: &str,
    rate: f64,
) -> anyhow::Result<(Vec<Footprint>, u64, f64)> {
    let p = &ctx.plan;
    let start = now_us() + p.latency_warmup.as_micros() as u64;
    let end = start + p.latency_measure.as_micros() as u64;
    ctx.sink.set_window(start, end);
    let total = p.latency_warmup + p.latency_measure + Duration::from_secs(1);
    let load = LoadGen::start(&ctx.bootstrap, topic, prefix, rate, total, (start, end))?;
    tokio::time::sleep(p.latency_warmup).await;
    let mut fps: Vec<Footprint> = services.iter().map(|s| Footprint::start(s.pid)).collect();
    let window_end = Instant::now() + p.latency_measure;
    while Instant::now() < window_end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (s, fp) in services.iter_mut().zip(&mut fps) {
            s.check_alive()?;
            fp.observe(s.pid);
        }
    }
    while !load.is_finished() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let measured = load.in_window.load(std::sync::atomic::Ordering::Relaxed);
    let achieved =
        load.sent.load(std::sync::atomic::Ordering::Relaxed) as f64 / total.as_secs_f64();
    load.join()?;
    Ok((fps, measured, achieved))
}

impl ServiceCost {
    /// What `fp` says a service cost for `events` events.
    pub fn of(fp: &Footprint, events: u64) -> Self {
        Self {
            peak_rss_mb: fp.peak_mb(),
            steady_rss_mb: fp.steady_mb(),
            cpu_s: fp.cpu_s(),
            cpu_s_per_million: fp.cpu_per_million(events as f64),
        }
    }
}

/// Percentile summaries across repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub p50_ms: Summary,
    pub p99_ms: Summary,
    pub p999_ms: Summary,
    pub missing: u64,
}

impl LatencySummary {
    fn of(runs: &[PipelineRun]) -> Self {
        let f =
            |g: fn(&Percentiles) -> f64| Summary::of(runs.iter().map(|r| g(&r.healthy)).collect());
        Self {
            p50_ms: f(|p| p.p50_ms),
            p99_ms: f(|p| p.p99_ms),
            p999_ms: f(|p| p.p999_ms),
            missing: runs.iter().map(|r| r.missing).sum(),
        }
    }
}

/// Scenario 3 at one rate; its runs also give scenario 5.
#[derive(Debug, Clone, Serialize)]
pub struct RateResult {
    pub rate: f64,
    pub latency: LatencySummary,
    /// Per service: peak RSS, steady RSS, CPU s per million events.
    pub footprint: BTreeMap<String, FootprintSummary>,
    pub runs: Vec<PipelineRun>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FootprintSummary {
    pub peak_rss_mb: Summary,
    pub steady_rss_mb: Summary,
    pub cpu_s_per_million: Summary,
}

fn footprints(runs: &[PipelineRun]) -> BTreeMap<String, FootprintSummary> {
    let mut names: Vec<String> = runs
        .iter()
        .flat_map(|r| r.services.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|n| {
            let f = |g: fn(&ServiceCost) -> f64| {
                Summary::of(
                    runs.iter()
                        .filter_map(|r| r.services.get(&n))
                        .map(g)
                        .collect(),
                )
            };
            let s = FootprintSummary {
                peak_rss_mb: f(|c| c.peak_rss_mb),
                steady_rss_mb: f(|c| c.steady_rss_mb),
                cpu_s_per_million: f(|c| c.cpu_s_per_million),
            };
            (n, s)
        })
        .collect()
}

pub async fn latency(ctx: &Ctx) -> anyhow::Result<Vec<RateResult>> {
    let p = &ctx.plan;
    let mut out = Vec::new();
    for &rate in &p.rates {
        let mut runs = Vec::new();
        for rep in 0..p.reps {
            let prefix = format!("{}-s3.r{}-{rep}", ctx.run, rate as u64);
            let run = run_pipeline(ctx, &prefix, rate, false).await?;
            ctx.log(format!(
                "latency: {rate} events/s rep {}/{}: p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, {} missing",
                rep + 1,
                p.reps,
                run.healthy.p50_ms,
                run.healthy.p99_ms,
                run.healthy.p999_ms,
                run.missing
            ));
            runs.push(run);
        }
        out.push(RateResult {
            rate,
            latency: LatencySummary::of(&runs),
            footprint: footprints(&runs),
            runs,
        });
    }
    Ok(out)
}

/// Scenario 4.
#[derive(Debug, Clone, Serialize)]
pub struct IsolationResult {
    pub rate: f64,
    pub without: LatencySummary,
    pub with: LatencySummary,
    /// Healthy p99 with the flaky destination / without it.
    pub p99_ratio: Summary,
    pub p50_ratio: Summary,
    pub runs_without: Vec<PipelineRun>,
    pub runs_with: Vec<PipelineRun>,
}

pub async fn isolation(ctx: &Ctx) -> anyhow::Result<IsolationResult> {
    let p = &ctx.plan;
    let rate = p.isolation_rate;
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for rep in 0..p.reps {
        for k in 0..2 {
            let flaky = (rep + k) % 2 == 1;
            let prefix = format!(
                "{}-s4.r{rep}-{}",
                ctx.run,
                if flaky { "with" } else { "without" }
            );
            let run = run_pipeline(ctx, &prefix, rate, flaky).await?;
            ctx.log(format!(
                "isolation: rep {}/{} {} the flaky destination: healthy p99 {:.1} ms{}",
                rep + 1,
                p.reps,
                if flaky { "with" } else { "without" },
                run.healthy.p99_ms,
                run.flaky_requests
                    .map(|n| format!(" (flaky destination saw {n} requests)"))
                    .unwrap_or_default()
            ));
            if flaky {
                with.push(run);
            } else {
                without.push(run);
            }
        }
    }
    let pick = |runs: &[PipelineRun], g: fn(&Percentiles) -> f64| {
        runs.iter().map(|r| g(&r.healthy)).collect::<Vec<_>>()
    };
    Ok(IsolationResult {
        rate,
        p99_ratio: paired_ratio(&pick(&with, |p| p.p99_ms), &pick(&without, |p| p.p99_ms)),
        p50_ratio: paired_ratio(&pick(&with, |p| p.p50_ms), &pick(&without, |p| p.p50_ms)),
        without: LatencySummary::of(&without),
        with: LatencySummary::of(&with),
        runs_without: without,
        runs_with: with,
    })
}
