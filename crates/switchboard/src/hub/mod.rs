//! The hub: the one door every event goes through.
//!
//! `emit` validates an event and queues it for the writer ([`writer`]), which commits queued events in batches
//! (group commit: one transaction and one fsync per batch) and only then answers each emitter. Every committed
//! batch is published once on a broadcast channel; from there the dispatcher hands events to in-process
//! listeners ([`listeners`]) and durable listeners ([`durable`]) resume from it or from the log.

pub mod durable;
pub mod listeners;
mod tail;
mod writer;

pub use durable::{spawn_durable, DurableHandler};
pub use listeners::{EventFilter, Listener, ListenerSpec};

use crate::event::{Event, NewEvent, Timestamp, ValidationError};
use crate::store::{DynStore, OutboxEntry, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How the hub batches and bounds its queues.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// A batch is committed when it holds this many events...
    pub batch_max_events: usize,
    /// ...or when this long has passed since its first event (0: commit as soon as the writer is free).
    pub batch_linger: Duration,
    /// Events waiting for the writer; `emit` waits when it is full.
    pub queue_capacity: usize,
    pub max_event_bytes: usize,
    /// Per in-process listener; beyond it the listener misses events (counted).
    pub listener_queue_capacity: usize,
    /// Committed batches kept for slow consumers of the broadcast before they must re-read the log.
    pub broadcast_capacity: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            batch_max_events: 2048,
            batch_linger: Duration::ZERO,
            queue_capacity: 16_384,
            max_event_bytes: 1 << 20,
            listener_queue_capacity: 4096,
            broadcast_capacity: 1024,
        }
    }
}

/// Why an event was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("the hub is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One committed transaction, as published to listeners.
#[derive(Debug)]
pub struct CommittedBatch {
    /// The head `seq` before this batch: a consumer whose cursor equals it has seen everything before.
    pub prev_head: i64,
    /// The new events, in `seq` order (idempotent repeats are not included).
    pub events: Vec<Arc<Event>>,
}

impl CommittedBatch {
    pub fn last_seq(&self) -> i64 {
        self.events.last().map_or(self.prev_head, |e| e.seq)
    }
}

pub(crate) struct Pending {
    event: NewEvent,
    reply: oneshot::Sender<Result<Emitted, StoreError>>,
}

/// The writer's answer to one queued event.
type Answer = oneshot::Receiver<Result<Emitted, StoreError>>;

/// Decides, for each batch the writer is about to commit, which webhook deliveries to write in the same
/// transaction (the transactional outbox). It runs on the writer's path, so it must only read memory.
pub trait OutboxRouter: Send + Sync + 'static {
    /// Appends the deliveries for `events` to `out`, in `event_index` order, due at `now`.
    fn route(&self, events: &[Event], now: Timestamp, out: &mut Vec<OutboxEntry>);

    /// Called after a batch and its deliveries committed: `events` is the stored batch (in `event_index` order),
    /// `entries` carry their `delivery_id` (0 where the event was an idempotent repeat).
    fn committed(&self, events: &[Arc<Event>], entries: &[OutboxEntry]);

    /// Called when the batch failed: nothing was written.
    fn abandoned(&self, entries: &[OutboxEntry]);
}

/// The result of an emit: the stored event, and whether it was an idempotent repeat of an earlier one.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub event: Arc<Event>,
    pub duplicate: bool,
}

