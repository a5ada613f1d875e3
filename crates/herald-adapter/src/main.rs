//! `herald-adapter`: parse flags, load config, run one destination.

use clap::Parser;
use herald_core::config::Config;
use herald_core::telemetry::{self, LogFormat};
use std::path::PathBuf;

/// Delivers one destination's deliveries over HTTP, with retry tiers and a
/// dead-letter topic. Run one deployment per destination.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Configuration file (TOML). `HERALD__…` environment variables override it.
    #[arg(short, long, env = "HERALD_CONFIG")]
    config: PathBuf,
    /// Which `[destinations.<name>]` this process delivers.
    #[arg(short, long, env = "HERALD_DESTINATION")]
    destination: String,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = LogFormat::parse)]
    log_format: LogFormat,
    /// Address for /metrics, /healthz and /readyz (overrides adapter.listen).
    #[arg(long)]
    listen: Option<String>,
    /// This process's stable name in the consumer group (overrides
    /// adapter.instance_id; default: the host name). Give each adapter of
    /// one destination on the same host its own.
    #[arg(long, env = "HERALD_INSTANCE_ID")]
    instance_id: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Dropped when main returns: flushes the spans still buffered.
    let _telemetry = telemetry::init(
        args.log_format,
        &format!("herald-adapter:{}", args.destination),
    )?;
    let mut config = Config::load(Some(&args.config))?;
    config.destination(&args.destination)?;
    config.check_secrets(Some(&args.destination))?;
    if let Some(l) = args.listen {
        config.adapter.listen = l;
    }
    if let Some(i) = args.instance_id {
        config.adapter.instance_id = Some(i);
    }
    herald_adapter::run(config, args.destination).await
}
