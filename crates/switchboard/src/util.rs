//! Small helpers shared by several modules.

use crate::event::Timestamp;
use serde::Serializer;

pub fn serialize_ts<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&ts.to_rfc3339())
}

pub fn serialize_opt_ts<S: Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match ts {
        Some(ts) => s.serialize_str(&ts.to_rfc3339()),
        None => s.serialize_none(),
    }
}

/// Appends `field` to `out` as one CSV field (RFC 4180 quoting when needed).
pub fn push_csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        let mut out = String::new();
        push_csv_field(&mut out, "plain");
        out.push(',');
        push_csv_field(&mut out, r#"{"a":"b,c"}"#);
        assert_eq!(out, r#"plain,"{""a"":""b,c""}""#);
    }
}
