//! The small chaos configuration (`--quick`, a few minutes on two cores):
//! the real binaries against a dedicated real Kafka broker, every fault
//! kind, and not one (event, destination) pair lost. Without Java or the
//! Kafka jars it fails; it never skips. The dedicated broker is stopped at
//! the end, also when the run panics (its Drop guard).

use herald_chaos::plan::Plan;
use herald_chaos::{default_bin_dir, repo_root, run, Options};
use std::process::Command;

/// The service binaries of this checkout, built if needed; or those in
/// `HERALD_CHAOS_BIN_DIR` (a snapshot, so a shared tree rebuilt meanwhile
/// cannot swap binaries between restarts).
fn bin_dir() -> std::path::PathBuf {
    if let Some(d) = std::env::var_os("HERALD_CHAOS_BIN_DIR") {
        return d.into();
    }
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--bins",
            "-p",
            "herald-router",
            "-p",
            "herald-adapter",
            "-p",
            "herald-cli",
        ])
        .current_dir(repo_root())
        .status()
        .expect("running cargo build");
    assert!(status.success(), "building the service binaries failed");
    default_bin_dir()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn small_chaos_run_loses_nothing() {
    let out = tempfile::tempdir().expect("temp dir");
    let report = run(Options {
        plan: Plan::quick(None),
        out: Some(out.path().to_path_buf()),
        bin_dir: bin_dir(),
        kafka_dir: None,
        keep_work: false,
    })
    .await
    .expect("the chaos run completes (it needs Java 17 and the Kafka jars: scripts/kafka.sh)");
    let md = std::fs::read_to_string(out.path().join("reliability.md")).expect("report written");
    eprintln!("{md}");

    let kinds = report.fault_kinds();
    for kind in [
        "router-kill",
        "adapter-kill",
        "broker-kill",
        "rebalance-join",
        "rebalance-leave",
        "destination-back",
    ] {
        assert!(
            kinds.contains(kind),
            "fault {kind} never happened: {kinds:?}"
        );
    }
    assert_eq!(
        report
            .faults
            .iter()
            .filter(|f| f.kind == "broker-kill")
            .count(),
        2,
        "the broker is killed twice"
    );
    for o in &report.outcomes {
        assert!(o.expected > 0, "{}: nothing was routed to it", o.name);
        assert_eq!(
            o.bad_signatures, 0,
            "{}: the sink refused signatures",
            o.name
        );
        assert_eq!(
            o.lost, 0,
            "{}: {} of {} (event, destination) pairs lost, e.g. {:?}",
            o.name, o.lost, o.expected, o.lost_samples
        );
    }
    assert_eq!(
        report.lost, 0,
        "pairs or refused records lost: {:#?}",
        report.invalid
    );
    assert!(report.ok);
}
