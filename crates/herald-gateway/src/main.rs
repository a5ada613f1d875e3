//! `herald-gateway`: parse flags, load config, run.

use clap::Parser;
use herald_core::config::Config;
use herald_core::telemetry::{self, LogFormat};
use std::path::PathBuf;

/// Receives webhooks from providers (`POST /webhooks/<source>`), verifies
/// their signatures, writes each to Kafka and answers 2xx only once Kafka
/// has acknowledged it.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Configuration file (TOML). `HERALD__…` environment variables override it.
    #[arg(short, long, env = "HERALD_CONFIG")]
    config: PathBuf,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = LogFormat::parse)]
    log_format: LogFormat,
    /// Address providers send to (overrides gateway.listen).
    #[arg(long)]
    listen: Option<String>,
    /// Address for /metrics, /healthz and /readyz (overrides gateway.admin_listen).
    #[arg(long)]
    admin_listen: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = telemetry::init(args.log_format, "herald-gateway")?;
    let mut config = Config::load(Some(&args.config))?;
    if let Some(l) = args.listen {
        config.gateway.listen = l;
    }
    if let Some(l) = args.admin_listen {
        config.gateway.admin_listen = l;
    }
    herald_gateway::run(config).await
}
