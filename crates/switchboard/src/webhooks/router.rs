//! The outbox router: an in-memory snapshot of active subscriptions that the hub's writer asks, for every
//! batch, which deliveries to write with it.
//!
//! The snapshot lives in an `ArcSwap`: the writer reads it without a lock; the API swaps in a new one after
//! every subscription change, and a timer reloads it from the store in case another process changed them.
//!
//! While a subscription's worker lane has room (its budget, an atomic counter), new deliveries are claimed at
//! birth: the row is written leased, and after the commit the worker gets it — event included — straight from
//! memory, with no claim transaction. Without room, the row is written due now and claimed from the store.

use super::subscription::{priority_of, Compiled, LazyJson};
use super::Signal;
use crate::event::{Event, Timestamp};
use crate::hub::OutboxRouter;
use crate::store::webhooks::ClaimedDelivery;
use crate::store::{DynStore, OutboxEntry, StoreResult};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Active subscriptions, by org (for matching) and by id (for delivering).
#[derive(Default)]
pub struct Snapshot {
    by_org: HashMap<String, Vec<Arc<Compiled>>>,
    by_id: HashMap<Arc<str>, Arc<Compiled>>,
}

impl Snapshot {
    pub fn get(&self, id: &str) -> Option<&Arc<Compiled>> {
        self.by_id.get(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &Arc<str>> {
        self.by_id.keys()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

pub struct SubscriptionIndex {
    snapshot: ArcSwap<Snapshot>,
    signals: mpsc::UnboundedSender<Signal>,
    reloading: tokio::sync::Mutex<()>,
    lease_micros: i64,
    /// Per subscription, how many deliveries may be claimed at birth (0: never, e.g. no worker runs here).
    fresh_budget: isize,
}

impl SubscriptionIndex {
    pub fn new(
        signals: mpsc::UnboundedSender<Signal>,
        lease: Duration,
        fresh_budget: usize,
    ) -> Self {
        SubscriptionIndex {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            signals,
            reloading: tokio::sync::Mutex::new(()),
            lease_micros: lease.as_micros() as i64,
            fresh_budget: fresh_budget as isize,
        }
    }

    /// A delivery claimed at birth was recorded: its lane has room for another.
    pub fn return_budget(&self, subscription_id: &str) {
        if let Some(sub) = self.snapshot.load().get(subscription_id) {
            sub.fresh_budget.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Rebuilds the snapshot from the store's active subscriptions.
    pub async fn reload(&self, store: &DynStore) -> StoreResult<()> {
        // One reload at a time, so an older read never replaces a newer one.
        let _turn = self.reloading.lock().await;
        let records = store.webhooks().list_subscriptions(None).await?;
        let now = Timestamp::now();
        let previous = self.snapshot.load_full();
        let mut snapshot = Snapshot::default();
        for record in records.into_iter().filter(|r| r.active) {
            match Compiled::new(record, now) {
                Ok(mut compiled) => {
                    // The budget outlives snapshots: deliveries in flight give it back to the same counter.
                    compiled.fresh_budget = match previous.get(&compiled.id) {
                        Some(old) => Arc::clone(&old.fresh_budget),
                        None => Arc::new(AtomicIsize::new(self.fresh_budget)),
                    };
                    let compiled = Arc::new(compiled);
                    snapshot
                        .by_org
                        .entry(compiled.org_id.clone())
                        .or_default()
                        .push(Arc::clone(&compiled));
                    snapshot.by_id.insert(Arc::clone(&compiled.id), compiled);
                }
                Err(err) => {
                    tracing::error!(error = %err, "stored webhook subscription cannot be compiled; skipping it")
                }
            }
        }
        metrics::gauge!("switchboard_webhook_active_subscriptions").set(snapshot.len() as f64);
        self.snapshot.store(Arc::new(snapshot));
        let _ = self.signals.send(Signal::Reloaded);
        Ok(())
    }

    /// The deliveries a single event would get (used by replay, which matches history the same way).
    pub fn matching(&self, event: &Event) -> Vec<Arc<Compiled>> {
        let snapshot = self.snapshot.load();
        let mut json = LazyJson::new(event);
        snapshot
            .by_org
            .get(&event.org_id)
            .map(|subs| {
                subs.iter()
                    .filter(|s| s.matches(event, &mut json))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl OutboxRouter for SubscriptionIndex {
    fn route(&self, events: &[Event], now: Timestamp, out: &mut Vec<OutboxEntry>) {
        let snapshot = self.snapshot.load();
        if snapshot.is_empty() {
            return;
        }
        for (event_index, event) in events.iter().enumerate() {
            let Some(subs) = snapshot.by_org.get(&event.org_id) else {
                continue;
            };
            let mut json = LazyJson::new(event);
            for sub in subs {
                if sub.matches(event, &mut json) {
                    let claimed_until = if sub.fresh_budget.fetch_sub(1, Ordering::AcqRel) > 0 {
                        Some(Timestamp(now.0 + self.lease_micros))
                    } else {
                        sub.fresh_budget.fetch_add(1, Ordering::AcqRel);
                        None
                    };
                    out.push(OutboxEntry {
                        event_index,
                        subscription_id: Arc::clone(&sub.id),
                        priority: priority_of(event.event_type.as_str()),
                        due_at: now,
                        claimed_until,
                        delivery_id: 0,
                    });
                }
            }
        }
    }

    fn committed(&self, events: &[Arc<Event>], entries: &[OutboxEntry]) {
        let mut due: Vec<Arc<str>> = Vec::new();
        let mut claimed = Vec::new();
        for entry in entries {
            match (
                entry.claimed_until,
                entry.delivery_id,
                events.get(entry.event_index),
            ) {
                (Some(lease_until), id, Some(event)) if id > 0 => claimed.push(ClaimedDelivery {
                    id,
                    subscription_id: Arc::clone(&entry.subscription_id),
                    attempts: 0,
                    created_at: event.timestamp,
                    event: Some(Arc::clone(event)),
                    fresh: true,
                    lease_until,
                }),
                (Some(_), _, _) => self.return_budget(&entry.subscription_id),
                (None, id, _) if id > 0 => {
                    if !due.iter().any(|s| Arc::ptr_eq(s, &entry.subscription_id)) {
                        due.push(Arc::clone(&entry.subscription_id));
                    }
                }
                (None, _, _) => {}
            }
        }
        if !claimed.is_empty() {
            let _ = self.signals.send(Signal::Claimed(claimed));
        }
        if !due.is_empty() {
            let _ = self.signals.send(Signal::Due(due));
        }
    }

    fn abandoned(&self, entries: &[OutboxEntry]) {
        for entry in entries.iter().filter(|e| e.claimed_until.is_some()) {
            self.return_budget(&entry.subscription_id);
        }
    }
}
