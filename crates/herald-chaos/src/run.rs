//! One chaos run from start to report: broker, sink, config and topics,
//! services, producing under the fault schedule, the waits, the DLQ
//! replay, and the accounting.

use crate::analysis::{outcome, DestInput};
use crate::broker::Broker;
use crate::faults::{down_behaviour, flaky_behaviour, healthy, slow_behaviour, Chaos, Services};
use crate::monitor::{Monitor, Watch};
use crate::plan::{destinations, write_config, Plan};
use crate::procs::{log_summary, Spec};
use crate::recorder::Recorder;
use crate::report::{Code, Copies, InvalidReport, Machine, Report};
use crate::verify::{expectations, locate, read_dlq, read_invalid, routed_counts, wait_terminal};
use anyhow::{bail, Context};
use herald_core::config::Config;
use herald_core::kafka::{apply_topics, topic_plan};
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What to run and where the results go.
#[derive(Debug, Clone)]
pub struct Options {
    pub plan: Plan,
    /// Directory for reliability.md and reliability.json (none: not written).
    pub out: Option<PathBuf>,
    /// Directory holding herald-router, herald-adapter and herald.
    pub bin_dir: PathBuf,
    /// The dedicated broker's data dir (default: a fresh temporary dir).
    pub kafka_dir: Option<PathBuf>,
    /// Keep configs and service logs even when nothing failed.
    pub keep_work: bool,
}

