//! `herald-demo-provider`: plays Stripe sending signed webhooks to the
//! gateway, with a share of deliveries sent twice (as a provider retries),
//! and a summary line every five seconds.

use clap::Parser;
use herald_devtools::provider::{stripe_event, stripe_signature};
use std::time::{Duration, Instant};

/// Posts Stripe-signed events to a Herald gateway source.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The gateway source's URL.
    #[arg(long, default_value = "http://127.0.0.1:8088/webhooks/stripe")]
    url: String,
    /// Events per second.
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// The endpoint's signing secret (as configured in `[sources.stripe]`).
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
    /// Share of events delivered twice (the router's dedupe window drops
    /// the copy).
    #[arg(long, default_value_t = 0.1)]
    duplicate_ratio: f64,
    /// Stop after this many events (0: run until stopped).
    #[arg(long, default_value_t = 0)]
    count: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        anyhow::bail!("--rate must be more than zero");
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    let run = format!("{:x}", herald_core::time::now_ms());
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut tick = tokio::time::interval(period);
    let (mut sent, mut ok, mut refused, mut retried) = (0u64, 0u64, 0u64, 0u64);
    let mut report = Instant::now();
    for n in 0.. {
        if args.count > 0 && n >= args.count {
            break;
        }
        tick.tick().await;
        let body = stripe_event(&run, n);
        let copies = if rand::random::<f64>() < args.duplicate_ratio {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let t = herald_core::time::now_ms() / 1000;
            let resp = client
                .post(&args.url)
                .header("content-type", "application/json")
                .header("stripe-signature", stripe_signature(&args.secret, t, &body))
                .body(body.clone())
                .send()
                .await;
            sent += 1;
            match resp {
                Ok(r) if r.status().is_success() => ok += 1,
                Ok(r) => {
                    refused += 1;
                    complain(&format!("event {n}: HTTP {}", r.status()));
                }
                Err(e) => {
                    refused += 1;
                    complain(&format!("event {n}: {e}"));
                }
            }
        }
        retried += copies - 1;
        if report.elapsed() >= Duration::from_secs(5) {
            println!(
                "provider: {sent} requests, {ok} answered 2xx, {refused} not, {retried} sent twice"
            );
            report = Instant::now();
        }
    }
    println!("provider: {sent} requests, {ok} answered 2xx, {refused} not, {retried} sent twice");
    Ok(())
}

fn complain(msg: &str) {
    eprintln!("provider: {msg}");
}
