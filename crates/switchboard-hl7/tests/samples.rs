//! Integration tests over the sample messages in `tests/data`: every sample
//! parses, validates, survives MLLP framing and can be acknowledged.
#![allow(clippy::unwrap_used)]

use switchboard_hl7::framing::{encode_frame, MllpDecoder};
use switchboard_hl7::message::encode_message;
use switchboard_hl7::{build_ack, parse_ack, split_batch, validate, AckCode, Charset, Message};

const SAMPLES: [(&str, &[u8]); 4] = [
    ("adt_a01", include_bytes!("data/adt_a01.hl7")),
    ("orm_o01", include_bytes!("data/orm_o01.hl7")),
    ("oru_r01", include_bytes!("data/oru_r01.hl7")),
    ("latin1_adt", include_bytes!("data/latin1_adt.hl7")),
];

#[test]
fn samples_parse_and_validate() {
    for (name, data) in SAMPLES {
        let msg = Message::parse(data).unwrap_or_else(|e| panic!("{name}: {e}"));
        validate(&msg).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(msg.get("PID-3.1").is_some(), "{name}");
        assert_eq!(msg.get("PID-3.5").as_deref(), Some("MR"), "{name}");
    }
}

#[test]
fn samples_survive_mllp_and_ack_round_trip() {
    let mut wire = Vec::new();
    for (_, data) in SAMPLES {
        encode_frame(data, &mut wire);
    }
    let mut dec = MllpDecoder::default();
    let mut frames = Vec::new();
    for chunk in wire.chunks(37) {
        dec.feed(chunk);
        while let Some(frame) = dec.decode().unwrap().frame {
            frames.push(frame);
        }
    }
    assert_eq!(frames.len(), SAMPLES.len());
    for (frame, (name, data)) in frames.iter().zip(SAMPLES) {
        assert_eq!(frame.as_slice(), data, "{name}");
        let msg = Message::parse(frame).unwrap();
        let ack = build_ack(&msg, AckCode::AA, None, "20240315120001", "ACK-1");
        let bytes = encode_message(&ack);
        let reply = Message::parse(&bytes).unwrap();
        validate(&reply).unwrap();
        assert_eq!(reply.encoding(), msg.encoding(), "{name}");
        let (code, id) = parse_ack(&reply).unwrap();
        assert!(code.is_accept());
        assert_eq!(Some(id.as_str()), msg.control_id().as_deref(), "{name}");
    }
}

#[test]
fn samples_split_from_one_file() {
    let text: String = SAMPLES[..3]
        .iter()
        .map(|(_, d)| String::from_utf8(d.to_vec()).unwrap().replace('\r', "\n"))
        .collect::<Vec<_>>()
        .join("\n");
    let file = format!("FHS|^~\\&|LIS\nBHS|^~\\&|LIS\n{text}BTS|3\nFTS|1\n");
    let parts = split_batch(&file);
    assert_eq!(parts.len(), 3);
    let types: Vec<String> = parts
        .iter()
        .map(|p| {
            Message::parse_str(p)
                .unwrap()
                .message_type()
                .unwrap()
                .into_owned()
        })
        .collect();
    assert_eq!(types, ["ADT^A01", "ORM^O01", "ORU^R01"]);
}

#[test]
fn latin1_sample_round_trips_through_its_charset() {
    let data = SAMPLES[3].1;
    let msg = Message::parse(data).unwrap();
    assert_eq!(msg.encoding(), Charset::Latin1);
    assert_eq!(Charset::Latin1.encode(msg.raw()), data);
}

#[test]
fn streamed_json_matches_value_json() {
    for (name, data) in SAMPLES {
        let msg = Message::parse(data).unwrap();
        let streamed = serde_json::to_value(msg.json_view()).unwrap();
        assert_eq!(streamed, msg.to_json(), "{name}");
    }
}
