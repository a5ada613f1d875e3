//! `herald trace <event-id>` and `herald reconcile`: questions for the
//! delivery log (`herald-log`), asked over its API.

use herald_core::config::Config;
use herald_core::time::rfc3339_ms;
use serde_json::Value;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct LogUrl {
    /// The delivery log's address (default: http:// + log.listen, with a
    /// wildcard host read as 127.0.0.1).
    #[arg(long, env = "HERALD_LOG_URL")]
    log_url: Option<String>,
}

impl LogUrl {
    fn base(&self, config: &Config) -> String {
        match &self.log_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let l = &config.log.listen;
                let l = l
                    .strip_prefix("0.0.0.0:")
                    .map(|p| format!("127.0.0.1:{p}"))
                    .unwrap_or_else(|| l.clone());
                format!("http://{l}")
            }
        }
    }
}

#[derive(clap::Args)]
pub struct TraceArgs {
    /// The event's id (CloudEvents `id`).
    event_id: String,
    #[command(flatten)]
    log: LogUrl,
}

#[derive(clap::Args)]
pub struct ReconcileArgs {
    /// The window: events routed within this long (e.g. 30m, 2h).
    #[arg(long, default_value = "1h", value_parser = crate::watch::humantime_parse)]
    since: Duration,
    #[command(flatten)]
    log: LogUrl,
}

async fn get(url: &str) -> anyhow::Result<(u16, Value)> {
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?
        .get(url)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the delivery log at {url} (is herald-log running? --log-url): {e}"
            )
        })?;
    let status = resp.status().as_u16();
    let body: Value = serde_json::from_slice(&resp.bytes().await?)
        .map_err(|e| anyhow::anyhow!("{url} did not answer JSON: {e}"))?;
    Ok((status, body))
}

fn when(v: &Value) -> String {
    v.as_i64().map(rfc3339_ms).unwrap_or_else(|| "?".into())
}

/// One line for where a pair is now.
fn state_line(now: &Value) -> String {
    match now["state"].as_str().unwrap_or("?") {
        "delivered" => format!("delivered at {}", when(&now["at"])),
        "waiting" => format!(
            "waiting in {} until {}",
            now["topic"].as_str().unwrap_or("?"),
            when(&now["due"])
        ),
        "dead-lettered" => format!(
            "in the DLQ since {} ({})",
            when(&now["at"]),
            now["reason"].as_str().unwrap_or("?")
        ),
        "discarded" => format!(
            "discarded at {} by {}: {}",
            when(&now["at"]),
            now["by"].as_str().unwrap_or("?"),
            now["reason"].as_str().unwrap_or("")
        ),
        "replayed" => format!("replayed at {}, in flight", when(&now["at"])),
        "pending" => "routed, not attempted yet (in flight)".into(),
        other => other.to_string(),
    }
}

pub async fn trace(config: &Config, args: TraceArgs, json: bool) -> anyhow::Result<ExitCode> {
    let url = format!("{}/api/events/{}", args.log.base(config), args.event_id);
    let (status, body) = get(&url).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    }
    if status == 404 {
        if !json {
            eprintln!(
                "event {} is not in the delivery log (not routed, or past log.retention)",
                args.event_id
            );
        }
        return Ok(ExitCode::from(1));
    }
    anyhow::ensure!(status == 200, "the delivery log answered {status}: {body}");
    if json {
        return Ok(ExitCode::SUCCESS);
    }
    println!("event {}", args.event_id);
    for d in body["destinations"].as_array().into_iter().flatten() {
        let attempts = d["attempts"].as_array().map_or(0, Vec::len);
        println!(
            "  {}: {} ({} attempt(s); type {}, routed {})",
            d["destination"].as_str().unwrap_or("?"),
            state_line(&d["now"]),
            attempts,
            d["event_type"].as_str().unwrap_or("?"),
            when(&d["routed_at"])
        );
        for a in d["attempts"].as_array().into_iter().flatten() {
            println!(
                "    #{} {} {:<13} {:<12} {:>4} {:>6} ms{}{}",
                a["attempt"],
                when(&a["at"]),
                a["outcome"].as_str().unwrap_or("?"),
                a["error_class"].as_str().unwrap_or("-"),
                a["status"].as_i64().map_or("-".into(), |s| s.to_string()),
                a["latency_ms"],
                a["excerpt"]
                    .as_str()
                    .map_or(String::new(), |e| format!("  {e:?}")),
                a["trace_id"]
                    .as_str()
                    .map_or(String::new(), |t| format!("  trace {t}")),
            );
        }
        for x in d["actions"].as_array().into_iter().flatten() {
            println!(
                "    {} by {} at {}{}",
                x["action"].as_str().unwrap_or("?"),
                x["by"].as_str().unwrap_or("?"),
                when(&x["at"]),
                x["reason"]
                    .as_str()
                    .map_or(String::new(), |r| format!(": {r}"))
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn reconcile(
    config: &Config,
    args: ReconcileArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let url = format!(
        "{}/api/reconcile?since_s={}",
        args.log.base(config),
        args.since.as_secs().max(1)
    );
    let (status, body) = get(&url).await?;
    anyhow::ensure!(status == 200, "the delivery log answered {status}: {body}");
    let stragglers = body["stragglers"].as_array().cloned().unwrap_or_default();
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        println!(
            "{} (event, destination) pairs routed {} … {}: {}",
            body["pairs"],
            when(&body["from"]),
            when(&body["to"]),
            body["states"]
                .as_object()
                .map(|m| m
                    .iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        );
        if stragglers.is_empty() {
            println!(
                "every pair is delivered, dead-lettered, discarded or in flight within its budget"
            );
        } else {
            println!(
                "{} unaccounted (in flight past their budget):",
                stragglers.len()
            );
            for s in &stragglers {
                println!(
                    "  {} → {}: {} (routed {}, {} s ago)",
                    s["event_id"].as_str().unwrap_or("?"),
                    s["destination"].as_str().unwrap_or("?"),
                    state_line(s),
                    when(&s["routed_at"]),
                    s["age_s"]
                );
            }
        }
    }
    Ok(if stragglers.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
