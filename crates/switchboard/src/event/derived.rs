//! Parts of an event's `data` that are derived from the stored data when the event is served, not stored.
//!
//! One such part today: the structured view (`data.message`, segments → fields) of an `hl7.received` event from
//! the MLLP listener. It is a pure function of `data.raw`, and about twice its size, so storing it would more than
//! double what every message writes to the log (and the CPU of the single writer). The listener stores the event
//! without `message`; every way an event leaves the process (history API, CSV export, webhooks, SSE, Socket.IO)
//! serializes it through [`Event`](super::Event)'s `Serialize`, which adds the view back here.
//!
//! `data.message` present in the stored data (`null` for a message that did not parse or was too large for its
//! view, or a view stored by an earlier version) is served as stored.

use super::{EventType, Source};
use serde::de::{Deserializer, IgnoredAny};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use switchboard_hl7::Message;

/// The event type whose view is derived.
const RECEIVED: &str = "hl7.received";

/// `data` as it is served: the stored data, plus whatever is derived from it.
pub fn served_data<'a>(
    event_type: &EventType,
    source: Source,
    data: &'a RawValue,
) -> Cow<'a, RawValue> {
    if source != Source::MllpServer || event_type.as_str() != RECEIVED {
        return Cow::Borrowed(data);
    }
    match with_structured_view(data) {
        Some(full) => Cow::Owned(full),
        None => Cow::Borrowed(data),
    }
}

/// The `hl7.received` data with `message` added, or `None` when it has one already (or is not an object with
/// `raw`).
fn with_structured_view(data: &RawValue) -> Option<Box<RawValue>> {
    #[derive(Deserialize)]
    struct Stored<'a> {
        #[serde(borrow)]
        raw: Cow<'a, str>,
        #[serde(default, deserialize_with = "present")]
        message: bool,
    }
    let stored: Stored<'_> = serde_json::from_str(data.get()).ok()?;
    if stored.message {
        return None;
    }
    let body = data.get().trim_end().strip_suffix('}')?.trim_end();
    let view = Message::parse_str(&stored.raw)
        .ok()
        .and_then(|msg| serde_json::to_string(&msg.json_view()).ok());
    let view = view.as_deref().unwrap_or("null");
    let mut full = String::with_capacity(body.len() + view.len() + 13);
    full.push_str(body);
    if !body.ends_with('{') {
        full.push(',');
    }
    full.push_str("\"message\":");
    full.push_str(view);
    full.push('}');
    RawValue::from_string(full).ok()
}

/// `true` for a field that is there, whatever its value (`null` included); absent fields take the default.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

/// How many bytes the structured view of `msg` takes when served, without building it.
pub fn structured_view_len(msg: &Message) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, &msg.json_view()) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const ADT: &str = "MSH|^~\\&|ADT1|HOSP|LAB|HOSP|20240315083012||ADT^A01|MSG1|P|2.5.1\rPID|1||123^^^HOSP^MR||DOE^JOHN\r";

    fn received_type() -> EventType {
        EventType::parse(RECEIVED).expect("type")
    }

    fn stored(json: &Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(json).expect("raw")
    }

    fn served(data: &RawValue, source: Source) -> Value {
        serde_json::from_str(served_data(&received_type(), source, data).get())
            .expect("served JSON")
    }

    #[test]
    fn the_view_is_derived_from_raw_when_not_stored() {
        let data =
            stored(&serde_json::json!({"listener": "default", "raw": ADT, "bytes": ADT.len()}));
        let out = served(&data, Source::MllpServer);
        let expected = Message::parse_str(ADT).expect("parse").to_json();
        assert_eq!(out["message"], expected);
        assert_eq!(out["message"]["segments"][1]["fields"][4][0], "DOE");
        assert_eq!(out["listener"], "default");
        assert_eq!(out["bytes"], ADT.len());
    }

    #[test]
    fn a_stored_message_field_is_served_as_stored() {
        for message in [Value::Null, serde_json::json!({"segments": []})] {
            let data = stored(&serde_json::json!({"raw": ADT, "message": message}));
            assert!(matches!(
                served_data(&received_type(), Source::MllpServer, &data),
                Cow::Borrowed(_)
            ));
        }
    }

    #[test]
    fn other_sources_and_types_are_served_as_stored() {
        let data = stored(&serde_json::json!({"raw": ADT}));
        assert!(served(&data, Source::Api).get("message").is_none());
        let parsed = EventType::parse("hl7.parsed").expect("type");
        assert!(matches!(
            served_data(&parsed, Source::MllpServer, &data),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn text_that_does_not_parse_gets_a_null_view() {
        let data = stored(&serde_json::json!({"raw": "not hl7"}));
        assert_eq!(served(&data, Source::MllpServer)["message"], Value::Null);
    }

    #[test]
    fn latin1_text_is_not_decoded_twice() {
        // `raw` is already decoded: the view must show the same characters, not a second decoding of them.
        let text =
            "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5|||||8859/1\rPID|1||1||MÜLLER^JOSÉ\r";
        let data = stored(&serde_json::json!({"raw": text}));
        let out = served(&data, Source::MllpServer);
        assert_eq!(out["message"]["segments"][1]["fields"][4][0], "MÜLLER");
        assert_eq!(out["message"]["segments"][1]["fields"][4][1], "JOSÉ");
    }

    #[test]
    fn the_view_length_is_what_is_served() {
        let msg = Message::parse_str(ADT).expect("parse");
        let built = serde_json::to_string(&msg.json_view()).expect("view");
        assert_eq!(structured_view_len(&msg), built.len());
    }
}
