//! Storage: the [`Store`] trait every backend implements, the records it keeps, and the backend chosen from the
//! database URL.
//!
//! The store holds the event log (with `seq`, the position in commit order), durable listener cursors, API keys
//! and the audit log. Appends arrive in batches from the hub's single writer: one transaction, one fsync per batch.
//! The conformance suite in `tests/api/store_conformance.rs` runs against every backend.

pub mod lease;
pub mod postgres;
mod records;
pub mod sqlite;
pub mod webhooks;

pub use records::{
    ApiKeyRecord, AuditEntry, AuditQuery, EventCursor, EventQuery, Order, ResourcePage,
    ResourceWrite, StoredResource, WriteAction, EMISSIONS_STORED_THROUGH, EMIT_ACTION,
    EMIT_OUTCOME,
};
pub use webhooks::{OutboxEntry, WebhookStore};

use crate::event::{Event, Timestamp};
use crate::hub::OutboxRouter;
use async_trait::async_trait;
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    #[error("gone: {0}")]
    Gone(String),
    #[error("unsupported database url '{0}': use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("storage is full: {0}")]
    Full(String),
    /// The database cannot be reached right now (connection lost or refused, server shutting down): transient.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("migration failed: {0}")]
    Migration(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        match &err {
            rusqlite::Error::SqliteFailure(e, msg) if e.code == rusqlite::ErrorCode::DiskFull => {
                StoreError::Full(msg.clone().unwrap_or_else(|| "disk full".into()))
            }
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
            _ => StoreError::Database(err.to_string()),
        }
    }
}

