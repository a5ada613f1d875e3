//! The records the suite produces, built without Herald's encoders (as a
//! product backend would build them): structured CloudEvents JSON, binary
//! mode (`ce_*` headers, JSON body), Avro single-object built with
//! apache-avro from `schemas/event.avsc`, plus malformed, oversized and
//! control-character-id records. Each record carries its sequence number
//! in a `chaos-seq` header and, for the ones Herald should refuse, in a
//! `#chaos-<n>#` tag inside the value, so the invalid topic can be matched
//! back to what was produced.

use crate::plan::{Plan, EVENT_TYPES};
use apache_avro::types::Value;
use apache_avro::Schema;
use std::sync::OnceLock;

/// How record `seq` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Structured,
    Binary,
    Avro,
    /// Not JSON at all.
    NotJson,
    /// JSON without the required `type`.
    MissingType,
    /// Binary mode whose body is not JSON.
    BinaryNotJson,
    /// id `a\nb…`: a control character in the identity.
    CtlId,
    /// A valid event of about 1 MB.
    Oversized,
}

impl Kind {
    /// Whether Herald must route it (the rest must be refused or, if Herald
    /// lets them through, at least be settled at every destination).
    pub fn valid(self) -> bool {
        matches!(self, Kind::Structured | Kind::Binary | Kind::Avro)
    }
}

/// One record of the workload.
#[derive(Debug, Clone)]
pub struct Planned {
    pub seq: u64,
    pub kind: Kind,
    pub id: String,
    pub event_type: &'static str,
    pub key: String,
    /// Produced a second time (a producer-side duplicate).
    pub copied: bool,
}

/// What record `seq` of run `run` is.
pub fn planned(plan: &Plan, run: &str, seq: u64) -> Planned {
    let event_type = EVENT_TYPES[(seq % 4) as usize];
    let key = format!("cus_{:04}", seq % 1000);
    let stride = plan
        .events
        .checked_div(plan.oversized)
        .map_or(u64::MAX, |s| s.max(1));
    let kind = if plan.oversized > 0 && seq % stride == stride / 2 + 1 {
        Kind::Oversized
    } else if seq % plan.malformed_every == 7 {
        match (seq / plan.malformed_every) % 3 {
            0 => Kind::NotJson,
            1 => Kind::MissingType,
            _ => Kind::BinaryNotJson,
        }
    } else if seq % plan.ctl_every == 11 {
        Kind::CtlId
    } else {
        match seq % 3 {
            0 => Kind::Structured,
            1 => Kind::Binary,
            _ => Kind::Avro,
        }
    };
    let id = match kind {
        Kind::CtlId => format!("a\nb-{run}-{seq}"),
        _ => format!("{run}-{seq}"),
    };
    // A fixed pseudo-random pick, the same in every run of the same size.
    let roll = (seq.wrapping_mul(2_654_435_761) >> 7) % 10_000;
    let copied = kind.valid() && (roll as f64) < plan.duplicate_share * 10_000.0;
    Planned {
        seq,
        kind,
        id,
        event_type,
        key,
        copied,
    }
}

fn tag(seq: u64) -> String {
    format!("#chaos-{seq}#")
}

/// The sequence number in a value produced by [`encode`], if it has a tag.
pub fn find_tag(value: &[u8]) -> Option<u64> {
    let needle = b"#chaos-";
    let at = value.windows(needle.len()).position(|w| w == needle)?;
    let digits: String = value[at + needle.len()..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|b| *b as char)
        .collect();
    digits.parse().ok()
}

fn data_json(p: &Planned) -> serde_json::Value {
    serde_json::json!({
        "tag": tag(p.seq),
        "amount": 1000 + p.seq % 9000,
        "currency": "eur",
        "customer": {"id": p.key, "email": format!("user{}@example.com", p.seq % 1000)},
    })
}

