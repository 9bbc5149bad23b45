//! Property tests: nothing panics on arbitrary input, MLLP framing round-trips
//! under arbitrary read splits, and escaping round-trips for arbitrary text
//! and separator sets.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use switchboard_hl7::framing::{encode_frame, MllpDecoder, END_BLOCK, START_BLOCK};
use switchboard_hl7::message::{escape, unescape};
use switchboard_hl7::{
    build_ack, build_nak_from_raw, parse_ack, split_batch, validate, AckCode, Charset, Delimiters,
    Message,
};

/// Bytes that look enough like HL7 to get past the first checks.
fn hl7ish() -> impl Strategy<Value = Vec<u8>> {
    let pieces: Vec<&'static [u8]> = vec![
        b"|",
        b"^",
        b"~",
        b"\\",
        b"&",
        b"#",
        b"\r",
        b"\n",
        b"\r\n",
        b"MSH",
        b"PID",
        b"OBX",
        b"MSA",
        b"ERR",
        b"A",
        b"1",
        b"2.5",
        b"2.3.1",
        b"P",
        b"AL",
        b"8859/1",
        b"UTF-8",
        b"\\F\\",
        b"\\X41\\",
        b"\\XE9\\",
        b"\\.br\\",
        b"\xE9",
        b"\xC3\xA9",
        b" ",
        b"ADT^A01",
        b"\x0b",
        b"\x1c",
    ];
    (
        prop::sample::select(vec![&b"MSH|^~\\&|"[..], b"MSH|", b"MSH", b""]),
        prop::collection::vec(prop::sample::select(pieces), 0..80),
    )
        .prop_map(|(head, body)| {
            let mut out = head.to_vec();
            for p in body {
                out.extend_from_slice(p);
            }
            out
        })
}

fn any_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..400), hl7ish()]
}

/// Every public entry point on one input; must not panic.
fn exercise(input: &[u8]) {
    let _ = switchboard_hl7::message::peek_header(input);
    match Message::parse(input) {
        Ok(msg) => {
            let _ = validate(&msg);
            let value = msg.to_json();
            let streamed = serde_json::to_value(msg.json_view()).unwrap();
            assert_eq!(value, streamed);
            for path in ["MSH-1", "MSH-2", "MSH-9", "PID-5.1.2", "OBX[2]-5", "MSA-2"] {
                let _ = msg.get(path);
            }
            for seg in msg.segments() {
                let _ = (seg.name(), seg.field_count(), seg.raw_fields().count());
            }
            let _ = (msg.message_type(), msg.version(), msg.charset());
            let ack = build_ack(&msg, AckCode::AE, Some("err|or\r"), "20240101", "C");
            let reply = Message::parse_str(&ack).unwrap();
            assert!(parse_ack(&reply).is_some());
        }
        Err(e) => {
            let nak = build_nak_from_raw(input, AckCode::AR, &e.to_string(), "20240101", "C");
            let reply = Message::parse_str(&nak).unwrap();
            assert_eq!(validate(&reply), Ok(()));
            assert_eq!(parse_ack(&reply).map(|a| a.0.is_reject()), Some(true));
        }
    }
    let _ = split_batch(&String::from_utf8_lossy(input));
}

/// Distinct separator sets, optionally with a truncation character.
fn delimiters() -> impl Strategy<Value = Delimiters> {
    let punct: Vec<u8> = (0x21u8..0x7f)
        .filter(|b| b.is_ascii_punctuation() && *b != b'.')
        .collect();
    prop::sample::subsequence(punct, 5..=6)
        .prop_shuffle()
        .prop_map(|chars| Delimiters::from_msh(chars[0], &chars[1..]).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_and_friends_never_panic(input in any_input()) {
        exercise(&input);
    }

    #[test]
    fn nak_for_any_bytes_is_a_valid_ack(input in any_input()) {
        let nak = build_nak_from_raw(&input, AckCode::AE, "broken", "20240101", "N");
        let reply = Message::parse_str(&nak).unwrap();
        prop_assert_eq!(validate(&reply), Ok(()));
        let err8 = reply.get("ERR-8");
        prop_assert_eq!(err8.as_deref(), Some("broken"));
    }

    #[test]
    fn framer_round_trips_any_split(
        msgs in prop::collection::vec(
            prop::collection::vec(any::<u8>().prop_map(|b| if b == START_BLOCK || b == END_BLOCK { b'x' } else { b }), 0..200),
            0..8,
        ),
        gaps in prop::collection::vec(
            prop::collection::vec(any::<u8>().prop_map(|b| if b == START_BLOCK { b'\n' } else { b }), 0..4),
            8,
        ),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let mut wire = Vec::new();
        let mut garbage = 0;
        for (m, gap) in msgs.iter().zip(&gaps) {
            wire.extend_from_slice(gap);
            garbage += gap.len();
            encode_frame(m, &mut wire);
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.push(0);
        points.push(wire.len());
        points.sort_unstable();

        let mut dec = MllpDecoder::new(256);
        let mut frames = Vec::new();
        let mut discarded = 0;
        for pair in points.windows(2) {
            dec.feed(&wire[pair[0]..pair[1]]);
            loop {
                let d = dec.decode().unwrap();
                discarded += d.discarded;
                match d.frame {
                    Some(f) => frames.push(f),
                    None => break,
                }
            }
        }
        prop_assert_eq!(frames, msgs);
        prop_assert_eq!(discarded, garbage);
        prop_assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn framer_never_panics_on_arbitrary_chunks(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16),
        max in 0usize..100,
    ) {
        let mut dec = MllpDecoder::new(max);
        for chunk in &chunks {
            dec.feed(chunk);
            for _ in 0..chunk.len() + 2 {
                match dec.decode() {
                    Ok(d) if d.frame.is_none() => break,
                    Ok(d) => prop_assert!(d.frame.map_or(0, |f| f.len()) <= max),
                    Err(_) => {}
                }
            }
        }
    }

    #[test]
    fn escape_round_trips(text in any::<String>(), d in delimiters()) {
        let escaped = escape(&text, &d);
        prop_assert!(!escaped.contains(['\r', '\n', d.field, d.component, d.repetition, d.subcomponent]));
        prop_assert_eq!(unescape(&escaped, &d, Charset::Utf8), text.as_str());
        prop_assert_eq!(unescape(&escaped, &d, Charset::Latin1), text.as_str());
    }

    #[test]
    fn escaped_text_survives_a_message(text in any::<String>(), d in delimiters()) {
        let f = d.field;
        let raw = format!(
            "MSH{f}{}{f}APP{f}FAC{f}{f}{f}{f}{f}ORU{}R01{f}1{f}P{f}{}\rOBX{f}1{f}ST{f}{f}{f}{}\r",
            d.encoding_characters(),
            d.component,
            escape("2.5", &d),
            escape(&text, &d),
        );
        let msg = Message::parse(raw.as_bytes()).unwrap();
        prop_assert_eq!(*msg.delimiters(), d);
        prop_assert_eq!(validate(&msg), Ok(()));
        let expected = if text.is_empty() { None } else { Some(text.as_str()) };
        let obx5 = msg.get("OBX-5");
        prop_assert_eq!(obx5.as_deref(), expected);
    }
}
