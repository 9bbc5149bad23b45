//! The single writer: pipelined group commit of queued events.
//!
//! Two stages, both in commit order:
//! 1. **commit** — take everything queued (up to `max_events`), keep gathering for a moment ([`Writer::gather`];
//!    or linger, if configured, to fill the batch), stamp ids and timestamps, and commit the batch in one store
//!    transaction ([`crate::store::Store::commit`]);
//! 2. **acknowledge** — wait until the store has made that commit durable ([`crate::store::Store::sync`]: one
//!    fsync covers every commit before it), then answer every emitter and publish the batch.
//!
//! One fsync covers every batch committed before it, so the disk's sync latency is shared by many batches; while
//! it runs the next batch gathers (SQLite) or commits (PostgreSQL). Nothing is answered or published before it is
//! durable.
//!
//! On a store with a blocking append path ([`crate::store::Store::blocking_log`], SQLite) each stage runs on a
//! thread of its own and calls the store inline: handing every batch to tokio's blocking pool and back cost two
//! thread wake-ups per stage, more than a small commit itself. Otherwise (PostgreSQL) both stages are tasks.

use super::{CommittedBatch, Emitted, OutboxRouter, Pending};
use crate::event::{Event, Timestamp};
use crate::store::{Appended, BlockingLog, DynStore, OutboxEntry, StoreError, SyncTicket};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Committed batches waiting for their fsync; beyond this the commit stage waits (backpressure).
const PIPELINE_DEPTH: usize = 32;

/// The longest the writer keeps gathering one batch (see [`Writer::gather`]).
const GATHER_WINDOW: Duration = Duration::from_micros(500);

/// On the writer's own thread: the pause between two rounds of gathering.
const GATHER_PAUSE: Duration = Duration::from_micros(50);

pub(super) struct Writer {
    pub receiver: mpsc::Receiver<Pending>,
    pub store: DynStore,
    pub batches: broadcast::Sender<Arc<CommittedBatch>>,
    pub durable_head: Arc<AtomicI64>,
    pub head: i64,
    pub last_timestamp: Timestamp,
    pub max_events: usize,
    pub linger: Duration,
    pub stop: CancellationToken,
    pub done: CancellationToken,
    /// Webhook deliveries to write with each batch (transactional outbox).
    pub outbox: Option<Arc<dyn OutboxRouter>>,
    pub publish: Publish,
    /// Batches allowed to commit at once (`Store::concurrent_commits`); above 1 each commit runs in a task.
    pub concurrent_commits: usize,
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// The store's blocking append path, if it has one: then this runs on a thread of its own and commits inline.
    pub blocking: Option<Arc<dyn BlockingLog>>,
}

/// Who publishes a durable batch to the hub's listeners.
#[derive(Clone)]
pub(super) enum Publish {
    /// This process is the log's only writer: the writer publishes each batch once it is durable.
    Direct,
    /// Other processes append too: batches go to the tailer, which publishes the whole log in `seq` order.
    Tail(mpsc::UnboundedSender<Vec<Arc<Event>>>),
}

type Reply = oneshot::Sender<Result<Emitted, StoreError>>;

type CommitResult = Result<(Vec<Appended>, Vec<OutboxEntry>, SyncTicket), StoreError>;

/// A batch that is committed (or, on a store that commits several batches at once, being committed) but maybe
/// not yet durable.
struct Committed {
    outcome: Outcome,
    replies: Vec<Reply>,
    prev_head: i64,
}

enum Outcome {
    Done(CommitResult),
    /// Committing in its own task; the acknowledge stage awaits it in batch order.
    InFlight(tokio::task::JoinHandle<CommitResult>),
}

