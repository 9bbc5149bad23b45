//! The transformer: a durable listener that turns every `hl7.received` event into FHIR resources.
//!
//! For each message it emits `transform.started`, maps the message ([`crate::transform::mapping`]), upserts each
//! resource through the FHIR store (which emits `fhir.created` / `fhir.updated` in the same transaction), and ends
//! with `transform.completed` (the ids written) or `transform.failed` (the reason).
//!
//! A handled group first resolves the Patient and Encounter of every message: one store lookup per org and
//! resource type for the identifiers (PID-3, PV1-19) the group names, and a new time-ordered id for each identifier
//! not found (shared by the group's messages that name it). Other resources' ids come from business keys. So
//! replaying a message after a crash updates the same resources instead of duplicating them. The messages of a group are then transformed concurrently, so their
//! writes share commits.

use crate::event::{Event, EventType, NewEvent, Pattern, Source, WriteAction};
use crate::fhir::service::{self, WriteRequest};
use crate::hub::{DurableHandler, Hub};
use crate::transform::mapping::{
    map_message, new_resource_id, resource_keys, Mapped, ResourceIds, ResourceKeys, KEY_PARAM,
};
use async_trait::async_trait;
use futures::future::join_all;
use serde::Deserialize;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
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

    fn event(&self, kind: &str, source_event: &Event, data: Value) -> anyhow::Result<NewEvent> {
        let mut event = NewEvent::with_json(
            EventType::parse(kind)?,
            source_event.org_id.as_str(),
            Source::Transformer,
            &data,
        )?;
        event.message_type = source_event.message_type.clone();
        event.message_control_id = source_event.message_control_id.clone();
        event.actor = Some(Self::NAME.into());
        Ok(event)
    }

    /// Two commit rounds per message: `transform.started` with the resource writes, then the outcome (which
    /// depends on the writes). A message that does not map needs one.
    async fn transform(
        &self,
        event: &Event,
        prepared: &Result<Prepared, String>,
        resolved: &ResolvedIds<'_>,
    ) -> anyhow::Result<()> {
        let started = self.event(
            "transform.started",
            event,
            json!({ "eventId": event.id, "messageType": event.message_type }),
        )?;
        let mapped = prepared.as_ref().map_err(Clone::clone).and_then(|p| {
            let org = event.org_id.as_str();
            let patient = resolved
                .get(&(org, PATIENT, p.keys.patient.as_str()))
                .ok_or("the patient id was not resolved")?;
            let encounter = p
                .keys
                .encounter
                .as_deref()
                .map(|key| {
                    resolved
                        .get(&(org, ENCOUNTER, key))
                        .map(String::as_str)
                        .ok_or("the encounter id was not resolved")
                })
                .transpose()?;
            let ids = ResourceIds { patient, encounter };
            map_message(org, &p.message, ids).map_err(|e| e.to_string())
        });
        let outcome = match mapped {
            Ok(mut mapped) => {
                let mut batch = Vec::with_capacity(1 + mapped.len());
                batch.push(started);
                self.write_resources(event, &mut mapped, batch).await?
            }
            Err(reason) => {
                let failed = self.failed(event, reason)?;
                self.hub.emit_all(vec![started, failed]).await?;
                return Ok(());
            }
        };
        let outcome = match outcome {
            Ok(written) => {
                metrics::counter!("switchboard_transform_total", "outcome" => "completed")
                    .increment(1);
                self.event(
                    "transform.completed",
                    event,
                    json!({ "eventId": event.id, "resources": written }),
                )?
            }
            Err(reason) => self.failed(event, reason)?,
        };
        self.hub.emit(outcome).await?;
        Ok(())
    }

    fn failed(&self, event: &Event, reason: String) -> anyhow::Result<NewEvent> {
        metrics::counter!("switchboard_transform_total", "outcome" => "failed").increment(1);
        tracing::info!(event_id = %event.id, %reason, "transform failed");
        self.event(
            "transform.failed",
            event,
            json!({ "eventId": event.id, "reason": reason }),
        )
    }

    /// Emits `batch` (`transform.started`) followed by one write per resource. `Err` is a store failure of
    /// `transform.started` (the group is retried); `Ok(Err)` the reason the resources could not be written.
    async fn write_resources(
        &self,
        event: &Event,
        mapped: &mut [Mapped],
        mut batch: Vec<NewEvent>,
    ) -> anyhow::Result<Result<Vec<String>, String>> {
        let mut unwritable = None;
        for resource in mapped.iter_mut() {
            let body = std::mem::take(&mut resource.body);
            let write = service::write_event(WriteRequest {
                org_id: &event.org_id,
                source: Source::Transformer,
                actor: Some(Self::NAME.into()),
                resource_type: resource.resource_type,
                id: &resource.id,
                action: WriteAction::Upsert,
                if_match: None,
                body: Some(body),
            });
            match write {
                Ok(write) => batch.push(write),
                Err(e) => {
                    unwritable.get_or_insert_with(|| write_failure(resource, &e.diagnostics));
                }
            }
        }
        let mut results = self.hub.emit_each(batch).await.into_iter();
        if let Some(Err(err)) = results.next() {
            return Err(err.into());
        }
        if let Some(reason) = unwritable {
            return Ok(Err(reason));
        }
        let mut written = Vec::with_capacity(mapped.len());
        for (resource, result) in mapped.iter().zip(results) {
            if let Err(err) = result {
                let e = service::emit_error(err, resource.resource_type, &resource.id);
                return Ok(Err(write_failure(resource, &e.diagnostics)));
            }
            written.push(format!("{}/{}", resource.resource_type, resource.id));
        }
        Ok(Ok(written))
    }
}

