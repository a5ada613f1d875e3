//! The peer scenario's settle runs: a fixed set of events through each
//! side with 30% of requests refused, or with a SIGKILL mid-run — what was
//! delivered, dead-lettered, duplicated and lost, and when every event
//! ended. See `peer.rs`.

use super::peer::{setup, Peer};
use crate::ctx::Ctx;
use crate::procs::Service;
use crate::sink::Tally;
use crate::workload;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// Share of requests the fault runs answer with 503.
const FAIL_SHARE: f64 = 0.3;
/// How long a fault or SIGKILL run may take to settle every event.
const SETTLE: Duration = Duration::from_secs(180);

/// What one side did with a fixed set of events.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub events: u64,
    /// Accepted by the sink at least once.
    pub delivered: u64,
    /// In the dead-letter topic and never accepted.
    pub dead_lettered: u64,
    /// Accepted requests beyond the first of their event.
    pub duplicates: u64,
    /// Neither accepted nor dead-lettered when the run settled.
    pub lost: u64,
    /// Requests the sink saw (accepted or refused).
    pub requests: u64,
    /// From start until every event was delivered or dead-lettered; NaN
    /// when that did not happen within the settle timeout.
    pub settle_s: f64,
}

/// The fault runs (`faults`: 30% of requests refused, every event must end
/// delivered or dead-lettered) or the SIGKILL runs (a healthy sink, each
/// side killed once when 40% is delivered, then restarted).
pub(super) async fn settle_runs(
    ctx: &Ctx,
    peer: &Peer,
    c: usize,
    faults: bool,
) -> anyhow::Result<BTreeMap<String, Outcome>> {
    let (tag, n) = if faults {
        ("p2", ctx.plan.peer_fault_events)
    } else {
        ("p3", ctx.plan.peer_kill_events)
    };
    let prefix = format!("{}-{tag}", ctx.run);
    let dest = "tally";
    let route = |side: &str| format!("{tag}-{side}");
    let (path, cfg) = setup(
        ctx,
        &prefix,
        dest,
        ctx.sink.url(&format!("/tally/{}", route("adapter"))),
        c,
        n,
    )
    .await?;
    let mut out = BTreeMap::new();
    for side in ["adapter", "peer"] {
        let name = route(side);
        ctx.sink
            .set_fail_share(&name, if faults { FAIL_SHARE } else { 0.0 });
        let input = cfg.topics.input.clone();
        let group = format!("{prefix}.peer");
        let dlq = match side {
            "adapter" => cfg.topic_names().dlq(dest),
            _ => format!("{input}-dlt"),
        };
        let start = |run: usize| -> anyhow::Result<Service> {
            let log = format!("{prefix}-{side}-{run}");
            match side {
                "adapter" => ctx.start_adapter(&path, dest, &[], &log),
                _ => peer.start(
                    ctx,
                    &input,
                    &group,
                    &ctx.sink.url(&format!("/tally/{name}")),
                    c,
                    &log,
                ),
            }
        };
        let t0 = Instant::now();
        let mut svc = start(1)?;
        // The dead-letter topic's size, read at most once a second.
        let mut dead = (0u64, Instant::now() - Duration::from_secs(2));
        let mut ended = || -> u64 {
            if dead.1.elapsed() >= Duration::from_secs(1) {
                let n = tokio::task::block_in_place(|| workload::end_offsets(&ctx.bootstrap, &dlq));
                dead = (n.unwrap_or(0) as u64, Instant::now());
            }
            ctx.sink.tally_unique(&name) as u64 + dead.0
        };
        if !faults {
            wait_for(&mut svc, SETTLE, || {
                ctx.sink.tally_unique(&name) as u64 * 10 >= n * 4
            })
            .await?;
            ctx.log(format!(
                "peer: SIGKILL {side} at {} of {n} delivered",
                ctx.sink.tally_unique(&name)
            ));
            svc.kill();
            svc = start(2)?;
        }
        let settled = wait_for(&mut svc, SETTLE, || ended() >= n).await?;
        let settle_s = if settled {
            t0.elapsed().as_secs_f64()
        } else {
            f64::NAN
        };
        // Late duplicates (a redelivered batch) arrive just after.
        tokio::time::sleep(Duration::from_secs(2)).await;
        svc.stop();
        let dead = read_dead_ids(&cfg, &dlq, side == "adapter").await?;
        let o = outcome(&ctx.sink.tally(&name), &dead, n, settle_s);
        ctx.log(format!(
            "peer: {} {side}: {o:?}",
            if faults { "30% 503" } else { "SIGKILL" }
        ));
        out.insert(side.to_string(), o);
    }
    workload::delete_topics(&ctx.bootstrap, &format!("{prefix}.")).await?;
    Ok(out)
}

/// Polls `done` every 100 ms for up to `limit`; false when it never held.
pub(super) async fn wait_for(
    svc: &mut Service,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        svc.check_alive()?;
        if done() {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}

fn outcome(t: &Tally, dead: &HashSet<String>, n: u64, settle_s: f64) -> Outcome {
    let delivered = t.accepted.len() as u64;
    let dead_only = dead
        .iter()
        .filter(|id| !t.accepted.contains_key(*id))
        .count() as u64;
    Outcome {
        events: n,
        delivered,
        dead_lettered: dead_only,
        duplicates: t.duplicates(),
        lost: n.saturating_sub(delivered + dead_only),
        requests: t.requests,
        settle_s,
    }
}

/// Event ids in a dead-letter topic: Herald's letters carry `ce_id`, the
/// peer's are the event JSON itself.
async fn read_dead_ids(
    cfg: &herald_core::config::Config,
    topic: &str,
    herald: bool,
) -> anyhow::Result<HashSet<String>> {
    use rdkafka::message::{Headers, Message};
    let letters = herald_core::kafka::read_topic_to_end(cfg, topic).await?;
    Ok(letters
        .iter()
        .filter_map(|m| {
            if herald {
                m.headers()?
                    .iter()
                    .find(|h| h.key == herald_core::headers::CE_ID)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            } else {
                let v: serde_json::Value = serde_json::from_slice(m.payload()?).ok()?;
                v["id"].as_str().map(str::to_string)
            }
        })
        .collect())
}
