//! Unit tests for ACK building, salvaging and reading.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::error::{ParseError, ValidationError};
use crate::message::{encode_message, Charset, Delimiters};
use crate::validate::validate;

const ADT: &[u8] = include_bytes!("../../tests/data/adt_a01.hl7");
const ORM: &[u8] = include_bytes!("../../tests/data/orm_o01.hl7");
const LATIN1: &[u8] = include_bytes!("../../tests/data/latin1_adt.hl7");

const NOW: &str = "20240315083100";

fn reparse(ack: &str) -> Message {
    let msg = Message::parse_str(ack).unwrap();
    validate(&msg).unwrap();
    msg
}

#[test]
fn original_mode_accept() {
    let msg = Message::parse(ADT).unwrap();
    let ack = build_ack(&msg, AckCode::AA, None, NOW, "ACK0001");
    assert_eq!(
        ack,
        "MSH|^~\\&|GHH LAB, INC.|GOOD HEALTH HOSPITAL|ADT1|GOOD HEALTH HOSPITAL|\
         20240315083100||ACK^A01^ACK|ACK0001|P|2.5.1\r\
         MSA|AA|MSG00001\r"
    );
    let parsed = reparse(&ack);
    assert_eq!(
        parse_ack(&parsed),
        Some((AckCode::AA, "MSG00001".to_owned()))
    );
}

#[test]
fn original_mode_error_has_err_segment_with_escaped_text() {
    let msg = Message::parse(ADT).unwrap();
    let text = "bad|value^x & y\nline 2";
    let ack = build_ack(&msg, AckCode::AE, Some(text), NOW, "ACK0002");
    let lines: Vec<&str> = ack.split_terminator('\r').collect();
    assert_eq!(lines[1], "MSA|AE|MSG00001");
    assert_eq!(
        lines[2],
        "ERR|||207^Application internal error^HL70357|E||||bad\\F\\value\\S\\x \\T\\ y\\.br\\line 2"
    );
    let parsed = reparse(&ack);
    assert_eq!(parsed.get("ERR-8").unwrap(), text);
    assert_eq!(parsed.get("ERR-3.1").unwrap(), "207");
    assert_eq!(parsed.get("ERR-4").unwrap(), "E");
    assert_eq!(parse_ack(&parsed).unwrap().0, AckCode::AE);
}

#[test]
fn caller_commit_code_is_mapped_to_original_mode() {
    let msg = Message::parse(ADT).unwrap();
    let ack = build_ack(&msg, AckCode::CR, Some("nope"), NOW, "1");
    assert!(ack.contains("\rMSA|AR|MSG00001\r"));
}

#[test]
fn enhanced_mode_and_old_version() {
    let msg = Message::parse(ORM).unwrap();
    let ack = build_ack(&msg, AckCode::AA, None, NOW, "C1");
    assert!(
        ack.starts_with("MSH|^~\\&|LIS|GHH LAB|CPOE|GHH|20240315083100||ACK^O01^ACK|C1|P|2.3.1\r")
    );
    assert!(ack.ends_with("\rMSA|CA|ORD000123\r"));

    let ack = build_ack(&msg, AckCode::AE, Some("DB down"), NOW, "C2");
    let lines: Vec<&str> = ack.split_terminator('\r').collect();
    assert_eq!(lines[1], "MSA|CE|ORD000123|DB down");
    assert_eq!(lines[2], "ERR|^^^207&Application internal error&HL70357");
    let parsed = reparse(&ack);
    assert_eq!(
        parse_ack(&parsed),
        Some((AckCode::CE, "ORD000123".to_owned()))
    );
}

#[test]
fn very_old_version_has_two_part_msh9() {
    let msg = Message::parse(b"MSH|^~\\&|A|B|C|D|||ADT^A01|X|T|2.2\rPID|1").unwrap();
    let ack = build_ack(&msg, AckCode::AR, None, NOW, "Y");
    assert_eq!(
        ack,
        "MSH|^~\\&|C|D|A|B|20240315083100||ACK^A01|Y|T|2.2\rMSA|AR|X\r"
    );
}

