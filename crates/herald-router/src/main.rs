//! `herald-router`: parse flags, load config, run.

use clap::Parser;
use herald_core::config::Config;
use herald_core::telemetry::{self, LogFormat};
use std::path::PathBuf;

/// Routes events from the input topic to every destination topic whose
/// rules match, in Kafka transactions (exactly once).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Configuration file (TOML). `HERALD__…` environment variables override it.
    #[arg(short, long, env = "HERALD_CONFIG")]
    config: PathBuf,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = LogFormat::parse)]
    log_format: LogFormat,
    /// Address for /metrics, /healthz and /readyz (overrides router.listen).
    #[arg(long)]
    listen: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Dropped when main returns: flushes the spans still buffered.
    let _telemetry = telemetry::init(args.log_format, "herald-router")?;
    let mut config = Config::load(Some(&args.config))?;
    if let Some(l) = args.listen {
        config.router.listen = l;
    }
    herald_router::run(config).await
}
