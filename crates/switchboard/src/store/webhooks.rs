//! Webhook records and the storage contract for them: subscriptions, the delivery outbox (one row per
//! subscription and event, written in the event's own transaction) and the log of every attempt.
//!
//! Matching events to subscriptions is not the store's business: the hub's outbox router decides, and the store
//! only writes the [`OutboxEntry`] rows it is handed. That keeps every backend small and alike.

use crate::event::{Event, Timestamp};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

use super::StoreResult;

/// A delivery the hub's writer asks the store to create together with the event at `event_index` of the batch.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub event_index: usize,
    pub subscription_id: Arc<str>,
    pub priority: u8,
    pub due_at: Timestamp,
    /// Claimed at birth by this process's worker, which gets it straight from memory; the row is leased until
    /// then (and due then, should the process die first).
    pub claimed_until: Option<Timestamp>,
    /// Set by the store: the new delivery's id, or 0 when none was written (the event was an idempotent repeat).
    pub delivery_id: i64,
}

/// How a failed delivery is retried: `max_attempts` retries after the first attempt. Fields left out take
/// their defaults (5 retries, exponential, 2000 ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retries after the first attempt (0-20).
    pub max_attempts: u32,
    pub backoff_type: BackoffType,
    /// The first retry's delay, in milliseconds.
    pub initial_delay: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 5,
            backoff_type: BackoffType::Exponential,
            initial_delay: 2000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackoffType {
    /// `initialDelay × 2^(n-1)` before retry n.
    Exponential,
    /// `initialDelay × n` before retry n.
    Linear,
}

/// Extra conditions on top of the event type patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Filters {
    /// HL7 message types, e.g. `ADT^A01`; events without a message type pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_types: Option<Vec<String>>,
    /// FHIR resource types, e.g. `Patient`; events without a resource type pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_types: Option<Vec<String>>,
    /// An RFC 9535 JSONPath evaluated on the event; the subscription matches when it selects anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

/// A webhook subscription as stored.
#[derive(Debug, Clone)]
pub struct SubscriptionRecord {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub filters: Filters,
    pub secret: String,
    /// After a rotation the old secret keeps signing until `previous_secret_until`.
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<Timestamp>,
    pub active: bool,
    pub retry: RetryConfig,
    pub headers: BTreeMap<String, String>,
    /// Deliveries per second, at most.
    pub rate_limit: Option<f64>,
    /// Why the subscription was switched off by the server (e.g. the receiver answered 410 Gone).
    pub disabled_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not attempted yet.
    Pending,
    /// The last attempt failed; a retry is scheduled.
    Failed,
    Succeeded,
    /// Every attempt failed (or the receiver is gone): in the dead-letter queue.
    Dead,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Failed,
        DeliveryStatus::Succeeded,
        DeliveryStatus::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Pending and failed deliveries still have an attempt ahead of them.
    pub fn is_open(self) -> bool {
        matches!(self, DeliveryStatus::Pending | DeliveryStatus::Failed)
    }
}

/// One attempt to deliver, as logged.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    #[serde(serialize_with = "crate::util::serialize_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub attempted_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Microseconds from sending the request to the end of the (truncated) response.
    pub duration_us: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The start of the response body, at most 4 KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
}

/// A delivery and, when asked for, its attempts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    pub id: i64,
    pub subscription_id: String,
    pub org_id: String,
    pub event_seq: i64,
    /// `None` once retention has purged the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub event_id: Option<uuid::Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    pub priority: u8,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// When the next attempt is due (open deliveries only).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::util::serialize_opt_ts"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Timestamp>,
    #[serde(serialize_with = "crate::util::serialize_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(serialize_with = "crate::util::serialize_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::util::serialize_opt_ts"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub attempt_log: Vec<AttemptRecord>,
}

/// Which deliveries to list. `org_id: None` is every org (admin).
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub org_id: Option<String>,
    pub subscription_id: Option<String>,
    pub status: Option<DeliveryStatus>,
    /// Only deliveries with a smaller id (pages go newest first).
    pub before_id: Option<i64>,
    pub limit: usize,
}

/// "Up to `max` due deliveries of this subscription, please."
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub subscription_id: Arc<str>,
    pub max: usize,
}

