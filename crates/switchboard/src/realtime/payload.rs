//! What live screens receive, and how rooms are named.
//!
//! The payload is the seed's client view of an event: `id, eventType, timestamp, messageType, resourceType,
//! resourceId, summary`, plus `seq` (its place in the log, to resume or page from). It never carries `data` or
//! `metadata`: those may hold PHI. It is rendered once per event and the same bytes go to every socket.

use super::RealtimeError;
use crate::event::{summary, Event};
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

/// The PHI-free view of an event.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LivePayload<'a> {
    pub id: Uuid,
    pub seq: i64,
    pub event_type: &'a str,
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<&'a str>,
    pub summary: String,
}

impl<'a> LivePayload<'a> {
    pub fn of(event: &'a Event) -> Self {
        LivePayload {
            id: event.id,
            seq: event.seq,
            event_type: event.event_type.as_str(),
            timestamp: event.timestamp.to_rfc3339(),
            message_type: event.message_type.as_deref(),
            resource_type: event.resource_type.as_deref(),
            resource_id: event.resource_id.as_deref(),
            summary: summary(event),
        }
    }
}

/// The payload as JSON, rendered once and shared by every recipient.
pub fn render(event: &Event) -> Box<RawValue> {
    match serde_json::value::to_raw_value(&LivePayload::of(event)) {
        Ok(raw) => raw,
        // Serialising strings and numbers cannot fail; if it ever did, recipients get `null`, not a panic.
        Err(err) => {
            tracing::error!(error = %err, "cannot render a live payload");
            RawValue::NULL.to_owned()
        }
    }
}

/// The room every connection of an org is in.
pub fn org_room(org: &str) -> String {
    format!("org:{org}")
}

/// A resource room. The org is always part of the name, so equal resource ids of two orgs never meet.
pub fn resource_room(org: &str, key: &ResourceKey) -> String {
    format!("org:{org}:{}:{}", key.resource_type, key.resource_id)
}

const MAX_TYPE: usize = 64;
const MAX_ID: usize = 256;

/// A resource a connection can subscribe to, checked once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceKey {
    pub resource_type: Box<str>,
    pub resource_id: Box<str>,
}

impl ResourceKey {
    /// `resourceType`: a letter then letters, digits, `_` or `-` (at most 64); `resourceId`: 1-256 visible
    /// characters other than `:`.
    pub fn parse(resource_type: &str, resource_id: &str) -> Result<Self, RealtimeError> {
        let type_ok = resource_type.len() <= MAX_TYPE
            && resource_type
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic())
            && resource_type
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !type_ok {
            return Err(RealtimeError::BadRequest(format!(
                "resourceType must be a letter followed by letters, digits, '_' or '-' (at most {MAX_TYPE}), got '{}'",
                truncate(resource_type)
            )));
        }
        let id_ok = !resource_id.is_empty()
            && resource_id.len() <= MAX_ID
            && resource_id.chars().all(|c| !c.is_control() && c != ':');
        if !id_ok {
            return Err(RealtimeError::BadRequest(format!(
                "resourceId must be 1-{MAX_ID} characters without ':' or control characters, got '{}'",
                truncate(resource_id)
            )));
        }
        Ok(ResourceKey {
            resource_type: resource_type.into(),
            resource_id: resource_id.into(),
        })
    }
}

/// Echoes at most a short prefix of client input in error messages.
fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventType, NewEvent, Source, Timestamp};

    #[test]
    fn payload_has_the_summary_and_no_data() {
        let new = NewEvent::new(
            EventType::parse("fhir.created").expect("type"),
            "org-1",
            Source::FhirApi,
            RawValue::from_string(r#"{"name":"Jane Doe"}"#.into()).expect("raw"),
        )
        .resource("Patient", Some("p1".into()));
        let mut event = Event::from_new(new, Uuid::now_v7(), Timestamp(0));
        event.seq = 7;
        let json: serde_json::Value = serde_json::from_str(render(&event).get()).expect("json");
        assert_eq!(json["summary"], "Patient created");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["resourceId"], "p1");
        assert!(json.get("data").is_none() && json.get("orgId").is_none());
        assert!(!render(&event).get().contains("Jane"));
    }

    #[test]
    fn resource_keys_are_checked_and_rooms_include_the_org() {
        let key = ResourceKey::parse("Patient", "123").expect("key");
        assert_eq!(resource_room("org-a", &key), "org:org-a:Patient:123");
        assert_eq!(org_room("org-a"), "org:org-a");
        assert!(ResourceKey::parse("", "1").is_err());
        assert!(ResourceKey::parse("Pa:tient", "1").is_err());
        assert!(ResourceKey::parse("Patient", "").is_err());
        assert!(ResourceKey::parse("Patient", "a:b").is_err());
        assert!(ResourceKey::parse("Patient", &"x".repeat(300)).is_err());
    }
}
