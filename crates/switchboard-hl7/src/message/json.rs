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
//!
//! [`JsonView`] writes the same shape straight to a serializer without
//! building a `serde_json::Value` first (the receive path uses it to avoid
//! hundreds of small allocations per message).

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value};

use super::segment::Segment;
use super::Message;

pub(crate) fn message_json(msg: &Message) -> Value {
    let segments: Vec<Value> = msg.segments().map(|s| segment_json(&s)).collect();
    json!({ "segments": segments })
}

/// A message serialized in the shape of [`Message::to_json`] without an
/// intermediate `Value`; get one with [`Message::json_view`].
#[derive(Debug, Clone, Copy)]
pub struct JsonView<'a>(pub(crate) &'a Message);

impl Serialize for JsonView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("segments", &Segments(self.0))?;
        map.end()
    }
}

struct Segments<'a>(&'a Message);

impl Serialize for Segments<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.segments().len()))?;
        for seg in self.0.segments() {
            seq.serialize_element(&SegmentView(seg))?;
        }
        seq.end()
    }
}

struct SegmentView<'a>(Segment<'a>);

impl Serialize for SegmentView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("name", self.0.name())?;
        map.serialize_entry("fields", &FieldsView(self.0))?;
        map.end()
    }
}

struct FieldsView<'a>(Segment<'a>);

impl Serialize for FieldsView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let seg = self.0;
        let is_msh = seg.name() == "MSH";
        let mut seq = s.serialize_seq(None)?;
        for (i, raw) in seg.raw_fields().enumerate() {
            if is_msh && i < 2 {
                seq.serialize_element(raw)?;
            } else {
                seq.serialize_element(&Part {
                    seg,
                    raw,
                    level: Level::Field,
                })?;
            }
        }
        seq.end()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Field,
    Repetition,
    Component,
}

/// One field, repetition or component, written as in the module docs.
struct Part<'a> {
    seg: Segment<'a>,
    raw: &'a str,
    level: Level,
}

impl Serialize for Part<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.seg.delimiters();
        let (sep, next) = match self.level {
            Level::Field => (d.repetition, Level::Repetition),
            Level::Repetition => (d.component, Level::Component),
            Level::Component => (d.subcomponent, Level::Component),
        };
        if !self.raw.contains(sep) {
            return match self.level {
                Level::Field => Part {
                    level: Level::Repetition,
                    ..*self
                }
                .serialize(s),
                Level::Repetition => Part {
                    level: Level::Component,
                    ..*self
                }
                .serialize(s),
                Level::Component => s.serialize_str(&self.seg.unescape(self.raw)),
            };
        }
        let items = self.raw.split(sep);
        if self.level == Level::Field {
            let mut map = s.serialize_map(Some(1))?;
            map.serialize_entry(
                "repetitions",
                &Items {
                    seg: self.seg,
                    items: self.raw,
                    sep,
                    level: next,
                },
            )?;
            return map.end();
        }
        let mut seq = s.serialize_seq(None)?;
        for item in items {
            if self.level == Level::Component {
                seq.serialize_element(&*self.seg.unescape(item))?;
            } else {
                seq.serialize_element(&Part {
                    seg: self.seg,
                    raw: item,
                    level: next,
                })?;
            }
        }
        seq.end()
    }
}

/// The repetitions of a field, as an array.
struct Items<'a> {
    seg: Segment<'a>,
    items: &'a str,
    sep: char,
    level: Level,
}

impl Serialize for Items<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for item in self.items.split(self.sep) {
            seq.serialize_element(&Part {
                seg: self.seg,
                raw: item,
                level: self.level,
            })?;
        }
        seq.end()
    }
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
