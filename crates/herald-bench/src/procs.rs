//! Child processes under test (Herald's services and the baselines) and what
//! `/proc` says about them: resident memory and CPU time.

#![allow(unsafe_code)] // kill(2) and sysconf(3): two libc calls, no memory involved.

use anyhow::{bail, Context};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A free loopback port for a child's admin server. The port is released
/// before the child binds it; nothing else on the machine races for
/// ephemeral ports at the rate that would matter.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One running child process, logging to a file. Stopped (SIGTERM, then
/// SIGKILL) on drop.
pub struct Service {
    pub name: String,
    child: Option<Child>,
    pub pid: u32,
    pub log: PathBuf,
    /// `host:port` of `/readyz`, for Herald's services.
    pub admin: Option<String>,
}

impl Service {
    pub fn spawn<I, S>(
        name: &str,
        program: &Path,
        args: I,
        env: &[(String, String)],
        log_dir: &Path,
        admin: Option<String>,
    ) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let log = log_dir.join(format!("{name}.log"));
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env(
                "RUST_LOG",
                std::env::var("HERALD_BENCH_CHILD_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Self {
            name: name.to_string(),
            pid: child.id(),
            child: Some(child),
            log,
            admin,
        })
    }

    /// Fails if the process has exited, quoting the end of its log.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(c) = self.child.as_mut() {
            if let Some(status) = c.try_wait()? {
                bail!(
                    "{} exited early ({status}); end of its log:\n{}",
                    self.name,
                    tail(&self.log, 30)
                );
            }
        }
        Ok(())
    }

    /// Waits until `/readyz` answers 200 (the service joined its group).
    pub async fn wait_ready(
        &mut self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let Some(admin) = self.admin.clone() else {
            return Ok(());
        };
        let url = format!("http://{admin}/readyz");
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if let Ok(r) = http.get(&url).timeout(Duration::from_secs(1)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{} was not ready after {timeout:?}; end of its log:\n{}",
                    self.name,
                    tail(&self.log, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL at once: no chance to commit or flush anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, up to ten seconds to exit, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if let Ok(None) = c.try_wait() {
            // SAFETY: kill(2) on our own child's pid, which we have not reaped.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
        }
        let _ = c.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One reading of a process from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// Resident set size now (VmRSS), KiB.
    pub rss_kb: u64,
    /// Peak resident set size so far (VmHWM), KiB.
    pub hwm_kb: u64,
    /// User plus system CPU time so far, seconds.
    pub cpu_s: f64,
}

fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 {
            t as f64
        } else {
            100.0
        }
    })
}

/// Reads `/proc/<pid>/status` and `/proc/<pid>/stat`; `None` once the
/// process is gone.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after
    // the last ')'. utime and stime are fields 14 and 15 (1-based).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        rss_kb: kb("VmRSS:"),
        hwm_kb: kb("VmHWM:"),
        cpu_s: (ticks(11) + ticks(12)) as f64 / clock_ticks(),
    })
}

/// What a process cost over a measurement window.
#[derive(Debug, Clone, Default)]
pub struct Footprint {
    pub cpu_start: f64,
    pub cpu_end: f64,
    /// VmRSS readings taken during the window, KiB.
    pub rss_samples: Vec<u64>,
    /// VmHWM at the end of the window, KiB.
    pub peak_kb: u64,
}

impl Footprint {
    pub fn start(pid: u32) -> Self {
        let s = sample(pid).unwrap_or_default();
        Self {
            cpu_start: s.cpu_s,
            cpu_end: s.cpu_s,
            rss_samples: vec![s.rss_kb],
            peak_kb: s.hwm_kb,
        }
    }

    pub fn observe(&mut self, pid: u32) {
        if let Some(s) = sample(pid) {
            self.cpu_end = s.cpu_s;
            self.rss_samples.push(s.rss_kb);
            self.peak_kb = self.peak_kb.max(s.hwm_kb);
        }
    }

    pub fn cpu_s(&self) -> f64 {
        self.cpu_end - self.cpu_start
    }

    /// Median VmRSS over the window, MiB.
    pub fn steady_mb(&self) -> f64 {
        let v: Vec<f64> = self
            .rss_samples
            .iter()
            .map(|k| *k as f64 / 1024.0)
            .collect();
        crate::stats::median(&v)
    }

    pub fn peak_mb(&self) -> f64 {
        self.peak_kb as f64 / 1024.0
    }

    /// CPU seconds per million events handled in the window.
    pub fn cpu_per_million(&self, events: f64) -> f64 {
        if events > 0.0 {
            self.cpu_s() / events * 1e6
        } else {
            f64::NAN
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let s = sample(std::process::id()).expect("own /proc entry");
        assert!(s.rss_kb > 0 && s.hwm_kb >= s.rss_kb);
        assert!(s.cpu_s >= 0.0);
        assert!(sample(u32::MAX).is_none());
    }
}
