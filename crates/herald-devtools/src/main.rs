//! `herald-demo-sink`: the destinations the demo delivers to, each failing in
//! its own way, with a summary line per route every five seconds.

use std::time::Duration;

use clap::Parser;
use herald_devtools::{Behaviour, Sink};

/// Serves the demo destinations: /healthy, /slack, /hubspot and /fast.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8900")]
    listen: String,
    /// `whsec_` secret every route but /fast checks signatures with.
    #[arg(long, env = "HERALD_DEMO_SINK_SECRET", hide_env_values = true)]
    secret: Option<String>,
}

/// The demo's destinations. /fast never checks anything, for benchmarks.
fn routes(secret: Option<String>) -> Vec<(String, Behaviour)> {
    let healthy = Behaviour {
        secret: secret.clone(),
        ..Behaviour::healthy()
    };
    // Slack answers 200 and rate-limits now and then.
    let slack = Behaviour {
        success_status: Some(200),
        status_429_ratio: 0.03,
        retry_after_secs: Some(1),
        secret: secret.clone(),
        ..Behaviour::default()
    };
    // HubSpot on a bad day.
    let hubspot = Behaviour {
        hang: Duration::from_secs(15),
        secret,
        ..Behaviour::flaky(0.30, 0.08)
    };
    vec![
        ("/healthy".into(), healthy),
        ("/slack".into(), slack),
        ("/hubspot".into(), hubspot),
        ("/fast".into(), Behaviour::healthy()),
    ]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let sink = Sink::start_on(&args.listen, routes(args.secret)).await?;
    tracing::info!(
        addr = %sink.addr(),
        "The demo sink serves /healthy, /slack, /hubspot and /fast; GET /stats shows the counters."
    );

    let mut report = tokio::time::interval(Duration::from_secs(5));
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    report.tick().await;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = report.tick() => {
                for (route, s) in sink.all_stats() {
                    tracing::info!(
                        %route,
                        requests = s.requests,
                        delivered = s.delivered,
                        unique = s.unique_delivered,
                        "Route totals so far."
                    );
                }
            }
        }
    }
    tracing::info!("The demo sink is stopping.");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "Could not listen for Ctrl-C.");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Could not listen for SIGTERM.");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
