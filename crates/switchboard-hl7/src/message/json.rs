//! The JSON view of a message produced by [`Message::to_json`](super::Message::to_json).
//!
//! Shape:
//!
//! ```json
//! {"segments": [
//!   {"name": "MSH", "fields": ["|", "^~\\&", "LAB", ...]},
//!   {"name": "PID", "fields": ["1", "", {"repetitions": [["12345","","","HOSP","MR"], "X9"]},
//!                              "", ["DOE", "JOHN"], ...]}
//! ]}
//! ```
//!
//! * `fields[i]` is field number `i + 1` (for MSH, `fields[0]` is MSH-1, the
//!   field separator, and `fields[1]` MSH-2, the encoding characters; both are
//!   plain strings).
//! * A field with one repetition is written as that repetition. A field with
//!   several repetitions is an object `{"repetitions": [rep, ...]}`.
//! * A repetition without component separators is a string; otherwise it is
//!   an array with one entry per component.
//! * A component without subcomponent separators is a string; otherwise it is
//!   an array of strings, one per subcomponent.
//! * All strings have escape sequences decoded. Empty values are `""`.
//!
//! So at each level a string is a plain value, an array means components (or
//! subcomponents inside a component array) and an object means repetitions.

use serde_json::{json, Map, Value};

use super::segment::Segment;
use super::Message;

pub(crate) fn message_json(msg: &Message) -> Value {
    let segments: Vec<Value> = msg.segments().map(|s| segment_json(&s)).collect();
    json!({ "segments": segments })
}

fn segment_json(seg: &Segment<'_>) -> Value {
    let is_msh = seg.name() == "MSH";
    let fields: Vec<Value> = seg
        .raw_fields()
        .enumerate()
        .map(|(i, raw)| {
            if is_msh && i < 2 {
                Value::String(raw.to_owned())
            } else {
                field_json(seg, raw)
            }
        })
        .collect();
    let mut obj = Map::new();
    obj.insert("name".into(), Value::String(seg.name().to_owned()));
    obj.insert("fields".into(), Value::Array(fields));
    Value::Object(obj)
}

fn field_json(seg: &Segment<'_>, raw: &str) -> Value {
    let d = seg.delimiters();
    if !raw.contains(d.repetition) {
        return repetition_json(seg, raw);
    }
    let reps: Vec<Value> = raw
        .split(d.repetition)
        .map(|r| repetition_json(seg, r))
        .collect();
    json!({ "repetitions": reps })
}

fn repetition_json(seg: &Segment<'_>, raw: &str) -> Value {
    let d = seg.delimiters();
    if !raw.contains(d.component) {
        return component_json(seg, raw);
    }
    Value::Array(
        raw.split(d.component)
            .map(|c| component_json(seg, c))
            .collect(),
    )
}

fn component_json(seg: &Segment<'_>, raw: &str) -> Value {
    let d = seg.delimiters();
    if !raw.contains(d.subcomponent) {
        return Value::String(seg.unescape(raw).into_owned());
    }
    Value::Array(
        raw.split(d.subcomponent)
            .map(|s| Value::String(seg.unescape(s).into_owned()))
            .collect(),
    )
}
