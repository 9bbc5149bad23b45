//! Event type names and event sources.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// The seed's built-in event types (its `EventType` enum lists these fourteen).
pub const BUILTIN_EVENT_TYPES: [&str; 14] = [
    "hl7.received",
    "hl7.sent",
    "hl7.error",
    "hl7.parsed",
    "hl7.validated",
    "fhir.created",
    "fhir.updated",
    "fhir.deleted",
    "fhir.searched",
    "transform.started",
    "transform.completed",
    "transform.failed",
    "connection.opened",
    "connection.closed",
];

const CUSTOM_PREFIX: &str = "custom.";
const MAX_TYPE_LEN: usize = 128;

/// A validated event type: one of [`BUILTIN_EVENT_TYPES`] or a `custom.` name of lower-case dot segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventType(Cow<'static, str>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventTypeError {
    #[error("unknown event type '{0}'; built-in types are {list}, custom types start with 'custom.'", list = BUILTIN_EVENT_TYPES.join(", "))]
    Unknown(String),
    #[error("bad custom event type '{0}': use 'custom.' followed by lower-case segments of a-z, 0-9, '_' or '-' separated by dots, at most 128 characters")]
    BadCustomName(String),
}

impl EventType {
    pub fn parse(name: &str) -> Result<Self, EventTypeError> {
        if let Some(builtin) = BUILTIN_EVENT_TYPES.iter().find(|b| **b == name) {
            return Ok(EventType(Cow::Borrowed(builtin)));
        }
        let Some(rest) = name.strip_prefix(CUSTOM_PREFIX) else {
            return Err(EventTypeError::Unknown(name.to_string()));
        };
        let segment_ok = |s: &str| {
            s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        };
        if name.len() > MAX_TYPE_LEN || !rest.split('.').all(segment_ok) {
            return Err(EventTypeError::BadCustomName(name.to_string()));
        }
        Ok(EventType(Cow::Owned(name.to_string())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first segment: `hl7`, `fhir`, `transform`, `connection` or `custom`.
    pub fn category(&self) -> &str {
        self.0.split('.').next().unwrap_or("")
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    MllpServer,
    MllpClient,
    FhirApi,
    Transformer,
    QueueWorker,
    Api,
}

impl Source {
    pub const ALL: [Source; 6] = [
        Source::MllpServer,
        Source::MllpClient,
        Source::FhirApi,
        Source::Transformer,
        Source::QueueWorker,
        Source::Api,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::MllpServer => "mllp-server",
            Source::MllpClient => "mllp-client",
            Source::FhirApi => "fhir-api",
            Source::Transformer => "transformer",
            Source::QueueWorker => "queue-worker",
            Source::Api => "api",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_types_parse() {
        for name in BUILTIN_EVENT_TYPES {
            assert_eq!(EventType::parse(name).expect("builtin").as_str(), name);
        }
    }

    #[test]
    fn unknown_and_bad_custom_types_are_refused() {
        assert!(matches!(
            EventType::parse("hl7.unknown"),
            Err(EventTypeError::Unknown(_))
        ));
        assert!(matches!(
            EventType::parse("custom."),
            Err(EventTypeError::BadCustomName(_))
        ));
        assert!(matches!(
            EventType::parse("custom.Lab"),
            Err(EventTypeError::BadCustomName(_))
        ));
        assert!(matches!(
            EventType::parse("custom.lab..x"),
            Err(EventTypeError::BadCustomName(_))
        ));
        assert!(EventType::parse("custom.lab.critical").is_ok());
        assert!(EventType::parse("custom.appointment.created").is_ok());
    }

    #[test]
    fn sources_round_trip() {
        for s in Source::ALL {
            assert_eq!(Source::parse(s.as_str()), Some(s));
        }
        assert_eq!(Source::parse("nope"), None);
    }
}
