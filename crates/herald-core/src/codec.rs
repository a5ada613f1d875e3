//! Avro codecs for Herald's records, and decoding of product events from the
//! input topic.
//!
//! Herald's own records use Avro single-object encoding (`C3 01`, the 8-byte
//! little-endian CRC-64-AVRO fingerprint of the writer schema, then the
//! datum), so any consumer holding `schemas/` can decode them without a
//! registry.

use crate::envelope::{Attempt, DeadLetter, Delivery, Event, LedgerEntry};
use crate::headers;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::OnceLock;

pub const EVENT_AVSC: &str = include_str!("../../../schemas/event.avsc");
pub const DELIVERY_AVSC: &str = include_str!("../../../schemas/delivery.avsc");
pub const ATTEMPT_AVSC: &str = include_str!("../../../schemas/attempt.avsc");
pub const DEAD_LETTER_AVSC: &str = include_str!("../../../schemas/dead_letter.avsc");
pub const LEDGER_AVSC: &str = include_str!("../../../schemas/ledger.avsc");

/// Earlier versions of the schemas (`schemas/history/<name>.v<n>.avsc`):
/// records written with them, still on the topics after an upgrade, are
/// read by Avro schema resolution into today's types. A change to a schema
/// copies its previous text here first; `herald schemas check` and the
/// tests hold every entry BACKWARD compatible with the current schema.
pub const HISTORY: &[(&str, &str)] = &[
    (
        "delivery.v1.avsc",
        include_str!("../../../schemas/history/delivery.v1.avsc"),
    ),
    (
        "dead_letter.v1.avsc",
        include_str!("../../../schemas/history/dead_letter.v1.avsc"),
    ),
];

