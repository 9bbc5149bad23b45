//! Webhooks: org-scoped subscriptions, a transactional outbox, and a durable delivery worker with signatures,
//! retries, a dead-letter queue and replay.
//!
//! - [`subscription`]: validating subscriptions and compiling them for matching and delivery.
//! - [`router`]: the in-memory snapshot the hub's writer asks which deliveries to write with each batch.
//! - [`engine`]: the worker (claim → lanes → record), and a single-step mode for tests.
//! - [`client`] and [`network`]: the HTTP client and the address policy it applies at connect time.
//! - [`signature`], [`schedule`], [`ratelimit`]: signing, the retry schedule, the token bucket.
//!
//! [`Webhooks`] ties them together for the application and the API.

pub mod client;
pub mod engine;
mod lane_queue;
pub mod network;
pub mod ratelimit;
pub mod router;
pub mod schedule;
pub mod signature;
pub mod subscription;

use crate::event::{Pattern, Timestamp};
use crate::hub::OutboxRouter;
use crate::store::webhooks::{EnqueueEntry, SubscriptionRecord};
use crate::store::{DynStore, EventQuery, Order, StoreError};
use engine::{Engine, EngineSettings};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Events read per page when replaying history.
const REPLAY_PAGE: usize = 1000;
/// The most events one replay may re-deliver.
pub const REPLAY_MAX: usize = 100_000;

/// The `[webhooks]` configuration section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    pub enabled: bool,
    pub allow_insecure: bool,
    pub allowed_networks: Vec<String>,
    pub timeout_ms: u64,
    pub max_in_flight: usize,
    pub per_subscription_concurrency: usize,
    pub per_subscription_queue: usize,
    pub poll_interval_ms: u64,
    pub refresh_secs: u64,
    pub lease_secs: u64,
}

impl WebhooksConfig {
    pub fn validate(&self) -> Result<(), String> {
        network::NetworkPolicy::parse(&self.allowed_networks)
            .map_err(|e| format!("webhooks.allowed_networks: {e}"))?;
        if self.timeout_ms == 0
            || self.max_in_flight == 0
            || self.per_subscription_concurrency == 0
            || self.per_subscription_queue == 0
            || self.poll_interval_ms == 0
            || self.refresh_secs == 0
        {
            return Err(
                "webhooks: timeout_ms, max_in_flight, per_subscription_concurrency, \
                        per_subscription_queue, poll_interval_ms and refresh_secs must be positive"
                    .into(),
            );
        }
        if self.lease_secs * 1000 <= self.timeout_ms {
            return Err("webhooks.lease_secs must be longer than webhooks.timeout_ms".into());
        }
        Ok(())
    }

    fn engine_settings(&self) -> EngineSettings {
        EngineSettings {
            max_in_flight: self.max_in_flight,
            per_subscription_concurrency: self.per_subscription_concurrency,
            per_subscription_queue: self.per_subscription_queue,
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            lease: Duration::from_secs(self.lease_secs),
        }
    }
}

/// Why a webhook operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// What the router and the API tell the worker.
#[derive(Debug)]
pub enum Signal {
    /// New deliveries for these subscriptions are committed.
    Due(Vec<Arc<str>>),
    /// New deliveries claimed at birth, to be sent straight away.
    Claimed(Vec<crate::store::webhooks::ClaimedDelivery>),
    /// The subscription snapshot changed.
    Reloaded,
}

/// The webhook subsystem of one application.
#[derive(Clone)]
pub struct Webhooks {
    store: DynStore,
    index: Arc<router::SubscriptionIndex>,
    engine: Arc<Engine>,
    config: Arc<WebhooksConfig>,
    signals: mpsc::UnboundedSender<Signal>,
    receiver: Arc<Mutex<Option<mpsc::UnboundedReceiver<Signal>>>>,
}

impl Webhooks {
    /// Builds the subsystem and loads the active subscriptions.
    pub async fn new(store: DynStore, config: WebhooksConfig) -> Result<Self, WebhookError> {
        let policy = network::NetworkPolicy::parse(&config.allowed_networks)
            .map_err(WebhookError::Invalid)?;
        let client = client::DeliveryClient::new(policy, Duration::from_millis(config.timeout_ms))
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        let (signals, receiver) = mpsc::unbounded_channel();
        // Fresh deliveries skip the claim transaction only when this process runs the worker.
        let fresh_budget = if config.enabled {
            config.per_subscription_queue / 2
        } else {
            0
        };
        let index = Arc::new(router::SubscriptionIndex::new(
            signals.clone(),
            Duration::from_secs(config.lease_secs),
            fresh_budget,
        ));
        index.reload(&store).await?;
        let engine = Arc::new(Engine::new(
            Arc::clone(&store),
            Arc::clone(&index),
            client,
            config.engine_settings(),
        ));
        Ok(Webhooks {
            store,
            index,
            engine,
            config: Arc::new(config),
            signals,
            receiver: Arc::new(Mutex::new(Some(receiver))),
        })
    }

    /// The hook the hub's writer calls for every batch.
    pub fn outbox_router(&self) -> Arc<dyn OutboxRouter> {
        Arc::clone(&self.index) as Arc<dyn OutboxRouter>
    }

