//! `herald`: the operator CLI. Human-readable output by default, `--json`
//! for scripts, non-zero exit codes on failure.

mod check;
mod dlq;
mod invalid;
mod produce;
mod schemas;
mod trace;
mod watch;

use clap::{Parser, Subcommand};
use herald_core::config::Config;
use herald_core::kafka::{apply_topics, topic_plan, TopicResult};
use herald_core::telemetry::{self, LogFormat};
use std::path::PathBuf;
use std::process::ExitCode;

/// Operate a Herald pipeline: provision topics, produce test events, inspect
/// and replay dead letters, watch deliveries, check configuration.
///
/// Every command reads the same TOML config as the services (`--config` or
/// HERALD_CONFIG); `HERALD__SECTION__KEY` environment variables override it,
/// e.g. HERALD__KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(short, long, global = true, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and explain what it sets up.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Manage the Kafka topics the configuration needs.
    #[command(subcommand)]
    Topics(TopicsCmd),
    /// Produce sample events (or events from a JSON-lines file) to the input topic.
    Produce(produce::ProduceArgs),
    /// Inspect and replay a destination's dead-letter topic.
    #[command(subcommand)]
    Dlq(dlq::DlqCmd),
    /// Inspect the input records the router refused, and replay them to
    /// their input topic once the cause is fixed.
    #[command(subcommand)]
    Invalid(invalid::InvalidCmd),
    /// Live per-destination counts of delivered, retrying and dead-lettered events.
    Watch(watch::WatchArgs),
    /// Where one event is at every destination it was routed to: each
    /// attempt, and where it is now (asks the delivery log, herald-log).
    Trace(trace::TraceArgs),
    /// Did every (event, destination) routed in a window reach an end?
    /// Exit code 1 lists the ones in flight past their budget.
    Reconcile(trace::ReconcileArgs),
    /// Check Herald's Avro schemas for backward compatibility with older
    /// versions (a previous release's schemas/, the Schema Registry).
    #[command(subcommand)]
    Schemas(schemas::SchemasCmd),
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Load the config (file + environment), validate it, and print a summary.
    Check,
}

#[derive(Subcommand)]
enum TopicsCmd {
    /// Create every topic the config needs that does not exist yet (idempotent).
    Apply {
        /// Print the plan without touching Kafka.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs, and span export as the services do when OTEL_EXPORTER_OTLP_ENDPOINT
    // is set (`herald produce` starts each event's trace). Dropped after the
    // runtime, when main returns: flushes the spans still buffered.
    let _telemetry = match telemetry::init(LogFormat::Text, "herald-cli") {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let code = match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Pending work (e.g. librdkafka clients' tasks) first, then the spans.
    drop(rt);
    code
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // A schema check is a file check and loads the config only for
    // --registry; it does its own error reporting (exit 2: no verdict).
    let command = match cli.command {
        Command::Schemas(cmd) => {
            return Ok(schemas::run(cli.config.as_deref(), cmd, cli.json).await)
        }
        other => other,
    };
    let config = Config::load(cli.config.as_deref())?;
    match command {
        Command::Config(ConfigCmd::Check) => {
            config.check_secrets(None)?;
            check::config_check(&config, cli.json)
        }
        Command::Topics(TopicsCmd::Apply { dry_run }) => {
            topics_apply(&config, dry_run, cli.json).await
        }
        Command::Produce(args) => produce::run(&config, args, cli.json).await,
        Command::Dlq(cmd) => {
            herald_core::registry::output::init(&config).await?;
            dlq::run(&config, cmd, cli.json).await
        }
        Command::Invalid(cmd) => invalid::run(&config, cmd, cli.json).await,
        Command::Trace(args) => trace::trace(&config, args, cli.json).await,
        Command::Reconcile(args) => trace::reconcile(&config, args, cli.json).await,
        Command::Watch(args) => {
            herald_core::registry::output::init(&config).await?;
            watch::run(&config, args, cli.json).await
        }
        Command::Schemas(_) => unreachable!("handled before the config is loaded"),
    }
}

async fn topics_apply(config: &Config, dry_run: bool, json: bool) -> anyhow::Result<ExitCode> {
    let plan = topic_plan(config);
    if dry_run {
        for t in &plan {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"topic": t.name, "partitions": t.partitions, "replication_factor": t.replication_factor})
                );
            } else {
                println!(
                    "would ensure {} (partitions {}, replication {})",
                    t.name, t.partitions, t.replication_factor
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let results = apply_topics(config, &plan).await?;
    let created = results
        .iter()
        .filter(|(_, r)| *r == TopicResult::Created)
        .count();
    for (name, r) in &results {
        let what = match r {
            TopicResult::Created => "created",
            TopicResult::Exists => "exists",
        };
        if json {
            println!("{}", serde_json::json!({"topic": name, "result": what}));
        } else {
            println!("{what:8} {name}");
        }
    }
    if !json {
        println!(
            "{} topics: {created} created, {} already existed",
            results.len(),
            results.len() - created
        );
    }
    Ok(ExitCode::SUCCESS)
}
