//! The event model: what an event is, how it is named, and how it is checked before it reaches the log.
//!
//! A [`NewEvent`] is what a source hands to the hub; the hub validates it, gives it an id, a timestamp and a
//! `seq`, and stores it as an [`Event`]. Event types are validated once, by [`EventType::parse`], so the rest of
//! the crate never sees an unchecked type name.

mod derived;
mod pattern;
mod types;

pub use derived::structured_view_len;
pub use pattern::{any_matches, Pattern, PatternError};
pub use types::{EventType, EventTypeError, Source, BUILTIN_EVENT_TYPES};

pub use crate::store::{ResourceWrite, WriteAction};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use std::borrow::Cow;
use time::OffsetDateTime;
use uuid::Uuid;

/// The version of the event envelope, sent as `specVersion`.
pub const SPEC_VERSION: &str = "1.0";

/// An event as a source emits it, before the hub has stored it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: EventType,
    pub org_id: String,
    pub source: Source,
    pub message_type: Option<String>,
    pub message_control_id: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub data: Box<RawValue>,
    pub metadata: Option<Box<RawValue>>,
    /// Who caused the event (an API key id, a listener name); recorded for the audit log, never published.
    pub actor: Option<String>,
    /// A client-chosen key that makes publishing idempotent within an org.
    pub idempotency_key: Option<String>,
    /// A FHIR resource write committed in the same transaction as this event (see [`ResourceWrite`]).
    pub write: Option<Box<ResourceWrite>>,
}

/// A stored event: a [`NewEvent`] plus the id, timestamp and position the hub gave it.
// Published by the hand-written `Serialize` below, which serves `data` with what is derived on read (see
// `derived`); the field itself holds what the log stores. The serde attributes here only shape the schema.
#[derive(Debug, Clone, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// Position in the log, strictly increasing in commit order.
    pub seq: i64,
    pub spec_version: &'static str,
    #[schema(value_type = String)]
    pub event_type: EventType,
    #[serde(serialize_with = "serialize_timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: Timestamp,
    pub org_id: String,
    #[schema(value_type = String)]
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_control_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Box<RawValue>>,
    #[serde(skip)]
    pub actor: Option<String>,
    #[serde(skip)]
    pub idempotency_key: Option<String>,
    #[serde(skip)]
    pub write: Option<Box<ResourceWrite>>,
}

impl Event {
    /// `data` as it is published: the stored data plus what is derived from it when served.
    pub fn served_data(&self) -> Cow<'_, RawValue> {
        derived::served_data(&self.event_type, self.source, &self.data)
    }

    /// Builds the stored form of `new`; `seq` is filled in by the store when the batch commits.
    pub fn from_new(new: NewEvent, id: Uuid, timestamp: Timestamp) -> Self {
        Event {
            id,
            seq: 0,
            spec_version: SPEC_VERSION,
            event_type: new.event_type,
            timestamp,
            org_id: new.org_id,
            source: new.source,
            message_type: new.message_type,
            message_control_id: new.message_control_id,
            resource_type: new.resource_type,
            resource_id: new.resource_id,
            data: new.data,
            metadata: new.metadata,
            actor: new.actor,
            idempotency_key: new.idempotency_key,
            write: new.write,
        }
    }
}

/// The published form of an [`Event`]: its fields as the schema above names them, with `data` as served.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Published<'a> {
    id: &'a Uuid,
    seq: i64,
    spec_version: &'static str,
    event_type: &'a EventType,
    #[serde(serialize_with = "serialize_timestamp")]
    timestamp: Timestamp,
    org_id: &'a str,
    source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_control_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_id: Option<&'a str>,
    data: Cow<'a, RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a RawValue>,
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Published {
            id: &self.id,
            seq: self.seq,
            spec_version: self.spec_version,
            event_type: &self.event_type,
            timestamp: self.timestamp,
            org_id: &self.org_id,
            source: self.source,
            message_type: self.message_type.as_deref(),
            message_control_id: self.message_control_id.as_deref(),
            resource_type: self.resource_type.as_deref(),
            resource_id: self.resource_id.as_deref(),
            data: self.served_data(),
            metadata: self.metadata.as_deref(),
        }
        .serialize(s)
    }
}

