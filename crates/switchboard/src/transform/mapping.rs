//! HL7 v2 → FHIR R4 mappings, as pure functions of a parsed message.
//!
//! ADT^A01/A04/A08/A28/A31 → Patient (and Encounter for A01/A04); ORU^R01 → Patient + one Observation per OBX.
//!
//! Patients and Encounters are upserted by identifier: [`resource_keys`] gives the search-index token of the first
//! PID-3 identifier and of the PV1-19 visit number, the transformer looks those up in the store's search index, and
//! passes the ids it found (or new, time-ordered ones from [`new_resource_id`]) to [`map_message`]. Time-ordered ids
//! keep a new patient's or visit's rows at the end of the resource tables' indexes instead of on a random page of
//! each. An Encounter without a visit number and Observations get ids derived from stable business keys
//! (sending facility and control id; control id and OBX set id), so the same message mapped twice gives the same
//! resources and upserts never duplicate.

use crate::fhir::index::identifier_token;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use switchboard_hl7::{Message, Segment};

/// One resource to write: type, id and body (without `meta`, which the FHIR store sets).
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub resource_type: &'static str,
    pub id: String,
    pub body: Value,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MappingError {
    #[error(
        "unsupported message type {0}: mapped types are ADT^A01, A04, A08, A28, A31 and ORU^R01"
    )]
    Unsupported(String),
    #[error("the message has no PID segment")]
    MissingPid,
    #[error("PID-3 holds no patient identifier")]
    MissingIdentifier,
}

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

/// The search parameter the keys of [`resource_keys`] are indexed under, for Patients and Encounters alike.
pub const KEY_PARAM: &str = "identifier";

/// The business keys a message's Patient and Encounter are upserted by, as the rows the search index holds for
/// those identifiers under [`KEY_PARAM`] ([`identifier_token`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceKeys {
    /// The first PID-3 identifier.
    pub patient: String,
    /// The PV1-19 visit number of an ADT^A01/A04 (`None` for other types and when PV1-19 is empty).
    pub encounter: Option<String>,
}

/// The ids the transformer resolved for a message's [`ResourceKeys`].
#[derive(Debug, Clone, Copy)]
pub struct ResourceIds<'a> {
    pub patient: &'a str,
    pub encounter: Option<&'a str>,
}

/// The keys of `msg`'s Patient and Encounter. Fails for message types that are not mapped and for messages
/// without a patient identifier.
pub fn resource_keys(msg: &Message) -> Result<ResourceKeys, MappingError> {
    let message_type = msg.message_type().map(Cow::into_owned).unwrap_or_default();
    if !is_supported(&message_type) {
        return Err(MappingError::Unsupported(message_type));
    }
    let pid = msg.segment("PID", 1).ok_or(MappingError::MissingPid)?;
    let patient = patient_identifiers(msg, &pid)
        .into_iter()
        .next()
        .map(|identifier| token(&identifier))
        .ok_or(MappingError::MissingIdentifier)?;
    let encounter = if has_encounter(&message_type) {
        msg.segment("PV1", 1)
            .and_then(|pv1| visit_identifier(msg, &pv1))
            .map(|identifier| token(&identifier))
    } else {
        None
    };
    Ok(ResourceKeys { patient, encounter })
}

/// An `Identifier` as the row the search index holds for it.
fn token(identifier: &Value) -> String {
    let value = identifier
        .get("value")
        .and_then(Value::as_str)
        .unwrap_or("");
    identifier_token(identifier.get("system").and_then(Value::as_str), value)
}

/// A new resource id: `prefix-` and a UUIDv7, so ids sort by creation time.
pub fn new_resource_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

fn has_encounter(message_type: &str) -> bool {
    matches!(message_type, "ADT^A01" | "ADT^A04")
}

fn is_supported(message_type: &str) -> bool {
    matches!(
        message_type,
        "ADT^A01" | "ADT^A04" | "ADT^A08" | "ADT^A28" | "ADT^A31" | "ORU^R01"
    )
}

/// Maps a message of `org` to the resources it describes; `ids` are the ids resolved for its
/// [`resource_keys`] (an Encounter whose key was `None` gets an id derived from the control id).
pub fn map_message(
    org: &str,
    msg: &Message,
    ids: ResourceIds<'_>,
) -> Result<Vec<Mapped>, MappingError> {
    let message_type = msg.message_type().map(Cow::into_owned).unwrap_or_default();
    let mut out = Vec::new();
    match message_type.as_str() {
        "ADT^A01" | "ADT^A04" | "ADT^A08" | "ADT^A28" | "ADT^A31" => {
            let patient = patient(msg, ids.patient)?;
            if has_encounter(&message_type) {
                if let Some(encounter) = encounter(org, msg, &patient.id, ids.encounter) {
                    out.push(patient);
                    out.push(encounter);
                    return Ok(out);
                }
            }
            out.push(patient);
        }
        "ORU^R01" => {
            let patient = patient(msg, ids.patient)?;
            let subject = patient.id.clone();
            out.push(patient);
            let fallback_time = msg
                .segment("OBR", 1)
                .and_then(|obr| obr.get("7"))
                .and_then(|t| hl7_datetime(&t));
            for (index, obx) in msg.segments_named("OBX").enumerate() {
                out.push(observation(
                    org,
                    msg,
                    &obx,
                    index + 1,
                    &subject,
                    fallback_time.as_deref(),
                ));
            }
        }
        other => return Err(MappingError::Unsupported(other.to_string())),
    }
    Ok(out)
}

