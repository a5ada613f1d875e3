//! `herald-chaos`: the proof that every (event, destination) pair ends
//! delivered or dead-lettered with nothing lost, under the faults Herald
//! must survive. It runs the real `herald-router` and `herald-adapter`
//! binaries against a dedicated real Kafka broker it starts (and SIGKILLs)
//! itself, produces with a plain rdkafka producer, delivers to
//! herald-devtools' fault-injecting sink, and writes
//! `docs/reliability.md` and `docs/reliability.json`.
//!
//! Modules: [`broker`] (the dedicated broker), [`workload`] and
//! [`producer`] (what is produced), [`recorder`] (the destinations),
//! [`faults`] and [`monitor`] (kills, restarts, time to recover),
//! [`verify`] and [`analysis`] (what must and did happen), [`report`].

pub mod analysis;
pub mod broker;
pub mod faults;
pub mod monitor;
pub mod plan;
pub mod procs;
pub mod producer;
pub mod recorder;
pub mod report;
mod run;
pub mod verify;
pub mod workload;

pub use run::{run, Options};

use std::path::{Path, PathBuf};

/// Root of the repository (scripts/kafka.sh, schemas/, docs/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// The target dir's debug binaries (`CARGO_TARGET_DIR` honoured).
pub fn default_bin_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("debug")
}