#[test]
fn explicit_condition_from_validation_error() {
    let msg = Message::parse(b"MSH|^~\\&|A|B|C|D|||ADT^A01|X|P|9.9").unwrap();
    let err = validate(&msg).unwrap_err();
    assert_eq!(err, ValidationError::UnsupportedVersion("9.9".into()));
    let text = err.to_string();
    let ack = build_ack_with(
        &msg,
        AckCode::AR,
        Some(AckError::new(ErrorCondition::from(&err), &text)),
        NOW,
        "Z",
    );
    assert!(ack.contains("\rERR|||203^Unsupported version id^HL70357|E||||"));
    // 9.9 is unreadable as a supported version but still echoed.
    assert!(ack.contains("|Z|P|9.9\r"));
}

#[test]
fn charset_and_delimiters_are_echoed() {
    let msg = Message::parse(LATIN1).unwrap();
    let ack = build_ack(&msg, AckCode::AE, Some("Dossier verrouillé"), NOW, "A9");
    assert!(ack.starts_with("MSH|^~\\&|EHR|HML|REGADT|HÔPITAL MONTRÉAL|"));
    assert!(ack.contains("|A9|P|2.5||||||8859/1\r"));
    let wire = encode_message(&ack);
    assert!(wire.windows(2).any(|w| w == b"\xE9\r"));
    let parsed = Message::parse(&wire).unwrap();
    assert_eq!(parsed.encoding(), Charset::Latin1);
    assert_eq!(parsed.get("ERR-8").unwrap(), "Dossier verrouillé");

    let custom = Message::parse(b"MSH!@*$%!A!B!C!D!!!ORU@R01!7!P!2.5").unwrap();
    let ack = build_ack(&custom, AckCode::AE, Some("x!y"), NOW, "8");
    assert!(ack.starts_with("MSH!@*$%!C!D!A!B!20240315083100!!ACK@R01@ACK!8!P!2.5\r"));
    assert!(ack.contains("ERR!!!207@Application internal error@HL70357!E!!!!x$F$y\r"));
}

#[test]
fn nak_from_garbage_uses_defaults() {
    let nak = build_nak_from_raw(b"\x00\xFFhello", AckCode::AR, "no MSH", NOW, "N1");
    assert_eq!(
        nak,
        "MSH|^~\\&|||||20240315083100||ACK|N1|P|2.5\r\
         MSA|AR\r\
         ERR|||100^Segment sequence error^HL70357|E||||no MSH\r"
    );
    reparse(&nak);
}

#[test]
fn nak_salvages_header_of_unparseable_message() {
    let raw = b"MSH|^~\\&|APP|FAC|RAPP|RFAC|2024||ADT^A01|CTRL9|P|2.4|||AL|||ISO IR87\rPID|1";
    let err = Message::parse(raw).unwrap_err();
    let nak = build_nak_from_raw_with(
        raw,
        AckCode::AR,
        AckError::new(ErrorCondition::from(&err), &err.to_string()),
        NOW,
        "N2",
    );
    assert!(nak.starts_with("MSH|^~\\&|RAPP|RFAC|APP|FAC|20240315083100||ACK^A01^ACK|N2|P|2.4\r"));
    assert!(nak.contains("\rMSA|CR|CTRL9|unsupported character set"));
    assert!(nak.contains("\rERR|^^^103&Table value not found&HL70357\r"));
    let parsed = reparse(&nak);
    assert_eq!(parse_ack(&parsed), Some((AckCode::CR, "CTRL9".to_owned())));
}

