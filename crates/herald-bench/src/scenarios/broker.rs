//! Scenario 6: the broker's own ceiling, from Kafka's perf tools
//! (`ProducerPerformance`, `ConsumerPerformance` from the `kafka-tools`
//! jars, run through `scripts/kafka.sh tool`) on the same broker, with
//! records the size of a Delivery and Herald's producer settings.

use crate::ctx::Ctx;
use crate::stats::Summary;
use anyhow::{bail, Context};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct BrokerResult {
    pub record_bytes: usize,
    pub records: u64,
    /// Steady-state records/s of ProducerPerformance (warm-up excluded).
    pub producer: Summary,
    /// Records/s of ConsumerPerformance while fetching (group join excluded).
    pub consumer: Summary,
}

async fn tool(ctx: &Ctx, class: &str, args: &[String]) -> anyhow::Result<String> {
    let script = ctx.repo.join("scripts/kafka.sh");
    let run = tokio::process::Command::new("bash")
        .arg(&script)
        .arg("tool")
        .arg(class)
        .args(args)
        .env("KAFKA_BOOTSTRAP_SERVERS", &ctx.bootstrap)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .with_context(|| format!("{class} did not finish in 300 s"))?
        .with_context(|| format!("running {} tool {class}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!(
            "{class} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// records/s from ProducerPerformance's summary, preferring the
/// steady-state line printed when warm-up records were asked for.
fn parse_producer(out: &str) -> Option<f64> {
    let line = out
        .lines()
        .find(|l| l.contains("steady state records sent"))
        .or_else(|| out.lines().rev().find(|l| l.contains("records sent,")))?;
    let before = &line[..line.find(" records/sec")?];
    before.rsplit(' ').next()?.parse().ok()
}

/// fetch.nMsg.sec from ConsumerPerformance's CSV line.
fn parse_consumer(out: &str) -> Option<f64> {
    let header = out.lines().position(|l| l.starts_with("start.time"))?;
    let cols: Vec<&str> = out.lines().nth(header)?.split(',').map(str::trim).collect();
    let vals: Vec<&str> = out
        .lines()
        .nth(header + 1)?
        .split(',')
        .map(str::trim)
        .collect();
    let i = cols.iter().position(|c| *c == "fetch.nMsg.sec")?;
    vals.get(i)?.parse().ok()
}

/// One run of each perf tool on a fresh topic: (producer, consumer)
/// records/s. The bench runs half of the repetitions before the other
/// scenarios and half after them, so the ceiling sees the run's weather.
pub async fn broker_rep(ctx: &Ctx, record_bytes: usize, rep: usize) -> anyhow::Result<(f64, f64)> {
    let p = &ctx.plan;
    let topic = format!("{}-s6.perf{rep}", ctx.run);
    crate::workload::create_topic(&ctx.bootstrap, &topic, p.partitions).await?;
    let result = perf_tools(ctx, &topic, record_bytes, rep).await;
    crate::workload::delete_topics(&ctx.bootstrap, &topic).await?;
    result
}

async fn perf_tools(
    ctx: &Ctx,
    topic: &str,
    record_bytes: usize,
    rep: usize,
) -> anyhow::Result<(f64, f64)> {
    let p = &ctx.plan;
    // Tuned for throughput (bigger batches, longer linger), keeping acks=all
    // and idempotence: the broker's limit, not one client's.
    let out = tool(
        ctx,
        "org.apache.kafka.tools.ProducerPerformance",
        &[
            "--topic".into(),
            topic.to_string(),
            "--num-records".into(),
            p.perf_records.to_string(),
            "--warmup-records".into(),
            (p.perf_records / 5).to_string(),
            "--record-size".into(),
            record_bytes.to_string(),
            "--throughput".into(),
            "-1".into(),
            "--command-property".into(),
            format!("bootstrap.servers={}", ctx.bootstrap),
            "acks=all".into(),
            "enable.idempotence=true".into(),
            "linger.ms=20".into(),
            "batch.size=262144".into(),
            "compression.type=lz4".into(),
        ],
    )
    .await?;
    let produced = parse_producer(&out)
        .with_context(|| format!("unexpected ProducerPerformance output:\n{out}"))?;
    ctx.log(format!(
        "broker: rep {}/{} producer perf: {produced:.0} records/s",
        rep + 1,
        p.perf_reps
    ));
    let out = tool(
        ctx,
        "org.apache.kafka.tools.ConsumerPerformance",
        &[
            "--bootstrap-server".into(),
            ctx.bootstrap.clone(),
            "--topic".into(),
            topic.to_string(),
            "--num-records".into(),
            p.perf_records.to_string(),
            "--group".into(),
            format!("{topic}.reader"),
            "--timeout".into(),
            "30000".into(),
        ],
    )
    .await?;
    let consumed = parse_consumer(&out)
        .with_context(|| format!("unexpected ConsumerPerformance output:\n{out}"))?;
    ctx.log(format!(
        "broker: rep {}/{} consumer perf: {consumed:.0} records/s",
        rep + 1,
        p.perf_reps
    ));
    Ok((produced, consumed))
}

/// Summarises the repetitions of [`broker_rep`].
pub fn result(ctx: &Ctx, record_bytes: usize, runs: &[(f64, f64)]) -> BrokerResult {
    BrokerResult {
        record_bytes,
        records: ctx.plan.perf_records,
        producer: Summary::of(runs.iter().map(|r| r.0).collect()),
        consumer: Summary::of(runs.iter().map(|r| r.1).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_perf_tools_output() {
        let prod = "Warmup first 10000 records. Steady state results will print after the complete test summary.\n\
            60000 records sent, 14140.938016 records/sec (8.09 MB/sec), 467.00 ms avg latency, 810.00 ms max latency, 446 ms 50th, 765 ms 95th, 791 ms 99th, 798 ms 99.9th.\n\
            50000 steady state records sent, 16644.474035 records/sec (9.52 MB/sec), 521.92 ms avg latency.\n";
        assert_eq!(parse_producer(prod), Some(16644.474035));
        assert_eq!(
            parse_producer("50000 records sent, 17730.5 records/sec (6.76 MB/sec)"),
            Some(17730.5)
        );
        let cons = "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n\
            2026-11-23 14:32:25:614, 2026-11-23 14:32:27:458, 19.0735, 10.3435, 50000, 27114.9675, 1047, 797, 23.9316, 62735.2572\n";
        assert_eq!(parse_consumer(cons), Some(62735.2572));
    }
}