    pub fn config(&self) -> &WebhooksConfig {
        &self.config
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn index(&self) -> &Arc<router::SubscriptionIndex> {
        &self.index
    }

    /// Starts the delivery worker, the snapshot refresher and the gauges. Only once per application.
    pub fn spawn(&self, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        let receiver = self.receiver.lock().ok().and_then(|mut r| r.take());
        let mut tasks = Vec::new();
        if let (true, Some(receiver)) = (self.config.enabled, receiver) {
            tasks.push(tokio::spawn(
                Arc::clone(&self.engine).run(receiver, shutdown.clone()),
            ));
        }
        let (store, index) = (Arc::clone(&self.store), Arc::clone(&self.index));
        let refresh = Duration::from_secs(self.config.refresh_secs);
        tasks.push(tokio::spawn(async move {
            let mut seen: Vec<String> = Vec::new();
            let mut gauges = tokio::time::interval(Duration::from_secs(5));
            let mut reload = tokio::time::interval(refresh);
            // On a shared database, other instances' subscription changes arrive as notifications.
            let mut changed = store.subscription_changes();
            loop {
                let notified = async {
                    match &mut changed {
                        Some(watch) => watch.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    ok = notified => {
                        if !ok {
                            changed = None;
                        } else if let Err(err) = index.reload(&store).await {
                            tracing::error!(error = %err, "cannot reload webhook subscriptions");
                        }
                    }
                    _ = reload.tick() => {
                        if let Err(err) = index.reload(&store).await {
                            tracing::error!(error = %err, "cannot reload webhook subscriptions");
                        }
                    }
                    _ = gauges.tick() => update_gauges(&store, &mut seen).await,
                }
            }
        }));
        tasks
    }

    /// Call after any subscription change: the router sees it at once.
    pub async fn reload(&self) -> Result<(), WebhookError> {
        Ok(self.index.reload(&self.store).await?)
    }

    /// Tells the worker that a subscription may have due deliveries now (after a redrive or replay).
    pub fn wake(&self, subscription_id: &str) {
        let _ = self
            .signals
            .send(Signal::Due(vec![Arc::from(subscription_id)]));
    }

    /// Re-delivers the subscription's matching events committed in `[from, to)` (optionally only types matching
    /// `event_type`), at most [`REPLAY_MAX`] events of history per call.
    pub async fn replay(
        &self,
        sub: &SubscriptionRecord,
        from: Timestamp,
        to: Timestamp,
        event_type: Option<Pattern>,
    ) -> Result<ReplayReport, WebhookError> {
        let compiled = subscription::Compiled::new(sub.clone(), Timestamp::now())?;
        let mut query = EventQuery {
            org_id: Some(sub.org_id.clone()),
            event_types: event_type.into_iter().collect(),
            from: Some(from),
            to: Some(to),
            order: Order::Asc,
            limit: REPLAY_PAGE,
            ..Default::default()
        };
        let mut queued = 0;
        let mut seen = 0;
        let mut truncated = false;
        loop {
            let page = self.store.query_events(&query).await?;
            let Some(last) = page.last() else { break };
            query.after = Some(crate::store::EventCursor {
                timestamp: last.timestamp,
                seq: last.seq,
            });
            seen += page.len();
            let entries: Vec<EnqueueEntry> = page
                .iter()
                .filter(|e| compiled.matches(e, &mut subscription::LazyJson::new(e)))
                .map(|e| EnqueueEntry {
                    subscription_id: Arc::clone(&compiled.id),
                    org_id: e.org_id.clone(),
                    event_seq: e.seq,
                    priority: subscription::priority_of(e.event_type.as_str()),
                })
                .collect();
            if !entries.is_empty() {
                queued += self
                    .store
                    .webhooks()
                    .enqueue_deliveries(entries, Timestamp::now())
                    .await?;
            }
            if page.len() < REPLAY_PAGE {
                break;
            }
            if seen >= REPLAY_MAX {
                truncated = true;
                break;
            }
        }
        self.wake(&sub.id);
        Ok(ReplayReport {
            queued,
            scanned: seen as u64,
            truncated,
            resume_from: truncated
                .then_some(query.after.map(|c| c.timestamp))
                .flatten(),
        })
    }
}

/// What a replay did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    /// Deliveries created or reopened.
    pub queued: u64,
    /// Events of the range that were looked at.
    pub scanned: u64,
    /// True when the range held more than the per-call limit; replay again from `resumeFrom`.
    pub truncated: bool,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::util::serialize_opt_ts"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub resume_from: Option<Timestamp>,
}

async fn update_gauges(store: &DynStore, seen: &mut Vec<String>) {
    let Ok(counts) = store.webhooks().delivery_counts().await else {
        return;
    };
    let mut now_seen = Vec::with_capacity(counts.len());
    for c in &counts {
        let sub = c.subscription_id.clone();
        metrics::gauge!("switchboard_webhook_pending", "subscription" => sub.clone())
            .set(c.open as f64);
        metrics::gauge!("switchboard_webhook_dead", "subscription" => sub.clone())
            .set(c.dead as f64);
        now_seen.push(sub);
    }
    for old in seen.iter().filter(|s| !now_seen.contains(s)) {
        metrics::gauge!("switchboard_webhook_pending", "subscription" => old.clone()).set(0.0);
        metrics::gauge!("switchboard_webhook_dead", "subscription" => old.clone()).set(0.0);
    }
    *seen = now_seen;
}
