//! Section 7 of `benchmarks.md`: Herald beside the Spring Kafka peer.

use super::latency::RateResult;
use super::peer::{Outcome, PeerResult};
use crate::report::{num, ratio, summary};
use std::fmt::Write;

/// The performance issue's goal against the peer.
const GOAL_THROUGHPUT: f64 = 1.5;
const GOAL_CPU: f64 = 0.5;

pub fn markdown(x: Option<&PeerResult>, herald: Option<&[RateResult]>, s: &mut String) {
    let _ = writeln!(s, "## 7. The peer: Spring Kafka non-blocking retries\n");
    let Some(x) = x else {
        let _ = writeln!(s, "Not run.\n");
        return;
    };
    let _ = writeln!(
        s,
        "What a Java shop builds instead of Herald: `crates/herald-bench/peer`, a Spring Boot app \
         with Spring Kafka's `@RetryableTopic`-style non-blocking retries (one retry topic per delay, \
         paused until due, then a dead-letter topic) posting each record with Spring's `RestClient` \
         on the JDK HTTP client, signed the same way (Standard Webhooks). Same broker, sink, \
         partitions and concurrency ({c}: the peer's listener concurrency = partitions), timeout \
         (5 s), retry ladder (1 s, 5 s) and attempt budget (3). Its settings and what was changed \
         from Spring's defaults are in its README. {java}, `-Xmx1g`; the peer's window starts \
         after {w} s of warm-up (the JVM compiles its hot paths first), the others' after {w0} s. The peer reads the events \
         topic itself (it has no router); the adapter reads its destination topic, pre-filled with \
         the deliveries the router writes for the same {n} events.\n",
        c = x.concurrency,
        java = x.java,
        n = x.backlog,
        w = x.warmup_s,
        w0 = x.others_warmup_s
    );
    let _ = writeln!(
        s,
        "| | deliveries/s | CPU s per M deliveries | peak RSS MB | steady RSS MB |\n|---|---|---|---|---|"
    );
    for (name, side) in &x.throughput {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} |",
            summary(&side.rate),
            summary(&side.cpu_s_per_million),
            summary(&side.peak_rss_mb),
            summary(&side.steady_rss_mb)
        );
    }
    s.push('\n');
    let ratios = x.ratios();
    for (k, v) in &ratios {
        let _ = writeln!(s, "- {k}: **{}**", ratio(v));
    }
    let tp = ratios[0].1.median;
    let cpu = ratios[1].1.median;
    let verdict = |met: bool| if met { "met" } else { "**not met**" };
    let _ = writeln!(
        s,
        "\nGoal (performance issue): adapter ≥ {GOAL_THROUGHPUT}× the peer's throughput — {}; \
         ≤ {GOAL_CPU}× its CPU per delivery — {}.\n",
        verdict(tp >= GOAL_THROUGHPUT),
        verdict(cpu <= GOAL_CPU)
    );

    let outcomes = |title: &str,
                    m: &std::collections::BTreeMap<String, Outcome>,
                    s: &mut String| {
        let _ = writeln!(
            s,
            "{title}\n\n| | events | delivered | dead-lettered | duplicates | lost | requests | every event ended after |\n|---|---|---|---|---|---|---|---|"
        );
        for (name, o) in m {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} | {} | {} | {} |",
                o.events,
                o.delivered,
                o.dead_lettered,
                o.duplicates,
                o.lost,
                o.requests,
                if o.settle_s.is_nan() {
                    "not within 180 s".to_string()
                } else {
                    format!("{} s", num(o.settle_s))
                }
            );
        }
        s.push('\n');
    };
    outcomes(
        "**30% of requests answered 503** (the sink refuses a random 30% of requests; three \
         attempts, so about 2.7% of events should end dead-lettered). Delivered and \
         dead-lettered come from the sink's accepted ids and the dead-letter topic's records.",
        &x.faults,
        s,
    );
    outcomes(
        "**SIGKILL mid-run**: each side killed once when 40% of the events were delivered, then \
         restarted with the same group. Duplicates are events the sink accepted more than once: \
         Herald's adapter re-sends what was in flight and not yet in its ledger; the peer re-sends \
         everything since its last commit (Spring's default ack mode commits after each polled \
         batch). The time to settle includes the wait for the killed member's session to expire \
         before its partitions are handed to the restarted one (neither side uses static \
         membership).",
        &x.kill,
        s,
    );

    let _ = writeln!(
        s,
        "**End-to-end latency**, producer → sink. Herald's figure is the whole pipeline of \
         section 3 (router + adapter, 3 destinations, a transaction per batch, 16 requests in flight \
         per adapter); the peer has no router: producer → events topic → peer → sink, one \
         destination, its listener concurrency = the topic's partitions (section 3's).\n"
    );
    let _ = writeln!(
        s,
        "| offered events/s | Herald p50 / p99 ms | peer p50 / p99 ms | peer missing | peer CPU s per M |\n|---|---|---|---|---|"
    );
    for l in &x.latency {
        let h = herald
            .and_then(|rs| rs.iter().find(|r| r.rate == l.rate))
            .map(|r| {
                format!(
                    "{} / {}",
                    num(r.latency.p50_ms.median),
                    num(r.latency.p99_ms.median)
                )
            })
            .unwrap_or_else(|| "not run".into());
        let _ = writeln!(
            s,
            "| {} | {h} | {} / {} | {} | {} |",
            l.rate,
            num(l.latency.p50_ms),
            num(l.latency.p99_ms),
            l.missing,
            num(l.cost.cpu_s_per_million)
        );
    }
    s.push('\n');
}
