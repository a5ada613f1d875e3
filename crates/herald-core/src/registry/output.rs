//! `output.format = "registry"`: Herald's own records (deliveries, attempts,
//! dead letters, ledger entries) in the Confluent wire format, their schemas
//! registered under `<topic>-value` (the registry's default
//! `TopicNameStrategy`), so registry-aware consumers — Kafka Connect,
//! ksqlDB, Flink, confluent-kafka's `AvroDeserializer` — read Herald's
//! topics without `schemas/`.
//!
//! Each service calls [`init`] once at start-up: it registers the bundled
//! schemas under every subject the configuration's topics name (idempotent:
//! the registry answers with the existing id), and learns the other
//! versions registered under those subjects (older or newer Herald
//! releases), which it reads by schema resolution. The codec
//! ([`crate::codec::AvroRecord`]) then frames what it writes with the
//! registered id and reads both framings, so a topic written before the
//! switch stays readable.

use super::{value_subject, RegistryClient};
use crate::codec::{AvroRecord, ATTEMPT_AVSC, DEAD_LETTER_AVSC, DELIVERY_AVSC, LEDGER_AVSC};
use crate::config::{Config, OutputFormat};
use crate::envelope::{Attempt, DeadLetter, Delivery, LedgerEntry};
use anyhow::Context;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use std::collections::HashMap;
use std::sync::OnceLock;
use tracing::{info, warn};

/// How to read a record framed with a given id.
pub enum Reader {
    /// The id of the bundled schema: the record type's own reader.
    Own,
    /// Another version of the record's schema, resolved to the bundled one.
    Resolving(GenericDatumReader<'static>),
}

struct Framing {
    /// The id each record type is written with.
    own: HashMap<&'static str, u32>,
    /// Every id Herald can read, with the record type it belongs to.
    readers: HashMap<u32, (&'static str, Reader)>,
}

static FRAMING: OnceLock<Framing> = OnceLock::new();

/// The id records of type `name` are framed with; `None` when Herald
/// writes single-object encoding.
pub fn own_id(name: &str) -> Option<u32> {
    FRAMING.get()?.own.get(name).copied()
}

/// How to read a record of type `name` framed with `id`.
pub fn reader(name: &str, id: u32) -> Option<&'static Reader> {
    match FRAMING.get()?.readers.get(&id) {
        Some((n, r)) if *n == name => Some(r),
        _ => None,
    }
}

/// Every (subject, record type, schema) the configuration's topics need.
pub fn subjects(config: &Config) -> Vec<(String, &'static str, &'static str)> {
    let names = config.topic_names();
    let mut out = vec![(
        value_subject(&names.attempts()),
        Attempt::NAME,
        ATTEMPT_AVSC,
    )];
    for (d, dc) in &config.destinations {
        out.push((value_subject(&names.dest(d)), Delivery::NAME, DELIVERY_AVSC));
        for tier in &dc.retry.tiers {
            out.push((
                value_subject(&names.retry(d, *tier)),
                Delivery::NAME,
                DELIVERY_AVSC,
            ));
        }
        out.push((
            value_subject(&names.dlq(d)),
            DeadLetter::NAME,
            DEAD_LETTER_AVSC,
        ));
        out.push((
            value_subject(&names.ledger(d)),
            LedgerEntry::NAME,
            LEDGER_AVSC,
        ));
    }
    out
}

/// Registers Herald's schemas and learns the other registered versions
/// (see the module docs). A no-op unless `output.format = "registry"`; an
/// error (the registry unreachable, refusing, or holding an incompatible
/// version) stops the service at start-up, naming the subject.
pub async fn init(config: &Config) -> anyhow::Result<()> {
    if config.output.format != OutputFormat::Registry || FRAMING.get().is_some() {
        return Ok(());
    }
    let rc = config
        .schema_registry
        .as_ref()
        .context("output.format = \"registry\" needs [schema_registry]")?;
    let client = RegistryClient::from_config(rc)?;
    let mut own: HashMap<&'static str, u32> = HashMap::new();
    let mut readers: HashMap<u32, (&'static str, Reader)> = HashMap::new();
    let subjects = subjects(config);
    for (subject, name, text) in &subjects {
        let id = client.register(subject, text).await.with_context(|| {
            format!("output.format = \"registry\": registering {name} under subject {subject}")
        })?;
        own.entry(name).or_insert(id);
        readers.insert(id, (name, Reader::Own));
    }
    let mut seen_types = std::collections::HashSet::new();
    for (subject, name, _) in &subjects {
        if !seen_types.insert(*name) {
            continue;
        }
        for v in client.versions(subject).await? {
            let Some(sv) = client.version(subject, &v.to_string()).await? else {
                continue;
            };
            if readers.contains_key(&sv.id) {
                continue;
            }
            match resolving(name, &sv.schema) {
                Ok(r) => {
                    readers.insert(sv.id, (name, Reader::Resolving(r)));
                }
                Err(e) => warn!(subject = %subject, version = v, schema_id = sv.id, error = %e,
                    "A registered version of this subject cannot be read by this Herald; records written with it will be refused."),
            }
        }
    }
    info!(url = client.url(), subjects = subjects.len(), ids = ?own,
        "Herald's records are written in the Confluent wire format (output.format = \"registry\").");
    let _ = FRAMING.set(Framing { own, readers });
    Ok(())
}

/// A reader of records written with `text` as the bundled schema of `name`.
fn resolving(name: &str, text: &str) -> Result<GenericDatumReader<'static>, String> {
    let reader: &'static Schema = match name {
        "Delivery" => &Delivery::schema_info().schema,
        "Attempt" => &Attempt::schema_info().schema,
        "DeadLetter" => &DeadLetter::schema_info().schema,
        "LedgerEntry" => &LedgerEntry::schema_info().schema,
        other => return Err(format!("no bundled schema named {other}")),
    };
    let writer = Schema::parse_str(text).map_err(|e| e.to_string())?;
    SchemaCompatibility::can_read(&writer, reader).map_err(|e| e.to_string())?;
    // One leaked schema per registered version: bounded, process-lived.
    let writer: &'static Schema = Box::leak(Box::new(writer));
    GenericDatumReader::builder(writer)
        .reader_schema(reader)
        .build()
        .map_err(|e| e.to_string())
}
