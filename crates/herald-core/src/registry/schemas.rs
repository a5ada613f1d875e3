//! The writer schemas of registry-framed input events, by id, and decoding
//! against Herald's reader schema (`schemas/event.avsc`) by Avro schema
//! resolution: a writer one version newer (an added field) or older (a
//! field the reader defaults) reads as an [`Event`].
//!
//! Pure: the router fetches what [`WriterSchemas::missing`] names and hands
//! the answers to [`WriterSchemas::learn`].

use super::RegistryError;
use crate::codec::{AvroRecord, InvalidInput};
use crate::envelope::Event;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// How long an id the registry does not know stays refused before it is
/// asked again (a registry follower may lag its leader by a moment).
pub const NOT_FOUND_TTL: Duration = Duration::from_secs(30);

/// How long an id whose lookup outlasted `outage_hold` stays settled as
/// unavailable: its records go to the invalid topic without another hold
/// (the router re-reads the batch it held), then the next record with that
/// id tries the registry again.
pub const SETTLED_TTL: Duration = Duration::from_secs(30);

enum Known {
    /// Writer schema resolved against the reader's, built once per id.
    Readable(GenericDatumReader<'static>),
    /// Not in the registry, not Avro, or not readable as an Event.
    Refused { why: String, until: Option<Instant> },
}

#[derive(Default)]
pub struct WriterSchemas {
    known: HashMap<u32, Known>,
    /// Ids the registry could not be asked about: why, and until when
    /// that is final ([`WriterSchemas::settle`]); unsettled entries last
    /// one batch.
    unavailable: HashMap<u32, (String, Option<Instant>)>,
}

impl WriterSchemas {
    /// Ids among `values` (registry-framed or not) that need a lookup.
    pub fn missing<'a>(
        &self,
        values: impl IntoIterator<Item = &'a [u8]>,
        now: Instant,
    ) -> BTreeSet<u32> {
        values
            .into_iter()
            .filter_map(|v| super::unframe(v).map(|(id, _)| id))
            .filter(|id| match self.known.get(id) {
                None => true,
                Some(Known::Refused { until: Some(t), .. }) => *t <= now,
                Some(_) => false,
            })
            .filter(|id| !matches!(self.unavailable.get(id), Some((_, Some(t))) if *t > now))
            .collect()
    }

    /// Records the registry's answer for `id`: a schema is parsed and
    /// checked against the reader schema once, here.
    pub fn learn(&mut self, id: u32, answer: Result<String, RegistryError>, now: Instant) {
        self.unavailable.remove(&id);
        let known = match answer {
            Ok(text) => match readable(id, &text) {
                Ok(r) => Known::Readable(r),
                Err(why) => Known::Refused { why, until: None },
            },
            Err(RegistryError::NotFound(why)) => Known::Refused {
                why,
                until: Some(now + NOT_FOUND_TTL),
            },
            Err(e @ (RegistryError::Unavailable(_) | RegistryError::Refused(_))) => {
                self.unavailable.insert(id, (e.to_string(), None));
                return;
            }
        };
        self.known.insert(id, known);
    }

    /// Forgets the unavailability of the last batch's ids, except ids
    /// settled until after `now`.
    pub fn clear_unavailable(&mut self, now: Instant) {
        self.unavailable
            .retain(|_, (_, until)| until.is_some_and(|t| t > now));
    }

    /// Makes `id`'s unavailability final until `until`: no lookup, its
    /// records are invalid (reason `registry`).
    pub fn settle(&mut self, id: u32, until: Instant) {
        if let Some(e) = self.unavailable.get_mut(&id) {
            e.1 = Some(until);
        }
    }

    /// Ids whose schema is cached (readable or refused).
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Decodes a registry-framed Event body written with schema `id`.
    pub fn decode(&self, id: u32, body: &[u8]) -> Result<Event, InvalidInput> {
        let reader = match self.known.get(&id) {
            Some(Known::Readable(r)) => r,
            Some(Known::Refused { why, .. }) => return Err(InvalidInput::Decode(why.clone())),
            None => {
                return Err(match self.unavailable.get(&id) {
                    Some((why, _)) => InvalidInput::Registry(format!(
                        "schema id {id} could not be looked up: {why}"
                    )),
                    None => InvalidInput::Registry(format!(
                        "record is in the Confluent wire format (schema id {id}) but no \
                         schema_registry is configured"
                    )),
                })
            }
        };
        let mut b = body;
        let value = reader.read_value(&mut b).map_err(|e| {
            InvalidInput::Decode(format!("Avro body does not match schema id {id}: {e}"))
        })?;
        apache_avro::from_value::<Event>(&value)
            .map_err(|e| InvalidInput::Decode(format!("schema id {id}: {e}")))
    }
}

/// Parses a writer schema, checks that Herald's Event schema can read it,
/// and builds the resolving reader. The writer schema is leaked: it lives as
/// long as the cache entry, which is the process's life, and there is one
/// per schema id a producer used.
fn readable(id: u32, text: &str) -> Result<GenericDatumReader<'static>, String> {
    let writer = Schema::parse_str(text)
        .map_err(|e| format!("schema id {id} is not a valid Avro schema: {e}"))?;
    let reader = &Event::schema_info().schema;
    SchemaCompatibility::can_read(&writer, reader).map_err(|e| {
        format!(
            "schema id {id} cannot be read as {}: {e}",
            full_name(reader)
        )
    })?;
    let writer: &'static Schema = Box::leak(Box::new(writer));
    GenericDatumReader::builder(writer)
        .reader_schema(reader)
        .build()
        .map_err(|e| format!("schema id {id} does not resolve: {e}"))
}

