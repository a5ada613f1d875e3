//! Scenarios 1 and 2: saturated throughput of the router and the adapter,
//! each next to its hand-written baseline.
//!
//! Both work from a pre-filled backlog, so the process under test is never
//! waiting for input. A repetition starts the process, waits for the first
//! record to be processed, lets `warmup` pass (group join, connection set-up,
//! caches), then measures progress over `measure`. Repetitions of the sides
//! of a ratio alternate (with the order rotated per repetition), so each
//! pair ran under the same machine weather.

use crate::ctx::Ctx;
use crate::procs::{Footprint, Service};
use crate::stats::{paired_ratio, Summary};
use crate::workload::{self, DestSpec};
use herald_core::codec::AvroRecord;
use herald_core::envelope::Delivery;
use herald_core::headers as h;
use herald_core::kafka::add_header;
use rdkafka::message::OwnedHeaders;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One measured repetition.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Events (or deliveries) per second over the window.
    pub rate: f64,
    pub window_s: f64,
    pub events: f64,
    /// CPU seconds the process used per million events in the window.
    pub cpu_s_per_million: f64,
    pub peak_rss_mb: f64,
    pub steady_rss_mb: f64,
    /// The backlog ran out before the window was over (window shortened).
    pub depleted: bool,
}

/// Figures for one side of a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub runs: Vec<Run>,
    pub rate: Summary,
    pub cpu_s_per_million: Summary,
    pub peak_rss_mb: Summary,
    pub steady_rss_mb: Summary,
}

impl Side {
    pub(crate) fn of(runs: Vec<Run>) -> Self {
        let f = |g: fn(&Run) -> f64| Summary::of(runs.iter().map(g).collect());
        Self {
            rate: f(|r| r.rate),
            cpu_s_per_million: f(|r| r.cpu_s_per_million),
            peak_rss_mb: f(|r| r.peak_rss_mb),
            steady_rss_mb: f(|r| r.steady_rss_mb),
            runs,
        }
    }

    pub(crate) fn rates(&self) -> Vec<f64> {
        self.runs.iter().map(|r| r.rate).collect()
    }
}

/// Waits for the first progress, then samples progress and `/proc` every
/// 100 ms until the warm-up and the measured window have passed or the
/// backlog is nearly used up. The window is the samples after the warm-up;
/// if the backlog ran out too early for that (at least a second), it is the
/// samples between 5% and 95% of the backlog instead, flagged `depleted`.
/// `count` returns the records processed so far.
pub(crate) async fn measure(
    ctx: &Ctx,
    svc: &mut Service,
    warmup: Duration,
    total: f64,
    mut count: impl FnMut() -> anyhow::Result<f64>,
) -> anyhow::Result<Run> {
    struct Sample {
        at: Instant,
        done: f64,
        proc: crate::procs::ProcSample,
    }
    let tick = Duration::from_millis(100);
    let mut read = || tokio::task::block_in_place(&mut count);
    let deadline = Instant::now() + Duration::from_secs(90);
    let base = read()?;
    loop {
        svc.check_alive()?;
        if read()? > base {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} processed nothing in 90 s",
            svc.name
        );
        tokio::time::sleep(tick).await;
    }
    let t0 = Instant::now();
    let (warm_end, end) = (t0 + warmup, t0 + warmup + ctx.plan.measure);
    let mut samples: Vec<Sample> = Vec::new();
    let mut depleted = false;
    loop {
        let done = read()? - base;
        let proc = crate::procs::sample(svc.pid).unwrap_or_default();
        let at = Instant::now();
        samples.push(Sample { at, done, proc });
        if done >= 0.95 * total {
            depleted = true;
            break;
        }
        if at >= end {
            break;
        }
        tokio::time::sleep(tick).await;
    }
    svc.check_alive()?;
    let last = samples.len() - 1;
    let after_warmup = samples.iter().position(|x| x.at >= warm_end);
    let first = match after_warmup {
        Some(i) if (samples[last].at - samples[i].at) >= Duration::from_secs(1) => i,
        _ => {
            depleted = true;
            samples
                .iter()
                .position(|x| x.done >= 0.05 * total)
                .unwrap_or(0)
                .min(last)
        }
    };
    let (a, b) = (&samples[first], &samples[last]);
    let window = (b.at - a.at).as_secs_f64();
    let events = b.done - a.done;
    let fp = Footprint {
        cpu_start: a.proc.cpu_s,
        cpu_end: b.proc.cpu_s,
        rss_samples: samples[first..].iter().map(|x| x.proc.rss_kb).collect(),
        peak_kb: b.proc.hwm_kb,
    };
    Ok(Run {
        rate: if window > 0.0 && events > 0.0 {
            events / window
        } else {
            f64::NAN
        },
        window_s: window,
        events,
        cpu_s_per_million: fp.cpu_per_million(events),
        peak_rss_mb: fp.peak_mb(),
        steady_rss_mb: fp.steady_mb(),
        depleted,
    })
}

