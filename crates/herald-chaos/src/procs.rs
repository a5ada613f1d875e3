//! Herald's real service binaries as child processes: started, SIGKILLed,
//! SIGTERMed and restarted by the fault schedule, each incarnation logging
//! to its own file in the work dir.

#![allow(unsafe_code)] // kill(2) for SIGTERM: one libc call on our own child.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port for a child's admin server.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// What to run for one service slot (router, an adapter, the churn adapter).
#[derive(Clone, Debug)]
pub struct Spec {
    /// Slot name: `router`, `adapter-<d>`, `adapter-<d>-2`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Extra environment, e.g. `HERALD_INSTANCE_ID` (the adapter's stable
    /// name in its group: each instance of a destination has its own, as
    /// two pods would).
    pub env: Vec<(String, String)>,
}

/// One running incarnation of a slot.
pub struct Service {
    pub spec: Spec,
    child: Child,
    pub admin: String,
    pub log: PathBuf,
    pub started: Instant,
}

impl Service {
    /// Starts `spec`; the log is `<dir>/<name>-<n>.log` for incarnation `n`.
    pub fn spawn(spec: &Spec, dir: &Path, n: usize) -> anyhow::Result<Self> {
        let admin = format!("127.0.0.1:{}", free_port()?);
        let log = dir.join(format!("{}-{n}.log", spec.name));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(&spec.program)
            .args(&spec.args)
            .args(["--listen", &admin, "--log-format", "json"])
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .env(
                "RUST_LOG",
                std::env::var("HERALD_CHAOS_CHILD_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", spec.program.display()))?;
        Ok(Self {
            spec: spec.clone(),
            child,
            admin,
            log,
            started: Instant::now(),
        })
    }

    /// The exit status if the process has ended on its own.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL and reap: no chance to commit, abort or leave the group.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (a graceful leave), then SIGKILL after `grace`.
    pub fn terminate(mut self, grace: Duration) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child, which is not reaped yet.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Counts of WARN and ERROR lines per distinct message across the JSON
/// logs in `dir` whose file name starts with `prefix` (e.g. `router`),
/// most common first. Only the message counts (fields differ per event).
pub fn log_summary(dir: &Path, prefix: &str) -> Vec<(String, u64)> {
    let mut counts: std::collections::HashMap<String, u64> = Default::default();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with(prefix) || !name.ends_with(".log") {
            continue;
        }
        for line in std::fs::read_to_string(e.path())
            .unwrap_or_default()
            .lines()
        {
            if let Some(key) = warning_of(line) {
                *counts.entry(key).or_default() += 1;
            }
        }
    }
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// `LEVEL message` of a JSON log line at WARN or ERROR; a line that is not
/// JSON (a panic message) counts as ERROR with its first 160 characters.
fn warning_of(line: &str) -> Option<String> {
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(v) => {
            let level = v.get("level")?.as_str()?;
            if level != "WARN" && level != "ERROR" {
                return None;
            }
            let msg = v.get("message").and_then(|m| m.as_str()).unwrap_or("");
            Some(format!("{level} {msg}"))
        }
        Err(_) if line.trim().is_empty() => None,
        Err(_) => Some(format!(
            "ERROR (not JSON) {}",
            line.chars().take(160).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_grouped_by_message() {
        let l = r#"{"timestamp":"t","level":"WARN","message":"Transaction failed.","error":"x"}"#;
        assert_eq!(warning_of(l).as_deref(), Some("WARN Transaction failed."));
        assert_eq!(warning_of(r#"{"level":"INFO","message":"m"}"#), None);
        assert!(warning_of("thread 'main' panicked")
            .unwrap()
            .starts_with("ERROR"));
    }
}