impl StoreError {
    /// A resource write the store turned down (the event is not stored, the rest of its batch is).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            StoreError::NotFound
                | StoreError::Gone(_)
                | StoreError::PreconditionFailed(_)
                | StoreError::Conflict(_)
        )
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Identifies a commit that may not be durable yet (a position in the backend's commit order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct SyncTicket(pub u64);

/// A committed (maybe not yet durable) batch.
#[derive(Debug)]
pub struct Committed {
    /// One per event of the batch, in order.
    pub appended: Vec<Appended>,
    /// The webhook deliveries written with it (`event_index` = position in the batch).
    pub outbox: Vec<OutboxEntry>,
    pub ticket: SyncTicket,
}

/// What became of one event of an appended batch.
#[derive(Debug)]
pub enum Appended {
    New(Event),
    /// An idempotent repeat: the event stored first with the same key.
    Existing(Event),
    /// Not stored: its resource write was refused.
    Refused(StoreError),
}

/// The storage contract. Every method is safe to call concurrently; `append` is called by one writer at a time.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Commits a batch durably in one transaction; one [`Appended`] per event, in order, `seq` filled in.
    ///
    /// An event whose `(org_id, idempotency_key)` is already stored is not stored again (`Existing` holds the
    /// first one). An event whose resource write is refused (If-Match mismatch, delete of an unknown resource) is
    /// `Refused` and the rest of the batch commits. An `Err` means nothing of the batch was committed.
    async fn append(&self, batch: Vec<Event>) -> StoreResult<Vec<Appended>> {
        let committed = self.commit(batch, None).await?;
        self.sync(committed.ticket).await?;
        Ok(committed.appended)
    }

    /// Commits a batch like [`Store::append`] but may return before the commit is durable; durability is
    /// reached by [`Store::sync`] with the returned ticket. The hub's writer commits the next batch while an
    /// earlier one syncs. Backends whose commit is already durable return a ticket that needs no sync.
    ///
    /// With a `router`, each newly stored event (after its resource write decided its final type and data) is
    /// routed to the matching webhook subscriptions and their deliveries are written in the same transaction
    /// (transactional outbox); idempotent repeats and refused events get none.
    async fn commit(
        &self,
        batch: Vec<Event>,
        router: Option<Arc<dyn OutboxRouter>>,
    ) -> StoreResult<Committed>;

    /// How many batches the hub's writer may commit at once. Above 1 only for a store whose `commit` is already
    /// durable and that orders concurrent commits itself (their `seq` ranges follow commit order).
    fn concurrent_commits(&self) -> usize {
        1
    }

    /// Returns once every commit up to and including `ticket` is durable (one fsync may cover many commits).
    async fn sync(&self, ticket: SyncTicket) -> StoreResult<()> {
        let _ = ticket;
        Ok(())
    }

    /// For a backend whose commit and sync are blocking calls in this process (SQLite): the same two operations,
    /// called directly. The hub's writer then runs them inline on threads of its own instead of handing each batch
    /// to the blocking pool and back (two thread wake-ups per stage, a good part of a commit's latency).
    fn blocking_log(&self) -> Option<Arc<dyn BlockingLog>> {
        None
    }

    /// Webhook subscriptions, deliveries and attempts.
    fn webhooks(&self) -> &dyn WebhookStore;

    /// For a log other processes append to as well: a receiver that changes whenever any process may have
    /// committed (once per batch, and whenever notifications may have been missed). `None` when this process is
    /// the only writer, so its own commits are all there is to publish.
    fn log_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// For a database other processes share: a receiver that changes whenever any process changed webhook
    /// subscriptions, so every router reloads at once. `None` when this process makes every change itself.
    fn subscription_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Takes the lease called `name` if no other process holds it: whoever holds it runs that singleton job.
    async fn try_lease(&self, name: &str) -> StoreResult<Option<Box<dyn lease::Lease>>> {
        let _ = name;
        Ok(Some(Box::new(lease::LocalLease)))
    }

    /// The highest `seq` and timestamp committed so far (0 and the epoch for an empty log).
    async fn head(&self) -> StoreResult<(i64, Timestamp)>;

    /// Events with `seq > after`, in `seq` order, at most `limit`.
    async fn events_after(&self, after: i64, limit: usize) -> StoreResult<Vec<Event>>;

    async fn get_event(&self, org_id: Option<&str>, id: Uuid) -> StoreResult<Option<Event>>;

    async fn query_events(&self, query: &EventQuery) -> StoreResult<Vec<Event>>;

    /// Events with `seq > after` that pass `query`'s filters (org, types, time, resource, message type, source), in
    /// `seq` order, at most `query.limit`; `query.after` and `query.order` are ignored. Live streams resume with it.
    async fn events_matching_after(
        &self,
        query: &EventQuery,
        after: i64,
    ) -> StoreResult<Vec<Event>>;

    /// Deletes up to `limit` events older than `cutoff`, oldest first; returns how many were deleted. In the same
    /// transaction it first writes their emission audit entries into `audit_log` and moves
    /// [`EMISSIONS_STORED_THROUGH`] past them, so the audit trail keeps every emission.
    async fn purge_events_before(&self, cutoff: Timestamp, limit: usize) -> StoreResult<u64>;

    async fn load_cursor(&self, listener: &str) -> StoreResult<Option<i64>>;

    async fn save_cursor(&self, listener: &str, seq: i64) -> StoreResult<()>;

    async fn insert_api_key(&self, key: &ApiKeyRecord, audit: &AuditEntry) -> StoreResult<()>;

    /// Replaces the hash of the key with this id, creating it if needed (used for the bootstrap admin token).
    async fn upsert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()>;

    async fn find_api_key(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>>;

    /// Keys of one org, or every key when `org_id` is `None`.
    async fn list_api_keys(&self, org_id: Option<&str>) -> StoreResult<Vec<ApiKeyRecord>>;

    /// Deletes a key, scoped to an org when given; `NotFound` if no such key is visible.
    async fn delete_api_key(
        &self,
        id: &str,
        org_id: Option<&str>,
        audit: &AuditEntry,
    ) -> StoreResult<()>;

    async fn any_admin_key(&self) -> StoreResult<bool>;

    /// Writes audit rows in one transaction.
    async fn record_audit(&self, entries: Vec<AuditEntry>) -> StoreResult<()>;

    /// Audit entries, newest first: the rows of `audit_log` and, unless the query names another action, one
    /// [`EMIT_ACTION`] entry per event in the log after [`EMISSIONS_STORED_THROUGH`], read in one snapshot.
    async fn query_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>>;

    /// The current version of a FHIR resource of an org (deleted ones included, flagged).
    async fn read_resource(
        &self,
        org_id: &str,
        resource_type: &str,
        id: &str,
    ) -> StoreResult<Option<StoredResource>>;

    /// One version of a FHIR resource.
    async fn read_resource_version(
        &self,
        org_id: &str,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> StoreResult<Option<StoredResource>>;

    /// Current, not deleted resources of one type and org matching `query`, ordered by last update then id.
    async fn search_resources(
        &self,
        org_id: &str,
        resource_type: &str,
        query: &crate::fhir::search::SearchQuery,
    ) -> StoreResult<ResourcePage>;

    /// For each of `values` that some current, not deleted resource of one type and org is indexed under
    /// `param` with, that resource's id (the smallest one when several share the value): value → id. How the
    /// transformer upserts a Patient by identifier.
    async fn find_resource_ids(
        &self,
        org_id: &str,
        resource_type: &str,
        param: &str,
        values: &[String],
    ) -> StoreResult<std::collections::HashMap<String, String>>;

    /// Cheap check that the database answers.
    async fn ping(&self) -> StoreResult<()>;
}

pub type DynStore = Arc<dyn Store>;

/// [`Store::commit`] and [`Store::sync`] as blocking calls (see [`Store::blocking_log`]).
pub trait BlockingLog: Send + Sync + 'static {
    fn commit(
        &self,
        batch: Vec<Event>,
        router: Option<&dyn OutboxRouter>,
    ) -> StoreResult<Committed>;

    fn sync(&self, ticket: SyncTicket) -> StoreResult<()>;
}

/// Opens the backend named by the URL's scheme and applies its migrations.
pub async fn open(url: &str) -> StoreResult<DynStore> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store = sqlite::SqliteStore::open(path).await?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = postgres::PgStore::open(url).await?;
        return Ok(Arc::new(store));
    }
    Err(StoreError::UnsupportedUrl(crate::config::redact_url(url)))
}
