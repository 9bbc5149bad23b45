//! The task creator: a durable listener that turns `hl7.error` and `transform.failed` events into FHIR `Task`
//! resources (status `requested`, intent `order`) so people can work the failure. The Task id derives from the
//! failed event's id, so a replay updates the same Task.

use crate::event::{Event, Pattern, Source, WriteAction};
use crate::fhir::service::{self, WriteRequest};
use crate::hub::{DurableHandler, Hub};
use crate::transform::mapping::stable_id;
use async_trait::async_trait;
use futures::future::join_all;
use serde_json::{json, Value};
use std::sync::Arc;

pub struct TaskCreator {
    hub: Hub,
}

impl TaskCreator {
    pub const NAME: &'static str = "task-creator";

    pub fn new(hub: Hub) -> Self {
        TaskCreator { hub }
    }
}

/// The failure reason an error event carries (`data.reason` or `data.error`), else its type.
fn reason(event: &Event) -> String {
    let data: Value = serde_json::from_str(event.data.get()).unwrap_or(Value::Null);
    ["reason", "error", "message"]
        .iter()
        .find_map(|k| data.get(*k).and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| event.event_type.to_string())
}

/// The Task for a failed event.
pub fn task_for(event: &Event) -> (String, Value) {
    let id = stable_id("task", &[&event.org_id, &event.id.to_string()]);
    let what = match (&event.message_type, &event.message_control_id) {
        (Some(t), Some(c)) => format!(" ({t} {c})"),
        (Some(t), None) => format!(" ({t})"),
        _ => String::new(),
    };
    let event_ref = json!({"system": "urn:switchboard:event", "value": event.id.to_string()});
    let body = json!({
        "resourceType": "Task",
        "id": id,
        "status": "requested",
        "intent": "order",
        "priority": "urgent",
        "code": {"text": format!("Review {}", event.event_type)},
        "description": format!("{}{what}: {}", event.event_type, reason(event)),
        "authoredOn": event.timestamp.to_rfc3339(),
        "focus": {"identifier": event_ref, "display": format!("event {}", event.id)},
        "input": [{"type": {"text": "failed event"}, "valueIdentifier": event_ref}],
    });
    (id, body)
}

#[async_trait]
impl DurableHandler for TaskCreator {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn patterns(&self) -> Vec<Pattern> {
        ["hl7.error", "transform.failed"]
            .iter()
            .filter_map(|p| Pattern::parse(p).ok())
            .collect()
    }

    async fn handle(&self, events: &[Arc<Event>], _through: i64) -> anyhow::Result<()> {
        let tasks: Vec<(String, String, Value)> = events
            .iter()
            .map(|e| {
                let (id, body) = task_for(e);
                (e.org_id.clone(), id, body)
            })
            .collect();
        let writes = tasks.iter().map(|(org, id, body)| {
            service::write(
                &self.hub,
                WriteRequest {
                    org_id: org,
                    source: Source::Transformer,
                    actor: Some(Self::NAME.into()),
                    resource_type: "Task",
                    id,
                    action: WriteAction::Upsert,
                    if_match: None,
                    body: Some(body.clone()),
                },
            )
        });
        for result in join_all(writes).await {
            result.map_err(|e| anyhow::anyhow!("writing a Task failed: {}", e.diagnostics))?;
        }
        metrics::counter!("switchboard_tasks_created_total").increment(tasks.len() as u64);
        Ok(())
    }
}
