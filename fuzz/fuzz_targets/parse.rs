//! Fuzz target: parse arbitrary bytes as an HL7 message and run everything
//! downstream of parsing: header peek, validation, value access by path,
//! escape decoding/encoding, charset decoding, JSON views, ACK/NAK building
//! and batch splitting. Any panic is a bug, and so is a broken invariant:
//!
//! * the streamed JSON view equals the `Value` one;
//! * `get` is `Some` exactly when `get_raw` is `Some` and non-empty;
//! * escaping any value (and the fuzz-chosen text) with the message's own
//!   separators leaves no separator in it and unescapes back to the text;
//! * a built ACK parses (as text and, encoded with its MSH-18, as bytes),
//!   echoes MSH-10 in MSA-2, and carries the error text back intact;
//! * a NAK built for unparseable bytes parses and validates.
//!
//! Input layout: when the input contains a NUL byte, the bytes before the
//! first NUL are an extra path (and free text) to try, the rest is the
//! message. Otherwise the whole input is the message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_hl7::batch::split_batch_bytes;
use switchboard_hl7::message::{encode_message, escape, peek_header, unescape, MAX_PEEK_CHARS};
use switchboard_hl7::{
    build_ack, build_nak_from_raw, parse_ack, split_batch, validate, AckCode, Message,
};

/// Error text put into every ACK: all default separators, the truncation
/// character, an escape-looking sequence and line breaks.
const ERROR_TEXT: &str = "bad|value^in~field&x\\F\\#.br\r\nnext line";

/// Locations tried on every segment that is present.
const LOCATIONS: &[&str] = &[
    "1", "2", "3", "3[2]", "3[2].1", "3.1.2", "4.2", "5", "5.1", "5.1.2", "9.2", "10", "18",
];

fuzz_target!(|data: &[u8]| {
    let (extra, body) = match data.iter().position(|&b| b == 0) {
        Some(i) if i <= 64 => (
            data.get(..i).map(String::from_utf8_lossy),
            data.get(i + 1..).unwrap_or_default(),
        ),
        _ => (None, data),
    };
    let extra = extra.as_deref().unwrap_or("PID-5.1");

    let peek = peek_header(body);
    for v in [
        &peek.sending_application,
        &peek.sending_facility,
        &peek.control_id,
        &peek.version,
    ]
    .into_iter()
    .flatten()
    {
        assert!(v.chars().count() <= MAX_PEEK_CHARS);
        assert!(!v.is_empty());
    }

    match Message::parse(body) {
        Ok(msg) => check_message(&msg, extra),
        Err(err) => {
            let nak = build_nak_from_raw(body, AckCode::AR, &err.to_string(), "20240101", "F2");
            let reply = Message::parse_str(&nak).expect("built NAK must parse");
            assert_eq!(validate(&reply), Ok(()));
            assert_eq!(parse_ack(&reply).map(|a| a.0.is_reject()), Some(true));
        }
    }

    // Text input: when the bytes are UTF-8, parse_str must agree with parse
    // on success for UTF-8 messages.
    if let Ok(text) = std::str::from_utf8(body) {
        if let (Ok(a), Ok(b)) = (Message::parse_str(text), Message::parse(body)) {
            if b.encoding() == switchboard_hl7::Charset::Utf8 {
                assert_eq!(a.raw(), b.raw());
            }
        }
    }
    for m in split_batch(&String::from_utf8_lossy(body)) {
        let _ = Message::parse_str(m);
    }
    for m in split_batch_bytes(body) {
        assert!(m.starts_with(b"MSH"));
        let _ = Message::parse(m);
    }
});

fn check_message(msg: &Message, extra: &str) {
    let _ = validate(msg);
    let value = msg.to_json();
    let streamed = serde_json::to_value(msg.json_view()).expect("JSON view serializes");
    assert_eq!(value, streamed);

    let d = *msg.delimiters();
    let mut paths: Vec<String> = vec![extra.to_owned(), "MSH-1".into(), "MSH-2".into()];
    for (i, seg) in msg.segments().enumerate().take(8) {
        let name = seg.name().to_owned();
        let _ = (seg.field_count(), seg.raw_fields().count(), seg.as_str());
        for loc in LOCATIONS {
            paths.push(format!("{name}-{loc}"));
            if i < 3 {
                paths.push(format!("{name}[2]-{loc}"));
            }
            let _ = seg.get(loc);
        }
    }
    for path in &paths {
        let value = msg.get(path);
        let raw = msg.get_raw(path);
        assert_eq!(
            value.is_some(),
            raw.is_some_and(|r| !r.is_empty()),
            "get/get_raw disagree on {path}"
        );
        if let Some(v) = value {
            check_escape(msg, &v);
        }
    }
    check_escape(msg, extra);
    let _ = msg.unescape(extra);
    let _ = unescape(extra, &d, msg.encoding());
    let _ = (
        msg.message_type(),
        msg.control_id(),
        msg.version(),
        msg.charset(),
        msg.timestamp(),
        msg.processing_id(),
        msg.accept_ack_type(),
    );

    for code in [AckCode::AE, AckCode::CA] {
        let ack = build_ack(msg, code, Some(ERROR_TEXT), "20240101", "F1");
        let reply = Message::parse_str(&ack).expect("built ACK must parse");
        let (_, echoed) = parse_ack(&reply).expect("built ACK has MSA");
        assert_eq!(
            echoed,
            msg.get("MSH-10")
                .map(|c| c.into_owned())
                .unwrap_or_default()
        );
        let err = reply.get("ERR-8").or_else(|| reply.get("MSA-3"));
        assert_eq!(err.as_deref(), Some(ERROR_TEXT), "error text in {ack:?}");
        let wire = encode_message(&ack);
        let again = Message::parse(&wire).expect("encoded ACK must parse");
        assert_eq!(again.raw(), reply.raw());
    }
}

/// Escaping `text` with the message's separators must remove every
/// separator and line break, and unescape back to `text`.
fn check_escape(msg: &Message, text: &str) {
    let d = msg.delimiters();
    let escaped = msg.escape(text);
    assert!(
        !escaped.contains([
            '\r',
            '\n',
            d.field,
            d.component,
            d.repetition,
            d.subcomponent
        ]),
        "escape({text:?}) = {escaped:?} still holds a separator of {d:?}"
    );
    assert_eq!(msg.unescape(&escaped), text);
    let _ = escape(text, d);
}