/// A claimed delivery, with its event (`None` if retention purged it).
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub subscription_id: Arc<str>,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub event: Option<Arc<Event>>,
    /// Claimed at birth (handed over from memory) rather than from the store.
    pub fresh: bool,
    /// When the claim ends: from then on the row is due again and any worker may claim it, so no attempt may
    /// start that could still run then.
    pub lease_until: Timestamp,
}

/// The claim of one subscription: what was taken, and when its next open delivery is due (when it is not now).
#[derive(Debug, Clone)]
pub struct ClaimedLane {
    pub subscription_id: Arc<str>,
    pub deliveries: Vec<ClaimedDelivery>,
    pub next_due: Option<Timestamp>,
}

/// The outcome of one claimed delivery, to be written with its attempt.
#[derive(Debug, Clone)]
pub struct DeliveryUpdate {
    pub delivery_id: i64,
    /// The attempt to log; `None` when the delivery is handed back unattempted (subscription switched off).
    pub attempt: Option<AttemptRecord>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub due_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    /// Switch this subscription off, for this reason (410 Gone).
    pub deactivate: Option<(Arc<str>, String)>,
}

/// A delivery to (re)create for an existing event (replay).
#[derive(Debug, Clone)]
pub struct EnqueueEntry {
    pub subscription_id: Arc<str>,
    pub org_id: String,
    pub event_seq: i64,
    pub priority: u8,
}

/// Open and dead deliveries of one subscription, for the gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub subscription_id: String,
    pub open: u64,
    pub dead: u64,
}

/// Storage of subscriptions, the delivery outbox and the attempt log.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn insert_subscription(&self, sub: &SubscriptionRecord) -> StoreResult<()>;

    /// Replaces the subscription with `sub.id` in `sub.org_id`; `NotFound` if there is none.
    async fn update_subscription(&self, sub: &SubscriptionRecord) -> StoreResult<()>;

    /// One subscription, scoped to an org when given.
    async fn get_subscription(
        &self,
        org_id: Option<&str>,
        id: &str,
    ) -> StoreResult<Option<SubscriptionRecord>>;

    /// Subscriptions of one org, or of every org when `org_id` is `None`, oldest first.
    async fn list_subscriptions(
        &self,
        org_id: Option<&str>,
    ) -> StoreResult<Vec<SubscriptionRecord>>;

    /// Deletes a subscription with its deliveries and their attempts; `NotFound` if none is visible.
    async fn delete_subscription(&self, org_id: Option<&str>, id: &str) -> StoreResult<()>;

    /// Claims due open deliveries (priority, then due time) of each requested subscription in one transaction:
    /// each claimed row becomes due again at `lease_until`, so a crash leaves it to be claimed again then.
    async fn claim_deliveries(
        &self,
        requests: Vec<ClaimRequest>,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Vec<ClaimedLane>>;

    /// Writes the outcomes of attempts, their log rows and any deactivation in one transaction.
    async fn record_deliveries(&self, updates: Vec<DeliveryUpdate>) -> StoreResult<()>;

    /// Creates deliveries for existing events, or reopens finished ones (replay); open ones are left alone.
    /// Returns how many were created or reopened.
    async fn enqueue_deliveries(
        &self,
        entries: Vec<EnqueueEntry>,
        now: Timestamp,
    ) -> StoreResult<u64>;

    /// Deliveries newest first, each with its attempts.
    async fn list_deliveries(&self, query: &DeliveryQuery) -> StoreResult<Vec<DeliveryRecord>>;

    /// Moves one dead delivery back to pending, due now; `NotFound` unless a dead one is visible.
    async fn redrive_delivery(
        &self,
        org_id: Option<&str>,
        delivery_id: i64,
        now: Timestamp,
    ) -> StoreResult<String>;

    /// Moves every dead delivery of a subscription back to pending; returns how many.
    async fn redrive_subscription(
        &self,
        org_id: Option<&str>,
        subscription_id: &str,
        now: Timestamp,
    ) -> StoreResult<u64>;

    /// Makes every claimed delivery due at once (at the latest `now`). For a single-process backend at start,
    /// when no claim can still be held by a live worker: deliveries in flight at a crash are retried at once.
    async fn release_claims(&self, now: Timestamp) -> StoreResult<u64>;

    /// Open and dead counts per subscription that has any.
    async fn delivery_counts(&self) -> StoreResult<Vec<DeliveryCounts>>;
}
