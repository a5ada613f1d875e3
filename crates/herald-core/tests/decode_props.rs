//! Property tests of every decoder that reads bytes Herald did not write
//! (or may find damaged): input events in each encoding and their headers,
//! `Retry-After`, and the records an adapter or the CLI reads back.
//!
//! The properties: no input panics; every rejection is an `InvalidInput`
//! with a known reason and a message; everything accepted meets the event
//! contract; and a valid event, in any encoding, decodes to itself.

use herald_core::classify::parse_retry_after;
use herald_core::codec::{decode_input, validate_event, AvroRecord, InvalidInput, INVALID_REASONS};
use herald_core::envelope::{Attempt, DeadLetter, Delivery, Event, LedgerEntry};
use proptest::prelude::*;
use serde_json::Value;

/// Input headers, as the router sees them (UTF-8 values only).
type Headers = Vec<(String, String)>;

fn decode(value: Option<&[u8]>, headers: &Headers) -> Result<Event, InvalidInput> {
    decode_input(
        value,
        |name| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        },
        &Default::default(),
    )
}

/// What must hold for any input: no panic (the call returns), a rejection
/// names a known reason and says why, an acceptance meets the contract.
fn check_any(value: Option<&[u8]>, headers: &Headers) -> Result<(), TestCaseError> {
    match decode(value, headers) {
        Ok(event) => {
            prop_assert!(
                validate_event(&event).is_ok(),
                "accepted an event that breaks the contract: {event:?}"
            );
            prop_assert!(
                serde_json::from_str::<Value>(&event.data).is_ok(),
                "accepted data that is not JSON: {:?}",
                event.data
            );
        }
        Err(e) => {
            prop_assert!(
                INVALID_REASONS.contains(&e.reason()),
                "unknown reason {}",
                e.reason()
            );
            prop_assert!(!e.message().trim().is_empty(), "{e:?} has no message");
        }
    }
    Ok(())
}

// ---- valid events -------------------------------------------------------

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn rfc3339() -> impl Strategy<Value = String> {
    (
        1970u32..2100,
        1u32..=12,
        1u32..=28,
        0u32..24,
        0u32..60,
        0u32..60,
        prop::option::of(0u32..1000),
        prop_oneof![Just("Z".to_string()), Just("+02:00".to_string())],
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, tz)| {
            let frac = frac.map(|f| format!(".{f:03}")).unwrap_or_default();
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{tz}")
        })
}

prop_compose! {
    fn valid_event()(
        id in "[A-Za-z0-9_.:-]{1,40}",
        source in "/[a-z0-9/._-]{0,30}",
        ty in "[a-z]{1,10}\\.[a-z_]{1,10}",
        time in prop::option::of(rfc3339()),
        subject in prop::option::of("[a-z0-9_]{1,12}"),
        tenant in prop::option::of("[a-z0-9-]{1,12}"),
        data in json_value(),
    ) -> Event {
        Event { id, source, r#type: ty, time, subject, tenant, data: data.to_string() }
    }
}

/// The three encodings a producer may use.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    Structured,
    Binary,
    Avro,
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![
        Just(Encoding::Structured),
        Just(Encoding::Binary),
        Just(Encoding::Avro)
    ]
}

