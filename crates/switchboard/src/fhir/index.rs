//! Search index extraction: the values a resource is searchable by, computed in Rust when it is written so every
//! backend stores the same `(param, value)` rows and answers searches with plain indexed lookups.
//!
//! Values are normalised for matching: strings lower-cased (FHIR string search is case-insensitive and matches
//! prefixes), identifiers as one token row each (see [`identifier_token`]), references as `Type/id`, dates as
//! `YYYY-MM-DD`.

use serde_json::Value;

/// One searchable value of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub param: &'static str,
    pub value: String,
}

fn push(out: &mut Vec<IndexEntry>, param: &'static str, value: impl Into<String>) {
    let value = value.into();
    if !value.is_empty() {
        out.push(IndexEntry { param, value });
    }
}

fn array<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// Separates an identifier's value from its system in its index row.
const TOKEN_SEPARATOR: char = '\u{1f}';

/// How an identifier is stored in the search index: its value, U+001F, and its system (empty when it has none).
/// One row answers every supported form of a token search (see [`TokenMatch::parse`]): `value` is the range of
/// rows starting with the value and the separator, `system|value` and `|value` are single rows. Value first also
/// keeps a new identifier's row near its neighbours by value rather than behind every other row of its system.
pub fn identifier_token(system: Option<&str>, value: &str) -> String {
    let system = system.unwrap_or("");
    let mut token = String::with_capacity(value.len() + 1 + system.len());
    token.push_str(value);
    token.push(TOKEN_SEPARATOR);
    token.push_str(system);
    token
}

/// Which index rows one value of a token search parameter matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenMatch {
    /// Exactly this row.
    Exact(String),
    /// Every row starting with this.
    Prefix(String),
}

impl TokenMatch {
    /// `value` (any system), `system|value` or `|value` (no system). `None` for `system|`, which would mean every
    /// value of the system: not supported.
    pub fn parse(query: &str) -> Option<TokenMatch> {
        match query.split_once('|') {
            None => Some(TokenMatch::Prefix(format!("{query}{TOKEN_SEPARATOR}"))),
            Some((system, "")) if !system.is_empty() => None,
            Some((system, value)) => Some(TokenMatch::Exact(identifier_token(
                (!system.is_empty()).then_some(system),
                value,
            ))),
        }
    }
}

/// Each `identifier` as its [`identifier_token`].
fn identifiers(out: &mut Vec<IndexEntry>, resource: &Value) {
    for identifier in array(resource, "identifier") {
        let value = identifier
            .get("value")
            .and_then(Value::as_str)
            .unwrap_or("");
        let system = identifier.get("system").and_then(Value::as_str);
        push(out, "identifier", identifier_token(system, value));
    }
}

/// The search index rows of `resource` (of type `resource_type`).
pub fn extract(resource_type: &str, resource: &Value) -> Vec<IndexEntry> {
    let mut out = Vec::new();
    match resource_type {
        "Patient" => {
            identifiers(&mut out, resource);
            for name in array(resource, "name") {
                if let Some(family) = name.get("family").and_then(Value::as_str) {
                    push(&mut out, "family", family.to_lowercase());
                }
                for given in array(name, "given").filter_map(Value::as_str) {
                    push(&mut out, "given", given.to_lowercase());
                }
            }
            if let Some(date) = resource.get("birthDate").and_then(Value::as_str) {
                push(&mut out, "birthdate", date);
            }
        }
        "Observation" | "Encounter" | "Task" => {
            if resource_type == "Encounter" {
                identifiers(&mut out, resource);
            }
            let subject_key = if resource_type == "Task" {
                "for"
            } else {
                "subject"
            };
            if let Some(reference) = resource
                .get(subject_key)
                .and_then(|s| s.get("reference"))
                .and_then(Value::as_str)
            {
                push(&mut out, "subject", reference);
                if reference.starts_with("Patient/") {
                    push(&mut out, "patient", reference);
                }
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patients_are_indexed_by_identifier_name_and_birthdate() {
        let patient = json!({
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN1"}, {"value": "X9"}],
            "name": [{"family": "Smith", "given": ["John", "Q"]}],
            "birthDate": "1970-01-02"
        });
        let rows: Vec<(&str, String)> = extract("Patient", &patient)
            .into_iter()
            .map(|e| (e.param, e.value))
            .collect();
        assert!(rows.contains(&("identifier", "MRN1\u{1f}urn:oid:1.2.3".into())));
        assert!(rows.contains(&("identifier", "X9\u{1f}".into())));
        assert_eq!(
            rows.iter().filter(|(p, _)| *p == "identifier").count(),
            2,
            "one row per identifier"
        );
        assert!(rows.contains(&("family", "smith".into())));
        assert!(rows.contains(&("given", "john".into())));
        assert!(rows.contains(&("birthdate", "1970-01-02".into())));
    }

    #[test]
    fn token_searches_match_the_identifier_rows() {
        let stored = identifier_token(Some("urn:id:HOSP"), "12345");
        let bare = identifier_token(None, "12345");
        let matches = |query: &str, row: &str| match TokenMatch::parse(query).expect("supported") {
            TokenMatch::Exact(v) => v == row,
            TokenMatch::Prefix(p) => row.starts_with(&p),
        };
        assert!(matches("12345", &stored) && matches("12345", &bare));
        assert!(
            !matches("1234", &stored),
            "a value is not a prefix of a longer one"
        );
        assert!(matches("urn:id:HOSP|12345", &stored));
        assert!(!matches("urn:id:HOSP|12345", &bare));
        assert!(!matches("urn:id:HOS|12345", &stored));
        assert!(matches("|12345", &bare) && !matches("|12345", &stored));
        assert_eq!(TokenMatch::parse("urn:id:HOSP|"), None);
    }

    #[test]
    fn clinical_resources_are_indexed_by_subject() {
        let obs = json!({"resourceType": "Observation", "subject": {"reference": "Patient/p1"}});
        let rows = extract("Observation", &obs);
        assert_eq!(rows.len(), 2);
        let task = json!({"resourceType": "Task", "for": {"reference": "Patient/p2"}});
        assert_eq!(extract("Task", &task)[0].value, "Patient/p2");
        assert!(extract("Medication", &json!({})).is_empty());
    }

    #[test]
    fn encounters_are_indexed_by_identifier_and_subject() {
        let encounter = json!({
            "resourceType": "Encounter",
            "identifier": [{"system": "urn:id:HOSP", "value": "V1"}],
            "subject": {"reference": "Patient/p1"}
        });
        let rows: Vec<(&str, String)> = extract("Encounter", &encounter)
            .into_iter()
            .map(|e| (e.param, e.value))
            .collect();
        assert!(rows.contains(&("identifier", "V1\u{1f}urn:id:HOSP".into())));
        assert!(rows.contains(&("subject", "Patient/p1".into())));
        assert!(rows.contains(&("patient", "Patient/p1".into())));
    }
}