/// Scenario 1.
#[derive(Debug, Clone, Serialize)]
pub struct RouterResult {
    pub backlog: u64,
    pub destinations: usize,
    /// `router`, `copy-txn` (raw rdkafka copy, transactional), `copy`
    /// (raw copy, flush then commit).
    pub sides: BTreeMap<String, Side>,
    pub ratios: BTreeMap<String, Summary>,
}

const ROUTER_SIDES: [&str; 3] = ["router", "copy-txn", "copy"];

pub async fn router(ctx: &Ctx) -> anyhow::Result<RouterResult> {
    let p = &ctx.plan;
    let base = format!("{}-s1", ctx.run);
    let input = format!("{base}.events");
    let dests = || -> Vec<DestSpec> {
        ["crm", "chat", "email"]
            .iter()
            .map(|d| DestSpec::new(d, "http://127.0.0.1:9/unused".into()))
            .collect()
    };
    // The shared, pre-filled input topic; each repetition reads it from the
    // start in a fresh consumer group.
    let (_, cfg) = workload::write_config(
        &ctx.work,
        &ctx.bootstrap,
        &base,
        &input,
        p.partitions,
        &dests(),
    )?;
    workload::create_topics(&cfg).await?;
    ctx.log(format!(
        "router: pre-filling {} with {} events",
        input, p.router_backlog
    ));
    {
        let (bootstrap, input, run) = (ctx.bootstrap.clone(), input.clone(), base.clone());
        let n = p.router_backlog;
        tokio::task::spawn_blocking(move || {
            workload::prefill(&bootstrap, &input, n, |i| {
                let e = workload::event(&run, i, 0);
                (
                    workload::event_key(&e),
                    workload::event_json(&e),
                    OwnedHeaders::new(),
                )
            })
        })
        .await??;
    }
    let mut runs: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    for rep in 0..p.reps {
        for k in 0..ROUTER_SIDES.len() {
            let side = ROUTER_SIDES[(rep + k) % ROUTER_SIDES.len()];
            let prefix = format!("{base}.r{rep}-{side}");
            let (path, cfg) = workload::write_config(
                &ctx.work,
                &ctx.bootstrap,
                &prefix,
                &input,
                p.partitions,
                &dests(),
            )?;
            workload::create_topics(&cfg).await?;
            let (mut svc, group) = match side {
                "router" => (
                    ctx.start_router(&path, &prefix)?,
                    cfg.topic_names().router_group(),
                ),
                copy => {
                    let mut args = vec![
                        "copy".to_string(),
                        "--config".into(),
                        path.display().to_string(),
                    ];
                    if copy == "copy-txn" {
                        args.push("--transactional".into());
                    }
                    (
                        ctx.start_baseline(&args, &[], &prefix)?,
                        format!("{prefix}.copy"),
                    )
                }
            };
            let watch = workload::OffsetWatch::new(&ctx.bootstrap, &group, &input, p.partitions)?;
            let run = measure(ctx, &mut svc, p.warmup, p.router_backlog as f64, || {
                Ok(watch.committed()? as f64)
            })
            .await;
            svc.stop();
            workload::delete_topics(&ctx.bootstrap, &format!("{prefix}.")).await?;
            let run = run?;
            ctx.log(format!(
                "router: rep {}/{} {side}: {:.0} events/s, {:.1} CPU s per M events{}",
                rep + 1,
                p.reps,
                run.rate,
                run.cpu_s_per_million,
                if run.depleted {
                    " (backlog ran out; window shortened)"
                } else {
                    ""
                }
            ));
            runs.entry(side.to_string()).or_default().push(run);
        }
    }
    workload::delete_topics(&ctx.bootstrap, &format!("{base}.")).await?;
    let sides: BTreeMap<String, Side> = runs.into_iter().map(|(k, v)| (k, Side::of(v))).collect();
    let mut ratios = BTreeMap::new();
    ratios.insert(
        "router / copy-txn".to_string(),
        paired_ratio(&sides["router"].rates(), &sides["copy-txn"].rates()),
    );
    ratios.insert(
        "router / copy".to_string(),
        paired_ratio(&sides["router"].rates(), &sides["copy"].rates()),
    );
    ratios.insert(
        "copy-txn / copy".to_string(),
        paired_ratio(&sides["copy-txn"].rates(), &sides["copy"].rates()),
    );
    Ok(RouterResult {
        backlog: p.router_backlog,
        destinations: 3,
        sides,
        ratios,
    })
}

/// Scenario 2, at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterLevel {
    pub concurrency: usize,
    /// `adapter` and `http-loop` (raw reqwest loop).
    pub sides: BTreeMap<String, Side>,
    /// adapter / http-loop deliveries per second.
    pub ratio: Summary,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdapterResult {
    pub backlog: u64,
    pub body_bytes: usize,
    pub levels: Vec<AdapterLevel>,
}

const ADAPTER_SIDES: [&str; 2] = ["adapter", "http-loop"];

