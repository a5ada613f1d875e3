//! `herald-chaos`: runs the chaos suite and writes docs/reliability.md and
//! docs/reliability.json. Exits non-zero when any (event, destination)
//! pair was lost.
//!
//! ```text
//! cargo build --release --bins
//! cargo run --release -p herald-chaos -- --events 100000
//! ```

use clap::Parser;
use herald_chaos::plan::Plan;
use herald_chaos::{default_bin_dir, repo_root, run, Options};
use std::path::PathBuf;
use std::process::ExitCode;

/// Proves that every (event, destination) pair ends delivered or
/// dead-lettered under SIGKILLs of the router, the adapters and the
/// broker, rebalances, a flaky, a slow and a down destination, malformed,
/// oversized and duplicate input. Starts its own Kafka broker (Java 17).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Records to produce (default 100,000; 3,000 with --quick).
    #[arg(long)]
    events: Option<u64>,
    /// The small CI configuration: a few minutes, every fault kind.
    #[arg(long)]
    quick: bool,
    /// Directory for reliability.md and reliability.json.
    #[arg(long, default_value = "docs")]
    out: PathBuf,
    /// Directory holding herald-router, herald-adapter and herald
    /// (default: the one this executable is in when it holds them, else
    /// target/debug).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Data dir of the dedicated broker (default: a fresh temporary dir).
    #[arg(long)]
    kafka_dir: Option<PathBuf>,
    /// Keep the configs and service logs even when nothing failed.
    #[arg(long)]
    keep_work: bool,
}

fn bin_dir(arg: Option<PathBuf>) -> PathBuf {
    if let Some(d) = arg {
        return d;
    }
    let here = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(PathBuf::from));
    match here {
        Some(d) if d.join("herald-router").exists() && d.join("herald-adapter").exists() => d,
        _ => default_bin_dir(),
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            eprintln!();
            let mut cmd = <Args as clap::CommandFactory>::command();
            let _ = cmd.write_long_help(&mut std::io::stderr());
            return ExitCode::from(2);
        }
    };
    if args.events == Some(0) {
        eprintln!("error: --events must be at least 1\n");
        let mut cmd = <Args as clap::CommandFactory>::command();
        let _ = cmd.write_long_help(&mut std::io::stderr());
        return ExitCode::from(2);
    }
    let plan = if args.quick {
        Plan::quick(args.events)
    } else {
        Plan::full(args.events.unwrap_or(100_000))
    };
    let out = if args.out.is_relative() {
        std::env::current_dir()
            .unwrap_or_else(|_| repo_root())
            .join(&args.out)
    } else {
        args.out.clone()
    };
    let opts = Options {
        plan,
        out: Some(out),
        bin_dir: bin_dir(args.bin_dir),
        kafka_dir: args.kafka_dir,
        keep_work: args.keep_work,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(opts)) {
        Ok(r) if r.ok => {
            eprintln!("herald-chaos: PASS, nothing lost");
            ExitCode::SUCCESS
        }
        Ok(r) => {
            eprintln!(
                "herald-chaos: FAIL, {} pair(s) lost; see the report",
                r.lost
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("herald-chaos: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
