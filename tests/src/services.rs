//! Services beyond the router and adapters: a test's own Kafka broker (for
//! outages that must not disturb the shared one) and the inbound gateway.

use super::{bin, repo_root, Pipeline};
use herald_core::config::Config;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs `scripts/kafka.sh <cmd>` for a broker of the test's own in `dir`
/// (started on first use, its port kept across restarts); returns what the
/// script prints (the bootstrap address for `start`).
pub fn own_kafka(dir: &Path, cmd: &str) -> String {
    let out = Command::new(repo_root().join("scripts/kafka.sh"))
        .arg(cmd)
        .env("HERALD_KAFKA_DIR", dir)
        .env("HERALD_KAFKA_HEAP", "-Xms128m -Xmx512m")
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .stderr(Stdio::inherit())
        .output()
        .expect("running kafka.sh");
    assert!(out.status.success(), "kafka.sh {cmd} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Stops a broker started with [`own_kafka`] when dropped.
pub struct StopKafka(pub PathBuf);

impl Drop for StopKafka {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/kafka.sh"))
            .arg("stop")
            .env("HERALD_KAFKA_DIR", &self.0)
            .env_remove("KAFKA_BOOTSTRAP_SERVERS")
            .status();
    }
}

impl Pipeline {
    /// Appends `toml` to the pipeline's config file (e.g. `[sources.*]`)
    /// and reloads it.
    pub fn append_config(&mut self, toml: &str) {
        let mut text = std::fs::read_to_string(&self.config_path).expect("config");
        text.push('\n');
        text.push_str(toml);
        std::fs::write(&self.config_path, text).expect("write config");
        self.config = Config::load_with_env(Some(&self.config_path), std::iter::empty())
            .expect("test config is valid");
    }

    /// Starts `herald-gateway` on loopback ports; returns the address
    /// providers post to.
    pub async fn start_gateway(&mut self) -> std::net::SocketAddr {
        bin("herald-gateway");
        let cfg = self.config_path.display().to_string();
        let child = self.spawn(
            "herald-gateway",
            &[
                "--config",
                &cfg,
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ],
        );
        self.gateway = Some(child);
        self.logged_addr("herald-gateway", "Serving POST").await
    }

    /// SIGTERM to the gateway; whether it exited successfully.
    pub fn stop_gateway(&mut self) -> bool {
        let mut c = self.gateway.take().expect("gateway running");
        super::terminate(&mut c);
        c.try_wait().ok().flatten().is_some_and(|s| s.success())
    }
}

/// The Python interpreter with the providers' signing libraries
/// (`scripts/pyenv.sh`, cached venv).
pub fn python() -> PathBuf {
    let out = Command::new(repo_root().join("scripts/pyenv.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("running scripts/pyenv.sh");
    assert!(
        out.status.success(),
        "scripts/pyenv.sh failed: the gateway tests need python3 with pip (PyPI)"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
