//! FHIR writes as events: every create, update and delete is a `fhir.*` event carrying a [`ResourceWrite`], so
//! the resource and its event commit in one transaction through the hub's group commit. Used by the REST API,
//! the transformer and the task creator alike.

use super::outcome::FhirError;
use super::resource::PreparedBody;
use super::types::{is_resource_type, is_valid_id};
use crate::event::{Event, EventType, NewEvent, ResourceWrite, Source, WriteAction};
use crate::hub::{EmitError, Hub};
use crate::store::StoreError;
use axum::http::StatusCode;
use serde_json::value::RawValue;
use serde_json::Value;
use std::sync::Arc;

/// One resource write request.
pub struct WriteRequest<'a> {
    pub org_id: &'a str,
    pub source: Source,
    pub actor: Option<String>,
    pub resource_type: &'a str,
    pub id: &'a str,
    pub action: WriteAction,
    pub if_match: Option<i64>,
    pub body: Option<Value>,
}

/// Checks a resource body against the URL: a JSON object of a known type equal to `resource_type`, with no
/// conflicting `id` (when `id` is given).
pub fn check_body(resource_type: &str, id: Option<&str>, body: &Value) -> Result<(), FhirError> {
    let object = body
        .as_object()
        .ok_or_else(|| FhirError::invalid("the body must be a JSON object (a FHIR resource)"))?;
    match object.get("resourceType").and_then(Value::as_str) {
        None => return Err(FhirError::invalid("the resource has no resourceType")),
        Some(t) if t != resource_type => {
            return Err(FhirError::invalid(format!(
                "resourceType '{t}' does not match the URL's '{resource_type}'"
            )))
        }
        Some(_) => {}
    }
    if let (Some(expected), Some(found)) = (id, object.get("id")) {
        if found.as_str() != Some(expected) {
            return Err(FhirError::invalid(format!(
                "the resource id {found} does not match the URL's id '{expected}'"
            )));
        }
    }
    Ok(())
}

/// Checks a type and id from a URL.
pub fn check_target(resource_type: &str, id: Option<&str>) -> Result<(), FhirError> {
    if !is_resource_type(resource_type) {
        return Err(FhirError::new(
            StatusCode::NOT_FOUND,
            "not-supported",
            format!("'{resource_type}' is not a FHIR R4 resource type"),
        ));
    }
    if let Some(id) = id {
        if !is_valid_id(id) {
            return Err(FhirError::invalid(format!(
                "'{id}' is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)"
            )));
        }
    }
    Ok(())
}

/// Writes a resource and its event durably; returns the committed event (its `data` is the stored resource).
pub async fn write(hub: &Hub, request: WriteRequest<'_>) -> Result<Arc<Event>, FhirError> {
    let (resource_type, id) = (request.resource_type, request.id);
    let event = write_event(request)?;
    hub.emit(event)
        .await
        .map_err(|e| emit_error(e, resource_type, id))
}

/// The event that carries a resource write, for a caller that emits it alongside others
/// ([`Hub::emit_each`]); map an emit failure with [`emit_error`].
pub fn write_event(request: WriteRequest<'_>) -> Result<NewEvent, FhirError> {
    let placeholder = match request.action {
        WriteAction::Delete => "fhir.deleted",
        _ => "fhir.created",
    };
    let event_type = EventType::parse(placeholder).map_err(FhirError::internal)?;
    let data = RawValue::from_string("{}".into()).map_err(FhirError::internal)?;
    let mut event = NewEvent::new(event_type, request.org_id, request.source, data)
        .resource(request.resource_type, Some(request.id.to_string()));
    event.actor = request.actor;
    event.write = Some(Box::new(ResourceWrite {
        action: request.action,
        if_match: request.if_match,
        body: request
            .body
            .map(|body| PreparedBody::new(request.resource_type, request.id, body)),
    }));
    Ok(event)
}

/// What a failed resource write means to a FHIR client.
pub fn emit_error(err: EmitError, resource_type: &str, id: &str) -> FhirError {
    match err {
        EmitError::Invalid(e) => FhirError::invalid(e.to_string()),
        EmitError::ShuttingDown => FhirError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "transient",
            "the server is shutting down",
        ),
        EmitError::Store(StoreError::PreconditionFailed(msg)) => {
            FhirError::new(StatusCode::PRECONDITION_FAILED, "conflict", msg)
        }
        EmitError::Store(StoreError::Conflict(msg)) => {
            FhirError::new(StatusCode::CONFLICT, "conflict", msg)
        }
        EmitError::Store(StoreError::NotFound) => FhirError::not_found(resource_type, id),
        EmitError::Store(StoreError::Gone(msg)) => FhirError::new(StatusCode::GONE, "deleted", msg),
        EmitError::Store(StoreError::Full(_)) => FhirError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "transient",
            "storage is full; nothing was written",
        ),
        EmitError::Store(StoreError::Unavailable(_)) => FhirError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "transient",
            "the database is unavailable; nothing was written",
        ),
        EmitError::Store(other) => FhirError::internal(other),
    }
}
