//! Inbound: `herald-gateway` against the raw baseline (`raw-gateway`: a
//! bare axum/hyper server that only writes each request body to Kafka with
//! the same producer settings and answers 200 after the acknowledgement) on
//! the same topic, alternating repetitions. Both get the same Stripe-signed
//! requests; the baseline ignores the signature.
//!
//! Two measurements per side: saturation (closed loop, `CONCURRENCY`
//! requests always in flight: requests/s, latency, CPU per request, peak
//! RSS) and a paced open loop at `PACED_RATE` requests/s (latency from each
//! request's scheduled time, so a stall is not hidden by sending less).

use crate::ctx::Ctx;
use crate::procs::{free_port, Footprint, Service};
use crate::stats::{paired_ratio, percentile, Summary};
use crate::workload::create_topic;
use herald_devtools::provider::{stripe_event, stripe_signature};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const CONCURRENCY: usize = 64;
pub const PACED_RATE: f64 = 1000.0;
const SECRET: &str = "whsec_bench_gateway";

/// One side's figures in one repetition.
#[derive(Debug, Clone, Serialize)]
pub struct SideRep {
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// CPU seconds of the server per 1,000 requests answered 2xx.
    pub cpu_s_per_1k: f64,
    pub peak_rss_mb: f64,
    /// Answers other than 2xx (must be 0 for the figures to count).
    pub failed: u64,
    pub paced_p50_ms: f64,
    pub paced_p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GatewayResult {
    pub partitions: i32,
    pub concurrency: usize,
    pub paced_rate: f64,
    pub seconds_per_measurement: f64,
    pub gateway: Vec<SideRep>,
    pub raw: Vec<SideRep>,
}

impl GatewayResult {
    fn pick(v: &[SideRep], f: impl Fn(&SideRep) -> f64) -> Vec<f64> {
        v.iter().map(f).collect()
    }

    pub fn summary(&self, gateway: bool, f: impl Fn(&SideRep) -> f64) -> Summary {
        Summary::of(Self::pick(
            if gateway { &self.gateway } else { &self.raw },
            f,
        ))
    }

