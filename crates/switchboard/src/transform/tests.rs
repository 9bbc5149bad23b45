use super::mapping::{
    hl7_date, hl7_datetime, map_message, new_resource_id, resource_keys, MappingError, ResourceIds,
};
use serde_json::json;
use switchboard_hl7::Message;

/// The ids the transformer would pass: `patient`, and `encounter` for the visit's Encounter.
fn ids<'a>(patient: &'a str, encounter: Option<&'a str>) -> ResourceIds<'a> {
    ResourceIds { patient, encounter }
}

fn sample(name: &str) -> Message {
    let path = format!(
        "{}/../switchboard-hl7/tests/data/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(path).expect("sample");
    Message::parse(&bytes).expect("parse")
}

#[test]
fn adt_a01_maps_to_patient_and_encounter() {
    let mapped =
        map_message("org-a", &sample("adt_a01.hl7"), ids("pat-1", Some("enc-1"))).expect("map");
    assert_eq!(mapped.len(), 2);
    assert_eq!(mapped[0].id, "pat-1");
    assert_eq!(mapped[1].id, "enc-1");
    let patient = &mapped[0].body;
    assert_eq!(mapped[0].resource_type, "Patient");
    assert_eq!(
        patient["identifier"][0],
        json!({"system": "urn:id:HOSP", "value": "12345", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}})
    );
    assert_eq!(patient["identifier"][1]["value"], "987654320");
    assert_eq!(
        patient["name"][0],
        json!({"family": "DOE", "given": ["JOHN", "QUINCY"], "suffix": ["JR"], "use": "official"})
    );
    assert_eq!(patient["birthDate"], "1980-01-15");
    assert_eq!(patient["gender"], "male");
    assert_eq!(patient["address"][0]["city"], "SPRINGFIELD");
    assert_eq!(
        patient["address"][0]["line"],
        json!(["123 MAIN ST", "APT 4B"])
    );
    assert_eq!(
        patient["telecom"][0],
        json!({"system": "phone", "value": "(217) 5551234", "use": "home"})
    );
    assert_eq!(
        patient["telecom"][1],
        json!({"system": "email", "value": "john.doe@example.com", "use": "home"})
    );
    let encounter = &mapped[1].body;
    assert_eq!(encounter["class"]["code"], "IMP");
    assert_eq!(
        encounter["subject"]["reference"],
        format!("Patient/{}", mapped[0].id)
    );
    assert_eq!(encounter["period"]["start"], "2024-03-15T08:00:00Z");
    assert_eq!(
        encounter["participant"][0]["individual"]["identifier"]["value"],
        "1234"
    );
    assert_eq!(
        encounter["participant"][0]["individual"]["display"],
        "DR MARCUS WELBY"
    );
    assert_eq!(
        encounter["location"][0]["location"]["display"],
        "4EAST 412 B GHH"
    );
    assert_eq!(
        encounter["identifier"][0],
        json!({"system": "urn:id:HOSP", "value": "V00012345"})
    );
}

#[test]
fn mapping_is_deterministic_and_org_scoped() {
    let msg = sample("adt_a01.hl7");
    let first = map_message("org-a", &msg, ids("pat-1", Some("enc-1"))).expect("map");
    assert_eq!(
        first,
        map_message("org-a", &msg, ids("pat-1", Some("enc-1"))).expect("map")
    );
    // Without a visit number the Encounter's id comes from the control id, scoped by org.
    let no_visit = map_message("org-a", &msg, ids("pat-1", None)).expect("map");
    assert_eq!(
        no_visit,
        map_message("org-a", &msg, ids("pat-1", None)).expect("map")
    );
    let other = map_message("org-b", &msg, ids("pat-2", None)).expect("map");
    assert_ne!(no_visit[1].id, other[1].id, "encounter ids are org-scoped");
}

