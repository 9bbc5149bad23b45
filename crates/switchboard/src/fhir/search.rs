//! FHIR search parameters: parsed once into a [`SearchQuery`] the store can answer. Supported: `_id`,
//! `_lastUpdated` (prefixes `eq gt lt ge le`), `_count`, `_offset` (paging); for Patient `identifier`, `family`,
//! `given`, `birthdate`; for Observation, Encounter and Task `subject` and `patient`; for Encounter also
//! `identifier`. Anything else is refused with an OperationOutcome that names it, never silently ignored.

pub use super::index::TokenMatch;
use super::outcome::FhirError;
use crate::event::Timestamp;

pub const DEFAULT_COUNT: usize = 20;
pub const MAX_COUNT: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Gt,
    Lt,
    Ge,
    Le,
}

impl Prefix {
    /// Splits a FHIR prefix off a date value (`ge2020-01-01`); no prefix means `eq`.
    fn split(value: &str) -> (Prefix, &str) {
        for (text, prefix) in [
            ("eq", Prefix::Eq),
            ("gt", Prefix::Gt),
            ("lt", Prefix::Lt),
            ("ge", Prefix::Ge),
            ("le", Prefix::Le),
        ] {
            if let Some(rest) = value.strip_prefix(text) {
                return (prefix, rest);
            }
        }
        (Prefix::Eq, value)
    }

    pub fn sql(self) -> &'static str {
        match self {
            Prefix::Eq => "=",
            Prefix::Gt => ">",
            Prefix::Lt => "<",
            Prefix::Ge => ">=",
            Prefix::Le => "<=",
        }
    }
}

/// How one parameter's values match index rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// Any of these exact values.
    Exact(Vec<String>),
    /// Any value starting with one of these (lower-cased; FHIR string search).
    Prefix(Vec<String>),
    /// A date comparison against `YYYY-MM-DD` values.
    Date(Prefix, String),
    /// Any of these identifier token matches (see [`super::index::identifier_token`]).
    Token(Vec<TokenMatch>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamFilter {
    pub param: &'static str,
    pub matches: Match,
}

#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub ids: Vec<String>,
    pub last_updated: Vec<(Prefix, Timestamp)>,
    pub filters: Vec<ParamFilter>,
    pub count: usize,
    pub offset: usize,
}

#[derive(Clone, Copy)]
enum Kind {
    Token,
    Str,
    Date,
    Reference,
}

fn supported(resource_type: &str, param: &str) -> Option<(&'static str, Kind)> {
    match (resource_type, param) {
        ("Patient" | "Encounter", "identifier") => Some(("identifier", Kind::Token)),
        ("Patient", "family") => Some(("family", Kind::Str)),
        ("Patient", "given") => Some(("given", Kind::Str)),
        ("Patient", "birthdate") => Some(("birthdate", Kind::Date)),
        ("Observation" | "Encounter" | "Task", "subject") => Some(("subject", Kind::Reference)),
        ("Observation" | "Encounter" | "Task", "patient") => Some(("patient", Kind::Reference)),
        _ => None,
    }
}

/// The search parameters this server supports for a type (for the CapabilityStatement).
pub fn supported_params(resource_type: &str) -> &'static [&'static str] {
    match resource_type {
        "Patient" => &["identifier", "family", "given", "birthdate"],
        "Encounter" => &["identifier", "subject", "patient"],
        "Observation" | "Task" => &["subject", "patient"],
        _ => &[],
    }
}