/// A short stable id from business-key parts: `prefix` + 24 hex characters of their SHA-256.
pub fn stable_id(prefix: &str, parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0x1f]);
    }
    format!("{prefix}-{}", &hex::encode(hasher.finalize())[..24])
}

fn repetitions(msg: &Message, seg: &Segment<'_>, field: usize) -> usize {
    seg.raw_field(field).map_or(0, |f| {
        if f.is_empty() {
            0
        } else {
            f.split(msg.delimiters().repetition).count()
        }
    })
}

fn get(seg: &Segment<'_>, location: &str) -> Option<String> {
    seg.get(location).map(Cow::into_owned)
}

fn identifier_system(authority: &str) -> String {
    if !authority.is_empty() && authority.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        format!("urn:oid:{authority}")
    } else {
        format!("urn:id:{}", authority.replace(' ', "-"))
    }
}

/// PID-3's identifiers as FHIR `Identifier`s.
fn patient_identifiers(msg: &Message, pid: &Segment<'_>) -> Vec<Value> {
    let mut identifiers = Vec::new();
    for r in 1..=repetitions(msg, pid, 3) {
        let Some(value) = get(pid, &format!("3[{r}].1")) else {
            continue;
        };
        let mut identifier = Map::new();
        if let Some(authority) = get(pid, &format!("3[{r}].4")) {
            identifier.insert("system".into(), json!(identifier_system(&authority)));
        }
        identifier.insert("value".into(), json!(value));
        if let Some(kind) = get(pid, &format!("3[{r}].5")) {
            identifier.insert(
                "type".into(),
                json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": kind}]}),
            );
        }
        identifiers.push(Value::Object(identifier));
    }
    identifiers
}

fn patient(msg: &Message, id: &str) -> Result<Mapped, MappingError> {
    let pid = msg.segment("PID", 1).ok_or(MappingError::MissingPid)?;
    let identifiers = patient_identifiers(msg, &pid);
    if identifiers.is_empty() {
        return Err(MappingError::MissingIdentifier);
    }
    let mut body = json!({ "resourceType": "Patient", "id": id, "identifier": identifiers });
    let names: Vec<Value> = (1..=repetitions(msg, &pid, 5))
        .filter_map(|r| {
            let family = get(&pid, &format!("5[{r}].1"));
            let given: Vec<String> = [2, 3]
                .iter()
                .filter_map(|c| get(&pid, &format!("5[{r}].{c}")))
                .collect();
            if family.is_none() && given.is_empty() {
                return None;
            }
            let mut name = Map::new();
            if let Some(family) = family {
                name.insert("family".into(), json!(family));
            }
            if !given.is_empty() {
                name.insert("given".into(), json!(given));
            }
            if let Some(suffix) = get(&pid, &format!("5[{r}].4")) {
                name.insert("suffix".into(), json!([suffix]));
            }
            let use_code = match get(&pid, &format!("5[{r}].7")).as_deref() {
                Some("L") => Some("official"),
                Some("A") => Some("nickname"),
                Some("M") => Some("maiden"),
                _ => None,
            };
            if let Some(u) = use_code {
                name.insert("use".into(), json!(u));
            }
            Some(Value::Object(name))
        })
        .collect();
    if !names.is_empty() {
        body["name"] = json!(names);
    }
    if let Some(date) = get(&pid, "7").and_then(|d| hl7_date(&d)) {
        body["birthDate"] = json!(date);
    }
    if let Some(sex) = get(&pid, "8") {
        body["gender"] = json!(match sex.as_str() {
            "M" => "male",
            "F" => "female",
            "O" | "A" => "other",
            _ => "unknown",
        });
    }
    if let Some(address) = address(&pid) {
        body["address"] = json!([address]);
    }
    let telecom: Vec<Value> = [(13, "home"), (14, "work")]
        .iter()
        .flat_map(|(field, use_code)| {
            (1..=repetitions(msg, &pid, *field))
                .filter_map(move |r| telecom(&pid, *field, r, use_code))
        })
        .collect();
    if !telecom.is_empty() {
        body["telecom"] = json!(telecom);
    }
    Ok(Mapped {
        resource_type: "Patient",
        id: id.to_string(),
        body,
    })
}