    /// Ratios for the report's table (gateway / raw, paired by repetition).
    pub fn ratios(&self) -> Vec<(String, Summary)> {
        let r = |f: fn(&SideRep) -> f64| {
            paired_ratio(&Self::pick(&self.gateway, f), &Self::pick(&self.raw, f))
        };
        vec![
            (
                format!(
                    "gateway / raw: requests/s at concurrency {}",
                    self.concurrency
                ),
                r(|s| s.requests_per_s),
            ),
            (
                "gateway / raw: CPU per request".into(),
                r(|s| s.cpu_s_per_1k),
            ),
            (
                format!("gateway / raw: p99 at {} requests/s", self.paced_rate),
                r(|s| s.paced_p99_ms),
            ),
        ]
    }
}

fn config(ctx: &Ctx, topic: &str) -> anyhow::Result<PathBuf> {
    let toml = format!(
        r#"{kafka}
[topics]
prefix = "{run}.gw"
input = "{topic}"

[sources.bench]
scheme = "stripe"
secrets = ["{SECRET}"]
"#,
        kafka = crate::workload::kafka_toml(&ctx.bootstrap),
        run = ctx.run,
    );
    let path = ctx.work.join("gateway.toml");
    std::fs::write(&path, toml)?;
    herald_core::config::Config::load_with_env(Some(&path), std::iter::empty())?;
    Ok(path)
}

async fn start(
    ctx: &Ctx,
    cfg: &std::path::Path,
    gateway: bool,
    rep: usize,
) -> anyhow::Result<(Service, String)> {
    let listen = format!("127.0.0.1:{}", free_port()?);
    let cfg = cfg.display().to_string();
    let mut svc = if gateway {
        let admin = format!("127.0.0.1:{}", free_port()?);
        let args = [
            "--config".to_string(),
            cfg,
            "--listen".into(),
            listen.clone(),
            "--admin-listen".into(),
            admin.clone(),
        ];
        Service::spawn(
            &format!("gateway-{rep}"),
            &ctx.bins.join("herald-gateway"),
            args,
            &[],
            &ctx.work,
            Some(admin),
        )?
    } else {
        ctx.start_baseline(
            &[
                "raw-gateway".into(),
                "--config".into(),
                cfg,
                "--listen".into(),
                listen.clone(),
            ],
            &[],
            &format!("raw-gateway-{rep}"),
        )?
    };
    svc.wait_ready(&ctx.http, Duration::from_secs(60)).await?;
    let url = format!("http://{listen}/webhooks/bench");
    // Up and writing: one request answered 2xx.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        svc.check_alive()?;
        if send(&ctx.http, &url, "warm", 0)
            .await
            .is_ok_and(|(ok, _)| ok)
        {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{} never answered 2xx", svc.name);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((svc, url))
}

/// One signed request; (2xx, latency).
async fn send(
    http: &reqwest::Client,
    url: &str,
    run: &str,
    n: u64,
) -> anyhow::Result<(bool, Duration)> {
    let body = stripe_event(run, n);
    let sig = stripe_signature(SECRET, herald_core::time::now_ms() / 1000, &body);
    let t = Instant::now();
    let r = http
        .post(url)
        .header("content-type", "application/json")
        .header("stripe-signature", sig)
        .body(body)
        .send()
        .await?;
    let ok = r.status().is_success();
    let _ = r.bytes().await;
    Ok((ok, t.elapsed()))
}

fn ms(sorted_us: &[u64], p: f64) -> f64 {
    percentile(sorted_us, p).map_or(f64::NAN, |us| us as f64 / 1000.0)
}

async fn saturate(ctx: &Ctx, url: &str, pid: u32, tag: &str, window: Duration) -> SideRep {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let lat: Arc<Mutex<Vec<u64>>> = Arc::default();
    let seq = Arc::new(AtomicU64::new(0));
    let mut fp = Footprint::start(pid);
    let end = Instant::now() + window;
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (http, url, ok, failed, lat, seq) = (
                ctx.http.clone(),
                url.to_string(),
                ok.clone(),
                failed.clone(),
                lat.clone(),
                seq.clone(),
            );
            let run = format!("{}-{tag}", ctx.run);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while Instant::now() < end {
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    match send(&http, &url, &run, n).await {
                        Ok((true, d)) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            mine.push(d.as_micros() as u64);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                lat.lock().expect("latencies").extend(mine);
            })
        })
        .collect();
    let started = Instant::now();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        fp.observe(pid);
    }
    for w in workers {
        let _ = w.await;
    }
    fp.observe(pid);
    let elapsed = started.elapsed().as_secs_f64();
    let mut l = lat.lock().expect("latencies").clone();
    l.sort_unstable();
    let n = ok.load(Ordering::Relaxed) as f64;
    SideRep {
        requests_per_s: n / elapsed,
        p50_ms: ms(&l, 50.0),
        p99_ms: ms(&l, 99.0),
        cpu_s_per_1k: fp.cpu_s() / n * 1000.0,
        peak_rss_mb: fp.peak_mb(),
        failed: failed.load(Ordering::Relaxed),
        paced_p50_ms: f64::NAN,
        paced_p99_ms: f64::NAN,
    }
}