/// Microseconds since the Unix epoch, UTC. Stored as an integer, published as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp((OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64)
    }

    pub fn from_datetime(dt: OffsetDateTime) -> Self {
        Timestamp((dt.unix_timestamp_nanos() / 1_000) as i64)
    }

    /// Parses an RFC 3339 date-time.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(Self::from_datetime)
    }

    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000;
        OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|dt| {
                dt.format(time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
                ))
                .ok()
            })
            .unwrap_or_default()
    }
}

fn serialize_timestamp<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&ts.to_rfc3339())
}

/// Why a [`NewEvent`] was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValidationError {
    #[error("orgId is required")]
    MissingOrg,
    #[error("orgId must be 1-64 characters of letters, digits, '.', '_' or '-'")]
    BadOrg,
    #[error("{0} events need messageType")]
    MissingMessageType(String),
    #[error("{0} events need resourceType")]
    MissingResourceType(String),
    #[error("event is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("{field} is longer than {limit} characters")]
    FieldTooLong { field: &'static str, limit: usize },
    #[error("metadata must be a JSON object")]
    MetadataNotObject,
}

const MAX_SHORT_FIELD: usize = 256;

/// Checks an org id: the characters are limited so that room names and cursors can embed it safely.
pub fn validate_org_id(org: &str) -> Result<(), ValidationError> {
    if org.is_empty() {
        return Err(ValidationError::MissingOrg);
    }
    let ok = org.len() <= 64
        && org
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::BadOrg)
    }
}

impl NewEvent {
    /// A new event with the required fields; the optional ones are set with the builder methods.
    pub fn new(
        event_type: EventType,
        org_id: impl Into<String>,
        source: Source,
        data: Box<RawValue>,
    ) -> Self {
        NewEvent {
            event_type,
            org_id: org_id.into(),
            source,
            message_type: None,
            message_control_id: None,
            resource_type: None,
            resource_id: None,
            data,
            metadata: None,
            actor: None,
            idempotency_key: None,
            write: None,
        }
    }

    /// A new event whose data is serialised from any `Serialize` value.
    pub fn with_json<T: Serialize>(
        event_type: EventType,
        org_id: impl Into<String>,
        source: Source,
        data: &T,
    ) -> Result<Self, serde_json::Error> {
        let raw = serde_json::value::to_raw_value(data)?;
        Ok(Self::new(event_type, org_id, source, raw))
    }

    pub fn message(mut self, message_type: impl Into<String>, control_id: Option<String>) -> Self {
        self.message_type = Some(message_type.into());
        self.message_control_id = control_id;
        self
    }

    pub fn resource(
        mut self,
        resource_type: impl Into<String>,
        resource_id: Option<String>,
    ) -> Self {
        self.resource_type = Some(resource_type.into());
        self.resource_id = resource_id;
        self
    }

    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// The bytes the event takes in the log, used for the size limit.
    pub fn size(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        self.data.get().len()
            + self.metadata.as_ref().map_or(0, |m| m.get().len())
            + self.org_id.len()
            + opt(&self.message_type)
            + opt(&self.message_control_id)
            + opt(&self.resource_type)
            + opt(&self.resource_id)
    }

    /// Checks everything the hub requires before an event may be stored.
    pub fn validate(&self, max_bytes: usize) -> Result<(), ValidationError> {
        validate_org_id(&self.org_id)?;
        let category = self.event_type.category();
        if category == "hl7" && self.message_type.as_deref().is_none_or(str::is_empty) {
            return Err(ValidationError::MissingMessageType(
                self.event_type.to_string(),
            ));
        }
        if category == "fhir" && self.resource_type.as_deref().is_none_or(str::is_empty) {
            return Err(ValidationError::MissingResourceType(
                self.event_type.to_string(),
            ));
        }
        for (field, value) in [
            ("messageType", &self.message_type),
            ("messageControlId", &self.message_control_id),
            ("resourceType", &self.resource_type),
            ("resourceId", &self.resource_id),
            ("idempotencyKey", &self.idempotency_key),
        ] {
            if value.as_ref().is_some_and(|v| v.len() > MAX_SHORT_FIELD) {
                return Err(ValidationError::FieldTooLong {
                    field,
                    limit: MAX_SHORT_FIELD,
                });
            }
        }
        if let Some(meta) = &self.metadata {
            if !meta.get().trim_start().starts_with('{') {
                return Err(ValidationError::MetadataNotObject);
            }
        }
        let size = self.size();
        if size > max_bytes {
            return Err(ValidationError::TooLarge {
                size,
                limit: max_bytes,
            });
        }
        Ok(())
    }
}

