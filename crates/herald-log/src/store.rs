//! The index: SQLite tables derived from Herald's topics, and the consumer
//! positions they were derived up to, written in one SQLite transaction per
//! batch — so after a crash the index and its positions agree: nothing is
//! lost and nothing counted twice (rows are also keyed, so a re-read record
//! is ignored).

use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::Path;

/// One indexed fact, decoded from a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// A delivery the router wrote to a destination topic.
    Routed {
        destination: String,
        event_id: String,
        event_type: String,
        tenant: Option<String>,
        source: String,
        routed_at: i64,
        produced_at: Option<i64>,
    },
    /// One attempt (`herald.attempts`).
    Attempt {
        destination: String,
        event_id: String,
        event_type: String,
        attempt: i32,
        at: i64,
        outcome: String,
        error_class: Option<String>,
        status: Option<i32>,
        latency_ms: i64,
        excerpt: Option<String>,
        next_topic: Option<String>,
        trace_id: Option<String>,
    },
    /// A dead letter, where it is on its DLQ.
    Dead {
        destination: String,
        event_id: String,
        reason: String,
        dead_at: i64,
        partition: i32,
        offset: i64,
    },
    /// An operator's action on a dead letter.
    Action(herald_core::actions::DlqAction),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS routed (
  destination TEXT NOT NULL, event_id TEXT NOT NULL, event_type TEXT NOT NULL,
  tenant TEXT, source TEXT NOT NULL, routed_at INTEGER NOT NULL, produced_at INTEGER,
  PRIMARY KEY (destination, event_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS routed_by_time ON routed (routed_at);
CREATE INDEX IF NOT EXISTS routed_by_event ON routed (event_id);
CREATE TABLE IF NOT EXISTS attempts (
  destination TEXT NOT NULL, event_id TEXT NOT NULL, event_type TEXT NOT NULL,
  attempt INTEGER NOT NULL, at INTEGER NOT NULL, outcome TEXT NOT NULL,
  error_class TEXT, status INTEGER, latency_ms INTEGER NOT NULL, excerpt TEXT,
  next_topic TEXT, trace_id TEXT,
  PRIMARY KEY (destination, event_id, attempt, at)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS attempts_by_event ON attempts (event_id);
CREATE INDEX IF NOT EXISTS attempts_by_time ON attempts (at);
CREATE TABLE IF NOT EXISTS dead (
  destination TEXT NOT NULL, dlq_partition INTEGER NOT NULL, dlq_offset INTEGER NOT NULL,
  event_id TEXT NOT NULL, reason TEXT NOT NULL, dead_at INTEGER NOT NULL,
  PRIMARY KEY (destination, dlq_partition, dlq_offset)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dead_by_event ON dead (event_id);
CREATE TABLE IF NOT EXISTS actions (
  destination TEXT NOT NULL, dlq_partition INTEGER NOT NULL, dlq_offset INTEGER NOT NULL,
  action TEXT NOT NULL, at INTEGER NOT NULL, event_id TEXT NOT NULL, by TEXT NOT NULL,
  reason TEXT, to_topic TEXT,
  PRIMARY KEY (destination, dlq_partition, dlq_offset, action, at)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS actions_by_event ON actions (event_id);
CREATE TABLE IF NOT EXISTS positions (
  topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
  PRIMARY KEY (topic, partition)) WITHOUT ROWID;
";

pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating) the index at `path`; `:memory:` for tests.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        // WAL: readers (the API) do not block the indexer, and a commit is
        // durable once its WAL frame is synced.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn })
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The next offset to read per (topic, partition).
    pub fn positions(&self) -> rusqlite::Result<HashMap<(String, i32), i64>> {
        let mut st = self
            .conn
            .prepare("SELECT topic, partition, next_offset FROM positions")?;
        let rows = st.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
        rows.collect()
    }

    /// Indexes `rows` and moves the positions to `next`, atomically.
    /// Returns how many rows were new.
    pub fn apply(
        &mut self,
        rows: &[Row],
        next: &HashMap<(String, i32), i64>,
    ) -> rusqlite::Result<usize> {
        let tx = self.conn.transaction()?;
        let mut added = 0;
        for row in rows {
            added += match row {
                Row::Routed {
                    destination,
                    event_id,
                    event_type,
                    tenant,
                    source,
                    routed_at,
                    produced_at,
                } => tx.prepare_cached(
                    "INSERT OR IGNORE INTO routed VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(
                    params![destination, event_id, event_type, tenant, source, routed_at, produced_at],
                )?,
                Row::Attempt {
                    destination,
                    event_id,
                    event_type,
                    attempt,
                    at,
                    outcome,
                    error_class,
                    status,
                    latency_ms,
                    excerpt,
                    next_topic,
                    trace_id,
                } => tx.prepare_cached(
                    "INSERT OR IGNORE INTO attempts VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )?
                .execute(
                    params![
                        destination, event_id, event_type, attempt, at, outcome, error_class, status,
                        latency_ms, excerpt, next_topic, trace_id
                    ],
                )?,
                Row::Dead {
                    destination,
                    event_id,
                    reason,
                    dead_at,
                    partition,
                    offset,
                } => tx.prepare_cached(
                    "INSERT OR IGNORE INTO dead VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(
                    params![destination, partition, offset, event_id, reason, dead_at],
                )?,
                Row::Action(a) => tx.prepare_cached(
                    "INSERT OR IGNORE INTO actions VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(
                    params![
                        a.destination,
                        a.dlq_partition,
                        a.dlq_offset,
                        action_name(a.action),
                        a.at,
                        a.event_id,
                        a.by,
                        a.reason,
                        a.to_topic
                    ],
                )?,
            };
        }
        for ((topic, partition), offset) in next {
            tx.execute(
                "INSERT INTO positions VALUES (?1, ?2, ?3)
                 ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                params![topic, partition, offset],
            )?;
        }
        tx.commit()?;
        Ok(added)
    }

    /// Deletes what is older than `before` (ms since the epoch).
    pub fn expire(&mut self, before: i64) -> rusqlite::Result<usize> {
        let tx = self.conn.transaction()?;
        let mut n = tx.execute("DELETE FROM routed WHERE routed_at < ?1", [before])?;
        n += tx.execute("DELETE FROM attempts WHERE at < ?1", [before])?;
        n += tx.execute("DELETE FROM dead WHERE dead_at < ?1", [before])?;
        n += tx.execute("DELETE FROM actions WHERE at < ?1", [before])?;
        tx.commit()?;
        Ok(n)
    }

    /// Rows per table, for the API and tests.
    pub fn counts(&self) -> rusqlite::Result<HashMap<&'static str, i64>> {
        let mut out = HashMap::new();
        for t in ["routed", "attempts", "dead", "actions"] {
            let n: i64 = self
                .conn
                .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))?;
            out.insert(t, n);
        }
        Ok(out)
    }

    /// The position of one partition, if indexed.
    pub fn position(&self, topic: &str, partition: i32) -> rusqlite::Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT next_offset FROM positions WHERE topic = ?1 AND partition = ?2",
                params![topic, partition],
                |r| r.get(0),
            )
            .optional()
    }
}