fn address(pid: &Segment<'_>) -> Option<Value> {
    let line: Vec<String> = [1, 2]
        .iter()
        .filter_map(|c| get(pid, &format!("11.{c}")))
        .collect();
    let mut address = Map::new();
    if !line.is_empty() {
        address.insert("line".into(), json!(line));
    }
    for (component, key) in [(3, "city"), (4, "state"), (5, "postalCode"), (6, "country")] {
        if let Some(value) = get(pid, &format!("11.{component}")) {
            address.insert(key.into(), json!(value));
        }
    }
    (!address.is_empty()).then_some(Value::Object(address))
}

fn telecom(pid: &Segment<'_>, field: usize, r: usize, use_code: &str) -> Option<Value> {
    let at = |c: usize| get(pid, &format!("{field}[{r}].{c}"));
    if let Some(email) = at(4) {
        return Some(json!({"system": "email", "value": email, "use": use_code}));
    }
    let number = at(1).or_else(|| {
        let local = at(7)?;
        Some(match at(6) {
            Some(area) => format!("({area}) {local}"),
            None => local,
        })
    })?;
    let system = match at(3).as_deref() {
        Some("FX") => "fax",
        Some("CP") | Some("BP") => "phone",
        _ => "phone",
    };
    Some(json!({"system": system, "value": number, "use": use_code}))
}

/// PV1-19 (the visit number) as an `Identifier`: its system from the assigning authority (PV1-19.4), or else from
/// the sending facility, whose visit numbers they are.
fn visit_identifier(msg: &Message, pv1: &Segment<'_>) -> Option<Value> {
    let value = get(pv1, "19.1")?;
    let authority = get(pv1, "19.4").or_else(|| msg.sending_facility().map(Cow::into_owned));
    Some(match authority.filter(|a| !a.is_empty()) {
        Some(authority) => json!({"system": identifier_system(&authority), "value": value}),
        None => json!({"value": value}),
    })
}

fn encounter(org: &str, msg: &Message, patient_id: &str, id: Option<&str>) -> Option<Mapped> {
    let pv1 = msg.segment("PV1", 1)?;
    let visit = visit_identifier(msg, &pv1);
    let id = match id {
        Some(id) => id.to_string(),
        None => {
            let facility = msg
                .sending_facility()
                .map(Cow::into_owned)
                .unwrap_or_default();
            let control = msg.control_id().map(Cow::into_owned).unwrap_or_default();
            stable_id("enc", &[org, &facility, "control", &control])
        }
    };
    let (code, display) = match get(&pv1, "2").as_deref() {
        Some("I") => ("IMP", "inpatient encounter"),
        Some("E") => ("EMER", "emergency"),
        Some("P") => ("PRENC", "pre-admission"),
        _ => ("AMB", "ambulatory"),
    };
    let mut body = json!({
        "resourceType": "Encounter",
        "id": id,
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code, "display": display},
        "subject": {"reference": format!("Patient/{patient_id}")},
    });
    if let Some(identifier) = visit {
        body["identifier"] = json!([identifier]);
    }
    let location: Vec<String> = [1, 2, 3, 4]
        .iter()
        .filter_map(|c| get(&pv1, &format!("3.{c}")))
        .collect();
    if !location.is_empty() {
        body["location"] = json!([{"location": {"display": location.join(" ")}}]);
    }
    if let Some(attending_id) = get(&pv1, "7.1") {
        let name: Vec<String> = [6, 3, 2]
            .iter()
            .filter_map(|c| get(&pv1, &format!("7.{c}")))
            .collect();
        body["participant"] = json!([{
            "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "ATND", "display": "attender"}]}],
            "individual": {"identifier": {"value": attending_id}, "display": name.join(" ")}
        }]);
    }
    if let Some(start) = get(&pv1, "44").and_then(|t| hl7_datetime(&t)) {
        body["period"] = json!({"start": start});
    }
    Some(Mapped {
        resource_type: "Encounter",
        id,
        body,
    })
}

fn coding_system(system: Option<&str>) -> Option<String> {
    match system? {
        "LN" => Some(LOINC.into()),
        "SCT" | "SNM" => Some("http://snomed.info/sct".into()),
        "UCUM" => Some(UCUM.into()),
        "" => None,
        other => Some(format!("urn:id:{other}")),
    }
}

fn codeable(seg: &Segment<'_>, field: usize) -> Value {
    let code = get(seg, &format!("{field}.1"));
    let display = get(seg, &format!("{field}.2"));
    let system = coding_system(get(seg, &format!("{field}.3")).as_deref());
    let mut coding = Map::new();
    if let Some(s) = system {
        coding.insert("system".into(), json!(s));
    }
    if let Some(c) = code {
        coding.insert("code".into(), json!(c));
    }
    if let Some(d) = &display {
        coding.insert("display".into(), json!(d));
    }
    let mut concept = json!({"coding": [coding]});
    if let Some(d) = display {
        concept["text"] = json!(d);
    }
    concept
}

