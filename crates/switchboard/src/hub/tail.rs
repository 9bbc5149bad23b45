//! The tailer: on a log that several processes append to, this process publishes the *whole* log in `seq`
//! order — its own commits and everyone else's — so in-process listeners, durable listeners, SSE and Socket.IO
//! see every event of every instance, exactly as they would from a single process.
//!
//! It wakes on three things: a batch this process committed (published straight from memory when it starts
//! right after the cursor), a change notification from the store (one per batch committed anywhere), and a
//! polling tick in case a notification was lost. Whatever is not in hand is read from the log with
//! `seq > cursor`, which never skips an event because the store makes `seq` gap-free in commit order.

use super::CommittedBatch;
use crate::event::Event;
use crate::store::DynStore;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

const PAGE: usize = 1024;
/// How often the log is read even without a notification.
const POLL: Duration = Duration::from_millis(500);

pub(super) struct Tailer {
    pub store: DynStore,
    pub batches: broadcast::Sender<Arc<CommittedBatch>>,
    pub durable_head: Arc<AtomicI64>,
    pub changes: watch::Receiver<u64>,
    /// Batches this process committed, from the writer; closed when the writer stops.
    pub local: mpsc::UnboundedReceiver<Vec<Arc<Event>>>,
    pub cursor: i64,
    /// Cancelled when the tailer has published its last batch.
    pub done: CancellationToken,
}

impl Tailer {
    pub async fn run(mut self) {
        let mut notifications = true;
        self.read_log().await;
        loop {
            tokio::select! {
                local = self.local.recv() => match local {
                    Some(events) => self.take_local(events).await,
                    None => break,
                },
                changed = self.changes.changed(), if notifications => {
                    if changed.is_err() {
                        tracing::warn!("log change notifications ended; polling only");
                        notifications = false;
                    }
                    self.read_log().await;
                }
                _ = tokio::time::sleep(POLL) => self.read_log().await,
            }
        }
        // The writer has stopped: publish what it committed last.
        self.read_log().await;
        tracing::info!(cursor = self.cursor, "log tailer stopped");
        self.done.cancel();
    }

    /// A batch this process committed: published from memory if it lines up, else read (with what precedes it).
    async fn take_local(&mut self, events: Vec<Arc<Event>>) {
        let Some(first) = events.first().map(|e| e.seq) else {
            return;
        };
        if first > self.cursor + 1 {
            // Other instances committed before it: those come from the log (and maybe this batch too).
            self.read_log().await;
        }
        let fresh: Vec<Arc<Event>> = events.into_iter().filter(|e| e.seq > self.cursor).collect();
        match fresh.first() {
            None => {}
            Some(e) if e.seq == self.cursor + 1 => self.publish(fresh),
            Some(_) => self.read_log().await,
        }
    }

    /// Publishes everything the log holds after the cursor.
    async fn read_log(&mut self) {
        loop {
            match self.store.events_after(self.cursor, PAGE).await {
                Ok(page) if page.is_empty() => return,
                Ok(page) => {
                    let full = page.len() == PAGE;
                    self.publish(page.into_iter().map(Arc::new).collect());
                    if !full {
                        return;
                    }
                }
                Err(err) => {
                    metrics::counter!("switchboard_tail_errors_total").increment(1);
                    tracing::warn!(error = %err, cursor = self.cursor, "reading the shared log failed; will retry");
                    return;
                }
            }
        }
    }

    fn publish(&mut self, events: Vec<Arc<Event>>) {
        let Some(last) = events.last().map(|e| e.seq) else {
            return;
        };
        let prev_head = self.cursor;
        self.cursor = last;
        self.durable_head.fetch_max(last, Ordering::Release);
        let _ = self
            .batches
            .send(Arc::new(CommittedBatch { prev_head, events }));
    }
}
