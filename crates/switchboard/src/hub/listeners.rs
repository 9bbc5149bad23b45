//! In-process listeners: subscribe with patterns and filters, receive committed events on a bounded queue.
//!
//! The dispatcher task reads committed batches from the hub's broadcast and offers each event to every matching
//! listener with `try_send`: a listener whose queue is full misses that event (counted in
//! `switchboard_listener_dropped_total`) and nothing else waits for it. Listeners that must see every event are
//! durable listeners ([`super::durable`]), which read the log.

use super::CommittedBatch;
use crate::event::{any_matches, Event, Pattern};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Which events an in-process listener wants.
#[derive(Debug, Clone, Default)]
pub struct ListenerSpec {
    /// A name for metrics and logs.
    pub name: String,
    /// Event type patterns (`hl7.*`, `**`); empty means every type.
    pub patterns: Vec<Pattern>,
    pub filter: EventFilter,
    /// Queue length; 0 takes the hub's default.
    pub capacity: usize,
}

impl ListenerSpec {
    pub fn new(name: impl Into<String>, patterns: Vec<Pattern>) -> Self {
        ListenerSpec {
            name: name.into(),
            patterns,
            ..Default::default()
        }
    }
}

/// Optional filters on top of the type patterns. As in the seed, a message-type (resource-type) filter applies
/// only to events that carry a message type (resource type).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub org_id: Option<String>,
    pub message_types: Vec<String>,
    pub resource_types: Vec<String>,
}

impl EventFilter {
    pub fn matches(&self, event: &Event) -> bool {
        let listed = |list: &[String], value: &Option<String>| match value {
            Some(v) if !list.is_empty() => list.iter().any(|l| l == v),
            _ => true,
        };
        self.org_id.as_ref().is_none_or(|org| *org == event.org_id)
            && listed(&self.message_types, &event.message_type)
            && listed(&self.resource_types, &event.resource_type)
    }
}

struct Entry {
    id: u64,
    spec: ListenerSpec,
    sender: mpsc::Sender<Arc<Event>>,
}

/// The set of live listeners, swapped atomically so dispatch never takes a lock.
#[derive(Default)]
pub(crate) struct Registry {
    entries: ArcSwap<Vec<Arc<Entry>>>,
    next_id: AtomicU64,
}

impl Registry {
    pub(crate) fn add(registry: &Arc<Registry>, spec: ListenerSpec, capacity: usize) -> Listener {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let id = registry.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry { id, spec, sender });
        registry.entries.rcu(|entries| {
            let mut next = Vec::clone(entries);
            next.push(Arc::clone(&entry));
            next
        });
        Listener {
            id,
            receiver,
            registry: Arc::clone(registry),
        }
    }

    fn remove(&self, id: u64) {
        self.entries.rcu(|entries| {
            entries
                .iter()
                .filter(|e| e.id != id)
                .cloned()
                .collect::<Vec<_>>()
        });
    }

    fn offer(&self, event: &Arc<Event>) {
        for entry in self.entries.load().iter() {
            if !any_matches(&entry.spec.patterns, event.event_type.as_str())
                || !entry.spec.filter.matches(event)
            {
                continue;
            }
            if let Err(mpsc::error::TrySendError::Full(_)) =
                entry.sender.try_send(Arc::clone(event))
            {
                metrics::counter!("switchboard_listener_dropped_total", "listener" => entry.spec.name.clone())
                    .increment(1);
            }
        }
    }
}

/// A live subscription. Dropping it unsubscribes.
pub struct Listener {
    id: u64,
    receiver: mpsc::Receiver<Arc<Event>>,
    registry: Arc<Registry>,
}

impl Listener {
    /// The next matching event; `None` once the hub has shut down.
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        self.receiver.recv().await
    }

    pub fn try_recv(&mut self) -> Option<Arc<Event>> {
        self.receiver.try_recv().ok()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

/// Hands every committed event to the live listeners until the writer has stopped.
pub(super) async fn dispatch(
    mut batches: broadcast::Receiver<Arc<CommittedBatch>>,
    registry: Arc<Registry>,
    writer_done: CancellationToken,
) {
    loop {
        let batch = tokio::select! {
            received = batches.recv() => received,
            _ = writer_done.cancelled() => match batches.try_recv() {
                Ok(batch) => Ok(batch),
                Err(_) => break,
            },
        };
        match batch {
            Ok(batch) => batch.events.iter().for_each(|event| registry.offer(event)),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                metrics::counter!("switchboard_dispatch_lagged_batches_total").increment(missed);
                tracing::warn!(
                    missed,
                    "listener dispatcher fell behind; live listeners missed batches"
                );
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    // Dropping the registry's senders ends every listener's `recv` with `None`.
    registry.entries.store(Arc::new(Vec::new()));
}
