//! Confluent Schema Registry support: the wire format (magic byte 0, the
//! schema id as a 4-byte big-endian integer, then the Avro body), a client
//! for the registry's REST API ([`client`]), the writer schemas of input
//! events resolved against Herald's reader schema ([`schemas`]), Herald's own
//! records framed the same way ([`output`]) and the compatibility rule
//! ([`compat`]).

pub mod client;
pub mod compat;
pub mod output;
pub mod schemas;

pub use client::{RegistryClient, RegistryError};
pub use schemas::WriterSchemas;

/// First byte of a record in the Confluent wire format.
pub const WIRE_MAGIC: u8 = 0;

/// Splits a Confluent-framed value into its schema id and Avro body; `None`
/// when the value is not framed (too short or another first byte).
pub fn unframe(value: &[u8]) -> Option<(u32, &[u8])> {
    match value {
        [WIRE_MAGIC, a, b, c, d, body @ ..] => Some((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        _ => None,
    }
}

/// Frames an Avro body with its schema id.
pub fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(WIRE_MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The subject a topic's record values are registered under (the
/// registry's default `TopicNameStrategy`).
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trips_and_reads_the_id_big_endian() {
        let v = frame(0x0102_0304, b"body");
        assert_eq!(&v[..5], &[0, 1, 2, 3, 4]);
        assert_eq!(unframe(&v), Some((0x0102_0304, &b"body"[..])));
        assert_eq!(unframe(&[0, 0, 0, 0, 7]), Some((7, &[][..])));
    }

    #[test]
    fn short_or_other_values_are_not_framed() {
        assert_eq!(unframe(&[0, 0, 0, 1]), None);
        assert_eq!(unframe(b"{\"id\":1}"), None);
        assert_eq!(unframe(&[0xC3, 0x01, 0, 0, 0, 0]), None);
        assert_eq!(unframe(&[]), None);
    }
}