fn observation(
    org: &str,
    msg: &Message,
    obx: &Segment<'_>,
    index: usize,
    patient_id: &str,
    fallback_time: Option<&str>,
) -> Mapped {
    let facility = msg
        .sending_facility()
        .map(Cow::into_owned)
        .unwrap_or_default();
    let control = msg.control_id().map(Cow::into_owned).unwrap_or_default();
    let set_id = get(obx, "1").unwrap_or_else(|| index.to_string());
    let id = stable_id("obs", &[org, &facility, &control, &set_id]);
    let status = match get(obx, "11").as_deref() {
        Some("F") => "final",
        Some("C") => "corrected",
        Some("P") | Some("S") => "preliminary",
        Some("X") => "cancelled",
        Some("W") => "entered-in-error",
        Some("I") | Some("R") => "registered",
        _ => "unknown",
    };
    let mut body = json!({
        "resourceType": "Observation",
        "id": id,
        "status": status,
        "code": codeable(obx, 3),
        "subject": {"reference": format!("Patient/{patient_id}")},
    });
    let unit = get(obx, "6.1");
    match get(obx, "2").as_deref() {
        Some("NM") | Some("SN") => {
            if let Some(number) = get(obx, "5").and_then(|v| v.trim().parse::<f64>().ok()) {
                let mut quantity = json!({"value": number});
                if let Some(u) = &unit {
                    quantity["unit"] = json!(u);
                    quantity["system"] = json!(UCUM);
                    quantity["code"] = json!(u);
                }
                body["valueQuantity"] = quantity;
            }
        }
        Some("CE") | Some("CWE") | Some("CNE") => body["valueCodeableConcept"] = codeable(obx, 5),
        _ => {
            if let Some(text) = get(obx, "5") {
                body["valueString"] = json!(text);
            }
        }
    }
    if let Some(range) = get(obx, "7") {
        body["referenceRange"] = json!([reference_range(&range, unit.as_deref())]);
    }
    if let Some(flag) = get(obx, "8") {
        let display = match flag.as_str() {
            "H" => "High",
            "L" => "Low",
            "HH" => "Critical high",
            "LL" => "Critical low",
            "N" => "Normal",
            "A" => "Abnormal",
            _ => "",
        };
        let mut coding = json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": flag});
        if !display.is_empty() {
            coding["display"] = json!(display);
        }
        body["interpretation"] = json!([{"coding": [coding]}]);
    }
    if let Some(time) = get(obx, "14")
        .and_then(|t| hl7_datetime(&t))
        .or(fallback_time.map(str::to_string))
    {
        body["effectiveDateTime"] = json!(time);
    }
    Mapped {
        resource_type: "Observation",
        id,
        body,
    }
}

fn reference_range(text: &str, unit: Option<&str>) -> Value {
    let quantity = |v: f64| match unit {
        Some(u) => json!({"value": v, "unit": u, "system": UCUM, "code": u}),
        None => json!({"value": v}),
    };
    if let Some((low, high)) = text.split_once('-') {
        if let (Ok(low), Ok(high)) = (low.trim().parse::<f64>(), high.trim().parse::<f64>()) {
            return json!({"low": quantity(low), "high": quantity(high)});
        }
    }
    json!({"text": text})
}

/// `YYYYMMDD[...]` → `YYYY-MM-DD`.
pub fn hl7_date(text: &str) -> Option<String> {
    let digits = text.get(..8)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!(
        "{}-{}-{}",
        &digits[..4],
        &digits[4..6],
        &digits[6..8]
    ))
}

/// An HL7 DTM (`YYYYMMDDHHMM[SS[.S+]][+/-ZZZZ]`) → FHIR dateTime. Times without a zone are taken as UTC
/// (FHIR requires a zone once a time is given).
pub fn hl7_datetime(text: &str) -> Option<String> {
    let (stamp, zone) = match text.find(['+', '-']) {
        Some(i) => (&text[..i], Some(&text[i..])),
        None => (text, None),
    };
    let stamp = stamp.split('.').next().unwrap_or(stamp);
    if stamp.len() < 8 || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let date = hl7_date(stamp)?;
    if stamp.len() < 12 {
        return Some(date);
    }
    let seconds = stamp.get(12..14).unwrap_or("00");
    let zone = match zone {
        Some(z) if z.len() == 5 => format!("{}:{}", &z[..3], &z[3..]),
        _ => "Z".to_string(),
    };
    Some(format!(
        "{date}T{}:{}:{seconds}{zone}",
        &stamp[8..10],
        &stamp[10..12]
    ))
}