/// Avro single-object encoding marker.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("not Avro single-object encoded (no C3 01 marker) nor registry-framed")]
    NotSingleObject,
    #[error("registry schema id {0} is not a {1} schema this Herald registered or learned at start-up (output.format = \"registry\")")]
    UnknownSchemaId(u32, &'static str),
    #[error("writer schema fingerprint {0} is not a {1} schema Herald knows")]
    UnknownFingerprint(String, &'static str),
    #[error("Avro: {0}")]
    Avro(#[from] apache_avro::Error),
}

/// A parsed schema with its single-object header.
pub struct SchemaInfo {
    pub schema: Schema,
    /// `C3 01` + little-endian Rabin fingerprint.
    pub header: [u8; 10],
}

fn load(text: &str) -> SchemaInfo {
    let schema = Schema::parse_str(text).expect("bundled schema parses");
    let fp = schema.fingerprint::<apache_avro::rabin::Rabin>();
    let mut header = [0u8; 10];
    header[..2].copy_from_slice(&SINGLE_OBJECT_MAGIC);
    header[2..].copy_from_slice(&fp.bytes);
    SchemaInfo { schema, header }
}

/// A record type backed by one bundled `.avsc` file.
pub trait AvroRecord: Serialize + DeserializeOwned {
    const NAME: &'static str;
    fn schema_info() -> &'static SchemaInfo;
    /// The writer and reader for the schema, built once: building one
    /// resolves every name in the schema, which cost more than the encoding
    /// itself when done per record (the router encodes one Delivery per
    /// destination per event).
    fn writer() -> &'static GenericDatumWriter<'static>;
    fn reader() -> &'static GenericDatumReader<'static>;
    /// Readers of the schema's earlier versions ([`HISTORY`]), by their
    /// single-object header, resolving to the current schema.
    fn history() -> &'static [([u8; 10], GenericDatumReader<'static>)];

    /// Serialises straight to Avro with the schema-aware serializer, without
    /// building an intermediate `Value` tree and resolving it against the
    /// schema (byte-for-byte the same output; see the tests).
    /// Framed as single-object encoding, or in the Confluent wire format
    /// once [`crate::registry::output::init`] registered the schema.
    fn to_avro(&self) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(256);
        match crate::registry::output::own_id(Self::NAME) {
            Some(id) => {
                out.push(crate::registry::WIRE_MAGIC);
                out.extend_from_slice(&id.to_be_bytes());
            }
            None => out.extend_from_slice(&Self::schema_info().header),
        }
        Self::writer().write_ser(&mut out, self)?;
        Ok(out)
    }

    /// Reads either framing; a registry-framed record needs its id known
    /// to [`crate::registry::output`].
    fn from_avro(bytes: &[u8]) -> Result<Self, CodecError> {
        if let Some((id, mut body)) = crate::registry::unframe(bytes) {
            use crate::registry::output::{reader, Reader};
            let value = match reader(Self::NAME, id) {
                Some(Reader::Own) => Self::reader().read_value(&mut body)?,
                Some(Reader::Resolving(r)) => r.read_value(&mut body)?,
                None => return Err(CodecError::UnknownSchemaId(id, Self::NAME)),
            };
            return Ok(apache_avro::from_value(&value)?);
        }
        let info = Self::schema_info();
        if bytes.len() < 10 || bytes[..2] != SINGLE_OBJECT_MAGIC {
            return Err(CodecError::NotSingleObject);
        }
        let mut body = &bytes[10..];
        let value = if bytes[..10] == info.header {
            Self::reader().read_value(&mut body)?
        } else if let Some((_, r)) = Self::history().iter().find(|(h, _)| h[..] == bytes[..10]) {
            r.read_value(&mut body)?
        } else {
            return Err(CodecError::UnknownFingerprint(
                hex(&bytes[2..10]),
                Self::NAME,
            ));
        };
        Ok(apache_avro::from_value(&value)?)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

macro_rules! avro_record {
    ($ty:ty, $name:literal, $text:expr) => {
        avro_record!($ty, $name, $text, []);
    };
    ($ty:ty, $name:literal, $text:expr, [$($old:literal),*]) => {
        impl AvroRecord for $ty {
            const NAME: &'static str = $name;
            fn schema_info() -> &'static SchemaInfo {
                static INFO: OnceLock<SchemaInfo> = OnceLock::new();
                INFO.get_or_init(|| load($text))
            }
            fn writer() -> &'static GenericDatumWriter<'static> {
                static WRITER: OnceLock<GenericDatumWriter<'static>> = OnceLock::new();
                WRITER.get_or_init(|| {
                    GenericDatumWriter::builder(&Self::schema_info().schema)
                        .build()
                        .expect("bundled schema resolves")
                })
            }
            fn reader() -> &'static GenericDatumReader<'static> {
                static READER: OnceLock<GenericDatumReader<'static>> = OnceLock::new();
                READER.get_or_init(|| {
                    GenericDatumReader::builder(&Self::schema_info().schema)
                        .build()
                        .expect("bundled schema resolves")
                })
            }
            fn history() -> &'static [([u8; 10], GenericDatumReader<'static>)] {
                static HISTORY_READERS: OnceLock<Vec<([u8; 10], GenericDatumReader<'static>)>> =
                    OnceLock::new();
                HISTORY_READERS.get_or_init(|| {
                    [$($old),*]
                        .iter()
                        .map(|file: &&str| {
                            let text = history_text(file);
                            // Built once per process; lives as long as it.
                            let old: &'static SchemaInfo = Box::leak(Box::new(load(text)));
                            let reader = GenericDatumReader::builder(&old.schema)
                                .reader_schema(&Self::schema_info().schema)
                                .build()
                                .expect("a schema history entry resolves to the current schema");
                            (old.header, reader)
                        })
                        .collect()
                })
            }
        }
    };
}

fn history_text(file: &str) -> &'static str {
    HISTORY
        .iter()
        .find(|(f, _)| *f == file)
        .map(|(_, t)| *t)
        .expect("listed in HISTORY")
}

avro_record!(Event, "Event", EVENT_AVSC);
avro_record!(Delivery, "Delivery", DELIVERY_AVSC, ["delivery.v1.avsc"]);
avro_record!(Attempt, "Attempt", ATTEMPT_AVSC);
avro_record!(
    DeadLetter,
    "DeadLetter",
    DEAD_LETTER_AVSC,
    ["dead_letter.v1.avsc"]
);
avro_record!(LedgerEntry, "LedgerEntry", LEDGER_AVSC);

/// Why an input record was refused. `as_str` values are the low-cardinality
/// `herald-invalid-reason` header values and metric labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidInput {
    /// Not JSON, not Avro, or an unknown Avro writer schema.
    Decode(String),
    /// Decodes, but breaks the event contract (missing attribute, bad time…).
    Schema(String),
    /// An empty value (a tombstone) where an event was expected.
    Empty,
    /// `id` or `source` cannot travel as an HTTP header value (`webhook-id`,
    /// `ce_source`): control characters, or `id` not visible ASCII.
    Id(String),
    /// Framed for a Schema Registry that could not tell its schema (not
    /// configured, or unreachable for longer than `outage_hold`).
    Registry(String),
}

