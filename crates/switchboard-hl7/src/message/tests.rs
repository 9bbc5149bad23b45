//! Unit tests for parsing and value access, using the sample files in
//! `tests/data`.
#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;

const ADT: &[u8] = include_bytes!("../../tests/data/adt_a01.hl7");
const ORM: &[u8] = include_bytes!("../../tests/data/orm_o01.hl7");
const ORU: &[u8] = include_bytes!("../../tests/data/oru_r01.hl7");
const LATIN1: &[u8] = include_bytes!("../../tests/data/latin1_adt.hl7");

fn get<'a>(msg: &'a Message, path: &str) -> Option<Cow<'a, str>> {
    msg.get(path)
}

fn s(msg: &Message, path: &str) -> String {
    get(msg, path)
        .map(Cow::into_owned)
        .unwrap_or_else(|| panic!("{path} missing"))
}

#[test]
fn adt_header_accessors() {
    let msg = Message::parse(ADT).unwrap();
    assert_eq!(msg.message_type().unwrap(), "ADT^A01");
    assert_eq!(msg.message_code().unwrap(), "ADT");
    assert_eq!(msg.trigger_event().unwrap(), "A01");
    assert_eq!(msg.control_id().unwrap(), "MSG00001");
    assert_eq!(msg.sending_application().unwrap(), "ADT1");
    assert_eq!(msg.sending_facility().unwrap(), "GOOD HEALTH HOSPITAL");
    assert_eq!(msg.receiving_application().unwrap(), "GHH LAB, INC.");
    assert_eq!(msg.receiving_facility().unwrap(), "GOOD HEALTH HOSPITAL");
    assert_eq!(msg.timestamp().unwrap(), "20240315083012-0500");
    assert_eq!(msg.processing_id().unwrap(), "P");
    assert_eq!(msg.version().unwrap(), "2.5.1");
    assert_eq!(msg.accept_ack_type(), None);
    assert_eq!(msg.application_ack_type(), None);
    assert_eq!(msg.charset(), None);
    assert_eq!(msg.encoding(), Charset::Utf8);
    assert_eq!(msg.segments().count(), 7);
    let names: Vec<&str> = msg.segments().map(|s| s.name()).collect();
    assert_eq!(names, ["MSH", "EVN", "PID", "NK1", "PV1", "AL1", "DG1"]);
}

#[test]
fn adt_patient_and_visit_paths() {
    let msg = Message::parse(ADT).unwrap();
    assert_eq!(s(&msg, "PID-3"), "12345^^^HOSP^MR");
    assert_eq!(s(&msg, "PID-3.1"), "12345");
    assert_eq!(s(&msg, "PID-3.4"), "HOSP");
    assert_eq!(s(&msg, "PID-3.5"), "MR");
    assert_eq!(s(&msg, "PID-3[2].1"), "987654320");
    assert_eq!(s(&msg, "PID-3[2].5"), "SS");
    assert_eq!(get(&msg, "PID-3[3]"), None);
    assert_eq!(s(&msg, "PID-5.1"), "DOE");
    assert_eq!(s(&msg, "PID-5.2"), "JOHN");
    assert_eq!(s(&msg, "PID-5[2].2"), "JACK");
    assert_eq!(s(&msg, "PID-7"), "19800115");
    assert_eq!(s(&msg, "PID-8"), "M");
    assert_eq!(s(&msg, "PID-11.3"), "SPRINGFIELD");
    assert_eq!(s(&msg, "PID-11.5"), "62704");
    assert_eq!(s(&msg, "PID-13.7"), "5551234");
    assert_eq!(s(&msg, "PID-13[2].4"), "john.doe@example.com");
    assert_eq!(s(&msg, "PV1-2"), "I");
    assert_eq!(s(&msg, "PV1-3.1"), "4EAST");
    assert_eq!(s(&msg, "PV1-3.2"), "412");
    assert_eq!(s(&msg, "PV1-7.2"), "WELBY");
    assert_eq!(s(&msg, "PV1-7.13"), "NPI");
    assert_eq!(s(&msg, "PV1-44"), "20240315080000");
    assert_eq!(s(&msg, "AL1-3.2"), "Penicillin");
}

