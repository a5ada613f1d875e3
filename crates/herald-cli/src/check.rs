//! `herald config check`: validate the configuration (secrets included)
//! and explain what it sets up — destinations, and the gateway's sources.

use herald_core::config::{Config, RegistryAuth};
use herald_core::sources::{Framing, ResolvedSource};
use herald_core::time::compact_duration;
use std::process::ExitCode;

pub fn config_check(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let names = config.topic_names();
    let registry = registry_line(config)?;
    if json {
        let dests: serde_json::Map<_, _> = config
            .destinations
            .iter()
            .map(|(n, d)| {
                (
                    n.clone(),
                    serde_json::json!({
                        "kind": d.kind,
                        "topic": names.dest(n),
                        "retry_topics": d.retry.tiers.iter().map(|t| names.retry(n, *t)).collect::<Vec<_>>(),
                        "dlq": names.dlq(n),
                        "max_attempts": d.retry.policy().max_attempts,
                        "concurrency": d.concurrency,
                        "event_types": d.route.event_types,
                        "signed": d.secret.is_some(),
                    }),
                )
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"ok": true, "bootstrap_servers": config.kafka.bootstrap_servers, "input": config.topics.input, "destinations": dests, "sources": sources_json(config)?, "schema_registry": registry})
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("config OK");
    println!("  kafka:  {}", config.kafka.bootstrap_servers);
    println!(
        "  input:  {} (router group {})",
        config.topics.input,
        names.router_group()
    );
    println!(
        "  delivery log: herald-log on {} (index {}, kept {}; reconcile every {} over {})",
        config.log.listen,
        config.log.db,
        compact_duration(config.log.retention),
        compact_duration(config.log.reconcile_interval),
        compact_duration(config.log.window(config.destinations.values().map(|d| {
            d.retry.max_age + d.retry.tiers.iter().max().copied().unwrap_or_default()
        })))
    );
    match &registry {
        Some(line) => println!("  schema registry: {line}"),
        None => println!(
            "  schema registry: none (records in the Confluent wire format go to {}, reason registry)",
            names.invalid()
        ),
    }
    if config.destinations.is_empty() {
        println!("  warning: no destinations configured; every event will be unrouted");
    }
    for (n, d) in &config.destinations {
        let p = d.retry.policy();
        println!(
            "  destination {n} ({:?}, concurrency {}, timeout {})",
            d.kind,
            d.concurrency,
            compact_duration(d.timeout)
        );
        println!(
            "    events:  types {:?}{}",
            d.route.event_types,
            if d.route.tenants.is_empty() {
                String::new()
            } else {
                format!(", tenants {:?}", d.route.tenants)
            }
        );
        println!(
            "    retries: {} attempts over tiers [{}], max age {}",
            p.max_attempts,
            p.tiers
                .iter()
                .map(|t| compact_duration(*t))
                .collect::<Vec<_>>()
                .join(", "),
            compact_duration(p.max_age)
        );
        println!(
            "    topics:  {} → retry.* → {}",
            names.dest(n),
            names.dlq(n)
        );
        println!(
            "    signing: {}",
            if d.secret.is_some() {
                "Standard Webhooks (secret set)"
            } else {
                "off (no secret)"
            }
        );
    }
    print_sources(config)?;
    Ok(ExitCode::SUCCESS)
}

/// The registry settings in a line, its credentials and CA file resolved
/// and read as the router will (an error names the key). Not contacted.
fn registry_line(config: &Config) -> anyhow::Result<Option<String>> {
    let Some(r) = &config.schema_registry else {
        return Ok(None);
    };
    let auth = match r.auth()? {
        RegistryAuth::None => "no auth".to_string(),
        RegistryAuth::Basic { username, .. } => format!("basic auth as {username}"),
        RegistryAuth::Bearer(_) => "bearer token".to_string(),
    };
    let ca = match r.ca_pem()? {
        Some(_) => format!(", CA {}", r.ca_file.as_deref().unwrap_or_default()),
        None => String::new(),
    };
    let output = match config.output.format {
        herald_core::config::OutputFormat::Registry => {
            "; Herald's records registry-framed under <topic>-value"
        }
        herald_core::config::OutputFormat::SingleObject => "",
    };
    Ok(Some(format!(
        "{} ({auth}{ca}; timeout {}, unreachable → hold up to {} then {}, reason registry{output})",
        r.url,
        compact_duration(r.timeout),
        compact_duration(r.outage_hold),
        config.topic_names().invalid()
    )))
}

/// What a source's scheme checks, in a line.
fn scheme_line(r: &ResolvedSource) -> String {
    let s = &r.scheme;
    let framing = match &s.framing {
        Framing::Prefixed(p) if p.is_empty() => String::new(),
        Framing::Prefixed(p) => format!(" after `{p}`"),
        Framing::Stripe => " (t=…,v1=…)".into(),
        Framing::VersionedList => " (v1,… list)".into(),
    };
    let ts = if s.timestamped {
        format!(
            ", signed timestamp within ±{}",
            compact_duration(r.tolerance)
        )
    } else {
        ", no timestamp (replays are dropped by the router's dedupe window)".into()
    };
    format!(
        "{:?} HMAC in `{}`{framing}, {:?}{ts}",
        s.algorithm, s.header, s.encoding
    )
}

fn resolved(config: &Config) -> anyhow::Result<Vec<(ResolvedSource, usize)>> {
    let mut out = Vec::new();
    for (name, s) in &config.sources {
        // Secrets must resolve and parse for the scheme, as the gateway needs.
        s.keys(name)?;
        out.push((s.resolve(name, &config.topics.input)?, s.secrets.len()));
    }
    Ok(out)
}

fn sources_json(config: &Config) -> anyhow::Result<serde_json::Value> {
    let mut m = serde_json::Map::new();
    for (r, secrets) in resolved(config)? {
        m.insert(
            r.name.clone(),
            serde_json::json!({
                "route": format!("POST /webhooks/{}", r.name),
                "topic": r.topic,
                "event_source": r.event_source,
                "id": r.id.to_string(),
                "type": r.type_parts.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "type_prefix": r.type_prefix,
                "subject": r.subject.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "signature": scheme_line(&r),
                "secrets": secrets,
            }),
        );
    }
    Ok(serde_json::Value::Object(m))
}

fn print_sources(config: &Config) -> anyhow::Result<()> {
    if config.sources.is_empty() {
        return Ok(());
    }
    println!(
        "  gateway: providers post to {} (max body {} bytes, Kafka ack within {}, 503 + Retry-After {} otherwise)",
        config.gateway.listen,
        config.gateway.max_body_bytes,
        compact_duration(config.gateway.ack_timeout),
        compact_duration(config.gateway.retry_after),
    );
    for (r, secrets) in resolved(config)? {
        let rl = config.sources[&r.name]
            .rate_limit
            .as_ref()
            .map_or("no rate limit".to_string(), |rl| {
                format!("{}/s", rl.per_second)
            });
        println!("  source {} (POST /webhooks/{}, {rl})", r.name, r.name);
        println!("    signature: {} ({secrets} secret(s))", scheme_line(&r));
        let ty: Vec<String> = std::iter::once(r.type_prefix.clone())
            .filter(|p| !p.is_empty())
            .chain(r.type_parts.iter().map(|f| format!("<{f}>")))
            .collect();
        println!(
            "    event:     id <{}>, type {}, subject {}",
            r.id,
            ty.join("."),
            if r.subject.is_empty() {
                "none (keyed by id)".to_string()
            } else {
                r.subject
                    .iter()
                    .map(|f| format!("<{f}>"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            }
        );
        println!(
            "    writes:    {} as CloudEvents binary mode, source {}",
            r.topic, r.event_source
        );
    }
    Ok(())
}