fn log(t: Instant, msg: impl AsRef<str>) {
    eprintln!(
        "[herald-chaos +{:>4}s] {}",
        t.elapsed().as_secs(),
        msg.as_ref()
    );
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub async fn run(opts: Options) -> anyhow::Result<Report> {
    let started = Instant::now();
    let plan = opts.plan.clone();
    for b in ["herald-router", "herald-adapter", "herald"] {
        if !opts.bin_dir.join(b).exists() {
            bail!(
                "{} is missing: build the binaries first (cargo build --bins)",
                opts.bin_dir.join(b).display()
            );
        }
    }
    let repo = crate::repo_root();
    let work = tempfile::Builder::new().prefix("herald-chaos-").tempdir()?;
    log(
        started,
        format!(
            "starting the dedicated Kafka broker; work dir {}",
            work.path().display()
        ),
    );
    let broker = Arc::new(Broker::start(&repo, opts.kafka_dir.clone())?);
    log(
        started,
        format!(
            "broker at {} (data {})",
            broker.bootstrap,
            broker.dir().display()
        ),
    );

    let run_id = format!("chaos{}", now_ms() / 1000 % 100_000_000);
    let dests = destinations();
    let t0 = Instant::now();
    let recorder = Arc::new(
        Recorder::start(
            vec![
                ("/healthy".into(), healthy()),
                ("/flaky".into(), flaky_behaviour()),
                ("/slow".into(), slow_behaviour(false)),
                ("/down".into(), down_behaviour()),
            ],
            t0,
        )
        .await?,
    );
    let config_path = write_config(
        work.path(),
        &broker.bootstrap,
        &run_id,
        plan.partitions,
        |d| recorder.url(d),
    )?;
    let config = Config::load_with_env(Some(&config_path), std::iter::empty())
        .context("the chaos config is invalid")?;
    create_topics(&config, &plan).await?;

    let bins = &opts.bin_dir;
    let cfg = config_path.display().to_string();
    let mut specs = vec![Spec {
        name: "router".into(),
        program: bins.join("herald-router"),
        args: vec!["--config".into(), cfg.clone()],
        env: Vec::new(),
    }];
    for d in dests.iter().map(|d| d.name).chain(["flaky"]) {
        let name = if specs.iter().any(|s| s.name == format!("adapter-{d}")) {
            format!("adapter-{d}-b")
        } else {
            format!("adapter-{d}")
        };
        specs.push(Spec {
            env: vec![("HERALD_INSTANCE_ID".into(), format!("{run_id}-{name}"))],
            name,
            program: bins.join("herald-adapter"),
            args: vec![
                "--config".into(),
                cfg.clone(),
                "--destination".into(),
                d.into(),
            ],
        });
    }
    let mut services = Services::new(work.path().to_path_buf(), specs);
    services.start("router")?;
    for d in &dests {
        services.start(&format!("adapter-{}", d.name))?;
    }
    let names = config.topic_names();
    let monitor = Monitor::start(
        &broker.bootstrap,
        plan.partitions,
        Watch {
            key: "router".into(),
            group: names.router_group(),
            topics: vec![config.topics.input.clone()],
        },
        dests
            .iter()
            .map(|d| {
                let dc = &config.destinations[d.name];
                let mut topics = vec![names.dest(d.name)];
                topics.extend(dc.retry.tiers.iter().map(|t| names.retry(d.name, *t)));
                Watch {
                    key: d.name.into(),
                    group: names.adapter_group(d.name),
                    topics,
                }
            })
            .collect(),
    )?;
    let chaos = Arc::new(Chaos {
        plan: plan.clone(),
        t0,
        services: Arc::new(Mutex::new(services)),
        monitor: Arc::new(monitor),
        recorder: recorder.clone(),
        faults: Arc::default(),
        dests: dests.iter().map(|d| d.name.to_string()).collect(),
    });

    log(
        started,
        format!(
            "producing {} records over {:?} under faults",
            plan.events, plan.produce_for
        ),
    );
    let produced = Arc::new(AtomicBool::new(false));
    let producing = {
        let (b, topic, plan, run_id, produced) = (
            broker.bootstrap.clone(),
            config.topics.input.clone(),
            plan.clone(),
            run_id.clone(),
            produced.clone(),
        );
        tokio::spawn(async move {
            let r = crate::producer::produce(&b, &topic, &plan, &run_id).await;
            produced.store(true, Ordering::Relaxed);
            r
        })
    };
    chaos.run(broker.clone(), produced.clone()).await?;
    let produce_stats = producing.await??;
    log(
        started,
        format!(
            "faults over; produced in {:.0} s; waiting for every pair to be terminal",
            produce_stats.seconds
        ),
    );

    // Anything that exits on its own from here on is restarted and recorded.
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (c, w) = (chaos.clone(), watching.clone());
        tokio::spawn(async move {
            while w.load(Ordering::Relaxed) {
                if let Err(e) = c.check_exits() {
                    eprintln!("[herald-chaos] restarting a service failed: {e:#}");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let expect = expectations(&plan, &run_id);
    let say = |m: String| log(started, m);
    let mut waits = Vec::new();
    let w1 = wait_terminal(
        &config,
        &expect,
        &recorder,
        plan.converge_timeout,
        plan.stall,
        &BTreeMap::new(),
        say,
    )
    .await;
    log(started, format!("first wait: {w1:?}"));
    waits.push(("after the faults".to_string(), w1));

    // Every destination healthy, then the DLQs go back through the ladder.
    recorder.set_behaviour("flaky", healthy());
    recorder.set_behaviour("slow", healthy());
    let replay_at_ms = t0.elapsed().as_millis() as u64;
    let replay_epoch = now_ms();
    let mut replayed: BTreeMap<String, (HashSet<String>, i64)> = BTreeMap::new();
    for d in &dests {
        let (dlq, _) = read_dlq(&config, d.name).await?;
        if dlq.is_empty() {
            continue;
        }
        let out = tokio::process::Command::new(bins.join("herald"))
            .args(["--config", &cfg, "dlq", "replay", "-d", d.name, "--all"])
            .output()
            .await?;
        if !out.status.success() {
            bail!(
                "herald dlq replay -d {} failed: {}",
                d.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        replayed.insert(d.name.into(), (dlq.into_keys().collect(), replay_epoch));
    }
    log(
        started,
        format!(
            "replayed DLQs: {:?}",
            replayed
                .iter()
                .map(|(k, v)| (k, v.0.len()))
                .collect::<Vec<_>>()
        ),
    );
    let say = |m: String| log(started, m);
    let w2 = wait_terminal(
        &config,
        &expect,
        &recorder,
        plan.converge_timeout,
        plan.stall,
        &replayed,
        say,
    )
    .await;
    log(started, format!("second wait: {w2:?}"));
    waits.push(("after the DLQ replay".to_string(), w2));
    watching.store(false, Ordering::Relaxed);
    let _ = watcher.await;

    // Accounting.
    let faults = chaos.faults.lock().expect("faults").clone();
    let mut outcomes = Vec::new();
    let mut delivered_anywhere = HashSet::new();
    let mut routed_healthy = None;
    for d in &dests {
        let (dlq, undecodable) = read_dlq(&config, d.name).await?;
        let routed = if d.name == "down" {
            None
        } else {
            Some(routed_counts(&config, d.name).await?)
        };
        let requests = recorder.requests(d.name);
        delivered_anywhere.extend(recorder.delivered(d.name));
        delivered_anywhere.extend(dlq.keys().cloned());
        let mut topics = vec![names.dest(d.name)];
        topics.extend(
            config.destinations[d.name]
                .retry
                .tiers
                .iter()
                .map(|t| names.retry(d.name, *t)),
        );
        let o = outcome(
            DestInput {
                name: d.name,
                behaviour: d.behaviour,
                timeout_ms: d.timeout.as_millis() as u64,
                requests,
                dlq,
                dlq_undecodable: undecodable,
                replayed: replayed
                    .get(d.name)
                    .map(|r| r.0.clone())
                    .unwrap_or_default(),
                replay_at_ms: Some(replay_at_ms),
                replay_epoch_ms: replay_epoch,
                routed: routed.clone(),
                bad_signatures: recorder.sink.stats(&format!("/{}", d.name)).bad_signatures,
                deleted_by_retention: low_watermarks(&broker.bootstrap, &topics, plan.partitions),
            },
            &expect,
            &faults,
        );
        if d.name == "healthy" {
            routed_healthy = routed;
        }
        let mut o = o;
        if o.replay_unsettled > 0 {
            let ids: HashSet<String> = o
                .replay_unsettled_samples
                .iter()
                .filter_map(|s| s.split(':').next().map(str::to_string))
                .collect();
            let tier = config.destinations[d.name].retry.tiers[0];
            let at = locate(
                &config,
                &names.retry(d.name, tier),
                &names.adapter_group(d.name),
                &ids,
            )
            .await;
            for s in &mut o.replay_unsettled_samples {
                let id = s.split(':').next().unwrap_or_default().to_string();
                s.push_str(&format!(
                    "; replayed record {}",
                    at.get(&id)
                        .map_or("not found on the first retry tier", |x| x.as_str())
                ));
            }
        }
        outcomes.push(o);
    }
    let (invalid_seen, unmatched) = read_invalid(&config).await?;
    let mut invalid = InvalidReport {
        unmatched,
        ..Default::default()
    };
    for r in invalid_seen.values() {
        *invalid.by_reason.entry(r.clone()).or_default() += 1;
    }
    let mut refused_lost = 0;
    for p in &expect.refused {
        let place = match invalid_seen.get(&p.seq) {
            Some(r) => format!("invalid:{r}"),
            None if delivered_anywhere.contains(&p.id) => {
                "routed (delivered or dead-lettered)".into()
            }
            None => {
                refused_lost += 1;
                "lost (neither invalid nor routed)".into()
            }
        };
        *invalid
            .by_kind
            .entry(crate::producer::kind_name(p.kind))
            .or_default()
            .entry(place)
            .or_default() += 1;
    }
    let mut copies = Copies {
        sent: produce_stats.copies,
        ..Default::default()
    };
    if let Some(r) = &routed_healthy {
        for id in &expect.copied {
            match r.get(id).copied().unwrap_or(0) {
                0 => {}
                1 => copies.dropped += 1,
                _ => copies.leaked += 1,
            }
        }
    }
    chaos.services.lock().expect("services").stop_all();
    let mut service_warnings = BTreeMap::new();
    for svc in [
        "router",
        "adapter-healthy",
        "adapter-flaky",
        "adapter-slow",
        "adapter-down",
    ] {
        service_warnings.insert(svc.to_string(), log_summary(work.path(), svc));
    }
    let lost = outcomes.iter().map(|o| o.lost).sum::<usize>() + refused_lost;
    let failed = lost > 0 || outcomes.iter().any(|o| o.bad_signatures > 0);
    let work_dir = if opts.keep_work || failed {
        let keep = work.keep();
        keep.display().to_string()
    } else {
        format!("{} (deleted: nothing failed)", work.path().display())
    };
    let report = Report {
        ok: !failed,
        lost,
        code: Code::detect(&repo, bins),
        machine: Machine::detect(),
        plan: plan.clone(),
        destinations: dests,
        herald_config: std::fs::read_to_string(&config_path).unwrap_or_default(),
        produced: produce_stats,
        producer_copies: copies,
        invalid,
        outcomes,
        faults,
        waits,
        replayed: replayed
            .iter()
            .map(|(k, v)| (k.clone(), v.0.len()))
            .collect(),
        duration_s: started.elapsed().as_secs_f64(),
        service_warnings,
        work_dir,
    };
    if let Some(out) = &opts.out {
        report.write(out)?;
        log(
            started,
            format!("wrote {}/reliability.md and .json", out.display()),
        );
    }
    drop(chaos);
    if let Ok(mut b) = Arc::try_unwrap(broker) {
        b.stop();
    }
    Ok(report)
}

/// The topic plan, with a 2 MiB input topic (oversized events) and the
/// `down` destination's topic and tiers on short retention with small
/// segments, so an outage outlives its records.
async fn create_topics(config: &Config, plan: &Plan) -> anyhow::Result<()> {
    let names = config.topic_names();
    let down = &config.destinations["down"];
    let mut short: Vec<String> = vec![names.dest("down")];
    short.extend(down.retry.tiers.iter().map(|t| names.retry("down", *t)));
    let mut specs = topic_plan(config);
    for s in &mut specs {
        if s.name == config.topics.input {
            s.config.push(("max.message.bytes", "2097152".into()));
        }
        if short.contains(&s.name) {
            s.config.retain(|(k, _)| *k != "retention.ms");
            s.config
                .push(("retention.ms", plan.down_retention.as_millis().to_string()));
            s.config.push(("segment.ms", "10000".into()));
        }
    }
    apply_topics(config, &specs).await?;
    Ok(())
}

/// Records deleted from the start of each topic (its low watermarks summed).
fn low_watermarks(bootstrap: &str, topics: &[String], partitions: i32) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    let Ok(c) = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create::<BaseConsumer>()
    else {
        return out;
    };
    for t in topics {
        let low: i64 = (0..partitions)
            .filter_map(|p| c.fetch_watermarks(t, p, Duration::from_secs(5)).ok())
            .map(|(l, _)| l)
            .sum();
        out.insert(t.clone(), low);
    }
    out
}
