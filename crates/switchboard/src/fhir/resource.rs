//! What a resource write does, decided once for every backend: the new version, the event type it produces,
//! the stored body (with `id` and `meta` set by the server), and the search index rows.

use super::index::{extract, IndexEntry};
use crate::event::Timestamp;
use crate::store::{ResourceWrite, StoreError, StoredResource, WriteAction};
use serde_json::{json, Value};

/// The outcome of a write that is allowed to happen.
#[derive(Debug)]
pub struct WritePlan {
    pub event_type: &'static str,
    pub version: i64,
    pub deleted: bool,
    /// The body stored for this version (for a delete: the last version's body).
    pub body: String,
    pub index: Vec<IndexEntry>,
}

/// Decides a write against the current state. Refusals: If-Match mismatch (precondition failed), delete of an
/// unknown resource (not found), delete of a deleted resource (gone: nothing to do), create over an existing id.
pub fn plan_write(
    resource_type: &str,
    id: &str,
    current: Option<&StoredResource>,
    write: ResourceWrite,
    now: Timestamp,
) -> Result<WritePlan, StoreError> {
    let live = current.filter(|c| !c.deleted);
    if let Some(expected) = write.if_match {
        match live {
            Some(c) if c.version == expected => {}
            Some(c) => {
                return Err(StoreError::PreconditionFailed(format!(
                    "{resource_type}/{id} is at version {}, not {expected}",
                    c.version
                )))
            }
            None => {
                return Err(StoreError::PreconditionFailed(format!(
                    "{resource_type}/{id} does not exist"
                )))
            }
        }
    }
    let version = current.map_or(1, |c| c.version + 1);
    match write.action {
        WriteAction::Delete => match (current, live) {
            (None, _) => Err(StoreError::NotFound),
            (Some(_), None) => Err(StoreError::Gone(format!(
                "{resource_type}/{id} is already deleted"
            ))),
            (Some(_), Some(c)) => Ok(WritePlan {
                event_type: "fhir.deleted",
                version,
                deleted: true,
                body: c.body.clone(),
                index: Vec::new(),
            }),
        },
        WriteAction::Create | WriteAction::Upsert => {
            if write.action == WriteAction::Create && current.is_some() {
                return Err(StoreError::Conflict(format!(
                    "{resource_type}/{id} already exists"
                )));
            }
            let mut body = write
                .body
                .unwrap_or_else(|| json!({ "resourceType": resource_type }));
            stamp(&mut body, id, version, now);
            let index = extract(resource_type, &body);
            let event_type = if live.is_some() {
                "fhir.updated"
            } else {
                "fhir.created"
            };
            Ok(WritePlan {
                event_type,
                version,
                deleted: false,
                body: body.to_string(),
                index,
            })
        }
    }
}

/// Sets the server-owned fields: `id`, `meta.versionId`, `meta.lastUpdated` (other `meta` fields are kept).
pub fn stamp(body: &mut Value, id: &str, version: i64, last_updated: Timestamp) {
    if let Some(object) = body.as_object_mut() {
        object.insert("id".into(), json!(id));
        let meta = object.entry("meta").or_insert_with(|| json!({}));
        if !meta.is_object() {
            *meta = json!({});
        }
        meta["versionId"] = json!(version.to_string());
        meta["lastUpdated"] = json!(last_updated.to_rfc3339());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(version: i64, deleted: bool) -> StoredResource {
        StoredResource {
            version,
            last_updated: Timestamp(0),
            deleted,
            body: "{\"resourceType\":\"Patient\"}".into(),
        }
    }

    fn write(action: WriteAction, if_match: Option<i64>) -> ResourceWrite {
        ResourceWrite {
            action,
            if_match,
            body: Some(json!({"resourceType": "Patient", "meta": {"tag": [1]}})),
        }
    }

    #[test]
    fn create_update_delete_versions() {
        let plan = plan_write(
            "Patient",
            "p1",
            None,
            write(WriteAction::Upsert, None),
            Timestamp(0),
        )
        .expect("create");
        assert_eq!((plan.event_type, plan.version), ("fhir.created", 1));
        let body: Value = serde_json::from_str(&plan.body).expect("json");
        assert_eq!(body["id"], "p1");
        assert_eq!(body["meta"]["versionId"], "1");
        assert_eq!(body["meta"]["tag"], json!([1]), "client meta is kept");
        let plan = plan_write(
            "Patient",
            "p1",
            Some(&stored(1, false)),
            write(WriteAction::Upsert, Some(1)),
            Timestamp(0),
        )
        .expect("update");
        assert_eq!((plan.event_type, plan.version), ("fhir.updated", 2));
        let plan = plan_write(
            "Patient",
            "p1",
            Some(&stored(2, false)),
            write(WriteAction::Delete, None),
            Timestamp(0),
        )
        .expect("delete");
        assert_eq!(
            (plan.event_type, plan.version, plan.deleted),
            ("fhir.deleted", 3, true)
        );
        let plan = plan_write(
            "Patient",
            "p1",
            Some(&stored(3, true)),
            write(WriteAction::Upsert, None),
            Timestamp(0),
        )
        .expect("revive");
        assert_eq!((plan.event_type, plan.version), ("fhir.created", 4));
    }

    #[test]
    fn refusals() {
        let stale = plan_write(
            "Patient",
            "p1",
            Some(&stored(3, false)),
            write(WriteAction::Upsert, Some(2)),
            Timestamp(0),
        );
        assert!(matches!(stale, Err(StoreError::PreconditionFailed(_))));
        assert!(matches!(
            plan_write(
                "Patient",
                "p1",
                None,
                write(WriteAction::Delete, None),
                Timestamp(0)
            ),
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            plan_write(
                "Patient",
                "p1",
                Some(&stored(2, true)),
                write(WriteAction::Delete, None),
                Timestamp(0)
            ),
            Err(StoreError::Gone(_))
        ));
        assert!(matches!(
            plan_write(
                "Patient",
                "p1",
                Some(&stored(1, false)),
                write(WriteAction::Create, None),
                Timestamp(0)
            ),
            Err(StoreError::Conflict(_))
        ));
    }
}