/// Key, value and headers of record `p`.
pub fn encode(p: &Planned) -> (Vec<u8>, Vec<u8>, Vec<(&'static str, String)>) {
    let time = "2026-01-15T09:30:00.000Z";
    let tenant = format!("tenant-{}", p.seq % 7);
    let mut headers = vec![("chaos-seq", p.seq.to_string())];
    let structured = |data: serde_json::Value, ty: Option<&str>| {
        let mut v = serde_json::json!({
            "specversion": "1.0", "id": p.id, "source": "/chaos",
            "time": time, "subject": p.key, "tenant": tenant, "data": data,
        });
        if let Some(ty) = ty {
            v["type"] = ty.into();
        }
        serde_json::to_vec(&v).expect("JSON serialises")
    };
    let value = match p.kind {
        Kind::Structured | Kind::CtlId => structured(data_json(p), Some(p.event_type)),
        Kind::MissingType => structured(data_json(p), None),
        Kind::Oversized => {
            let mut d = data_json(p);
            d["blob"] = "x".repeat(1024 * 1024).into();
            structured(d, Some(p.event_type))
        }
        Kind::NotJson => format!("{} this is not JSON {{", tag(p.seq)).into_bytes(),
        Kind::Binary | Kind::BinaryNotJson => {
            for (k, v) in [
                ("ce_specversion", "1.0".to_string()),
                ("ce_id", p.id.clone()),
                ("ce_source", "/chaos".into()),
                ("ce_type", p.event_type.into()),
                ("ce_time", time.into()),
                ("ce_subject", p.key.clone()),
                ("ce_tenant", tenant.clone()),
                ("content-type", "application/json".into()),
            ] {
                headers.push((k, v));
            }
            if p.kind == Kind::Binary {
                serde_json::to_vec(&data_json(p)).expect("JSON serialises")
            } else {
                format!("{} <not json>", tag(p.seq)).into_bytes()
            }
        }
        Kind::Avro => avro_event(p, time, &tenant),
    };
    (p.key.clone().into_bytes(), value, headers)
}

fn event_schema() -> &'static (Schema, [u8; 10]) {
    static S: OnceLock<(Schema, [u8; 10])> = OnceLock::new();
    S.get_or_init(|| {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/event.avsc"),
        )
        .unwrap_or_else(|_| herald_core::codec::EVENT_AVSC.to_string());
        let schema = Schema::parse_str(&text).expect("schemas/event.avsc parses");
        let fp = schema.fingerprint::<apache_avro::rabin::Rabin>();
        let mut header = [0u8; 10];
        header[0] = 0xC3;
        header[1] = 0x01;
        header[2..].copy_from_slice(&fp.bytes);
        (schema, header)
    })
}

/// Avro single-object encoding: `C3 01`, the schema's CRC-64-AVRO
/// fingerprint (little-endian), then the datum.
fn avro_event(p: &Planned, time: &str, tenant: &str) -> Vec<u8> {
    let (schema, header) = event_schema();
    let some = |s: &str| Value::Union(1, Box::new(Value::String(s.to_string())));
    let record = Value::Record(vec![
        ("id".into(), Value::String(p.id.clone())),
        ("source".into(), Value::String("/chaos".into())),
        ("type".into(), Value::String(p.event_type.into())),
        ("time".into(), some(time)),
        ("subject".into(), some(&p.key)),
        ("tenant".into(), some(tenant)),
        ("data".into(), Value::String(data_json(p).to_string())),
    ]);
    let mut out = header.to_vec();
    apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .build()
        .expect("event schema resolves")
        .write_value(&mut out, record)
        .expect("event datum encodes");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::codec::decode_input;

    fn decode(p: &Planned) -> Result<herald_core::envelope::Event, String> {
        let (_, value, headers) = encode(p);
        decode_input(
            Some(&value),
            |n| {
                headers
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.as_str())
            },
            &Default::default(),
        )
        .map_err(|e| e.reason().to_string())
    }

    #[test]
    fn every_kind_decodes_as_intended_by_herald() {
        let plan = Plan::quick(Some(3000));
        let mut seen = std::collections::HashSet::new();
        for seq in 0..3000 {
            let p = planned(&plan, "run", seq);
            seen.insert(p.kind);
            if p.kind.valid() {
                let e = decode(&p).unwrap_or_else(|r| panic!("{:?} refused: {r}", p.kind));
                assert_eq!(e.id, p.id);
                assert_eq!(e.r#type, p.event_type);
            }
            if matches!(
                p.kind,
                Kind::NotJson | Kind::MissingType | Kind::BinaryNotJson
            ) {
                assert!(decode(&p).is_err(), "{:?} accepted", p.kind);
                assert_eq!(find_tag(&encode(&p).1), Some(seq));
            }
        }
        assert_eq!(seen.len(), 8, "every kind occurs: {seen:?}");
    }
}
