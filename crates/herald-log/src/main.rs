//! `herald-log`: parse flags, load config, run.

use clap::Parser;
use herald_core::config::Config;
use herald_core::telemetry::{self, LogFormat};
use std::path::PathBuf;

/// Indexes Herald's topics into a queryable delivery log and serves it.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Configuration file (TOML). `HERALD__…` environment variables override it.
    #[arg(short, long, env = "HERALD_CONFIG")]
    config: PathBuf,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = LogFormat::parse)]
    log_format: LogFormat,
    /// Address of the API and /metrics (overrides log.listen).
    #[arg(long)]
    listen: Option<String>,
    /// The SQLite index file (overrides log.db).
    #[arg(long)]
    db: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = telemetry::init(args.log_format, "herald-log")?;
    let mut config = Config::load(Some(&args.config))?;
    if let Some(l) = args.listen {
        config.log.listen = l;
    }
    if let Some(d) = args.db {
        config.log.db = d;
    }
    herald_log::run(config).await
}