pub fn action_name(a: herald_core::actions::ActionKind) -> &'static str {
    match a {
        herald_core::actions::ActionKind::Replay => "replay",
        herald_core::actions::ActionKind::Discard => "discard",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn routed(dest: &str, id: &str, at: i64) -> Row {
        Row::Routed {
            destination: dest.into(),
            event_id: id.into(),
            event_type: "order.created".into(),
            tenant: None,
            source: "/shop".into(),
            routed_at: at,
            produced_at: Some(at - 5),
        }
    }

    pub fn attempt(dest: &str, id: &str, n: i32, at: i64, outcome: &str) -> Row {
        Row::Attempt {
            destination: dest.into(),
            event_id: id.into(),
            event_type: "order.created".into(),
            attempt: n,
            at,
            outcome: outcome.into(),
            error_class: (outcome != "delivered").then(|| "http-5xx".into()),
            status: Some(if outcome == "delivered" { 204 } else { 503 }),
            latency_ms: 12,
            excerpt: None,
            next_topic: (outcome == "retry").then(|| format!("herald.dest.{dest}.retry.30s")),
            trace_id: Some("abc".into()),
        }
    }

    #[test]
    fn a_batch_and_its_positions_commit_together_and_rereads_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let mut s = Store::open(&path).unwrap();
        let rows = vec![
            routed("crm", "e1", 100),
            attempt("crm", "e1", 1, 110, "delivered"),
        ];
        let next = HashMap::from([(("herald.attempts".to_string(), 0), 8)]);
        assert_eq!(s.apply(&rows, &next).unwrap(), 2);
        // The same records read again after a crash: nothing new.
        assert_eq!(s.apply(&rows, &next).unwrap(), 0);
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.position("herald.attempts", 0).unwrap(), Some(8));
        assert_eq!(s.counts().unwrap()["attempts"], 1);
    }

    #[test]
    fn expiry_deletes_old_rows_only() {
        let mut s = Store::open(Path::new(":memory:")).unwrap();
        let rows = vec![routed("crm", "old", 100), routed("crm", "new", 1000)];
        s.apply(&rows, &HashMap::new()).unwrap();
        assert_eq!(s.expire(500).unwrap(), 1);
        assert_eq!(s.counts().unwrap()["routed"], 1);
    }
}