impl Writer {
    pub async fn run(mut self) {
        let (to_ack, ack_queue) = mpsc::channel(PIPELINE_DEPTH);
        // Batches handed to the acknowledge stage and not yet through their fsync (see `gather`).
        let unsynced = Arc::new(AtomicUsize::new(0));
        let acknowledging = Acknowledge {
            store: Arc::clone(&self.store),
            blocking: self.blocking.clone(),
            batches: self.batches.clone(),
            durable_head: Arc::clone(&self.durable_head),
            outbox_router: self.outbox.clone(),
            publish: self.publish.clone(),
            unsynced: Arc::clone(&unsynced),
        }
        .run(ack_queue);
        let acker = if self.blocking.is_some() {
            match on_own_thread("switchboard-acknowledge", acknowledging) {
                Ok(acker) => acker,
                Err(err) => {
                    // Nothing can be made durable: emitters get an error as the queue closes.
                    tracing::error!(error = %err, "cannot start the acknowledge thread; the hub stops");
                    self.done.cancel();
                    return;
                }
            }
        } else {
            tokio::spawn(acknowledging)
        };
        let mut pending: Vec<Pending> = Vec::with_capacity(self.max_events);
        let mut stopping = false;
        loop {
            // With concurrent commits, a batch is formed only once it may start: what queues up while every
            // slot is busy goes into one batch instead of many small ones.
            let permit = if self.concurrent_commits > 1 {
                Arc::clone(&self.in_flight).acquire_owned().await.ok()
            } else {
                None
            };
            let received = tokio::select! {
                n = self.receiver.recv_many(&mut pending, self.max_events) => n,
                _ = self.stop.cancelled(), if !stopping => {
                    // Refuse new emits; what is already queued is still received and committed below.
                    stopping = true;
                    self.receiver.close();
                    continue;
                }
            };
            if received == 0 {
                break;
            }
            if !self.linger.is_zero() {
                self.fill(&mut pending).await;
            } else {
                self.gather(&mut pending, &unsynced).await;
            }
            metrics::gauge!("switchboard_emit_queue_depth").set(self.receiver.len() as f64);
            let committed = self.commit(&mut pending, permit).await;
            unsynced.fetch_add(1, Ordering::AcqRel);
            if to_ack.send(committed).await.is_err() {
                tracing::error!(
                    "the acknowledge stage stopped; emitters of later batches get no answer"
                );
                break;
            }
        }
        drop(to_ack);
        if let Err(err) = acker.await {
            tracing::error!(error = %err, "the acknowledge stage failed");
        }
        tracing::info!(head = self.head, "event writer stopped");
        self.done.cancel();
    }

    /// Without a configured linger: keep taking events for a while, at most [`GATHER_WINDOW`], so a busy hub
    /// commits fewer, larger batches (a commit's cost is mostly per page, not per event: 60 events cost about
    /// twice 12, not five times).
    ///
    /// On the writer's own thread (a store with a separate fsync, SQLite) the batch grows, in rounds of
    /// [`GATHER_PAUSE`], for as long as an earlier batch is still waiting for its fsync (`unsynced`, which the
    /// writer raises when it hands a batch over and the acknowledge stage lowers after the fsync): a batch
    /// committed then could not be durable before that fsync and one more, so the events that arrive meanwhile
    /// join it at little cost in latency; once every earlier batch is durable the batch is committed. (Ending the batch when a round
    /// brought nothing new, as before, made one large batch of nearly every client, committed and synced while
    /// all of them waited: 64 MLLP connections gave 24,000–28,000 messages/s, now 31,000–36,000; see
    /// docs/benchmarks.md.)
    ///
    /// Otherwise each round yields to the emitters and a round that brings nothing ends the batch, so an idle
    /// hub commits at once.
    async fn gather(&mut self, pending: &mut Vec<Pending>, unsynced: &AtomicUsize) {
        let deadline = Instant::now() + GATHER_WINDOW;
        if self.blocking.is_some() {
            while pending.len() < self.max_events && Instant::now() < deadline {
                std::thread::sleep(GATHER_PAUSE);
                self.take_queued(pending);
                if unsynced.load(Ordering::Acquire) == 0 {
                    break;
                }
            }
            return;
        }
        while pending.len() < self.max_events && Instant::now() < deadline {
            tokio::task::yield_now().await;
            let before = pending.len();
            self.take_queued(pending);
            if pending.len() == before {
                break;
            }
        }
    }

