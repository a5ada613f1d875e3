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
    kafka_sh(dir, cmd, &[])
}

fn kafka_sh(dir: &Path, cmd: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new(repo_root().join("scripts/kafka.sh"))
        .arg(cmd)
        .envs(env.iter().copied())
        .env("HERALD_KAFKA_DIR", dir)
        .env("HERALD_KAFKA_HEAP", "-Xms128m -Xmx512m")
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .stderr(Stdio::inherit())
        .output()
        .expect("running kafka.sh");
    assert!(out.status.success(), "kafka.sh {cmd} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A broker of the test's own with a SASL_SSL listener (SCRAM-SHA-512
/// user and a CA made by `scripts/kafka.sh`), next to its plaintext one.
pub struct SecureKafka {
    /// The plaintext listener (for the test's own checks only).
    pub plaintext: String,
    /// The SASL_SSL listener.
    pub bootstrap: String,
    pub ca_file: String,
    pub username: String,
    pub password_file: String,
}

impl SecureKafka {
    pub fn start(dir: &Path) -> Self {
        let plaintext = kafka_sh(dir, "start", &[("HERALD_KAFKA_SASL_SSL", "1")]);
        let vars: std::collections::HashMap<String, String> = kafka_sh(dir, "secure", &[])
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self {
            plaintext,
            bootstrap: vars["KAFKA_SASL_SSL_BOOTSTRAP"].clone(),
            ca_file: vars["KAFKA_SSL_CA_FILE"].clone(),
            username: vars["KAFKA_SASL_USERNAME"].clone(),
            password_file: vars["KAFKA_SASL_PASSWORD_FILE"].clone(),
        }
    }

    /// `[kafka]` for Herald: SASL_SSL, the CA by path, the password by
    /// secret reference.
    pub fn kafka_toml(&self, password_ref: &str) -> String {
        format!(
            r#"[kafka]
bootstrap_servers = "{}"
client = {{ "security.protocol" = "SASL_SSL", "sasl.mechanisms" = "SCRAM-SHA-512", "sasl.username" = "{}", "ssl.ca.location" = "{}", "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "1000" }}
client_secrets = {{ "sasl.password" = "{password_ref}" }}
"#,
            self.bootstrap, self.username, self.ca_file
        )
    }
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
    /// Replaces the config's `[kafka]` section (the first lines, up to
    /// `[topics]`) with `kafka_toml` and reloads.
    pub fn replace_kafka_section(&mut self, kafka_toml: &str) {
        let text = std::fs::read_to_string(&self.config_path).expect("config");
        let at = text.find("[topics]").expect("a [topics] section");
        std::fs::write(&self.config_path, format!("{kafka_toml}\n{}", &text[at..]))
            .expect("write config");
        self.append_config("");
    }

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

    /// Starts `herald-log` on a loopback port with its index at `db`;
    /// returns its API address.
    pub async fn start_log(&mut self, db: &Path) -> std::net::SocketAddr {
        let cfg = self.config_path.display().to_string();
        let db = db.display().to_string();
        let child = self.spawn(
            "herald-log",
            &["--config", &cfg, "--listen", "127.0.0.1:0", "--db", &db],
        );
        self.log = Some(child);
        self.logged_addr("herald-log", "Serving /api").await
    }

    /// SIGKILL to `herald-log`: no chance to finish a batch.
    pub fn kill_log(&mut self) {
        let mut c = self.log.take().expect("herald-log running");
        c.kill().expect("SIGKILL herald-log");
        c.wait().expect("reap herald-log");
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
