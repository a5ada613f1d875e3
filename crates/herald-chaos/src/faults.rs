//! The fault schedule: SIGKILL of the router and of adapters (restarted at
//! once), a second adapter of `flaky` joining and leaving, broker SIGKILLs
//! (started again after a few seconds), the `down` destination coming back,
//! and the `slow` destination's processed-but-late windows. Each kill's
//! time to recover is measured in the background from the moment of the
//! restart to the service making progress again.

use crate::broker::Broker;
use crate::monitor::Monitor;
use crate::plan::{Plan, SECRET};
use crate::procs::{Service, Spec};
use crate::recorder::Recorder;
use herald_devtools::Behaviour;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One fault and what followed it. Times are seconds since producing began.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub kind: &'static str,
    pub target: String,
    pub at_s: f64,
    /// Broker only: from the kill until it answered again.
    pub restart_s: Option<f64>,
    /// From the restart until the service made progress again.
    pub recovered_s: Option<f64>,
    /// What showed the progress (or why there is no figure).
    pub how: String,
}

struct Slot {
    spec: Spec,
    running: Option<Service>,
    incarnation: usize,
}

/// Every service slot of the run.
pub struct Services {
    slots: BTreeMap<String, Slot>,
    dir: PathBuf,
}

impl Services {
    pub fn new(dir: PathBuf, specs: Vec<Spec>) -> Self {
        let slots = specs
            .into_iter()
            .map(|s| {
                (
                    s.name.clone(),
                    Slot {
                        spec: s,
                        running: None,
                        incarnation: 0,
                    },
                )
            })
            .collect();
        Self { slots, dir }
    }

    pub fn start(&mut self, name: &str) -> anyhow::Result<()> {
        let slot = self.slots.get_mut(name).expect("known slot");
        slot.incarnation += 1;
        slot.running = Some(Service::spawn(&slot.spec, &self.dir, slot.incarnation)?);
        Ok(())
    }

    pub fn running(&self, name: &str) -> bool {
        self.slots.get(name).is_some_and(|s| s.running.is_some())
    }

    /// SIGKILL and start again at once.
    pub fn kill_restart(&mut self, name: &str) -> anyhow::Result<()> {
        if let Some(s) = self.slots.get_mut(name).and_then(|s| s.running.take()) {
            s.kill();
        }
        self.start(name)
    }

    /// SIGTERM: a graceful leave.
    pub fn leave(&mut self, name: &str) {
        if let Some(s) = self.slots.get_mut(name).and_then(|s| s.running.take()) {
            s.terminate(Duration::from_secs(15));
        }
    }

