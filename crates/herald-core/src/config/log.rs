//! `[log]`: the delivery log (`herald-log`): where its index lives, what it
//! keeps, and where it answers.

use super::{invalid, ConfigError};
use crate::time::serde_duration;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// The API (`/api/events/<id>`, `/api/reconcile`) and `/metrics`,
    /// `/healthz`, `/readyz`. Loopback by default: it shows event data.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The SQLite index file. Derived data: deleting it rebuilds the index
    /// from the topics (as far as they retain).
    #[serde(default = "default_db")]
    pub db: String,
    /// Rows older than this are deleted from the index.
    #[serde(default = "default_retention", with = "serde_duration")]
    pub retention: Duration,
    /// The window the periodic reconcile checks (metric
    /// `herald_log_reconcile_straggling_deliveries`). Unset: the longest
    /// destination budget (`retry.max_age` + its longest tier) plus an
    /// hour, so every pair whose budget ran out within the last hour is
    /// looked at.
    #[serde(default, with = "crate::time::serde_opt_duration")]
    pub reconcile_window: Option<Duration>,
    /// How often the periodic reconcile runs.
    #[serde(default = "default_interval", with = "serde_duration")]
    pub reconcile_interval: Duration,
}

fn default_listen() -> String {
    "127.0.0.1:9467".into()
}
fn default_db() -> String {
    "herald-log.db".into()
}
fn default_retention() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_interval() -> Duration {
    Duration::from_secs(60)
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            db: default_db(),
            retention: default_retention(),
            reconcile_window: None,
            reconcile_interval: default_interval(),
        }
    }
}

impl LogConfig {
    /// The periodic reconcile's window: `reconcile_window`, or the longest
    /// of `budgets` plus an hour.
    pub fn window(&self, budgets: impl IntoIterator<Item = Duration>) -> Duration {
        self.reconcile_window.unwrap_or_else(|| {
            budgets.into_iter().max().unwrap_or_default() + Duration::from_secs(3600)
        })
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.db.trim().is_empty() {
            return Err(invalid("log.db", "must name a file"));
        }
        for (k, v) in [
            ("log.retention", self.retention),
            (
                "log.reconcile_window",
                self.reconcile_window.unwrap_or(Duration::from_secs(1)),
            ),
            ("log.reconcile_interval", self.reconcile_interval),
        ] {
            if v.is_zero() {
                return Err(invalid(k, "must be more than zero"));
            }
        }
        Ok(())
    }
}
