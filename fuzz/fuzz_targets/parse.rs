//! Fuzz target: parse arbitrary bytes as an HL7 message and run everything
//! downstream of parsing (validation, value access, JSON view, ACK/NAK
//! building, batch splitting). Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_hl7::{
    build_ack, build_nak_from_raw, parse_ack, split_batch, validate, AckCode, Message,
};

fuzz_target!(|data: &[u8]| {
    match Message::parse(data) {
        Ok(msg) => {
            let _ = validate(&msg);
            let _ = msg.to_json();
            for path in [
                "MSH-1",
                "MSH-2",
                "MSH-9",
                "PID-3[2].1",
                "PID-5.1.2",
                "OBX[2]-5",
            ] {
                let _ = msg.get(path);
                let _ = msg.get_raw(path);
            }
            let _ = (msg.message_type(), msg.control_id(), msg.version());
            for seg in msg.segments() {
                let _ = seg.raw_fields().count();
            }
            let ack = build_ack(&msg, AckCode::AE, Some("fuzz|error\r"), "20240101", "F1");
            let reply = Message::parse_str(&ack).expect("built ACK must parse");
            assert!(parse_ack(&reply).is_some());
        }
        Err(err) => {
            let nak = build_nak_from_raw(data, AckCode::AR, &err.to_string(), "20240101", "F2");
            let reply = Message::parse_str(&nak).expect("built NAK must parse");
            assert_eq!(validate(&reply), Ok(()));
        }
    }
    let _ = split_batch(&String::from_utf8_lossy(data));
});