#[test]
fn nak_with_bad_encoding_characters_escapes_salvaged_text() {
    let raw = b"MSH|^^|A^B|F|R|RF|||ADT^A01|ID^1|Q|2.7||||||8859/1\rPID|Caf\xE9";
    let nak = build_nak_from_raw(raw, AckCode::AR, "bad MSH-2", NOW, "N3");
    assert!(nak.starts_with("MSH|^~\\&|R|RF|A\\S\\B|F|20240315083100||ACK|N3|P|2.7||||||8859/1\r"));
    assert!(nak.contains("\rMSA|AR|ID\\S\\1\r"));
    let parsed = reparse(&nak);
    assert_eq!(parse_ack(&parsed).unwrap().1, "ID^1");
}

#[test]
fn nak_drops_undecodable_bytes() {
    let raw = b"\r\nPID|1\rMSH|^~\\&|Caf\xE9|F\x01AC|||||ADT^A01|C\xC3\xA9|P|2.5.1\r";
    let nak = build_nak_from_raw(raw, AckCode::AE, "MSH not first", NOW, "N4");
    assert!(nak.starts_with("MSH|^~\\&|||Caf|FAC|20240315083100||ACK^A01^ACK|N4|P|2.5.1\r"));
    assert!(nak.contains("\rMSA|AE|Cé\r"));
    reparse(&nak);
}

#[test]
fn parse_ack_ignores_non_acks() {
    let msg = Message::parse(ADT).unwrap();
    assert_eq!(parse_ack(&msg), None);
    let bad = Message::parse(b"MSH|^~\\&|||||||ACK|1|P|2.5\rMSA|ZZ|1").unwrap();
    assert_eq!(parse_ack(&bad), None);
    let no_id = Message::parse(b"MSH|^~\\&|||||||ACK|1|P|2.5\rMSA|CA").unwrap();
    assert_eq!(parse_ack(&no_id), Some((AckCode::CA, String::new())));
}

#[test]
fn ack_code_helpers() {
    for code in [
        AckCode::AA,
        AckCode::AE,
        AckCode::AR,
        AckCode::CA,
        AckCode::CE,
        AckCode::CR,
    ] {
        assert_eq!(code.to_string().parse::<AckCode>().unwrap(), code);
        assert_eq!(code.to_commit().to_application(), code.to_application());
        assert!(code.to_commit().is_commit());
        assert_eq!(
            [code.is_accept(), code.is_error(), code.is_reject()]
                .iter()
                .filter(|b| **b)
                .count(),
            1
        );
    }
    assert!("aa".parse::<AckCode>().is_err());
    assert_eq!(ErrorCondition::ApplicationInternalError.code(), 207);
}

/// Found by `cargo fuzz run parse`: MSH-2 declared `.` as the component
/// separator, so the default version `2.5` written into the NAK read back as
/// MSH-12.1 = `2` and the NAK failed its own validation. `.` is no longer a
/// valid separator: the NAK now falls back to the default separators.
#[test]
fn fuzz_regression_dot_separator_nak_validates() {
    let raw = b"PID|1\rMSH|.~\\&|X|Y|||||BROKE\xC8|P|9.9||||||KOI8\r";
    let err = Message::parse(raw).unwrap_err();
    let nak = build_nak_from_raw(raw, AckCode::AR, &err.to_string(), NOW, "N1");
    let reply = reparse(&nak);
    assert_eq!(reply.delimiters(), &Delimiters::default());
    assert_eq!(reply.version().as_deref(), Some("2.5"));
    assert_eq!(parse_ack(&reply).map(|a| a.0), Some(AckCode::AR));
    // The same header as the first segment is a parse error, not a message.
    assert!(matches!(
        Message::parse(b"MSH|.~\\&|X|Y|||||ADT^A01|1|P|2.5\r"),
        Err(ParseError::BadEncodingCharacters(_))
    ));
    assert!(matches!(
        Message::parse(b"MSH.^~\\&.X.Y.....ADT^A01.1.P.2.5\r"),
        Err(ParseError::BadFieldSeparator(b'.'))
    ));
}