    /// Moves what is queued into `pending`, up to `max_events` in all.
    fn take_queued(&mut self, pending: &mut Vec<Pending>) {
        while pending.len() < self.max_events {
            match self.receiver.try_recv() {
                Ok(next) => pending.push(next),
                Err(_) => break,
            }
        }
    }

    async fn fill(&mut self, pending: &mut Vec<Pending>) {
        if self.blocking.is_some() {
            return self.fill_on_own_thread(pending);
        }
        let deadline = tokio::time::Instant::now() + self.linger;
        while pending.len() < self.max_events {
            let room = self.max_events - pending.len();
            match tokio::time::timeout_at(deadline, self.receiver.recv_many(pending, room)).await {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }

    /// [`Writer::fill`] without tokio's timers, which a thread outside the runtime cannot rely on (they stop when
    /// the runtime shuts down).
    fn fill_on_own_thread(&mut self, pending: &mut Vec<Pending>) {
        let deadline = Instant::now() + self.linger;
        while pending.len() < self.max_events {
            match self.receiver.try_recv() {
                Ok(next) => pending.push(next),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    std::thread::sleep((deadline - now).min(GATHER_WINDOW));
                }
            }
        }
    }

    async fn commit(
        &mut self,
        pending: &mut Vec<Pending>,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Committed {
        // Timestamps never go backwards along seq, even if the clock does: history pages rely on it.
        let now = Timestamp::now().max(self.last_timestamp);
        self.last_timestamp = now;
        let mut replies = Vec::with_capacity(pending.len());
        let mut batch = Vec::with_capacity(pending.len());
        for Pending { event, reply } in pending.drain(..) {
            batch.push(Event::from_new(event, Uuid::now_v7(), now));
            replies.push(reply);
        }
        let size = batch.len();
        metrics::histogram!("switchboard_append_batch_size").record(size as f64);
        let prev_head = self.head;
        if let Some(permit) = permit {
            // A store whose commit is durable by itself (its sync is free) commits several batches at once, so
            // one batch's round trips and fsync overlap the next one's (the store orders them).
            let (store, outbox) = (Arc::clone(&self.store), self.outbox.clone());
            let task = tokio::spawn(async move {
                let started = Instant::now();
                let outcome = store
                    .commit(batch, outbox)
                    .await
                    .map(|c| (c.appended, c.outbox, c.ticket));
                metrics::histogram!("switchboard_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                drop(permit);
                outcome
            });
            return Committed {
                outcome: Outcome::InFlight(task),
                replies,
                prev_head,
            };
        }
        let started = Instant::now();
        let outcome = match &self.blocking {
            Some(log) => log.commit(batch, self.outbox.as_deref()),
            None => self.store.commit(batch, self.outbox.clone()).await,
        }
        .map(|c| (c.appended, c.outbox, c.ticket));
        metrics::histogram!("switchboard_commit_seconds").record(started.elapsed().as_secs_f64());
        if let Ok((outcomes, _, _)) = &outcome {
            for appended in outcomes {
                if let Appended::New(event) = appended {
                    self.head = self.head.max(event.seq);
                }
            }
        }
        Committed {
            outcome: Outcome::Done(outcome),
            replies,
            prev_head,
        }
    }
}

/// Runs `task` on a thread of its own, outside the runtime's workers: for the stages that call a [`BlockingLog`]
/// inline, so a batch goes to the database and back without two thread hand-offs per stage. The task must not
/// use tokio's timers or I/O (a thread outside the runtime cannot count on them). The returned handle finishes
/// with the task.
pub(super) fn on_own_thread<F>(name: &str, task: F) -> std::io::Result<tokio::task::JoinHandle<()>>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    let (finished, on_finish) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            runtime.block_on(task);
            let _ = finished.send(());
        })?;
    Ok(tokio::spawn(async move {
        let _ = on_finish.await;
    }))
}

