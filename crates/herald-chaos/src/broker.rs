//! The suite's own Kafka broker: a dedicated `scripts/kafka.sh` instance
//! with its own data dir, so that it can be SIGKILLed and started again
//! (same ports: kafka.sh remembers them per data dir) without disturbing
//! the broker other tests use. Stopped when dropped, also on panic.

#![allow(unsafe_code)] // kill(2) of the broker's pid: one libc call.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Broker properties the suite needs on top of kafka.sh's: records up to
/// 2 MB on the input topic (the oversized events), and a quicker segment
/// roll check so shortened retention deletes promptly.
const EXTRA_PROPS: &str = "message.max.bytes=2097152\nreplica.fetch.max.bytes=2097152";

pub struct Broker {
    script: PathBuf,
    dir: PathBuf,
    /// Holds a temporary data dir alive (deleted after the broker stops).
    _tmp: Option<tempfile::TempDir>,
    pub bootstrap: String,
    stopped: bool,
}

impl Broker {
    /// Starts a broker in `dir` (a fresh temporary dir when `None`). Fails
    /// loudly when Java or the Kafka jars cannot be had: never skips.
    pub fn start(repo: &Path, dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let (dir, tmp) = match dir {
            Some(d) => {
                std::fs::create_dir_all(&d)?;
                (d, None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("herald-kafka-chaos-")
                    .tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let mut b = Self {
            script: repo.join("scripts/kafka.sh"),
            dir,
            _tmp: tmp,
            bootstrap: String::new(),
            stopped: false,
        };
        b.bootstrap = b.run_start()?;
        Ok(b)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn command(&self, arg: &str) -> Command {
        let mut c = Command::new(&self.script);
        c.arg(arg)
            .env("HERALD_KAFKA_DIR", &self.dir)
            .env("HERALD_KAFKA_PROPS", EXTRA_PROPS)
            .env("HERALD_KAFKA_HEAP", "-Xms256m -Xmx768m")
            // test.sh exports the shared broker's address; kafka.sh would
            // then only check that one instead of starting ours.
            .env_remove("KAFKA_BOOTSTRAP_SERVERS")
            .stdin(Stdio::null());
        c
    }

    fn run_start(&self) -> anyhow::Result<String> {
        let out = self
            .command("start")
            .stderr(Stdio::inherit())
            .output()
            .context("running scripts/kafka.sh start (the chaos suite needs Java 17 and a real Kafka broker)")?;
        if !out.status.success() {
            bail!(
                "scripts/kafka.sh start failed ({}) for data dir {}: the chaos suite needs Java 17+ and the Kafka jars; it never runs without a real broker",
                out.status,
                self.dir.display()
            );
        }
        let addr = String::from_utf8(out.stdout)?
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string();
        if addr.is_empty() {
            bail!("scripts/kafka.sh start printed no address");
        }
        Ok(addr)
    }

    /// The broker JVM's pid, from `$HERALD_KAFKA_DIR/broker.pid`.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("broker.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGKILL: no controlled shutdown, no flush beyond what the OS has.
    pub fn kill(&self) -> anyhow::Result<()> {
        let pid = self.pid().context("no broker pid to kill")?;
        // SAFETY: kill(2) on the pid kafka.sh recorded for our data dir.
        let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
        if rc != 0 {
            bail!("kill -9 {pid} failed: {}", std::io::Error::last_os_error());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts the killed broker again in the same data dir; the address
    /// must not change (clients keep their bootstrap list).
    pub fn restart(&self) -> anyhow::Result<()> {
        let addr = self.run_start()?;
        if addr != self.bootstrap {
            bail!(
                "broker came back at {addr}, not {} (a port was taken meanwhile)",
                self.bootstrap
            );
        }
        Ok(())
    }

    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let status = self
            .command("stop")
            .env("HERALD_KAFKA_STOP_TIMEOUT", "15")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status();
        if let Err(e) = status {
            eprintln!("[herald-chaos] could not stop the chaos broker: {e}");
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