/// A handle to the hub; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    queue: mpsc::Sender<Pending>,
    batches: broadcast::Sender<Arc<CommittedBatch>>,
    registry: Arc<listeners::Registry>,
    store: DynStore,
    config: HubConfig,
    /// The highest `seq` that is durable and published; readers of the log never go past it.
    durable_head: Arc<std::sync::atomic::AtomicI64>,
    stop_writer: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Hub {
    /// Starts the writer and the dispatcher over `store`.
    pub async fn start(store: DynStore, config: HubConfig) -> Result<Hub, StoreError> {
        Self::start_with_outbox(store, config, None).await
    }

    /// Like [`Hub::start`], with a router whose deliveries are committed together with their events.
    pub async fn start_with_outbox(
        store: DynStore,
        config: HubConfig,
        outbox: Option<Arc<dyn OutboxRouter>>,
    ) -> Result<Hub, StoreError> {
        let (head, last_timestamp) = store.head().await?;
        let (queue, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let (batches, _) = broadcast::channel(config.broadcast_capacity.max(16));
        let registry = Arc::new(listeners::Registry::default());
        let stop_writer = CancellationToken::new();
        let writer_done = CancellationToken::new();
        let durable_head = Arc::new(std::sync::atomic::AtomicI64::new(head));
        let mut tasks = Vec::new();
        // On a shared log, the tailer publishes (every instance's batches); otherwise the writer does.
        let (publish, published_done) = match store.log_changes() {
            None => (writer::Publish::Direct, writer_done.clone()),
            Some(changes) => {
                let (local_tx, local) = mpsc::unbounded_channel();
                let tail_done = CancellationToken::new();
                let tailer = tail::Tailer {
                    store: Arc::clone(&store),
                    batches: batches.clone(),
                    durable_head: Arc::clone(&durable_head),
                    changes,
                    local,
                    cursor: head,
                    done: tail_done.clone(),
                };
                tasks.push(tokio::spawn(tailer.run()));
                (writer::Publish::Tail(local_tx), tail_done)
            }
        };
        let writer = writer::Writer {
            receiver,
            store: Arc::clone(&store),
            batches: batches.clone(),
            durable_head: Arc::clone(&durable_head),
            head,
            last_timestamp,
            max_events: config.batch_max_events.max(1),
            linger: config.batch_linger,
            stop: stop_writer.clone(),
            done: writer_done.clone(),
            outbox,
            publish,
            concurrent_commits: store.concurrent_commits().max(1),
            in_flight: Arc::new(tokio::sync::Semaphore::new(
                store.concurrent_commits().max(1),
            )),
            blocking: store.blocking_log(),
        };
        tasks.push(if writer.blocking.is_some() {
            writer::on_own_thread("switchboard-writer", writer.run())
                .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?
        } else {
            tokio::spawn(writer.run())
        });
        tasks.push(tokio::spawn(listeners::dispatch(
            batches.subscribe(),
            Arc::clone(&registry),
            published_done,
        )));
        Ok(Hub {
            inner: Arc::new(Inner {
                queue,
                batches,
                registry,
                store,
                config,
                durable_head,
                stop_writer,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    /// Validates, stores durably and publishes an event. Returns once the event is committed (fsynced).
    pub async fn emit(&self, event: NewEvent) -> Result<Arc<Event>, EmitError> {
        Ok(self.publish(event).await?.event)
    }

    /// Like [`Hub::emit`], and tells whether an idempotency key matched an earlier event.
    pub async fn publish(&self, event: NewEvent) -> Result<Emitted, EmitError> {
        event.validate(self.inner.config.max_event_bytes)?;
        Self::answer(self.enqueue(event).await?).await
    }

    /// Emits several events in order and returns once all of them are committed (usually in one batch). A source
    /// that answers its peer after several events (the MLLP listener) waits once instead of once per event.
    pub async fn emit_all(&self, events: Vec<NewEvent>) -> Result<Vec<Arc<Event>>, EmitError> {
        for event in &events {
            event.validate(self.inner.config.max_event_bytes)?;
        }
        let mut answers = Vec::with_capacity(events.len());
        for event in events {
            answers.push(self.enqueue(event).await?);
        }
        let mut stored = Vec::with_capacity(answers.len());
        for answer in answers {
            stored.push(Self::answer(answer).await?.event);
        }
        Ok(stored)
    }

    /// Emits several events in order, usually in one batch, and tells what became of each: one may be refused (a
    /// resource write's precondition, say) while the others commit.
    pub async fn emit_each(&self, events: Vec<NewEvent>) -> Vec<Result<Arc<Event>, EmitError>> {
        let mut answers = Vec::with_capacity(events.len());
        for event in events {
            let queued = match event.validate(self.inner.config.max_event_bytes) {
                Ok(()) => self.enqueue(event).await,
                Err(invalid) => Err(invalid.into()),
            };
            answers.push(queued);
        }
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(match answer {
                Ok(answer) => Self::answer(answer).await.map(|e| e.event),
                Err(err) => Err(err),
            });
        }
        results
    }

    async fn enqueue(&self, event: NewEvent) -> Result<Answer, EmitError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .queue
            .send(Pending { event, reply })
            .await
            .map_err(|_| EmitError::ShuttingDown)?;
        Ok(answer)
    }

    async fn answer(answer: Answer) -> Result<Emitted, EmitError> {
        match answer.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(EmitError::ShuttingDown),
        }
    }

    /// Registers an in-process listener; dropping the returned [`Listener`] unsubscribes it.
    pub fn subscribe(&self, spec: ListenerSpec) -> Listener {
        let capacity = if spec.capacity == 0 {
            self.inner.config.listener_queue_capacity
        } else {
            spec.capacity
        };
        listeners::Registry::add(&self.inner.registry, spec, capacity)
    }

    /// Resolves with the first matching event committed after this call.
    pub fn once(
        &self,
        spec: ListenerSpec,
    ) -> impl std::future::Future<Output = Option<Arc<Event>>> + Send {
        let mut listener = self.subscribe(ListenerSpec {
            capacity: 1,
            ..spec
        });
        async move { listener.recv().await }
    }

    /// Every committed batch from now on (for durable listeners, SSE and Socket.IO).
    pub fn batches(&self) -> broadcast::Receiver<Arc<CommittedBatch>> {
        self.inner.batches.subscribe()
    }

    /// The highest `seq` known durable. Events above it may be committed but not yet fsynced.
    pub fn durable_head(&self) -> i64 {
        self.inner
            .durable_head
            .load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn store(&self) -> &DynStore {
        &self.inner.store
    }

    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Stops accepting events, commits what is queued, and waits for the writer and dispatcher to finish.
    pub async fn shutdown(&self) {
        self.inner.stop_writer.cancel();
        let tasks: Vec<_> = self.inner.tasks.lock().await.drain(..).collect();
        for task in tasks {
            if let Err(err) = task.await {
                tracing::error!(error = %err, "hub task failed during shutdown");
            }
        }
    }
}
