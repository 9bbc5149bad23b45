//! The transformer: a durable listener that turns every `hl7.received` event into FHIR resources.
//!
//! For each message it emits `transform.started`, maps the message ([`crate::transform::mapping`]), upserts each
//! resource through the FHIR store (which emits `fhir.created` / `fhir.updated` in the same transaction), and ends
//! with `transform.completed` (the ids written) or `transform.failed` (the reason). Resource ids come from business
//! keys, so replaying a message after a crash updates the same resources instead of duplicating them.
//! The messages of one handled group are transformed concurrently, so their writes share commits.

use crate::event::{Event, EventType, NewEvent, Pattern, Source, WriteAction};
use crate::fhir::service::{self, WriteRequest};
use crate::hub::{DurableHandler, Hub};
use crate::transform::mapping::map_message;
use async_trait::async_trait;
use futures::future::join_all;
use serde_json::{json, Value};
use std::sync::Arc;
use switchboard_hl7::Message;

pub struct Transformer {
    hub: Hub,
}

impl Transformer {
    pub const NAME: &'static str = "transformer";

    pub fn new(hub: Hub) -> Self {
        Transformer { hub }
    }

    async fn emit(&self, kind: &str, source_event: &Event, data: Value) -> anyhow::Result<()> {
        let mut event = NewEvent::with_json(
            EventType::parse(kind)?,
            source_event.org_id.as_str(),
            Source::Transformer,
            &data,
        )?;
        event.message_type = source_event.message_type.clone();
        event.message_control_id = source_event.message_control_id.clone();
        event.actor = Some(Self::NAME.into());
        self.hub.emit(event).await?;
        Ok(())
    }

    async fn transform(&self, event: &Event) -> anyhow::Result<()> {
        let source = json!({ "eventId": event.id, "messageType": event.message_type });
        self.emit("transform.started", event, source.clone())
            .await?;
        match self.write_resources(event).await {
            Ok(written) => {
                metrics::counter!("switchboard_transform_total", "outcome" => "completed")
                    .increment(1);
                self.emit(
                    "transform.completed",
                    event,
                    json!({ "eventId": event.id, "resources": written }),
                )
                .await
            }
            Err(reason) => {
                metrics::counter!("switchboard_transform_total", "outcome" => "failed")
                    .increment(1);
                tracing::info!(event_id = %event.id, %reason, "transform failed");
                self.emit(
                    "transform.failed",
                    event,
                    json!({ "eventId": event.id, "reason": reason }),
                )
                .await
            }
        }
    }

    /// Maps and writes; an `Err` is the reason the message could not be transformed.
    async fn write_resources(&self, event: &Event) -> Result<Vec<String>, String> {
        let data: Value = serde_json::from_str(event.data.get())
            .map_err(|e| format!("event data is not JSON: {e}"))?;
        let raw = data
            .get("raw")
            .and_then(Value::as_str)
            .ok_or("the hl7.received event carries no raw message (data.raw)")?;
        let message =
            Message::parse_str(raw).map_err(|e| format!("the message does not parse: {e}"))?;
        let mapped = map_message(&event.org_id, &message).map_err(|e| e.to_string())?;
        let writes = mapped.iter().map(|resource| {
            service::write(
                &self.hub,
                WriteRequest {
                    org_id: &event.org_id,
                    source: Source::Transformer,
                    actor: Some(Self::NAME.into()),
                    resource_type: resource.resource_type,
                    id: &resource.id,
                    action: WriteAction::Upsert,
                    if_match: None,
                    body: Some(resource.body.clone()),
                },
            )
        });
        let mut written = Vec::with_capacity(mapped.len());
        for (resource, result) in mapped.iter().zip(join_all(writes).await) {
            result.map_err(|e| {
                format!(
                    "writing {}/{} failed: {}",
                    resource.resource_type, resource.id, e.diagnostics
                )
            })?;
            written.push(format!("{}/{}", resource.resource_type, resource.id));
        }
        Ok(written)
    }
}

#[async_trait]
impl DurableHandler for Transformer {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn patterns(&self) -> Vec<Pattern> {
        vec![Pattern::parse("hl7.received").unwrap_or_else(|_| Pattern::all())]
    }

    async fn handle(&self, events: &[Arc<Event>], _through: i64) -> anyhow::Result<()> {
        // Store errors (not mapping failures) fail the group; the runner retries it and upserts keep it idempotent.
        for result in join_all(events.iter().map(|e| self.transform(e))).await {
            result?;
        }
        Ok(())
    }
}
