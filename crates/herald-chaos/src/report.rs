//! The run's results: `reliability.json` (everything) and
//! `reliability.md` (the human report: machine, code commit, config,
//! numbers, and every failure spelled out).

use crate::analysis::DestOutcome;
use crate::faults::Fault;
use crate::plan::{DestPlan, Plan};
use crate::producer::ProduceStats;
use crate::verify::Wait;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown".into());
        let mem_kb: f64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: (mem_kb / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }
}

/// The code under test: HEAD and the files that differ from it.
#[derive(Debug, Clone, Serialize)]
pub struct Code {
    pub commit: String,
    pub subject: String,
    pub uncommitted: Vec<String>,
    pub bin_dir: String,
}

impl Code {
    pub fn detect(repo: &Path, bin_dir: &Path) -> Self {
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(repo)
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        // Binaries built from another checkout say so here.
        if let Ok(commit) = std::env::var("HERALD_CHAOS_COMMIT") {
            return Self {
                commit,
                subject: std::env::var("HERALD_CHAOS_COMMIT_NOTE").unwrap_or_default(),
                uncommitted: Vec::new(),
                bin_dir: bin_dir.display().to_string(),
            };
        }
        Self {
            commit: git(&["rev-parse", "HEAD"]),
            subject: git(&["log", "-1", "--format=%s"]),
            uncommitted: git(&["status", "--porcelain", "--untracked-files=no"])
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect(),
            bin_dir: bin_dir.display().to_string(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct InvalidReport {
    /// Records on the invalid topic, by `herald-invalid-reason`.
    pub by_reason: BTreeMap<String, u64>,
    /// Refused kinds -> where each record ended (`invalid:<reason>`,
    /// `routed`, `lost`).
    pub by_kind: BTreeMap<String, BTreeMap<String, u64>>,
    /// Invalid records that match nothing produced.
    pub unmatched: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Copies {
    pub sent: u64,
    /// Copies the router dropped (the id was routed once).
    pub dropped: u64,
    /// Copies routed again (the id was routed twice).
    pub leaked: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub lost: usize,
    pub code: Code,
    pub machine: Machine,
    pub plan: Plan,
    pub destinations: Vec<DestPlan>,
    pub herald_config: String,
    pub produced: ProduceStats,
    pub producer_copies: Copies,
    pub invalid: InvalidReport,
    pub outcomes: Vec<DestOutcome>,
    pub faults: Vec<Fault>,
    pub waits: Vec<(String, Wait)>,
    pub replayed: BTreeMap<String, usize>,
    pub duration_s: f64,
    /// WARN/ERROR lines of the services, grouped by message.
    pub service_warnings: BTreeMap<String, Vec<(String, u64)>>,
    pub work_dir: String,
}

impl Report {
    /// Fault kinds that happened at least once.
    pub fn fault_kinds(&self) -> BTreeSet<&'static str> {
        self.faults.iter().map(|f| f.kind).collect()
    }

    pub fn write(&self, out: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(out)?;
        std::fs::write(
            out.join("reliability.json"),
            serde_json::to_string_pretty(self)? + "\n",
        )?;
        std::fs::write(out.join("reliability.md"), self.markdown())?;
        Ok(())
    }

    fn markdown(&self) -> String {
        let mut m = String::new();
        let c = &self.code;
        let _ = writeln!(m, "# Herald reliability under chaos\n");
        let _ = writeln!(
            m,
            "Written by `herald-chaos` ({} mode, {} events). **{}**: {} (event, destination) pair(s) lost.\n",
            self.plan.mode,
            self.plan.events,
            if self.ok { "PASS" } else { "FAIL" },
            self.lost
        );
        let _ = writeln!(
            m,
            "- Code: commit `{}` ({}){}; binaries from `{}`.",
            c.commit,
            c.subject,
            if c.uncommitted.is_empty() {
                String::new()
            } else {
                format!(
                    ", **plus uncommitted changes** in {}",
                    c.uncommitted.join(", ")
                )
            },
            c.bin_dir
        );
        let mc = &self.machine;
        let _ = writeln!(
            m,
            "- Machine: {}, {} cores, {} GiB, Linux {}; one Kafka 4.3.1 broker (KRaft, single node) started by the suite in its own data dir.",
            mc.cpu, mc.cores, mc.memory_gib, mc.kernel
        );
        let _ = writeln!(
            m,
            "- Run took {:.0} s. Work dir (configs, service logs): `{}`.\n",
            self.duration_s, self.work_dir
        );

        let _ = writeln!(m, "## Method\n");
        let _ = writeln!(
            m,
            "The real `herald-router` and `herald-adapter` binaries run against a Kafka broker the suite starts in its own data dir, so it can SIGKILL it. \
A plain rdkafka producer (not Herald's code) writes structured, binary-mode and Avro single-object CloudEvents, with producer-side copies, malformed, \
~1 MB and control-character-id records, while the router and the adapters are SIGKILLed and restarted at once, a second `flaky` adapter joins and \
leaves, and the broker is SIGKILLed twice. Destinations are herald-devtools' fault-injecting sink (it verifies every signature) behind a front that \
records each request. A pair (valid event, matching destination) is **delivered** when the sink answered 2xx for its `webhook-id`, \
**dead-lettered** when it is on `<prefix>.dest.<d>.dlq` (read `read_committed`) and was never delivered, and **lost** otherwise, after a bounded \
wait, a `herald dlq replay --all` with every destination healthy, and a second wait. A duplicate is a further 2xx for an id, attributed to: \
`timeout-after-processing` (the earlier 2xx took longer than the adapter's timeout), `replay` (after the replay, for a dead-lettered id), \
`crash-window` (an adapter or broker kill between the two), `rebalance` (the second adapter joined or left between them), \
`producer-copy-not-dropped`, else `unexplained`.\n\nReproduce: `cargo build --release --bins && cargo run --release -p herald-chaos -- --events N` \
(`--quick` for the CI size; `--bin-dir` to choose the binaries).\n"
        );
        let _ = writeln!(m, "## Results per destination\n");
        let _ = writeln!(m, "| destination | behaviour | expected | delivered | dead-lettered (final) | **lost** | duplicates (by cause) | bad signatures | routed twice |");
        let _ = writeln!(m, "|---|---|---:|---:|---|---:|---|---:|---:|");
        for o in &self.outcomes {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | **{}** | {} {} | {} | {} |",
                o.name,
                o.behaviour,
                o.expected,
                o.delivered,
                map(&o.dead_lettered),
                o.lost,
                o.duplicates,
                if o.duplicates > 0 {
                    format!("({})", map(&o.duplicates_by_cause))
                } else {
                    String::new()
                },
                o.bad_signatures,
                o.routed_twice.map_or("not read".into(), |n| n.to_string())
            );
        }
        let _ = writeln!(
            m,
            "\nDead letters written during the run (before and after replay), by reason:\n"
        );
        for o in &self.outcomes {
            let _ = writeln!(
                m,
                "- {}: {}{}; {} requests seen by the sink; records deleted by retention: {}",
                o.name,
                map(&o.dlq_records),
                if o.dlq_undecodable > 0 {
                    format!(" ({} undecodable)", o.dlq_undecodable)
                } else {
                    String::new()
                },
                o.requests,
                map(&o.deleted_by_retention)
            );
        }
        for o in self
            .outcomes
            .iter()
            .filter(|o| !o.unexplained_samples.is_empty())
        {
            let _ = writeln!(
                m,
                "- {}: duplicates no fault explains (times since the services started): {}",
                o.name,
                o.unexplained_samples.join("; ")
            );
        }
        for o in self.outcomes.iter().filter(|o| o.replay_unsettled > 0) {
            let _ = writeln!(
                m,
                "- {}: **{} replayed pair(s) neither delivered nor dead-lettered again** by the end (still in the DLQ from before), e.g. {}",
                o.name,
                o.replay_unsettled,
                o.replay_unsettled_samples.join(" | ")
            );
        }
        let lost: Vec<&DestOutcome> = self.outcomes.iter().filter(|o| o.lost > 0).collect();
        if !lost.is_empty() {
            let _ = writeln!(m, "\n### Lost pairs (samples)\n");
            for o in lost {
                let _ = writeln!(m, "- **{}**: {} lost", o.name, o.lost);
                for s in &o.lost_samples {
                    let _ = writeln!(m, "  - `{}`", s.replace('\n', "\\n"));
                }
            }
        }

        let _ = writeln!(m, "\n## Input\n");
        let p = &self.produced;
        let _ = writeln!(
            m,
            "- Produced by a plain rdkafka producer ({}) in {:.0} s: {}.",
            kv(&p.config),
            p.seconds,
            map(&p.by_kind)
        );
        let _ = writeln!(m, "- Producer-side copies (same id and key re-sent): {} sent, {} dropped by the router, {} routed again. Sends retried after an error: {}{}.", self.producer_copies.sent, self.producer_copies.dropped, self.producer_copies.leaked, p.resends, if p.errors.is_empty() { String::new() } else { format!(" (e.g. {})", p.errors.join("; ")) });
        let _ = writeln!(
            m,
            "- Invalid topic by `herald-invalid-reason`: {}{}.",
            map(&self.invalid.by_reason),
            if self.invalid.unmatched > 0 {
                format!(" ({} unmatched)", self.invalid.unmatched)
            } else {
                String::new()
            }
        );
        let _ = writeln!(m, "- Where the records Herald should refuse ended:");
        for (k, v) in &self.invalid.by_kind {
            let _ = writeln!(m, "  - {k}: {}", map(v));
        }

        let _ = writeln!(m, "\n## Faults and time to recover\n");
        let _ = writeln!(m, "Time to recover: from the restart (or the rebalance) until the service made progress again, as shown by the named signal. Times are seconds since the services started.\n");
        let mut by_kind: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for f in &self.faults {
            if let Some(r) = f.recovered_s {
                by_kind.entry(f.kind).or_default().push(r);
            }
        }
        for (kind, mut v) in by_kind {
            v.sort_by(f64::total_cmp);
            let total = self.faults.iter().filter(|f| f.kind == kind).count();
            let _ = writeln!(
                m,
                "- {kind}: {total} time(s), recovered {} of them; time to recover median {:.1} s, max {:.1} s",
                v.len(),
                v[v.len() / 2],
                v[v.len() - 1]
            );
        }
        let _ = writeln!(m);
        let _ = writeln!(
            m,
            "| at (s) | fault | target | broker back after (s) | recovered after (s) | signal |"
        );
        let _ = writeln!(m, "|---:|---|---|---:|---:|---|");
        for f in &self.faults {
            let overlapped = f.kind != "broker-kill"
                && f.recovered_s.is_some_and(|r| {
                    self.faults.iter().any(|b| {
                        b.kind == "broker-kill" && b.at_s >= f.at_s && b.at_s <= f.at_s + r
                    })
                });
            let _ = writeln!(
                m,
                "| {:.1} | {} | {} | {} | {} | {} |",
                f.at_s,
                f.kind,
                f.target,
                f.restart_s.map_or("".into(), |s| format!("{s:.1}")),
                f.recovered_s.map_or("—".into(), |s| format!("{s:.1}")),
                if overlapped {
                    format!("{} (a broker outage overlapped)", f.how)
                } else {
                    f.how.clone()
                }
            );
        }
        let _ = writeln!(m, "\n## Convergence\n");
        for (what, w) in &self.waits {
            let _ = writeln!(
                m,
                "- {what}: {} after {:.0} s ({}); pairs still open: {}",
                if w.converged {
                    "converged"
                } else {
                    "did NOT converge"
                },
                w.seconds,
                w.ended_by,
                map(&w.open)
            );
        }
        let _ = writeln!(
            m,
            "- DLQ replayed (`herald dlq replay --all`) per destination: {}",
            map(&self.replayed)
        );

        let _ = writeln!(m, "\n## Service warnings and errors (by message)\n");
        for (svc, lines) in &self.service_warnings {
            let _ = writeln!(m, "- {svc}:");
            for (msg, n) in lines.iter().take(8) {
                let _ = writeln!(m, "  - {n} × `{}`", msg.replace('`', "'"));
            }
        }
        let _ = writeln!(m, "\n## Plan and configuration\n");
        let _ = writeln!(
            m,
            "```json\n{}\n```\n",
            serde_json::to_string_pretty(&self.plan).unwrap_or_default()
        );
        let _ = writeln!(m, "Destinations:\n");
        for d in &self.destinations {
            let _ = writeln!(
                m,
                "- {}: {} (routed {:?}, timeout {:?})",
                d.name, d.behaviour, d.event_types, d.timeout
            );
        }
        let _ = writeln!(m, "\nThe `down` destination's topic and retry tiers have `retention.ms` = {:.0} s and `segment.ms` = 10 s; the input topic has `max.message.bytes` = 2 MiB.\n", self.plan.down_retention.as_secs_f64());
        let _ = writeln!(
            m,
            "```toml\n{}```",
            self.herald_config.replace(crate::plan::SECRET, "whsec_…")
        );
        m
    }
}

fn map<K: std::fmt::Display, V: std::fmt::Display>(m: &BTreeMap<K, V>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn kv(v: &[(String, String)]) -> String {
    v.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