impl InvalidInput {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Decode(_) => "decode",
            Self::Schema(_) => "schema",
            Self::Empty => "empty",
            Self::Id(_) => "id",
            Self::Registry(_) => "registry",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::Decode(m) | Self::Schema(m) | Self::Id(m) | Self::Registry(m) => m.clone(),
            Self::Empty => "record has no value".into(),
        }
    }
}

/// Every reason label, for metrics and docs.
pub const INVALID_REASONS: [&str; 5] = ["decode", "schema", "empty", "id", "registry"];

/// Decodes a product event from an input record. Accepts, in this order:
/// CloudEvents binary mode (`ce_*` headers, JSON value), Avro single-object
/// encoding of `schemas/event.avsc`, Avro in the Confluent wire format with
/// a writer schema from `registry` (resolved against `schemas/event.avsc`),
/// and CloudEvents structured JSON.
pub fn decode_input<'a>(
    value: Option<&[u8]>,
    header: impl Fn(&str) -> Option<&'a str>,
    registry: &crate::registry::WriterSchemas,
) -> Result<Event, InvalidInput> {
    let value = value.filter(|v| !v.is_empty()).ok_or(InvalidInput::Empty)?;
    let event = if header(headers::CE_SPECVERSION).is_some() || header(headers::CE_TYPE).is_some() {
        let data: serde_json::Value = serde_json::from_slice(value)
            .map_err(|e| InvalidInput::Decode(format!("binary-mode value is not JSON: {e}")))?;
        let attr = |n: &str| header(n).map(str::to_string);
        Event {
            id: attr(headers::CE_ID).unwrap_or_default(),
            source: attr(headers::CE_SOURCE).unwrap_or_default(),
            r#type: attr(headers::CE_TYPE).unwrap_or_default(),
            time: attr(headers::CE_TIME),
            subject: attr(headers::CE_SUBJECT),
            tenant: attr(headers::CE_TENANT),
            data: data.to_string(),
        }
    } else if value.starts_with(&SINGLE_OBJECT_MAGIC) {
        let e = Event::from_avro(value).map_err(|e| InvalidInput::Decode(e.to_string()))?;
        serde_json::from_str::<serde_json::Value>(&e.data)
            .map_err(|err| InvalidInput::Schema(format!("Avro event data is not JSON: {err}")))?;
        e
    } else if let Some((id, body)) = crate::registry::unframe(value) {
        let e = registry.decode(id, body)?;
        serde_json::from_str::<serde_json::Value>(&e.data)
            .map_err(|err| InvalidInput::Schema(format!("Avro event data is not JSON: {err}")))?;
        e
    } else {
        structured_json(value)?
    };
    validate_event(&event)?;
    Ok(event)
}