fn full_name(s: &Schema) -> String {
    match s {
        Schema::Record(r) => r.name.fullname(None),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::EVENT_AVSC;
    use crate::registry::compat::edit_fields;
    use apache_avro::types::Value;

    /// event.avsc with `tenant` removed (one version older) or with a
    /// `priority` field added (one version newer).
    fn older() -> String {
        edit_fields(EVENT_AVSC, |f| f.retain(|x| x["name"] != "tenant"))
    }

    fn newer() -> String {
        edit_fields(EVENT_AVSC, |f| {
            f.push(serde_json::json!({"name": "priority", "type": "int", "default": 0}))
        })
    }

    fn encode(schema: &str, fields: &[(&str, Value)]) -> Vec<u8> {
        let s = Schema::parse_str(schema).unwrap();
        let mut r = apache_avro::types::Record::new(&s).unwrap();
        for (k, v) in fields {
            r.put(k, v.clone());
        }
        let mut out = Vec::new();
        apache_avro::writer::datum::GenericDatumWriter::builder(&s)
            .build()
            .unwrap()
            .write_value(&mut out, r)
            .unwrap();
        out
    }

    fn base(extra: &[(&'static str, Value)]) -> Vec<(&'static str, Value)> {
        let mut f = vec![
            ("id", Value::String("e1".into())),
            ("source", Value::String("/billing".into())),
            ("type", Value::String("subscription.started".into())),
            ("time", Value::Union(0, Box::new(Value::Null))),
            (
                "subject",
                Value::Union(1, Box::new(Value::String("cus_1".into()))),
            ),
            ("data", Value::String("{\"plan\":\"pro\"}".into())),
        ];
        f.extend_from_slice(extra);
        f
    }

    #[test]
    fn newer_and_older_writers_resolve_to_the_reader() {
        let now = Instant::now();
        let mut s = WriterSchemas::default();
        s.learn(1, Ok(EVENT_AVSC.into()), now);
        s.learn(2, Ok(older()), now);
        s.learn(3, Ok(newer()), now);
        let tenant = (
            "tenant",
            Value::Union(1, Box::new(Value::String("acme".into()))),
        );
        let cur = s
            .decode(1, &encode(EVENT_AVSC, &base(std::slice::from_ref(&tenant))))
            .unwrap();
        assert_eq!(cur.tenant.as_deref(), Some("acme"));
        let old = s.decode(2, &encode(&older(), &base(&[]))).unwrap();
        assert_eq!(
            old.tenant, None,
            "the reader's default fills the missing field"
        );
        assert_eq!(old.subject.as_deref(), Some("cus_1"));
        let new = s
            .decode(
                3,
                &encode(&newer(), &base(&[tenant, ("priority", Value::Int(7))])),
            )
            .unwrap();
        assert_eq!(new.r#type, "subscription.started");
        assert_eq!(new.data, "{\"plan\":\"pro\"}");
        assert_eq!(new.tenant.as_deref(), Some("acme"));
    }

    #[test]
    fn unreadable_unknown_and_unavailable_ids_say_why() {
        let now = Instant::now();
        let mut s = WriterSchemas::default();
        // A writer without a field the reader has no default for.
        let no_data = edit_fields(EVENT_AVSC, |f| f.retain(|x| x["name"] != "data"));
        s.learn(4, Ok(no_data), now);
        let e = s.decode(4, b"").unwrap_err();
        assert_eq!(e.reason(), "decode");
        assert!(
            e.message().contains("cannot be read as dev.herald.Event"),
            "{}",
            e.message()
        );

        s.learn(
            5,
            Err(RegistryError::NotFound("schema id 5: HTTP 404".into())),
            now,
        );
        assert_eq!(s.decode(5, b"").unwrap_err().reason(), "decode");
        assert!(s.missing([&[0u8, 0, 0, 0, 5][..]], now).is_empty());
        assert_eq!(
            s.missing([&[0u8, 0, 0, 0, 5][..]], now + NOT_FOUND_TTL),
            BTreeSet::from([5]),
            "a 404 is asked again after a while"
        );

        s.learn(
            6,
            Err(RegistryError::Unavailable("connection refused".into())),
            now,
        );
        let e = s.decode(6, b"").unwrap_err();
        assert_eq!(e.reason(), "registry");
        assert!(e.message().contains("connection refused"));
        assert_eq!(
            s.missing([&[0u8, 0, 0, 0, 6][..]], now),
            BTreeSet::from([6])
        );

        let none = WriterSchemas::default();
        assert!(none
            .decode(9, b"")
            .unwrap_err()
            .message()
            .contains("no schema_registry"));
    }

    #[test]
    fn a_body_that_does_not_match_its_schema_is_a_decode_error() {
        let mut s = WriterSchemas::default();
        s.learn(1, Ok(EVENT_AVSC.into()), Instant::now());
        let e = s.decode(1, &[0x7f]).unwrap_err();
        assert_eq!(e.reason(), "decode");
    }
}