fn encode(e: &Event, enc: Encoding) -> (Vec<u8>, Headers) {
    let data: Value = serde_json::from_str(&e.data).expect("sample data is JSON");
    match enc {
        Encoding::Structured => {
            let mut v = serde_json::json!({
                "specversion": "1.0", "id": e.id, "source": e.source, "type": e.r#type,
                "data": data,
            });
            for (k, a) in [
                ("time", &e.time),
                ("subject", &e.subject),
                ("tenant", &e.tenant),
            ] {
                if let Some(a) = a {
                    v[k] = Value::String(a.clone());
                }
            }
            (v.to_string().into_bytes(), vec![])
        }
        Encoding::Binary => {
            let mut hs = vec![
                ("ce_specversion".to_string(), "1.0".to_string()),
                ("ce_id".to_string(), e.id.clone()),
                ("ce_source".to_string(), e.source.clone()),
                ("ce_type".to_string(), e.r#type.clone()),
            ];
            for (k, a) in [
                ("ce_time", &e.time),
                ("ce_subject", &e.subject),
                ("ce_tenant", &e.tenant),
            ] {
                if let Some(a) = a {
                    hs.push((k.to_string(), a.clone()));
                }
            }
            (e.data.clone().into_bytes(), hs)
        }
        Encoding::Avro => (e.to_avro().expect("event encodes"), vec![]),
    }
}

// ---- mutations ----------------------------------------------------------

/// One way to damage an encoded input.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip bit `bit` of the byte at `at` (positions taken modulo length).
    FlipBit { at: usize, bit: u8 },
    /// Keep only the first `len` bytes (modulo length + 1).
    Truncate { len: usize },
    /// Insert bytes at a position.
    Insert { at: usize, bytes: Vec<u8> },
    /// Overwrite from a position with an Avro varint (zig-zag long) that
    /// claims a huge length or count.
    HugeVarint { at: usize, value: i64 },
    /// Replace a byte with one that makes UTF-8 invalid.
    BadUtf8 { at: usize, byte: u8 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (
            any::<usize>(),
            prop_oneof![
                Just(i64::MAX),
                Just(i64::MIN),
                Just(-1i64),
                1i64 << 20..1i64 << 62,
                (1i64 << 62..i64::MAX).prop_map(|v| -v),
            ]
        )
            .prop_map(|(at, value)| Mutation::HugeVarint { at, value }),
        (
            any::<usize>(),
            prop_oneof![Just(0xC0u8), Just(0xFF), Just(0x80), Just(0xED)]
        )
            .prop_map(|(at, byte)| Mutation::BadUtf8 { at, byte }),
    ]
}

/// Avro's zig-zag varint encoding of a long.
fn zigzag(v: i64) -> Vec<u8> {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let pos = |at: usize, len: usize| if len == 0 { 0 } else { at % len };
    match m {
        Mutation::FlipBit { at, bit } => {
            if !bytes.is_empty() {
                let i = pos(*at, bytes.len());
                bytes[i] ^= 1 << bit;
            }
        }
        Mutation::Truncate { len } => bytes.truncate(len % (bytes.len() + 1)),
        Mutation::Insert { at, bytes: ins } => {
            let i = pos(*at, bytes.len() + 1);
            bytes.splice(i..i, ins.iter().copied());
        }
        Mutation::HugeVarint { at, value } => {
            // Past the Avro header when there is one: where lengths live.
            let i = pos(*at, bytes.len() + 1).max(10.min(bytes.len()));
            let v = zigzag(*value);
            let end = (i + v.len()).min(bytes.len());
            bytes.splice(i..end, v);
        }
        Mutation::BadUtf8 { at, byte } => {
            if !bytes.is_empty() {
                let i = pos(*at, bytes.len());
                bytes[i] = *byte;
            }
        }
    }
}

// ---- headers ------------------------------------------------------------

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("ce_specversion".to_string()),
        Just("ce_id".to_string()),
        Just("ce_source".to_string()),
        Just("ce_type".to_string()),
        Just("ce_time".to_string()),
        Just("ce_subject".to_string()),
        Just("ce_tenant".to_string()),
        Just("content-type".to_string()),
        "[a-z_-]{0,12}",
        ".{0,8}",
    ]
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("1.0".to_string()),
        Just("payment.failed".to_string()),
        Just("2026-11-23T10:00:00Z".to_string()),
        "[ -~]{0,40}",
        ".{0,40}",
        "\\PC{200,400}",
    ]
}

