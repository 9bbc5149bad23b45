//! Plain records the store reads and writes, and the query shapes of the history and audit APIs.

use crate::event::{Pattern, Source, Timestamp};
use serde::Serialize;

/// Where a page of history ends: the `(timestamp, seq)` of its last event. Timestamps never decrease along
/// `seq`, so the pair orders exactly like `seq` and lets the (org, time) index serve every page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor {
    pub timestamp: Timestamp,
    pub seq: i64,
}

impl EventCursor {
    pub fn encode(&self) -> String {
        format!("{}-{}", self.seq, self.timestamp.0)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (seq, ts) = text.split_once('-')?;
        Some(EventCursor {
            seq: seq.parse().ok()?,
            timestamp: Timestamp(ts.parse().ok()?),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Desc,
    Asc,
}

/// A history query. `org_id: None` means every org (admin only; the API enforces that).
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub org_id: Option<String>,
    pub event_types: Vec<Pattern>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub message_type: Option<String>,
    pub source: Option<Source>,
    pub after: Option<EventCursor>,
    pub order: Order,
    pub limit: usize,
}

/// An API key as stored: the key itself is never kept, only its SHA-256.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRecord {
    pub id: String,
    /// `None` for an admin key.
    pub org_id: Option<String>,
    pub name: String,
    #[serde(skip)]
    pub key_hash: Vec<u8>,
    /// The first characters of the key, so people can tell keys apart.
    pub prefix: String,
    #[serde(serialize_with = "crate::util::serialize_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// One audit row: who did what to what, with which outcome. Never holds PHI (no event data).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    #[serde(serialize_with = "crate::util::serialize_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: Timestamp,
    /// The API key id (or internal component) that acted.
    pub actor: Option<String>,
    pub org_id: Option<String>,
    /// e.g. `event.emit`, `key.create`, `key.delete`.
    pub action: String,
    /// The id of what was acted on.
    pub target: String,
    pub outcome: String,
    /// Non-PHI detail, such as the event type.
    pub detail: Option<String>,
}

/// The audit action of an event emission. Emissions are not written to `audit_log` as they happen: every event in
/// the log is its own audit entry (when, who, org, which event, its type), which `query_audit` reads beside the
/// rows. The entry exists exactly when the event is committed, and costs the hot path nothing. Retention, before
/// it deletes events, writes their entries into `audit_log`, so the audit trail outlives the events.
pub const EMIT_ACTION: &str = "event.emit";
/// The outcome of an emission entry.
pub const EMIT_OUTCOME: &str = "committed";
/// The listener cursor through which emissions are rows in `audit_log` (and so are not read from the log): moved by
/// retention as it deletes events. Earlier releases wrote those rows from a durable listener of this name.
pub const EMISSIONS_STORED_THROUGH: &str = "audit-logger";

#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub org_id: Option<String>,
    pub action: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub limit: usize,
}

impl AuditQuery {
    /// Whether the answer includes emissions read from the event log.
    pub fn wants_emissions(&self) -> bool {
        self.action.as_deref().is_none_or(|a| a == EMIT_ACTION)
    }

    /// The order in which to read emissions from the log, newest first: as in the history, by time within an org
    /// (its index serves that), by `seq` across orgs (the same order, since time never goes back along `seq`).
    pub fn emissions_order(&self) -> &'static str {
        if self.org_id.is_some() {
            "ts DESC, seq DESC"
        } else {
            "seq DESC"
        }
    }
}

/// A FHIR resource write that the store applies in the same transaction as the event carrying it. The store
/// decides the outcome: it sets the event's type (`fhir.created`, `fhir.updated`, `fhir.deleted`) and its data
/// (the stored resource with `meta.versionId` and `meta.lastUpdated`, or for a delete the last version).
#[derive(Debug, Clone)]
pub struct ResourceWrite {
    pub action: WriteAction,
    /// `If-Match`: the version the client last saw; a different current version refuses the write.
    pub if_match: Option<i64>,
    /// The resource (for create and upsert), `resourceType` and `id` already checked against the event.
    pub body: Option<crate::fhir::resource::PreparedBody>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAction {
    /// A new resource with a fresh id.
    Create,
    /// Update, or create with the given id when it does not exist (FHIR `PUT`).
    Upsert,
    Delete,
}

/// The current or a past version of a stored FHIR resource.
#[derive(Debug, Clone)]
pub struct StoredResource {
    pub version: i64,
    pub last_updated: Timestamp,
    pub deleted: bool,
    /// The resource JSON (for a deleted version: the last body before the delete).
    pub body: String,
}

/// One page of FHIR search results.
#[derive(Debug, Clone)]
pub struct ResourcePage {
    pub total: usize,
    pub resources: Vec<String>,
}