/// Open loop at `rate`: latency counted from each request's due time.
async fn paced(ctx: &Ctx, url: &str, tag: &str, rate: f64, window: Duration) -> (f64, f64, u64) {
    let lat: Arc<Mutex<Vec<u64>>> = Arc::default();
    let failed = Arc::new(AtomicU64::new(0));
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let total = (rate * window.as_secs_f64()) as u64;
    let mut tasks = Vec::with_capacity(total as usize);
    let run = format!("{}-{tag}-paced", ctx.run);
    for n in 0..total {
        let due = start + period * n as u32;
        tokio::time::sleep_until(due.into()).await;
        let (http, url, lat, failed, run) = (
            ctx.http.clone(),
            url.to_string(),
            lat.clone(),
            failed.clone(),
            run.clone(),
        );
        tasks.push(tokio::spawn(async move {
            match send(&http, &url, &run, n).await {
                Ok((true, _)) => lat
                    .lock()
                    .expect("latencies")
                    .push(due.elapsed().as_micros() as u64),
                _ => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut l = lat.lock().expect("latencies").clone();
    l.sort_unstable();
    (ms(&l, 50.0), ms(&l, 99.0), failed.load(Ordering::Relaxed))
}

pub async fn gateway(ctx: &Ctx) -> anyhow::Result<GatewayResult> {
    anyhow::ensure!(
        ctx.bins.join("herald-gateway").exists(),
        "herald-gateway not found in {}; build it first (cargo build --release --bins)",
        ctx.bins.display()
    );
    let topic = format!("{}.gw.events", ctx.run);
    create_topic(&ctx.bootstrap, &topic, ctx.plan.partitions).await?;
    let cfg = config(ctx, &topic)?;
    let window = ctx.plan.measure;
    let mut result = GatewayResult {
        partitions: ctx.plan.partitions,
        concurrency: CONCURRENCY,
        paced_rate: PACED_RATE,
        seconds_per_measurement: window.as_secs_f64(),
        gateway: Vec::new(),
        raw: Vec::new(),
    };
    for rep in 0..ctx.plan.reps {
        // Alternate which side goes first, so neither always gets the
        // fresher machine.
        let order = if rep % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for gw in order {
            let name = if gw { "gateway" } else { "raw" };
            let (mut svc, url) = start(ctx, &cfg, gw, rep).await?;
            let tag = format!("{name}{rep}");
            let mut side = saturate(ctx, &url, svc.pid, &tag, window).await;
            let (p50, p99, failed) = paced(ctx, &url, &tag, PACED_RATE, window).await;
            side.paced_p50_ms = p50;
            side.paced_p99_ms = p99;
            side.failed += failed;
            svc.check_alive()?;
            svc.stop();
            ctx.log(format!(
                "gateway rep {rep} {name}: {:.0} requests/s at c={CONCURRENCY} (p50 {:.1} ms, p99 {:.1} ms, {:.3} CPU s/1k, peak {:.0} MB); at {PACED_RATE}/s p50 {p50:.1} ms p99 {p99:.1} ms; {} failed",
                side.requests_per_s, side.p50_ms, side.p99_ms, side.cpu_s_per_1k, side.peak_rss_mb, side.failed
            ));
            anyhow::ensure!(
                side.failed == 0,
                "{name}: {} requests not answered 2xx",
                side.failed
            );
            if gw {
                result.gateway.push(side);
            } else {
                result.raw.push(side);
            }
        }
    }
    Ok(result)
}

/// The report's section.
pub fn markdown(x: Option<&GatewayResult>, s: &mut String) {
    use crate::report::summary;
    use std::fmt::Write as _;
    let _ = writeln!(s, "## 4b. Inbound: the gateway\n");
    let Some(x) = x else {
        let _ = writeln!(s, "Not run (`--only gateway` runs it).\n");
        return;
    };
    let _ = writeln!(
        s,
        "`herald-gateway` (Stripe signature verified, CloudEvents headers, limits, metrics) against `raw-gateway`, \
         a bare HTTP route that only writes each body to Kafka with the same producer settings and answers after \
         the acknowledgement. Same Stripe-signed requests, same topic ({} partitions), {} s per measurement, \
         alternating repetitions. Saturation: {} requests always in flight (a closed loop in the bench process, \
         which shares the two CPUs); paced: {} requests/s offered, latency from each request's due time.\n",
        x.partitions, x.seconds_per_measurement, x.concurrency, x.paced_rate
    );
    let _ = writeln!(
        s,
        "| | requests/s (c={}) | p50 ms | p99 ms | CPU s / 1k requests | peak RSS MB | p50 ms at {}/s | p99 ms at {}/s |\n|---|---|---|---|---|---|---|---|",
        x.concurrency, x.paced_rate, x.paced_rate
    );
    for (name, gw) in [("herald-gateway", true), ("raw-gateway", false)] {
        let f = |g: fn(&SideRep) -> f64| summary(&x.summary(gw, g));
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            f(|r| r.requests_per_s),
            f(|r| r.p50_ms),
            f(|r| r.p99_ms),
            f(|r| r.cpu_s_per_1k),
            f(|r| r.peak_rss_mb),
            f(|r| r.paced_p50_ms),
            f(|r| r.paced_p99_ms),
        );
    }
    s.push('\n');
    for (k, v) in x.ratios() {
        let _ = writeln!(s, "- {k}: **{}**", crate::report::ratio(&v));
    }
    s.push('\n');
}