fn parse_instant(value: &str) -> Option<Timestamp> {
    Timestamp::parse_rfc3339(value).or_else(|| {
        // A plain date means the start of that day, UTC.
        let date = time::Date::parse(
            value,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .ok()?;
        Some(Timestamp::from_datetime(date.midnight().assume_utc()))
    })
}

impl SearchQuery {
    /// Parses the query string pairs of `GET /fhir/{type}?…`.
    pub fn parse(resource_type: &str, pairs: &[(String, String)]) -> Result<Self, FhirError> {
        let mut query = SearchQuery {
            count: DEFAULT_COUNT,
            ..Default::default()
        };
        let mut unknown = Vec::new();
        for (name, value) in pairs {
            let values = || {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            };
            match name.as_str() {
                "_id" => query.ids.extend(values()),
                "_lastUpdated" => {
                    let (prefix, rest) = Prefix::split(value);
                    let ts = parse_instant(rest).ok_or_else(|| {
                        FhirError::invalid(format!(
                            "_lastUpdated: '{value}' is not a date or instant"
                        ))
                    })?;
                    query.last_updated.push((prefix, ts));
                }
                "_count" => {
                    query.count = value
                        .parse()
                        .ok()
                        .filter(|c| (1..=MAX_COUNT).contains(c))
                        .ok_or_else(|| {
                            FhirError::invalid(format!("_count must be between 1 and {MAX_COUNT}"))
                        })?;
                }
                "_offset" => {
                    query.offset = value.parse().map_err(|_| {
                        FhirError::invalid("_offset must be a non-negative integer")
                    })?;
                }
                "_format" if value.contains("json") => {}
                other => match supported(resource_type, other) {
                    None => unknown.push(other.to_string()),
                    Some((param, kind)) => {
                        let matches = match kind {
                            Kind::Token => Match::Token(
                                values()
                                    .iter()
                                    .map(|v| {
                                        TokenMatch::parse(v).ok_or_else(|| {
                                            FhirError::invalid(format!(
                                                "{other}: '{v}' names a system without a value; \
                                                 searching a whole system is not supported"
                                            ))
                                        })
                                    })
                                    .collect::<Result<_, _>>()?,
                            ),
                            Kind::Str => Match::Prefix(
                                values().into_iter().map(|v| v.to_lowercase()).collect(),
                            ),
                            Kind::Reference => Match::Exact(
                                values()
                                    .into_iter()
                                    .map(|v| {
                                        if v.contains('/') {
                                            v
                                        } else {
                                            format!("Patient/{v}")
                                        }
                                    })
                                    .collect(),
                            ),
                            Kind::Date => {
                                let (prefix, rest) = Prefix::split(value);
                                if time::Date::parse(
                                    rest,
                                    time::macros::format_description!("[year]-[month]-[day]"),
                                )
                                .is_err()
                                {
                                    return Err(FhirError::invalid(format!(
                                        "{other}: '{value}' is not a date (YYYY-MM-DD)"
                                    )));
                                }
                                Match::Date(prefix, rest.to_string())
                            }
                        };
                        query.filters.push(ParamFilter { param, matches });
                    }
                },
            }
        }
        if !unknown.is_empty() {
            let known = supported_params(resource_type);
            return Err(FhirError::invalid(format!(
                "unknown search parameter(s) for {resource_type}: {}; supported: _id, _lastUpdated, _count{}{}",
                unknown.join(", "),
                if known.is_empty() { "" } else { ", " },
                known.join(", ")
            )));
        }
        Ok(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn patient_parameters_parse() {
        let q = SearchQuery::parse(
            "Patient",
            &pairs(&[
                ("family", "Smi"),
                ("birthdate", "ge1970-01-01"),
                ("identifier", "urn:x|1"),
                ("_count", "5"),
            ]),
        )
        .expect("parse");
        assert_eq!(q.count, 5);
        assert_eq!(
            q.filters[0],
            ParamFilter {
                param: "family",
                matches: Match::Prefix(vec!["smi".into()])
            }
        );
        assert_eq!(
            q.filters[1],
            ParamFilter {
                param: "birthdate",
                matches: Match::Date(Prefix::Ge, "1970-01-01".into())
            }
        );
        assert_eq!(
            q.filters[2],
            ParamFilter {
                param: "identifier",
                matches: Match::Token(vec![TokenMatch::Exact("1\u{1f}urn:x".into())])
            }
        );
    }

    #[test]
    fn references_default_to_patient() {
        let q = SearchQuery::parse("Observation", &pairs(&[("patient", "p1")])).expect("parse");
        assert_eq!(
            q.filters[0].matches,
            Match::Exact(vec!["Patient/p1".into()])
        );
    }

    #[test]
    fn unknown_and_bad_parameters_are_reported() {
        let err = SearchQuery::parse("Patient", &pairs(&[("colour", "red")])).expect_err("unknown");
        assert!(err.diagnostics.contains("colour"), "{}", err.diagnostics);
        assert!(SearchQuery::parse("Medication", &pairs(&[("family", "x")])).is_err());
        assert!(SearchQuery::parse("Patient", &pairs(&[("_count", "0")])).is_err());
        assert!(SearchQuery::parse("Patient", &pairs(&[("birthdate", "yesterday")])).is_err());
        assert!(SearchQuery::parse("Patient", &pairs(&[("_lastUpdated", "gt2020-01-01")])).is_ok());
        let err = SearchQuery::parse("Patient", &pairs(&[("identifier", "urn:x|")]))
            .expect_err("a system alone");
        assert!(err.diagnostics.contains("urn:x|"), "{}", err.diagnostics);
    }
}
