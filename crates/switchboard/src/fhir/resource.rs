//! What a resource write does, decided once for every backend: the new version, the event type it produces,
//! the stored body (with `id` and `meta` set by the server), and the search index rows.
//!
//! The costly part, serializing the body and extracting its search rows, is done by the emitter
//! ([`PreparedBody::new`]), not by the store's single writer: the writer only splices in the two fields that
//! depend on the current version ([`PreparedBody::stamped`]).

use super::index::{extract, IndexEntry};
use crate::event::Timestamp;
use crate::store::{ResourceWrite, StoreError, StoredResource, WriteAction};
use serde_json::{json, Map, Value};
use std::fmt::Write as _;

/// A resource body made ready for the writer: serialized without its `meta`, `meta`'s other members apart, and its
/// search index rows.
#[derive(Debug, Clone)]
pub struct PreparedBody {
    /// The body with `id` set and `meta` removed (a JSON object), or the whole body if it is not an object.
    json: String,
    /// The members of the body's `meta` other than `versionId` and `lastUpdated`, as JSON object members without
    /// the braces (empty when there are none); `None` when the body is not an object.
    meta_rest: Option<String>,
    index: Vec<IndexEntry>,
}

impl PreparedBody {
    /// Sets `id`, takes `meta` apart, serializes, and extracts the search rows of a `resource_type` body.
    pub fn new(resource_type: &str, id: &str, mut body: Value) -> PreparedBody {
        let index = extract(resource_type, &body);
        let Some(object) = body.as_object_mut() else {
            return PreparedBody {
                json: body.to_string(),
                meta_rest: None,
                index,
            };
        };
        object.insert("id".into(), json!(id));
        let mut meta = match object.remove("meta") {
            Some(Value::Object(meta)) => meta,
            _ => Map::new(),
        };
        meta.remove("versionId");
        meta.remove("lastUpdated");
        let meta = Value::Object(meta).to_string();
        PreparedBody {
            json: body.to_string(),
            meta_rest: Some(meta[1..meta.len() - 1].to_string()),
            index,
        }
    }

    /// The stored JSON: the body with `meta.versionId` and `meta.lastUpdated` (other `meta` members kept).
    pub fn stamped(&self, version: i64, last_updated: Timestamp) -> String {
        let Some(meta_rest) = &self.meta_rest else {
            return self.json.clone();
        };
        let members = &self.json[..self.json.len() - 1];
        let mut out = String::with_capacity(self.json.len() + meta_rest.len() + 80);
        out.push_str(members);
        if members.len() > 1 {
            out.push(',');
        }
        // Infallible: writing to a String.
        let _ = write!(
            out,
            "\"meta\":{{\"versionId\":\"{version}\",\"lastUpdated\":\"{}\"",
            last_updated.to_rfc3339()
        );
        if !meta_rest.is_empty() {
            out.push(',');
            out.push_str(meta_rest);
        }
        out.push_str("}}");
        out
    }
}

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
            let body = write.body.unwrap_or_else(|| {
                PreparedBody::new(resource_type, id, json!({ "resourceType": resource_type }))
            });
            let event_type = if live.is_some() {
                "fhir.updated"
            } else {
                "fhir.created"
            };
            Ok(WritePlan {
                event_type,
                version,
                deleted: false,
                body: body.stamped(version, now),
                index: body.index,
            })
        }
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
            body: Some(PreparedBody::new(
                "Patient",
                "p1",
                json!({"resourceType": "Patient", "meta": {"tag": [1]}}),
            )),
        }
    }

    #[test]
    fn stamping_sets_id_version_and_time_and_keeps_other_meta() {
        let at = Timestamp(1_700_000_000_000_000);
        let cases = [
            json!({"resourceType": "Patient", "id": "old", "meta": {"versionId": "9", "tag": [1], "profile": ["p"]}}),
            json!({"resourceType": "Patient", "meta": "not an object"}),
            json!({}),
        ];
        for body in cases {
            let stamped = PreparedBody::new("Patient", "p1", body.clone()).stamped(3, at);
            let got: Value = serde_json::from_str(&stamped).expect("valid JSON");
            let mut want = body;
            want["id"] = json!("p1");
            let mut meta = match want.get("meta") {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            meta.insert("versionId".into(), json!("3"));
            meta.insert("lastUpdated".into(), json!(at.to_rfc3339()));
            want["meta"] = Value::Object(meta);
            assert_eq!(got, want);
        }
        let not_an_object = PreparedBody::new("Patient", "p1", json!([1, 2]));
        assert_eq!(not_an_object.stamped(1, at), "[1,2]");
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