fn headers() -> impl Strategy<Value = Headers> {
    prop::collection::vec((header_name(), header_value()), 0..8)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        // A failure prints its minimal input; nothing is written to disk.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_and_headers_never_panic(
        value in prop::option::of(prop::collection::vec(any::<u8>(), 0..512)),
        hs in headers(),
    ) {
        check_any(value.as_deref(), &hs)?;
        check_any(value.as_deref(), &vec![])?;
    }

    /// Bytes that start like an Avro single-object event: past the magic
    /// and fingerprint, anything.
    #[test]
    fn arbitrary_avro_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut bytes = Event::schema_info().header.to_vec();
        bytes.extend_from_slice(&body);
        check_any(Some(&bytes), &vec![])?;
    }

    #[test]
    fn valid_events_decode_to_themselves(e in valid_event(), enc in encoding()) {
        let (bytes, hs) = encode(&e, enc);
        prop_assert_eq!(decode(Some(&bytes), &hs), Ok(e));
    }

    #[test]
    fn mutated_events_never_panic(
        e in valid_event(),
        enc in encoding(),
        ms in prop::collection::vec(mutation(), 1..4),
    ) {
        let (mut bytes, hs) = encode(&e, enc);
        for m in &ms {
            apply(&mut bytes, m);
        }
        check_any(Some(&bytes), &hs)?;
    }

    /// Binary mode with its attribute headers damaged or replaced.
    #[test]
    fn mutated_binary_headers_never_panic(
        e in valid_event(),
        extra in headers(),
        drop in prop::collection::vec(any::<bool>(), 7),
    ) {
        let (bytes, hs) = encode(&e, Encoding::Binary);
        let mut hs: Headers = hs
            .into_iter()
            .zip(drop.iter().chain(std::iter::repeat(&false)))
            .filter(|(_, d)| !**d)
            .map(|(h, _)| h)
            .collect();
        // Extra headers come first, so they win over the originals.
        let mut all = extra;
        all.append(&mut hs);
        check_any(Some(&bytes), &all)?;
    }

    /// Deep nesting in the payload, in every JSON position: the parser's
    /// recursion limit answers, not the stack.
    #[test]
    fn deep_json_nesting_is_refused_without_overflow(
        depth in 100usize..20_000,
        open in prop_oneof![Just(("[", "]")), Just(("{\"a\":", "}"))],
        enc in prop_oneof![Just(Encoding::Structured), Just(Encoding::Binary), Just(Encoding::Avro)],
    ) {
        let nested = format!("{}1{}", open.0.repeat(depth), open.1.repeat(depth));
        let e = Event {
            id: "deep".into(),
            source: "/s".into(),
            r#type: "t.deep".into(),
            time: None,
            subject: None,
            tenant: None,
            data: "null".into(),
        };
        let (bytes, hs) = match enc {
            Encoding::Structured => (
                format!(r#"{{"id":"deep","source":"/s","type":"t.deep","data":{nested}}}"#)
                    .into_bytes(),
                vec![],
            ),
            Encoding::Binary => {
                let (_, hs) = encode(&e, Encoding::Binary);
                (nested.clone().into_bytes(), hs)
            }
            Encoding::Avro => (
                Event { data: nested.clone(), ..e.clone() }.to_avro().unwrap(),
                vec![],
            ),
        };
        check_any(Some(&bytes), &hs)?;
        if depth > 200 {
            prop_assert!(decode(Some(&bytes), &hs).is_err(), "depth {depth} accepted");
        }
    }

    /// Invalid UTF-8 inside JSON strings.
    #[test]
    fn invalid_utf8_in_json_is_refused(
        e in valid_event(),
        byte in prop_oneof![Just(0xC0u8), Just(0xFF), Just(0x80), Just(0xF5)],
        enc in prop_oneof![Just(Encoding::Structured), Just(Encoding::Binary)],
    ) {
        let (bytes, hs) = encode(&e, enc);
        // Put the bad byte inside the first string literal.
        let text = String::from_utf8(bytes).unwrap();
        let Some(q) = text.find('"') else { return Ok(()) };
        let mut bytes = text.into_bytes();
        bytes.insert(q + 1, byte);
        check_any(Some(&bytes), &hs)?;
        prop_assert!(decode(Some(&bytes), &hs).is_err());
    }

    /// A header value the adapter may meet on any response.
    #[test]
    fn retry_after_never_panics(v in prop_oneof![".{0,40}", "[0-9]{1,30}", "[A-Za-z]{3}, [0-9]{2} [A-Za-z]{3} [0-9]{4} [0-9:]{8} GMT"]) {
        let _ = parse_retry_after(&v);
    }

    /// The records the adapter and the CLI read back: a damaged one is an
    /// error (poison), never a panic.
    #[test]
    fn herald_records_never_panic_on_damage(
        e in valid_event(),
        ms in prop::collection::vec(mutation(), 1..4),
        which in 0u8..4,
    ) {
        let d = Delivery {
            event: e.clone(),
            destination: "crm".into(),
            attempts: 1,
            routed_at: 1,
            first_attempt_at: Some(2),
            due_at: 3,
            origin_topic: "events".into(),
            origin_partition: 0,
            origin_offset: 9,
            history: vec![],
            produced_at: None,
        };
        let mut bytes = match which {
            0 => d.to_avro().unwrap(),
            1 => DeadLetter { delivery: d, reason: "exhausted".into(), dead_at: 4 }.to_avro().unwrap(),
            2 => LedgerEntry {
                identity: "00".repeat(16),
                event_id: e.id.clone(),
                source: e.source.clone(),
                state: herald_core::envelope::LedgerState::Delivered,
                attempts: 1,
                at: 5,
            }.to_avro().unwrap(),
            _ => br#"{"state":"delivered","attempts":1,"at":5}"#.to_vec(),
        };
        for m in &ms {
            apply(&mut bytes, m);
        }
        let _ = Delivery::from_avro(&bytes);
        let _ = DeadLetter::from_avro(&bytes);
        let _ = Attempt::from_avro(&bytes);
        let _ = LedgerEntry::decode_any(&bytes);
    }
}

