//! The single writer: group commit of queued events.
//!
//! The writer takes everything queued (up to `max_events`), optionally lingers to fill the batch, stamps ids and
//! timestamps, commits the batch in one store transaction, answers every emitter, and publishes the batch.
//! While one batch commits, the next one queues up, so batches grow with load and the fsync cost is shared.

use super::{CommittedBatch, Emitted, OutboxRouter, Pending};
use crate::event::{Event, Timestamp};
use crate::store::DynStore;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub(super) struct Writer {
    pub receiver: mpsc::Receiver<Pending>,
    pub store: DynStore,
    pub batches: broadcast::Sender<Arc<CommittedBatch>>,
    pub head: i64,
    pub last_timestamp: Timestamp,
    pub max_events: usize,
    pub linger: Duration,
    pub stop: CancellationToken,
    pub done: CancellationToken,
    /// Webhook deliveries to write with each batch (transactional outbox).
    pub outbox: Option<Arc<dyn OutboxRouter>>,
}

impl Writer {
    pub async fn run(mut self) {
        let mut pending: Vec<Pending> = Vec::with_capacity(self.max_events);
        let mut stopping = false;
        loop {
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
            }
            metrics::gauge!("switchboard_emit_queue_depth").set(self.receiver.len() as f64);
            self.commit(&mut pending).await;
        }
        tracing::info!(head = self.head, "event writer stopped");
        self.done.cancel();
    }

    async fn fill(&mut self, pending: &mut Vec<Pending>) {
        let deadline = tokio::time::Instant::now() + self.linger;
        while pending.len() < self.max_events {
            let room = self.max_events - pending.len();
            match tokio::time::timeout_at(deadline, self.receiver.recv_many(pending, room)).await {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }

    async fn commit(&mut self, pending: &mut Vec<Pending>) {
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
        let started = Instant::now();
        let mut outbox = Vec::new();
        if let Some(router) = &self.outbox {
            router.route(&batch, now, &mut outbox);
        }
        let result = if outbox.is_empty() {
            self.store
                .append(batch)
                .await
                .map(|stored| (stored, outbox))
        } else {
            let entries = outbox.clone();
            let result = self.store.append_with_outbox(batch, entries).await;
            if let (Err(_), Some(router)) = (&result, &self.outbox) {
                router.abandoned(&outbox);
            }
            result
        };
        metrics::histogram!("switchboard_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("switchboard_append_batch_size").record(size as f64);
        match result {
            Ok((stored, deliveries)) => {
                let prev_head = self.head;
                let stored: Vec<Arc<Event>> = stored.into_iter().map(Arc::new).collect();
                if let (false, Some(router)) = (deliveries.is_empty(), &self.outbox) {
                    router.committed(&stored, &deliveries);
                }
                let mut published = Vec::with_capacity(stored.len());
                for (event, reply) in stored.into_iter().zip(replies) {
                    let duplicate = event.seq <= prev_head;
                    if !duplicate {
                        self.head = self.head.max(event.seq);
                        published.push(Arc::clone(&event));
                    }
                    // An emitter that gave up waiting is fine: its event is committed all the same.
                    let _ = reply.send(Ok(Emitted { event, duplicate }));
                }
                if !published.is_empty() {
                    let _ = self.batches.send(Arc::new(CommittedBatch {
                        prev_head,
                        events: published,
                    }));
                }
            }
            Err(err) => {
                metrics::counter!("switchboard_commit_failures_total").increment(1);
                tracing::error!(error = %err, events = size, "batch commit failed; emitters get an error");
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}