pub async fn adapter(ctx: &Ctx) -> anyhow::Result<AdapterResult> {
    let p = &ctx.plan;
    let prefix = format!("{}-s2", ctx.run);
    let dest = "fast";
    // A fixed limit, like the baseline's: the adaptive limit would react to
    // this machine's latency noise and blur the comparison.
    let spec = DestSpec::new(dest, ctx.sink.url("/fast"))
        .with("timeout = \"5s\"")
        .with("adaptive_concurrency = false");
    let (path, cfg) = workload::write_config(
        &ctx.work,
        &ctx.bootstrap,
        &prefix,
        &format!("{prefix}.events"),
        p.partitions,
        &[spec],
    )?;
    workload::create_topics(&cfg).await?;
    let names = cfg.topic_names();
    let topic = names.dest(dest);
    ctx.log(format!(
        "adapter: pre-filling {topic} with {} deliveries",
        p.adapter_backlog
    ));
    {
        let (bootstrap, topic, run) = (ctx.bootstrap.clone(), topic.clone(), prefix.clone());
        let n = p.adapter_backlog;
        let routed_at = herald_core::time::now_ms();
        tokio::task::spawn_blocking(move || {
            workload::prefill(&bootstrap, &topic, n, |i| {
                let (key, value, headers) = delivery_record(&run, i, routed_at);
                (key, value, headers)
            })
        })
        .await??;
    }
    let body_bytes = workload::event_json(&workload::event(&prefix, 0, 0)).len();
    let group = names.adapter_group(dest);
    let mut levels = Vec::new();
    for &c in &p.concurrencies {
        let env = vec![(
            format!("HERALD__DESTINATIONS__{}__CONCURRENCY", dest.to_uppercase()),
            c.to_string(),
        )];
        let mut runs: BTreeMap<String, Vec<Run>> = BTreeMap::new();
        for rep in 0..p.reps {
            for k in 0..ADAPTER_SIDES.len() {
                let side = ADAPTER_SIDES[(rep + k) % ADAPTER_SIDES.len()];
                let log = format!("{prefix}.c{c}.r{rep}-{side}");
                let mut svc = match side {
                    "adapter" => {
                        // Start from the beginning of the backlog with an
                        // empty ledger: otherwise the adapter rightly skips
                        // what an earlier repetition delivered.
                        workload::delete_group(&ctx.bootstrap, &group).await?;
                        workload::recreate_topic(&ctx.bootstrap, &cfg, &names.ledger(dest)).await?;
                        ctx.start_adapter(&path, dest, &env, &log)?
                    }
                    _ => {
                        ctx.start_http_loop(&path, dest, &prefix, p.adapter_backlog, &env, &log)?
                    }
                };
                let start = ctx.sink.fast_count() as f64;
                let total = if side == "adapter" {
                    p.adapter_backlog as f64
                } else {
                    f64::INFINITY
                };
                let run = measure(ctx, &mut svc, p.warmup, total, || {
                    Ok(ctx.sink.fast_count() as f64 - start)
                })
                .await;
                svc.stop();
                let run = run?;
                ctx.log(format!(
                    "adapter: concurrency {c} rep {}/{} {side}: {:.0} deliveries/s, {:.1} CPU s per M{}",
                    rep + 1,
                    p.reps,
                    run.rate,
                    run.cpu_s_per_million,
                    if run.depleted { " (backlog ran out; window shortened)" } else { "" }
                ));
                runs.entry(side.to_string()).or_default().push(run);
            }
        }
        let sides: BTreeMap<String, Side> =
            runs.into_iter().map(|(k, v)| (k, Side::of(v))).collect();
        let ratio = paired_ratio(&sides["adapter"].rates(), &sides["http-loop"].rates());
        levels.push(AdapterLevel {
            concurrency: c,
            sides,
            ratio,
        });
    }
    workload::delete_topics(&ctx.bootstrap, &format!("{prefix}.")).await?;
    Ok(AdapterResult {
        backlog: p.adapter_backlog,
        body_bytes,
        levels,
    })
}

/// A delivery record as the router writes it for event `i`, to `fast`.
fn delivery_record(run: &str, i: u64, routed_at: i64) -> (Vec<u8>, Vec<u8>, OwnedHeaders) {
    delivery_record_to("fast", run, i, routed_at)
}

/// A delivery record as the router writes it for event `i`, to `dest`.
pub(crate) fn delivery_record_to(
    dest: &str,
    run: &str,
    i: u64,
    routed_at: i64,
) -> (Vec<u8>, Vec<u8>, OwnedHeaders) {
    let event = workload::event(run, i, 0);
    let key = workload::event_key(&event);
    let mut hs = OwnedHeaders::new();
    hs = add_header(hs, h::CE_ID, &event.id);
    hs = add_header(hs, h::CE_TYPE, &event.r#type);
    hs = add_header(hs, h::CE_SOURCE, &event.source);
    hs = add_header(hs, h::ATTEMPT, "0");
    hs = add_header(hs, h::CONTENT_TYPE, "application/avro");
    let d = Delivery {
        event,
        destination: dest.into(),
        attempts: 0,
        routed_at,
        first_attempt_at: None,
        due_at: 0,
        origin_topic: format!("{run}.events"),
        origin_partition: (i % 3) as i32,
        origin_offset: i as i64,
        history: Vec::new(),
        produced_at: None,
    };
    (key, d.to_avro().expect("a delivery encodes"), hs)
}