/// Inputs found or feared while writing these tests, kept as fixed cases.
#[test]
fn known_hard_inputs() {
    let event_header = Event::schema_info().header.to_vec();
    let with_header = |tail: &[u8]| {
        let mut b = event_header.clone();
        b.extend_from_slice(tail);
        b
    };
    let cases: Vec<(Vec<u8>, Headers)> = vec![
        // Avro: an id claiming i64::MAX bytes, and claiming ~4 EiB.
        (with_header(&zigzag(i64::MAX)), vec![]),
        (with_header(&zigzag(1 << 62)), vec![]),
        // Avro: a negative length.
        (with_header(&zigzag(-5)), vec![]),
        // Avro: a varint that never ends.
        (with_header(&[0xFF; 32]), vec![]),
        // Avro: union index out of range for `time`.
        (with_header(&[2, b'a', 2, b'b', 2, b'c', 0x7E]), vec![]),
        // Only the magic.
        (vec![0xC3, 0x01], vec![]),
        // Binary mode with an empty type and a JSON value.
        (
            b"{}".to_vec(),
            vec![
                ("ce_type".into(), String::new()),
                ("ce_id".into(), "1".into()),
            ],
        ),
        // A time attribute with multi-byte characters at the checked offsets.
        (
            r#"{"id":"1","source":"/s","type":"a","time":"2026-11-23T10:00:00é"}"#
                .as_bytes()
                .to_vec(),
            vec![],
        ),
        (
            r#"{"id":"1","source":"/s","type":"a","time":"éééééééééééééééééééé"}"#
                .as_bytes()
                .to_vec(),
            vec![],
        ),
        (
            r#"{"id":"1","source":"/s","type":"a","time":"2026-11-23T10:00:00.é"}"#
                .as_bytes()
                .to_vec(),
            vec![],
        ),
        (
            r#"{"id":"1","source":"/s","type":"a","time":"2026-11-23T10:00:00+0é:00"}"#
                .as_bytes()
                .to_vec(),
            vec![],
        ),
        // A very long type, to be cut in the message on a char boundary.
        (
            format!(r#"{{"id":"1","source":"/s","type":"{}"}}"#, "é".repeat(100)).into_bytes(),
            vec![],
        ),
    ];
    for (bytes, hs) in cases {
        let r = decode(Some(&bytes), &hs);
        match &r {
            Ok(e) => assert!(validate_event(e).is_ok(), "{e:?}"),
            Err(e) => {
                assert!(INVALID_REASONS.contains(&e.reason()));
                assert!(!e.message().is_empty());
            }
        }
    }
}