#[test]
fn msh_field_numbering() {
    let msg = Message::parse(ADT).unwrap();
    assert_eq!(s(&msg, "MSH-1"), "|");
    assert_eq!(s(&msg, "MSH-2"), "^~\\&");
    assert_eq!(msg.get_raw("MSH-2.1"), Some("^~\\&"));
    assert_eq!(msg.get_raw("MSH-2.2"), None);
    assert_eq!(s(&msg, "MSH-3"), "ADT1");
    assert_eq!(s(&msg, "MSH-9"), "ADT^A01^ADT_A01");
    assert_eq!(s(&msg, "MSH-9.3"), "ADT_A01");
    let msh = msg.segment("MSH", 1).unwrap();
    assert_eq!(msh.field_count(), 12);
    assert_eq!(msh.raw_field(1), Some("|"));
    assert_eq!(msh.raw_fields().nth(2), Some("ADT1"));
    let pid = msg.segment("PID", 1).unwrap();
    assert_eq!(pid.raw_field(1), Some("1"));
    assert_eq!(pid.get("5.1").unwrap(), "DOE");
    assert_eq!(pid.raw_fields().next(), Some("1"));
}

#[test]
fn empty_absent_and_bad_paths_are_none() {
    let msg = Message::parse(ADT).unwrap();
    assert_eq!(get(&msg, "PID-2"), None); // present but empty
    assert_eq!(msg.get_raw("PID-2"), Some(""));
    assert_eq!(get(&msg, "PID-99"), None);
    assert_eq!(get(&msg, "PID-5.40"), None);
    assert_eq!(get(&msg, "OBX-5"), None);
    assert_eq!(get(&msg, "PID[2]-1"), None);
    assert_eq!(get(&msg, "nonsense"), None);
    assert_eq!(get(&msg, "PID-0"), None);
}

#[test]
fn orm_enhanced_mode_fields() {
    let msg = Message::parse(ORM).unwrap();
    assert_eq!(msg.message_type().unwrap(), "ORM^O01");
    assert_eq!(msg.version().unwrap(), "2.3.1");
    assert_eq!(msg.accept_ack_type().unwrap(), "AL");
    assert_eq!(msg.application_ack_type().unwrap(), "AL");
    assert_eq!(s(&msg, "ORC-1"), "NW");
    assert_eq!(s(&msg, "OBR-4.1"), "24323-8");
    assert_eq!(s(&msg, "OBR-13"), "Fasting 12h & no meds");
    assert_eq!(msg.get_raw("OBR-13"), Some("Fasting 12h \\T\\ no meds"));
}

#[test]
fn oru_observations() {
    let msg = Message::parse(ORU).unwrap();
    assert_eq!(msg.message_type().unwrap(), "ORU^R01");
    assert_eq!(msg.charset().unwrap(), "UNICODE UTF-8");
    assert_eq!(msg.segments_named("OBX").count(), 4);
    assert_eq!(s(&msg, "OBX-2"), "NM");
    assert_eq!(s(&msg, "OBX-3.1"), "2345-7");
    assert_eq!(s(&msg, "OBX-3.3"), "LN");
    assert_eq!(s(&msg, "OBX-5"), "182");
    assert_eq!(s(&msg, "OBX-6.1"), "mg/dL");
    assert_eq!(s(&msg, "OBX-7"), "70-99");
    assert_eq!(s(&msg, "OBX-8"), "H");
    assert_eq!(s(&msg, "OBX-11"), "F");
    assert_eq!(s(&msg, "OBX[2]-5"), "0.9");
    assert_eq!(s(&msg, "OBX[2]-8"), "N");
    assert_eq!(s(&msg, "OBX[3]-2"), "CE");
    assert_eq!(s(&msg, "OBX[3]-5.2"), "Yellow color");
    assert_eq!(
        s(&msg, "OBX[4]-5"),
        "Specimen slightly hemolyzed & repeat advised\nCalled to Dr. House"
    );
    assert_eq!(s(&msg, "NTE-3"), "Specimen received at 4 °C.");
    let values: Vec<String> = msg
        .segments_named("OBX")
        .filter_map(|o| o.get("5.1").map(Cow::into_owned))
        .collect();
    assert_eq!(values[..2], ["182", "0.9"]);
}

#[test]
fn latin1_message_is_decoded() {
    assert!(LATIN1.contains(&0xE9));
    let msg = Message::parse(LATIN1).unwrap();
    assert_eq!(msg.encoding(), Charset::Latin1);
    assert_eq!(msg.charset().unwrap(), "8859/1");
    assert_eq!(msg.sending_facility().unwrap(), "HÔPITAL MONTRÉAL");
    assert_eq!(s(&msg, "PID-5.1"), "Lévesque");
    assert_eq!(s(&msg, "PID-5.2"), "René");
    assert_eq!(s(&msg, "PID-11.3"), "Montréal");
    assert_eq!(s(&msg, "PID-15.2"), "Français");
    assert!(msg.raw().contains("Frédéric"));
    // The same bytes without the charset are not UTF-8.
    let text = String::from_utf8_lossy(LATIN1).replace("8859/1", "");
    let _ = text;
    let mut utf = LATIN1.to_vec();
    let at = utf.windows(6).position(|w| w == b"8859/1").unwrap();
    utf.drain(at..at + 6);
    assert!(matches!(
        Message::parse(&utf),
        Err(ParseError::InvalidUtf8 { .. })
    ));
}

