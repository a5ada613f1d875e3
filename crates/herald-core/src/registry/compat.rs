//! Schema compatibility as the registry defines BACKWARD: consumers using
//! the new schema can read data written with the previous one (so consumers
//! upgrade first). Herald's own records are read by Herald's services and by
//! users' consumers of the attempts and dead-letter topics; a change to
//! `schemas/*.avsc` that fails this check would break them on upgrade.

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;

/// `Ok` when a reader holding `new` reads records written with `old`.
pub fn backward(new: &str, old: &str) -> Result<(), String> {
    let new = Schema::parse_str(new).map_err(|e| format!("new schema does not parse: {e}"))?;
    let old = Schema::parse_str(old).map_err(|e| format!("old schema does not parse: {e}"))?;
    SchemaCompatibility::can_read(&old, &new)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A record schema's JSON text with its fields edited by `f`: the older and
/// newer versions of a schema that compatibility tests need.
///
/// # Panics
/// When `text` is not a record schema's JSON.
pub fn edit_fields(text: &str, f: impl FnOnce(&mut Vec<serde_json::Value>)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(text).expect("schema JSON");
    f(v["fields"].as_array_mut().expect("a record schema"));
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{ATTEMPT_AVSC, DELIVERY_AVSC, EVENT_AVSC};
    use edit_fields as edit;

    #[test]
    fn a_schema_is_backward_compatible_with_itself() {
        for s in [EVENT_AVSC, DELIVERY_AVSC, ATTEMPT_AVSC] {
            backward(s, s).unwrap();
        }
    }

    #[test]
    fn adding_a_field_needs_a_default() {
        let with_default = edit(EVENT_AVSC, |f| {
            f.push(serde_json::json!({"name": "priority", "type": "int", "default": 0}))
        });
        backward(&with_default, EVENT_AVSC).unwrap();
        let without = edit(EVENT_AVSC, |f| {
            f.push(serde_json::json!({"name": "priority", "type": "int"}))
        });
        let e = backward(&without, EVENT_AVSC).unwrap_err();
        assert!(e.contains("priority"), "{e}");
    }

    #[test]
    fn removing_a_field_is_backward_compatible_and_changing_a_type_is_not() {
        let removed = edit(EVENT_AVSC, |f| f.retain(|x| x["name"] != "tenant"));
        backward(&removed, EVENT_AVSC).unwrap();
        let retyped = edit(EVENT_AVSC, |f| {
            for x in f.iter_mut().filter(|x| x["name"] == "data") {
                x["type"] = serde_json::json!("int");
            }
        });
        assert!(backward(&retyped, EVENT_AVSC).is_err());
    }
}