    /// Restarts services that ended on their own; returns them with status.
    pub fn restart_exited(&mut self) -> anyhow::Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let names: Vec<String> = self.slots.keys().cloned().collect();
        for n in names {
            let slot = self.slots.get_mut(&n).expect("slot");
            if let Some(status) = slot.running.as_mut().and_then(Service::exited) {
                let log = slot.running.take().map(|s| s.log).unwrap_or_default();
                out.push((n.clone(), format!("{status}; log {}", log.display())));
                self.start(&n)?;
            }
        }
        Ok(out)
    }

    pub fn stop_all(&mut self) {
        for s in self.slots.values_mut() {
            if let Some(svc) = s.running.take() {
                svc.terminate(Duration::from_secs(10));
            }
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Shared state of the fault phase.
pub struct Chaos {
    pub plan: Plan,
    pub t0: Instant,
    pub services: Arc<Mutex<Services>>,
    pub monitor: Arc<Monitor>,
    pub recorder: Arc<Recorder>,
    pub faults: Arc<Mutex<Vec<Fault>>>,
    pub dests: Vec<String>,
}

impl Chaos {
    fn now_s(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn record(&self, kind: &'static str, target: &str, at_s: f64) -> usize {
        let mut f = self.faults.lock().expect("faults lock");
        f.push(Fault {
            kind,
            target: target.to_string(),
            at_s,
            restart_s: None,
            recovered_s: None,
            how: "not recovered within 180 s".into(),
        });
        f.len() - 1
    }

    /// Watches for progress of `target` (`router` or a destination name)
    /// after `since` and fills in the fault's recovery time.
    fn measure(&self, idx: usize, target: String, since: Instant) {
        let (monitor, recorder, faults) = (
            self.monitor.clone(),
            self.recorder.clone(),
            self.faults.clone(),
        );
        tokio::spawn(async move {
            let base = monitor.latest();
            let base_router = base.as_ref().map_or(0, |s| s.router.committed);
            let base_adapter = base
                .as_ref()
                .and_then(|s| s.adapters.get(&target).copied())
                .unwrap_or_default();
            let base_requests = recorder.request_count(&target);
            let deadline = since + Duration::from_secs(180);
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let how = if target == "router" {
                    monitor.since(since).and_then(|s| {
                        if s.router.committed > base_router {
                            Some("router committed input offsets moved".to_string())
                        } else if s.router.lag == 0 && s.at > since + Duration::from_secs(3) {
                            Some("idle: router caught up, nothing to route".to_string())
                        } else {
                            None
                        }
                    })
                } else if recorder.request_count(&target) > base_requests {
                    Some("the destination received requests again".to_string())
                } else {
                    monitor.since(since).and_then(|s| {
                        let a = s.adapters.get(&target).copied().unwrap_or_default();
                        if a.committed > base_adapter.committed {
                            Some("adapter committed offsets moved".to_string())
                        } else if a.lag == 0 && s.at > since + Duration::from_secs(3) {
                            Some("idle: adapter caught up, nothing to deliver".to_string())
                        } else {
                            None
                        }
                    })
                };
                if let Some(how) = how {
                    let mut f = faults.lock().expect("faults lock");
                    f[idx].recovered_s = Some(since.elapsed().as_secs_f64());
                    f[idx].how = how;
                    return;
                }
            }
        });
    }

    fn kill_service(&self, kind: &'static str, slot: &str, target: &str) -> anyhow::Result<()> {
        let idx = self.record(kind, target, self.now_s());
        self.services.lock().expect("services").kill_restart(slot)?;
        self.measure(idx, target.to_string(), Instant::now());
        Ok(())
    }

    async fn kill_broker(&self, broker: &Arc<Broker>) -> anyhow::Result<()> {
        let idx = self.record("broker-kill", "kafka", self.now_s());
        let killed = Instant::now();
        let b = broker.clone();
        tokio::task::spawn_blocking(move || b.kill()).await??;
        tokio::time::sleep(self.plan.broker_down).await;
        let b = broker.clone();
        tokio::task::spawn_blocking(move || b.restart()).await??;
        self.faults.lock().expect("faults lock")[idx].restart_s =
            Some(killed.elapsed().as_secs_f64());
        self.measure(idx, "router".into(), Instant::now());
        Ok(())
    }

    /// Runs the schedule until producing is done and `down` is back (plus
    /// a few seconds), or `limit` passes.
    pub async fn run(&self, broker: Arc<Broker>, produced: Arc<AtomicBool>) -> anyhow::Result<()> {
        let p = self.plan.clone();
        let slow_normal = slow_behaviour(false);
        let (mut next_router, mut next_adapter, mut next_churn) =
            (p.router_kill_every, p.adapter_kill_every, p.churn_every);
        let mut broker_kills = p.broker_kills_at.clone();
        let (mut adapter_turn, mut down_back, mut slow_late) = (0usize, false, false);
        let churn = "adapter-flaky-b";
        let end_after = p.down_for + Duration::from_secs(5);
        let limit = p.produce_for * 4 + p.down_for + Duration::from_secs(120);
        loop {
            let t = self.t0.elapsed();
            if (produced.load(Ordering::Relaxed) && t >= end_after) || t >= limit {
                break;
            }
            if !down_back && t >= p.down_for {
                self.recorder.set_behaviour("down", healthy());
                let idx = self.record("destination-back", "down", self.now_s());
                self.faults.lock().expect("faults lock")[idx].how =
                    "the sink answers 204 again".into();
                down_back = true;
            }
            // 2 s of every 10 s: processed, but answered after the timeout.
            let late = t.as_secs() % 10 >= 8;
            if late != slow_late {
                self.recorder.set_behaviour(
                    "slow",
                    if late {
                        slow_behaviour(true)
                    } else {
                        slow_normal.clone()
                    },
                );
                slow_late = late;
            }
            if broker_kills.first().is_some_and(|at| t >= *at) {
                broker_kills.remove(0);
                self.kill_broker(&broker).await?;
            }
            // No catch-up after a broker outage held the loop: one kill,
            // then the next a full period later.
            if t >= next_router {
                next_router = t + p.router_kill_every;
                self.kill_service("router-kill", "router", "router")?;
            }
            if t >= next_adapter {
                next_adapter = t + p.adapter_kill_every;
                let d = self.dests[adapter_turn % self.dests.len()].clone();
                adapter_turn += 1;
                self.kill_service("adapter-kill", &format!("adapter-{d}"), &d)?;
            }
            if t >= next_churn {
                next_churn = t + p.churn_every;
                let joined = self.services.lock().expect("services").running(churn);
                let idx = self.record(
                    if joined {
                        "rebalance-leave"
                    } else {
                        "rebalance-join"
                    },
                    "flaky",
                    self.now_s(),
                );
                {
                    let mut s = self.services.lock().expect("services");
                    if joined {
                        s.leave(churn);
                    } else {
                        s.start(churn)?;
                    }
                }
                self.measure(idx, "flaky".into(), Instant::now());
            }
            self.check_exits()?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.services.lock().expect("services").leave(churn);
        self.recorder.set_behaviour("slow", slow_normal);
        Ok(())
    }

    /// Restarts whatever exited on its own; each is recorded as a fault.
    pub fn check_exits(&self) -> anyhow::Result<()> {
        let exited = self.services.lock().expect("services").restart_exited()?;
        for (name, status) in exited {
            let target = name
                .strip_prefix("adapter-")
                .map(|d| d.trim_end_matches("-b").to_string())
                .unwrap_or_else(|| "router".into());
            let idx = self.record(
                "unexpected-exit",
                &format!("{name} ({status})"),
                self.now_s(),
            );
            self.measure(idx, target, Instant::now());
        }
        Ok(())
    }
}

pub fn healthy() -> Behaviour {
    Behaviour {
        secret: Some(SECRET.into()),
        ..Behaviour::healthy()
    }
}

/// `flaky`: 30% 503.
pub fn flaky_behaviour() -> Behaviour {
    Behaviour {
        secret: Some(SECRET.into()),
        ..Behaviour::flaky(0.0, 0.30)
    }
}

/// `slow`: 10% hang beyond the 1 s timeout (then 504, not processed); in
/// `late` windows every request is processed but answered after 1.5 s.
pub fn slow_behaviour(late: bool) -> Behaviour {
    if late {
        return Behaviour {
            latency: Duration::from_millis(1500),
            ..healthy()
        };
    }
    Behaviour {
        secret: Some(SECRET.into()),
        hang: Duration::from_secs(3),
        ..Behaviour::flaky(0.10, 0.0)
    }
}

pub fn down_behaviour() -> Behaviour {
    Behaviour {
        secret: Some(SECRET.into()),
        ..Behaviour::status(503)
    }
}