#[test]
fn lf_and_crlf_separators() {
    let cr = Message::parse(ADT).unwrap();
    let lf_bytes: Vec<u8> = ADT
        .iter()
        .map(|&b| if b == b'\r' { b'\n' } else { b })
        .collect();
    let crlf = String::from_utf8(ADT.to_vec())
        .unwrap()
        .replace('\r', "\r\n");
    for msg in [
        Message::parse(&lf_bytes).unwrap(),
        Message::parse_str(&crlf).unwrap(),
    ] {
        assert_eq!(msg.segments().count(), cr.segments().count());
        for path in ["PID-5.1", "PV1-44", "MSH-10", "DG1-3.2"] {
            assert_eq!(msg.get(path), cr.get(path), "{path}");
        }
    }
}

#[test]
fn leading_noise_blank_lines_and_bom_are_tolerated() {
    let text = "\u{feff}\r\n  MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|2.5\r\r\nPID|1\r\n\r\n";
    let msg = Message::parse(text.as_bytes()).unwrap();
    assert!(msg.raw().starts_with("MSH|"));
    assert_eq!(msg.segments().count(), 2);
}

#[test]
fn subcomponents_and_escapes() {
    let text = "MSH|^~\\&|A|B|C|D|||ADT^A08|X1|P|2.5\r\
                PID|1||1^^^H&1.2.3&ISO^MR||DE LA CRUZ&DE&LA CRUZ^MAR\\XC3AD\\A||||||\\F\\ \\S\\ \\R\\ \\E\\ \\Zz\\\r";
    let msg: Message = text.parse().unwrap();
    assert_eq!(s(&msg, "PID-5.1.1"), "DE LA CRUZ");
    assert_eq!(s(&msg, "PID-5.1.2"), "DE");
    assert_eq!(s(&msg, "PID-5.1"), "DE LA CRUZ&DE&LA CRUZ");
    assert_eq!(s(&msg, "PID-5.2"), "MARíA");
    assert_eq!(s(&msg, "PID-3.4.2"), "1.2.3");
    assert_eq!(get(&msg, "PID-3.4.4"), None);
    assert_eq!(s(&msg, "PID-11"), "| ^ ~ \\ \\Zz\\");
}

#[test]
fn custom_delimiters() {
    let text = "MSH!@*$%!SEND!FAC!RECV!FAC!!!ORU@R01!7!P!2.4\rOBX!1!ST!X@Y!!a$F$b*c@d%e\r";
    let msg = Message::parse_str(text).unwrap();
    let d = msg.delimiters();
    assert_eq!((d.field, d.component, d.repetition), ('!', '@', '*'));
    assert_eq!(msg.message_type().unwrap(), "ORU^R01");
    assert_eq!(s(&msg, "MSH-1"), "!");
    assert_eq!(s(&msg, "OBX-5"), "a!b");
    assert_eq!(s(&msg, "OBX-5[2].1"), "c");
    assert_eq!(s(&msg, "OBX-5[2].2.2"), "e");
}

#[test]
fn message_type_without_trigger() {
    let msg = Message::parse(b"MSH|^~\\&|||||||ACK|1|P|2.5\rMSA|AA|1").unwrap();
    assert_eq!(msg.message_type().unwrap(), "ACK");
}