#[test]
fn the_keys_are_the_first_identifier_and_the_visit_number_as_tokens() {
    let keys = resource_keys(&sample("adt_a01.hl7")).expect("keys");
    assert_eq!(keys.patient, "12345\u{1f}urn:id:HOSP");
    assert_eq!(
        keys.encounter.as_deref(),
        Some("V00012345\u{1f}urn:id:HOSP")
    );
    let no_authority =
        Message::parse(b"MSH|^~\\&|A|B|C|D|20240101||ADT^A08|1|P|2.5\rPID|1||777||DOE^JANE\r")
            .expect("parse");
    let keys = resource_keys(&no_authority).expect("keys");
    assert_eq!(keys.patient, "777\u{1f}");
    assert_eq!(keys.encounter, None, "an A08 writes no Encounter");
    // A visit number without an assigning authority is the sending facility's.
    let facility_visit = Message::parse(
        b"MSH|^~\\&|A|WARD 7|C|D|20240101||ADT^A04|1|P|2.5\rPID|1||777||DOE^JANE\rPV1|1|O|||||||||||||||||V9\r",
    )
    .expect("parse");
    assert_eq!(
        resource_keys(&facility_visit)
            .expect("keys")
            .encounter
            .as_deref(),
        Some("V9\u{1f}urn:id:WARD-7")
    );
    let no_identifier =
        Message::parse(b"MSH|^~\\&|A|B|C|D|20240101||ADT^A08|1|P|2.5\rPID|1||||DOE^JANE\r")
            .expect("parse");
    assert_eq!(
        resource_keys(&no_identifier),
        Err(MappingError::MissingIdentifier)
    );
    assert!(matches!(
        resource_keys(&sample("orm_o01.hl7")),
        Err(MappingError::Unsupported(_))
    ));
}

#[test]
fn new_resource_ids_sort_by_creation_time() {
    let first = new_resource_id("pat");
    std::thread::sleep(std::time::Duration::from_millis(2));
    let second = new_resource_id("pat");
    assert!(first < second, "{first} < {second}");
    assert!(first.len() <= 64 && first.starts_with("pat-"));
}

#[test]
fn oru_r01_maps_each_obx_by_value_type() {
    let mapped = map_message("org-a", &sample("oru_r01.hl7"), ids("pat-1", None)).expect("map");
    assert_eq!(mapped.len(), 5, "a patient and four observations");
    let glucose = &mapped[1].body;
    assert_eq!(
        glucose["code"]["coding"][0],
        json!({"system": "http://loinc.org", "code": "2345-7", "display": "Glucose [Mass/volume] in Serum or Plasma"})
    );
    assert_eq!(
        glucose["valueQuantity"],
        json!({"value": 182.0, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"})
    );
    assert_eq!(glucose["referenceRange"][0]["low"]["value"], 70.0);
    assert_eq!(glucose["referenceRange"][0]["high"]["value"], 99.0);
    assert_eq!(glucose["interpretation"][0]["coding"][0]["code"], "H");
    assert_eq!(glucose["status"], "final");
    assert_eq!(glucose["effectiveDateTime"], "2024-03-15T08:30:00Z");
    let color = &mapped[3].body;
    assert_eq!(
        color["valueCodeableConcept"]["coding"][0],
        json!({"system": "http://snomed.info/sct", "code": "371244009", "display": "Yellow color"})
    );
    let comment = &mapped[4].body;
    assert_eq!(
        comment["valueString"],
        "Specimen slightly hemolyzed & repeat advised\nCalled to Dr. House"
    );
    assert!(
        comment.get("effectiveDateTime").is_some(),
        "falls back to OBR-7"
    );
    let ids: std::collections::HashSet<_> = mapped.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids.len(), 5);
}

#[test]
fn other_types_are_unsupported() {
    let err =
        map_message("org-a", &sample("orm_o01.hl7"), ids("pat-1", None)).expect_err("unsupported");
    assert!(
        matches!(err, MappingError::Unsupported(ref t) if t == "ORM^O01"),
        "{err}"
    );
}

#[test]
fn hl7_times_convert() {
    assert_eq!(hl7_date("19800115").as_deref(), Some("1980-01-15"));
    assert_eq!(hl7_date("1980"), None);
    assert_eq!(
        hl7_datetime("20240315083012-0500").as_deref(),
        Some("2024-03-15T08:30:12-05:00")
    );
    assert_eq!(
        hl7_datetime("202403150830").as_deref(),
        Some("2024-03-15T08:30:00Z")
    );
    assert_eq!(hl7_datetime("20240315").as_deref(), Some("2024-03-15"));
    assert_eq!(hl7_datetime("garbage"), None);
}