fn structured_json(value: &[u8]) -> Result<Event, InvalidInput> {
    let v: serde_json::Value = serde_json::from_slice(value)
        .map_err(|e| InvalidInput::Decode(format!("value is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| InvalidInput::Schema("event must be a JSON object".into()))?;
    let text = |k: &str| -> Result<Option<String>, InvalidInput> {
        match obj.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(InvalidInput::Schema(format!(
                "attribute `{k}` must be a string"
            ))),
        }
    };
    if let Some(sv) = text("specversion")? {
        if sv != "1.0" {
            return Err(InvalidInput::Schema(format!(
                "unsupported CloudEvents specversion `{sv}` (want 1.0)"
            )));
        }
    }
    Ok(Event {
        id: text("id")?.unwrap_or_default(),
        source: text("source")?.unwrap_or_default(),
        r#type: text("type")?.unwrap_or_default(),
        time: text("time")?,
        subject: text("subject")?,
        tenant: text("tenant")?,
        data: obj
            .get("data")
            .cloned()
            .unwrap_or(serde_json::Value::Null)
            .to_string(),
    })
}

/// The event contract every input must meet, whatever its encoding.
pub fn validate_event(e: &Event) -> Result<(), InvalidInput> {
    for (name, v) in [("id", &e.id), ("source", &e.source), ("type", &e.r#type)] {
        if v.trim().is_empty() {
            return Err(InvalidInput::Schema(format!(
                "required attribute `{name}` is missing or empty"
            )));
        }
    }
    if e.id.len() > 256 {
        return Err(InvalidInput::Schema(
            "attribute `id` is longer than 256 bytes".into(),
        ));
    }
    // `id` becomes the `webhook-id` HTTP header and a Kafka header; `source`
    // a header too. Control characters break both.
    let visible = |b: u8| b.is_ascii_graphic() || b == b' ';
    if !e.id.bytes().all(visible) || e.id.trim() != e.id {
        return Err(InvalidInput::Id(format!(
            "attribute `id` {:?} may use only visible ASCII characters and inner spaces",
            headers::truncate(&e.id, 64)
        )));
    }
    if e.source.len() > 1024 || e.source.chars().any(char::is_control) {
        return Err(InvalidInput::Id(format!(
            "attribute `source` {:?} must be at most 1024 bytes without control characters",
            headers::truncate(&e.source, 64)
        )));
    }
    if !e
        .r#type
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-:/".contains(&b))
    {
        return Err(InvalidInput::Schema(format!(
            "attribute `type` `{}` may use only letters, digits and . _ - : /",
            headers::truncate(&e.r#type, 64)
        )));
    }
    if let Some(t) = &e.time {
        if !looks_like_rfc3339(t) {
            return Err(InvalidInput::Schema(format!(
                "attribute `time` `{}` is not an RFC 3339 timestamp",
                headers::truncate(t, 64)
            )));
        }
    }
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, checked by shape and ranges.
fn looks_like_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|x| x.iter().all(u8::is_ascii_digit))
    };
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(99);
    if !(1..=12).contains(&num(5..7))
        || !(1..=31).contains(&num(8..10))
        || num(11..13) > 23
        || num(14..16) > 59
        || num(17..19) > 60
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &s[i..] {
        "Z" | "z" => true,
        tz => {
            let t = tz.as_bytes();
            t.len() == 6
                && (t[0] == b'+' || t[0] == b'-')
                && t[1..3].iter().all(u8::is_ascii_digit)
                && t[3] == b':'
                && t[4..6].iter().all(u8::is_ascii_digit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::AttemptError;
    use apache_avro::types::Value;

    pub(crate) fn sample_event() -> Event {
        Event {
            id: "evt_1".into(),
            source: "/billing".into(),
            r#type: "payment.failed".into(),
            time: Some("2026-11-23T10:00:00Z".into()),
            subject: Some("cus_42".into()),
            tenant: None,
            data: r#"{"amount":1200,"currency":"eur"}"#.into(),
        }
    }

    fn sample_delivery() -> Delivery {
        Delivery {
            event: sample_event(),
            destination: "crm".into(),
            attempts: 2,
            routed_at: 1_700_000_000_000,
            first_attempt_at: Some(1_700_000_000_100),
            due_at: 1_700_000_030_000,
            origin_topic: "events".into(),
            origin_partition: 3,
            origin_offset: 99,
            history: vec![AttemptError {
                attempt: 1,
                at: 1_700_000_000_100,
                error_class: "http-5xx".into(),
                status: Some(503),
                message: "upstream busy".into(),
            }],
            produced_at: None,
        }
    }

    fn sample_attempt() -> Attempt {
        Attempt {
            event_id: "evt_1".into(),
            event_type: "payment.failed".into(),
            destination: "crm".into(),
            attempt: 1,
            at: 1,
            outcome: "retry".into(),
            error_class: Some("timeout".into()),
            status: None,
            latency_ms: 5000,
            excerpt: None,
            next_topic: Some("herald.dest.crm.retry.30s".into()),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        }
    }

    fn sample_dead_letter() -> DeadLetter {
        DeadLetter {
            delivery: sample_delivery(),
            reason: "exhausted".into(),
            dead_at: 2,
        }
    }

    fn sample_ledger_entry() -> LedgerEntry {
        LedgerEntry {
            identity: "0123456789abcdef0123456789abcdef".into(),
            event_id: "evt_1".into(),
            source: "/billing".into(),
            state: crate::envelope::LedgerState::Delivered,
            attempts: 2,
            at: 1_700_000_000_200,
        }
    }

    fn round_trip<T: AvroRecord + PartialEq + std::fmt::Debug>(v: T) {
        let bytes = v.to_avro().unwrap();
        assert_eq!(&bytes[..2], &SINGLE_OBJECT_MAGIC);
        assert_eq!(T::from_avro(&bytes).unwrap(), v);
        // The schema-aware serializer writes exactly what the generic
        // path (value tree, resolved against the schema, validated) writes.
        let info = T::schema_info();
        let value = apache_avro::to_value(&v)
            .unwrap()
            .resolve(&info.schema)
            .unwrap();
        let mut generic = info.header.to_vec();
        GenericDatumWriter::builder(&info.schema)
            .build()
            .unwrap()
            .write_value(&mut generic, value)
            .unwrap();
        assert_eq!(bytes, generic);
    }

    #[test]
    fn avro_round_trips() {
        round_trip(sample_event());
        round_trip(Event {
            time: None,
            subject: None,
            tenant: Some("acme".into()),
            ..sample_event()
        });
        round_trip(sample_delivery());
        round_trip(Delivery {
            first_attempt_at: None,
            history: vec![],
            ..sample_delivery()
        });
        round_trip(sample_attempt());
        round_trip(sample_dead_letter());
        for state in crate::envelope::LedgerState::ALL {
            round_trip(LedgerEntry {
                state,
                ..sample_ledger_entry()
            });
        }
    }

    /// Field names of a record value, recursively, as `a`, `a.b`, ….
    fn value_fields(v: &Value, prefix: &str, out: &mut Vec<String>) {
        match v {
            Value::Record(fields) => {
                for (name, inner) in fields {
                    let path = format!("{prefix}{name}");
                    out.push(path.clone());
                    value_fields(inner, &format!("{path}."), out);
                }
            }
            Value::Union(_, inner) => value_fields(inner, prefix, out),
            Value::Array(items) => {
                if let Some(first) = items.first() {
                    value_fields(first, prefix, out)
                }
            }
            _ => {}
        }
    }

    fn schema_fields(s: &Schema, prefix: &str, out: &mut Vec<String>) {
        match s {
            Schema::Record(r) => {
                for f in &r.fields {
                    let path = format!("{prefix}{}", f.name);
                    out.push(path.clone());
                    schema_fields(&f.schema, &format!("{path}."), out);
                }
            }
            Schema::Union(u) => {
                for v in u.variants() {
                    schema_fields(v, prefix, out)
                }
            }
            Schema::Array(a) => schema_fields(&a.items, prefix, out),
            _ => {}
        }
    }

    /// Fails when a Rust type and its `.avsc` disagree on any field, in
    /// either direction, or on a field's type.
    fn assert_no_drift<T: AvroRecord>(sample: &T) {
        let info = T::schema_info();
        let value = apache_avro::to_value(sample).unwrap();
        let mut from_code = Vec::new();
        value_fields(&value, "", &mut from_code);
        let mut from_schema = Vec::new();
        schema_fields(&info.schema, "", &mut from_schema);
        from_code.sort();
        from_schema.sort();
        assert_eq!(from_code, from_schema, "{} drifted from its .avsc", T::NAME);
        let resolved = value.resolve(&info.schema).unwrap();
        assert!(resolved.validate(&info.schema), "{} types drifted", T::NAME);
    }

    #[test]
    fn code_and_schemas_agree() {
        assert_no_drift(&sample_event());
        assert_no_drift(&sample_delivery());
        assert_no_drift(&sample_attempt());
        assert_no_drift(&sample_dead_letter());
        assert_no_drift(&sample_ledger_entry());
        // The Rust states and the Avro enum's symbols are the same list.
        let Schema::Record(r) = &LedgerEntry::schema_info().schema else {
            panic!("ledger.avsc is a record")
        };
        let state = r.fields.iter().find(|f| f.name == "state").unwrap();
        let Schema::Enum(e) = &state.schema else {
            panic!("state is an enum")
        };
        let ours: Vec<_> = crate::envelope::LedgerState::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(e.symbols, ours);
    }

    /// Ledgers written before ledger.avsc hold JSON; both forms decode.
    #[test]
    fn ledger_entries_decode_in_both_forms() {
        use crate::envelope::LedgerState;
        let avro = sample_ledger_entry().to_avro().unwrap();
        assert_eq!(LedgerEntry::decode_any(&avro), Some(sample_ledger_entry()));
        let old = LedgerEntry::decode_any(br#"{"state":"delivered","attempts":1,"at":7}"#).unwrap();
        assert_eq!(
            (old.state, old.attempts, old.at, old.identity.as_str()),
            (LedgerState::Delivered, 1, 7, "")
        );
        let old = LedgerEntry::decode_any(br#"{"state":"dead-lettered","attempts":3,"at":1}"#);
        assert_eq!(old.map(|e| e.state), Some(LedgerState::DeadLettered));
        for junk in [
            &b""[..],
            b"{}",
            br#"{"state":"on-the-moon"}"#,
            b"\xC3\x01garbage!!",
            &avro[..avro.len() - 1],
        ] {
            assert_eq!(LedgerEntry::decode_any(junk), None, "{junk:?}");
        }
    }

    /// Records written with a schema's earlier version (`schemas/history`)
    /// read into today's type: the new field takes its default.
    #[test]
    fn records_written_with_a_history_schema_are_read() {
        fn old_bytes<T: AvroRecord>(sample: &T, file: &str) -> Vec<u8> {
            let old = load(history_text(file));
            let value = strip_produced_at(apache_avro::to_value(sample).unwrap());
            let mut out = old.header.to_vec();
            GenericDatumWriter::builder(&old.schema)
                .build()
                .unwrap()
                .write_value(&mut out, value)
                .unwrap();
            out
        }
        fn strip_produced_at(v: apache_avro::types::Value) -> apache_avro::types::Value {
            use apache_avro::types::Value;
            match v {
                Value::Record(f) => Value::Record(
                    f.into_iter()
                        .filter(|(k, _)| k != "produced_at")
                        .map(|(k, v)| (k, strip_produced_at(v)))
                        .collect(),
                ),
                other => other,
            }
        }
        let mut d = sample_delivery();
        d.produced_at = Some(1_700_000_000_000);
        let bytes = old_bytes(&d, "delivery.v1.avsc");
        assert_ne!(
            bytes[..10],
            Delivery::schema_info().header,
            "another fingerprint"
        );
        let read = Delivery::from_avro(&bytes).unwrap();
        assert_eq!(
            read,
            Delivery {
                produced_at: None,
                ..d.clone()
            }
        );
        let dl = DeadLetter {
            delivery: d.clone(),
            reason: "exhausted".into(),
            dead_at: 5,
        };
        let read = DeadLetter::from_avro(&old_bytes(&dl, "dead_letter.v1.avsc")).unwrap();
        assert_eq!(read.delivery.produced_at, None);
        assert_eq!(read.delivery.event, d.event);
        // And today's records carry it.
        assert_eq!(Delivery::from_avro(&d.to_avro().unwrap()).unwrap(), d);
    }

    /// Every history entry stays readable by the current schema of its name.
    #[test]
    fn history_schemas_are_backward_compatible_with_the_current_ones() {
        for (file, text) in HISTORY {
            let current = match file.split('.').next().unwrap() {
                "delivery" => DELIVERY_AVSC,
                "dead_letter" => DEAD_LETTER_AVSC,
                "event" => EVENT_AVSC,
                "attempt" => ATTEMPT_AVSC,
                "ledger" => LEDGER_AVSC,
                other => panic!("history file {other} names no schema"),
            };
            crate::registry::compat::backward(current, text)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }

    /// The Event record embedded in delivery.avsc (and through it in
    /// dead_letter.avsc) must be exactly event.avsc.
    #[test]
    fn embedded_schemas_match_their_files() {
        let event = Event::schema_info().schema.canonical_form();
        let delivery = Delivery::schema_info().schema.canonical_form();
        let dead = DeadLetter::schema_info().schema.canonical_form();
        assert!(delivery.contains(&event));
        assert!(dead.contains(&delivery));
    }

    #[test]
    fn wrong_schema_is_refused() {
        let bytes = sample_attempt().to_avro().unwrap();
        let err = Delivery::from_avro(&bytes).unwrap_err();
        assert!(
            matches!(err, CodecError::UnknownFingerprint(_, "Delivery")),
            "{err}"
        );
        assert!(matches!(
            Delivery::from_avro(b"{}"),
            Err(CodecError::NotSingleObject)
        ));
    }

    fn no_headers(_: &str) -> Option<&'static str> {
        None
    }

    #[test]
    fn structured_json_decodes() {
        let e = decode_input(
            Some(br#"{"specversion":"1.0","id":"1","source":"/s","type":"user.signed_up","time":"2026-01-02T03:04:05.123+01:00","tenant":"acme","data":{"a":1}}"#),
            no_headers,
            &Default::default(),
        )
        .unwrap();
        assert_eq!(e.r#type, "user.signed_up");
        assert_eq!(e.tenant.as_deref(), Some("acme"));
        assert_eq!(e.data, r#"{"a":1}"#);
    }

    #[test]
    fn binary_mode_decodes() {
        let h = |n: &str| match n {
            "ce_specversion" => Some("1.0"),
            "ce_id" => Some("9"),
            "ce_source" => Some("/b"),
            "ce_type" => Some("payment.failed"),
            _ => None,
        };
        let e = decode_input(Some(br#"{"x":true}"#), h, &Default::default()).unwrap();
        assert_eq!((e.id.as_str(), e.r#type.as_str()), ("9", "payment.failed"));
    }

    #[test]
    fn avro_input_decodes() {
        let bytes = sample_event().to_avro().unwrap();
        assert_eq!(
            decode_input(Some(&bytes), no_headers, &Default::default()).unwrap(),
            sample_event()
        );
    }

    #[test]
    fn registry_framed_input_decodes_with_its_writer_schema() {
        let mut schemas = crate::registry::WriterSchemas::default();
        let framed = |id| {
            let mut body = Vec::new();
            Event::writer()
                .write_ser(&mut body, &sample_event())
                .unwrap();
            crate::registry::frame(id, &body)
        };
        let e = decode_input(Some(&framed(42)), no_headers, &schemas).unwrap_err();
        assert_eq!(e.reason(), "registry");
        schemas.learn(42, Ok(EVENT_AVSC.into()), std::time::Instant::now());
        assert_eq!(
            decode_input(Some(&framed(42)), no_headers, &schemas).unwrap(),
            sample_event()
        );
    }

    #[test]
    fn bad_input_is_classified() {
        let r = |v: &[u8]| {
            decode_input(Some(v), no_headers, &Default::default())
                .unwrap_err()
                .reason()
        };
        assert_eq!(r(b"not json"), "decode");
        assert_eq!(r(&[0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9]), "decode");
        assert_eq!(r(br#"[1,2]"#), "schema");
        assert_eq!(r(br#"{"id":"1","source":"/s"}"#), "schema");
        assert_eq!(r(br#"{"id":"1","source":"/s","type":"a b"}"#), "schema");
        assert_eq!(
            r(br#"{"id":"1","source":"/s","type":"a","time":"yesterday"}"#),
            "schema"
        );
        assert_eq!(
            r(br#"{"id":"1","source":"/s","type":"a","specversion":"0.3"}"#),
            "schema"
        );
        assert_eq!(r(br#"{"id":1,"source":"/s","type":"a"}"#), "schema");
        assert_eq!(
            decode_input(None, no_headers, &Default::default())
                .unwrap_err()
                .reason(),
            "empty"
        );
    }

    #[test]
    fn ids_and_sources_must_be_header_safe() {
        let reason = |id: &str, source: &str| {
            let v = serde_json::json!({"id": id, "source": source, "type": "t.x", "data": {}});
            match decode_input(
                Some(v.to_string().as_bytes()),
                no_headers,
                &Default::default(),
            ) {
                Ok(_) => "ok",
                Err(e) => e.reason(),
            }
        };
        assert_eq!(reason("evt 1:a/b", "/s"), "ok");
        assert_eq!(reason("evt\n1", "/s"), "id");
        assert_eq!(reason("evt\r1", "/s"), "id");
        assert_eq!(reason("évt", "/s"), "id");
        assert_eq!(reason(" evt", "/s"), "id");
        assert_eq!(reason("evt", "/s\u{7}"), "id");
        assert_eq!(reason("evt", &"s".repeat(1025)), "id");
        assert_eq!(reason("evt", "/é"), "ok");
    }

    #[test]
    fn rfc3339_shapes() {
        for ok in [
            "2026-11-23T10:00:00Z",
            "2026-11-23T10:00:00.5+02:00",
            "2026-11-23t10:00:00z",
        ] {
            assert!(looks_like_rfc3339(ok), "{ok}");
        }
        for bad in [
            "2026-13-23T10:00:00Z",
            "2026-11-23",
            "2026-11-23T10:00:00",
            "2026-11-23T10:00:00.Z",
            "2026-11-23T25:00:00Z",
        ] {
            assert!(!looks_like_rfc3339(bad), "{bad}");
        }
    }
}