#[test]
fn parse_errors_are_precise() {
    let cases: Vec<(&[u8], ParseError)> = vec![
        (b"", ParseError::Empty),
        (b" \r\n\r\n", ParseError::Empty),
        (b"PID|1\rOBX|1", ParseError::MissingMsh),
        (
            b"EVN|A01\rMSH|^~\\&|",
            ParseError::MshNotFirst {
                found: "EVN".into(),
            },
        ),
        (b"MSH", ParseError::MshTooShort),
        (b"MSH\rPID|1", ParseError::MshTooShort),
        (b"MSHa^~\\&|", ParseError::BadFieldSeparator(b'a')),
        (
            b"MSH|^^\\&|",
            ParseError::BadEncodingCharacters("^^\\&".into()),
        ),
        (
            b"MSH|^~\\&|||||||ADT^A01|1|P|2.5||||||ISO IR87",
            ParseError::UnsupportedCharset("ISO IR87".into()),
        ),
        (b"MSH|^~\\&|Caf\xE9", ParseError::InvalidUtf8 { offset: 12 }),
        (
            b"MSH|^~\\&|A\rPID|1\rP I D|2",
            ParseError::InvalidSegmentName {
                index: 3,
                name: "P I D".into(),
            },
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(Message::parse(input), Err(expected), "{input:?}");
    }
}

#[test]
fn json_view_shape() {
    let text = "MSH|^~\\&|LAB||||||ORU^R01|9|P|2.5\r\
                PID|1||123^^^H^MR~456^^^S^SS||DOE^JO\\T\\E&X\r\
                OBX|1|ST|||a\\S\\b";
    let msg = Message::parse_str(text).unwrap();
    let v = msg.to_json();
    assert_eq!(v["segments"][0]["name"], "MSH");
    assert_eq!(v["segments"][0]["fields"][0], "|");
    assert_eq!(v["segments"][0]["fields"][1], "^~\\&");
    assert_eq!(v["segments"][0]["fields"][2], "LAB");
    assert_eq!(v["segments"][0]["fields"][8], json!(["ORU", "R01"]));
    let pid = &v["segments"][1];
    assert_eq!(pid["name"], "PID");
    assert_eq!(pid["fields"][0], "1");
    assert_eq!(pid["fields"][1], "");
    assert_eq!(
        pid["fields"][2],
        json!({"repetitions": [["123", "", "", "H", "MR"], ["456", "", "", "S", "SS"]]})
    );
    assert_eq!(pid["fields"][4], json!(["DOE", ["JO&E", "X"]]));
    assert_eq!(v["segments"][2]["fields"][4], "a^b");
    assert_eq!(v["segments"].as_array().unwrap().len(), 3);
}

#[test]
fn json_of_sample_files_has_every_segment() {
    for data in [ADT, ORM, ORU, LATIN1] {
        let msg = Message::parse(data).unwrap();
        let v = msg.to_json();
        assert_eq!(
            v["segments"].as_array().unwrap().len(),
            msg.segments().count()
        );
    }
}

#[test]
fn escape_helpers_use_message_delimiters() {
    let msg = Message::parse_str("MSH!@*$%!A").unwrap();
    assert_eq!(msg.escape("a!b@c"), "a$F$b$S$c");
    assert_eq!(msg.unescape("a$F$b$S$c"), "a!b@c");
}

#[test]
fn hand_built_zero_indexes_do_not_panic() {
    let msg = Message::parse(ADT).unwrap();
    let pid = msg.segment("PID", 1).unwrap();
    for (rep, comp, sub) in [(0, None, None), (1, Some(0), None), (1, Some(1), Some(0))] {
        let loc = Location {
            field: 3,
            repetition: rep,
            component: comp,
            subcomponent: sub,
        };
        assert_eq!(pid.value(&loc), None);
    }
    assert!(msg.segment("PID", 0).is_none());
}

/// MSH reads go through the index made at parse time; they must answer exactly what reading the segment does,
/// for headers shorter than the index, as long as it, and longer (fields past MSH-21 are read from the segment).
#[test]
fn indexed_header_reads_match_the_segment() {
    // (MSH-18 must name a charset.)
    let long: String = (3..=25)
        .map(|n| match n {
            18 => "|UNICODE UTF-8".to_string(),
            n => format!("|F{n}^c{n}~R{n}"),
        })
        .collect();
    for text in [
        "MSH|^~\\&|APP|FAC\rPID|1".to_string(),
        format!("MSH|^~\\&{}\rPID|1", &long[..long.find("|F22").unwrap()]),
        format!("MSH|^~\\&{long}\rPID|1"),
        "MSH#@!$%#A@1#B".to_string(),
    ] {
        let msg = Message::parse_str(&text).unwrap();
        let msh = msg.segments().next().unwrap();
        for field in 0..=27 {
            assert_eq!(
                msg.header_field(field),
                msh.raw_field(field),
                "{text:?} field {field}"
            );
            for (repetition, component) in [
                (1, None),
                (1, Some(1)),
                (1, Some(2)),
                (2, None),
                (2, Some(1)),
            ] {
                let loc = Location {
                    field,
                    repetition,
                    component,
                    subcomponent: None,
                };
                assert_eq!(msg.header_raw(&loc), msh.raw(&loc), "{text:?} {loc:?}");
                assert_eq!(
                    get(&msg, &format!("MSH-{field}")).as_deref(),
                    msh.get(&field.to_string()).as_deref().filter(|_| field > 0)
                );
            }
        }
    }
}