/// The PHI-free summary of an event used by live screens (Socket.IO, SSE summary view).
pub fn summary(event: &Event) -> String {
    let resource = event.resource_type.as_deref().unwrap_or("resource");
    match event.event_type.as_str() {
        "hl7.received" => format!(
            "HL7 {} message received",
            event.message_type.as_deref().unwrap_or("")
        ),
        "hl7.sent" => format!(
            "HL7 {} message sent",
            event.message_type.as_deref().unwrap_or("")
        ),
        "fhir.created" => format!("{resource} created"),
        "fhir.updated" => format!("{resource} updated"),
        "fhir.deleted" => format!("{resource} deleted"),
        other => other.to_string(),
    }
}

/// The body of `POST /api/events`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishRequest {
    pub event_type: String,
    /// Required for admin keys; an org key may omit it or must name its own org.
    pub org_id: Option<String>,
    pub message_type: Option<String>,
    pub message_control_id: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Box<RawValue>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).expect("valid json")
    }

    fn event(kind: &str) -> NewEvent {
        NewEvent::new(
            EventType::parse(kind).expect("type"),
            "org-1",
            Source::Api,
            raw("{}"),
        )
    }

    #[test]
    fn hl7_events_need_a_message_type() {
        let e = event("hl7.received");
        assert_eq!(
            e.validate(1024),
            Err(ValidationError::MissingMessageType("hl7.received".into()))
        );
        assert!(e.message("ADT^A01", None).validate(1024).is_ok());
    }

    #[test]
    fn fhir_events_need_a_resource_type() {
        let e = event("fhir.created");
        assert!(matches!(
            e.validate(1024),
            Err(ValidationError::MissingResourceType(_))
        ));
        assert!(e
            .resource("Patient", Some("1".into()))
            .validate(1024)
            .is_ok());
    }

    #[test]
    fn size_limit_is_enforced() {
        let mut e = event("custom.big");
        e.data = raw(&format!("\"{}\"", "x".repeat(2000)));
        assert!(matches!(
            e.validate(1024),
            Err(ValidationError::TooLarge { limit: 1024, .. })
        ));
    }

    #[test]
    fn org_ids_are_checked() {
        assert_eq!(validate_org_id(""), Err(ValidationError::MissingOrg));
        assert_eq!(validate_org_id("a:b"), Err(ValidationError::BadOrg));
        assert!(validate_org_id("hospital-1.lab_2").is_ok());
    }

    #[test]
    fn timestamps_render_as_rfc3339_utc() {
        let ts = Timestamp(1_673_778_600_123_456);
        assert_eq!(ts.to_rfc3339(), "2023-01-15T10:30:00.123456Z");
        assert_eq!(
            Timestamp::parse_rfc3339("2023-01-15T10:30:00.123456Z"),
            Some(ts)
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2023-01-15T11:30:00.123456+01:00"),
            Some(ts)
        );
    }

    #[test]
    fn summaries_carry_no_data() {
        let mut e = Event::from_new(
            event("fhir.created").resource("Patient", None),
            Uuid::now_v7(),
            Timestamp(0),
        );
        assert_eq!(summary(&e), "Patient created");
        e.event_type = EventType::parse("hl7.received").expect("type");
        e.message_type = Some("ADT^A01".into());
        assert_eq!(summary(&e), "HL7 ADT^A01 message received");
    }
}