/// The second stage: make each committed batch durable, then answer and publish it, in commit order.
struct Acknowledge {
    store: DynStore,
    blocking: Option<Arc<dyn BlockingLog>>,
    batches: broadcast::Sender<Arc<CommittedBatch>>,
    durable_head: Arc<AtomicI64>,
    outbox_router: Option<Arc<dyn OutboxRouter>>,
    publish: Publish,
    unsynced: Arc<AtomicUsize>,
}

impl Acknowledge {
    async fn run(self, mut queue: mpsc::Receiver<Committed>) {
        while let Some(Committed {
            outcome,
            replies,
            prev_head,
        }) = queue.recv().await
        {
            let durable = self.make_durable(outcome).await;
            self.unsynced.fetch_sub(1, Ordering::AcqRel);
            match durable {
                Ok((outcomes, outbox)) => self.answer(outcomes, outbox, replies, prev_head),
                Err(err) => {
                    metrics::counter!("switchboard_commit_failures_total").increment(1);
                    tracing::error!(error = %err, events = replies.len(), "batch not durable; emitters get an error");
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        }
    }

    async fn make_durable(
        &self,
        outcome: Outcome,
    ) -> Result<(Vec<Appended>, Vec<OutboxEntry>), StoreError> {
        let (outcomes, outbox, ticket) = match outcome {
            Outcome::Done(outcome) => outcome,
            Outcome::InFlight(task) => task.await.unwrap_or_else(|err| {
                Err(StoreError::Database(format!("commit task failed: {err}")))
            }),
        }?;
        let started = Instant::now();
        let synced = match &self.blocking {
            Some(log) => log.sync(ticket),
            None => self.store.sync(ticket).await,
        };
        metrics::histogram!("switchboard_sync_seconds").record(started.elapsed().as_secs_f64());
        if let (Err(_), Some(router)) = (&synced, &self.outbox_router) {
            router.abandoned(&outbox);
        }
        synced.map(|()| (outcomes, outbox))
    }

    /// Answers each emitter of a durable batch, releases its webhook deliveries and publishes its new events.
    fn answer(
        &self,
        outcomes: Vec<Appended>,
        mut outbox: Vec<OutboxEntry>,
        replies: Vec<Reply>,
        prev_head: i64,
    ) {
        let mut published = Vec::with_capacity(outcomes.len());
        // Batch position -> position in `published`, for the outbox entries (only new events have deliveries).
        let mut position = vec![usize::MAX; outcomes.len()];
        for (index, (appended, reply)) in outcomes.into_iter().zip(replies).enumerate() {
            // An emitter that gave up waiting is fine: its event is committed all the same.
            let _ = match appended {
                Appended::New(event) => {
                    let event = Arc::new(event);
                    position[index] = published.len();
                    published.push(Arc::clone(&event));
                    reply.send(Ok(Emitted {
                        event,
                        duplicate: false,
                    }))
                }
                Appended::Existing(event) => reply.send(Ok(Emitted {
                    event: Arc::new(event),
                    duplicate: true,
                })),
                Appended::Refused(refusal) => reply.send(Err(refusal)),
            };
        }
        // Deliveries may start only once their rows (and events) are durable.
        if let (false, Some(router)) = (outbox.is_empty(), &self.outbox_router) {
            for entry in &mut outbox {
                entry.event_index = position
                    .get(entry.event_index)
                    .copied()
                    .unwrap_or(usize::MAX);
            }
            router.committed(&published, &outbox);
        }
        let Some(last) = published.last().map(|e| e.seq) else {
            return;
        };
        match &self.publish {
            Publish::Direct => {
                self.durable_head.fetch_max(last, Ordering::Release);
                let _ = self.batches.send(Arc::new(CommittedBatch {
                    prev_head,
                    events: published,
                }));
            }
            Publish::Tail(tailer) => {
                let _ = tailer.send(published);
            }
        }
    }
}