fn write_failure(resource: &Mapped, diagnostics: &str) -> String {
    format!(
        "writing {}/{} failed: {diagnostics}",
        resource.resource_type, resource.id
    )
}

/// A message ready to be mapped once the ids of its keys are known.
struct Prepared {
    message: Message,
    keys: ResourceKeys,
}

const PATIENT: &str = "Patient";
const ENCOUNTER: &str = "Encounter";

/// (org, resource type, key) → resource id, for one handled group (borrowing its events and prepared messages).
type ResolvedIds<'a> = HashMap<(&'a str, &'static str, &'a str), String>;

/// The message in an `hl7.received` event's `data.raw` and its Patient's key; `Err` is why it cannot be
/// transformed. Only `raw` is decoded: the structured view beside it is skipped, not built.
fn prepare(event: &Event) -> Result<Prepared, String> {
    #[derive(Deserialize)]
    struct Received<'a> {
        #[serde(borrow)]
        raw: Option<Cow<'a, str>>,
    }
    let data: Received<'_> = serde_json::from_str(event.data.get())
        .map_err(|e| format!("event data is not JSON: {e}"))?;
    let raw = data
        .raw
        .ok_or("the hl7.received event carries no raw message (data.raw)")?;
    let message =
        Message::parse_str(&raw).map_err(|e| format!("the message does not parse: {e}"))?;
    let keys = resource_keys(&message).map_err(|e| e.to_string())?;
    Ok(Prepared { message, keys })
}

impl Transformer {
    /// The Patient and Encounter ids of every prepared message: existing resources found by identifier (one lookup
    /// per org and type), a new time-ordered id for the rest.
    async fn resolve_ids<'a>(
        &self,
        events: &'a [Arc<Event>],
        prepared: &'a [Result<Prepared, String>],
    ) -> anyhow::Result<ResolvedIds<'a>> {
        let mut keys_by_kind: BTreeMap<(&str, &'static str), Vec<&str>> = BTreeMap::new();
        for (event, p) in events.iter().zip(prepared) {
            if let Ok(p) = p {
                let org = event.org_id.as_str();
                keys_by_kind
                    .entry((org, PATIENT))
                    .or_default()
                    .push(p.keys.patient.as_str());
                if let Some(key) = &p.keys.encounter {
                    keys_by_kind
                        .entry((org, ENCOUNTER))
                        .or_default()
                        .push(key.as_str());
                }
            }
        }
        let mut ids = ResolvedIds::new();
        for ((org, resource_type), mut keys) in keys_by_kind {
            keys.sort_unstable();
            keys.dedup();
            let values: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            let found = self
                .hub
                .store()
                .find_resource_ids(org, resource_type, KEY_PARAM, &values)
                .await?;
            let prefix = if resource_type == PATIENT {
                "pat"
            } else {
                "enc"
            };
            for key in keys {
                let id = found
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| new_resource_id(prefix));
                ids.insert((org, resource_type, key), id);
            }
        }
        Ok(ids)
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
        let prepared: Vec<Result<Prepared, String>> = events.iter().map(|e| prepare(e)).collect();
        let resolved = self.resolve_ids(events, &prepared).await?;
        let transforms = events
            .iter()
            .zip(&prepared)
            .map(|(e, p)| self.transform(e, p, &resolved));
        for result in join_all(transforms).await {
            result?;
        }
        Ok(())
    }
}
