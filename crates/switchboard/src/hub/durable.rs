//! Durable listeners: named consumers that keep a cursor (the last `seq` handled) in the store and so see every
//! event at least once, across restarts.
//!
//! A runner subscribes to the hub's committed batches first, then catches up from the log; once level it takes
//! batches straight from memory as long as each one starts where its cursor ends (`prev_head == cursor`), and
//! goes back to the log whenever it finds a gap (it lagged, or another instance wrote). The cursor is saved after
//! the handler succeeds, so a crash in between replays the batch: handlers must be idempotent.
//!
//! Each runner first takes its listener's lease from the store, so when several instances share a database each
//! listener runs on one of them at a time; the others stand by and take over when the holder's lease ends.

use super::{CommittedBatch, Hub};
use crate::event::{any_matches, Event, Pattern};
use crate::store::lease::Lease;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Events read per query when catching up from the log.
const PAGE: usize = 512;
/// Catching up, a group stops growing past this much event data.
const GROUP_BYTES: usize = 16 * 1024 * 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The most events handed to a handler at once.
const GROUP_MAX: usize = 4096;
/// How often a running listener checks that it still holds its lease.
const LEASE_CHECK: Duration = Duration::from_secs(2);
/// How often a standby instance asks for a lease another instance holds.
const LEASE_RETRY: Duration = Duration::from_secs(1);

#[async_trait]
pub trait DurableHandler: Send + Sync + 'static {
    /// The cursor's name in the store; must stay the same across releases.
    fn name(&self) -> &str;

    /// The event types this listener handles; others only move its cursor.
    fn patterns(&self) -> Vec<Pattern> {
        Vec::new()
    }

    /// True when `handle` saves the cursor itself, in the same transaction as its own writes.
    fn saves_cursor(&self) -> bool {
        false
    }

    /// The least time between two calls of `handle` while following the log from memory: batches committed
    /// meanwhile are handed over together. For listeners that write to the store, fewer and larger transactions
    /// (each commit rewrites the pages it touches); events reach the handler up to this much later.
    fn min_interval(&self) -> Duration {
        Duration::ZERO
    }

    /// Handles matching events in `seq` order; `through` is the seq the cursor moves to on success.
    async fn handle(&self, events: &[Arc<Event>], through: i64) -> anyhow::Result<()>;
}

/// Starts a runner for `handler` that stops when `shutdown` is cancelled (after the batch in hand).
pub fn spawn_durable(
    hub: &Hub,
    handler: Arc<dyn DurableHandler>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let runner = Runner {
        batches: hub.batches(),
        hub: hub.clone(),
        patterns: handler.patterns(),
        handler,
        shutdown,
        cursor: 0,
        last_skip_save: std::time::Instant::now(),
        last_call: std::time::Instant::now(),
    };
    tokio::spawn(runner.run())
}

struct Runner {
    hub: Hub,
    handler: Arc<dyn DurableHandler>,
    patterns: Vec<Pattern>,
    batches: broadcast::Receiver<Arc<CommittedBatch>>,
    shutdown: CancellationToken,
    cursor: i64,
    last_skip_save: std::time::Instant,
    /// When the handler last finished a group (for [`DurableHandler::min_interval`]).
    last_call: std::time::Instant,
}

/// Adds the part of `batch` after `through` to `group`; false when the batch does not line up (a gap).
fn absorb(batch: &CommittedBatch, group: &mut Vec<Arc<Event>>, through: &mut i64) -> bool {
    if batch.last_seq() <= *through {
        return true;
    }
    if batch.prev_head > *through {
        return false;
    }
    let after = *through;
    group.extend(batch.events.iter().filter(|e| e.seq > after).cloned());
    *through = batch.last_seq();
    true
}

enum Step {
    Continue,
    Stop,
}

impl Runner {
    async fn run(mut self) {
        let name = self.handler.name().to_string();
        while let Some(lease) = self.acquire_lease(&name).await {
            let Some(cursor) = self.load_cursor(&name).await else {
                lease.release().await;
                break;
            };
            self.cursor = cursor;
            tracing::info!(listener = %name, cursor = self.cursor, "durable listener started");
            let mut checked = std::time::Instant::now();
            let stopped = loop {
                let step = match self.catch_up().await {
                    Ok(()) => self.follow().await,
                    Err(err) => {
                        tracing::error!(listener = %name, error = %err, "reading the event log failed; retrying");
                        if self.pause(Duration::from_secs(1)).await {
                            Step::Stop
                        } else {
                            Step::Continue
                        }
                    }
                };
                if let Step::Stop = step {
                    break true;
                }
                if checked.elapsed() >= LEASE_CHECK {
                    checked = std::time::Instant::now();
                    if !lease.held().await {
                        tracing::warn!(listener = %name, "listener lease lost; another instance may take over");
                        break false;
                    }
                }
            };
            lease.release().await;
            if stopped {
                break;
            }
        }
        tracing::info!(listener = %name, cursor = self.cursor, "durable listener stopped");
    }

    /// Waits until this process holds the listener's lease (one instance runs it at a time); `None` on shutdown.
    async fn acquire_lease(&self, name: &str) -> Option<Box<dyn Lease>> {
        let mut waiting_logged = false;
        loop {
            match self
                .hub
                .store()
                .try_lease(&format!("listener:{name}"))
                .await
            {
                Ok(Some(lease)) => return Some(lease),
                Ok(None) if !waiting_logged => {
                    waiting_logged = true;
                    tracing::info!(listener = %name, "listener runs on another instance; standing by");
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(listener = %name, error = %err, "cannot take the listener lease; retrying")
                }
            }
            if self.pause(LEASE_RETRY).await {
                return None;
            }
        }
    }

    async fn load_cursor(&self, name: &str) -> Option<i64> {
        loop {
            match self.hub.store().load_cursor(name).await {
                Ok(cursor) => return Some(cursor.unwrap_or(0)),
                Err(err) => {
                    tracing::error!(listener = %name, error = %err, "cannot load listener cursor; retrying");
                    if self.pause(Duration::from_secs(1)).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Reads the log from the cursor until it is empty. Pages are gathered into one group until it holds
    /// [`GROUP_MAX`] matching events or [`GROUP_BYTES`] of their data: a listener that handles one type in seven
    /// still gets large groups (and one cursor write per group) while it catches up.
    async fn catch_up(&mut self) -> anyhow::Result<()> {
        loop {
            // Never act on an event before it is durable: what lies above the durable head arrives by broadcast.
            let durable = self.hub.durable_head();
            let mut group = Vec::new();
            let (mut through, mut bytes, mut more) = (self.cursor, 0usize, true);
            while more && group.len() < GROUP_MAX && bytes < GROUP_BYTES {
                let page = self.hub.store().events_after(through, PAGE).await?;
                more = page.len() == PAGE;
                for event in page {
                    if event.seq > durable {
                        more = false;
                        break;
                    }
                    through = event.seq;
                    if any_matches(&self.patterns, event.event_type.as_str()) {
                        bytes += event.data.get().len();
                        group.push(Arc::new(event));
                    }
                }
            }
            if through == self.cursor || !self.deliver(&group, through).await {
                return Ok(());
            }
            if !more || through >= durable {
                return Ok(());
            }
        }
    }

    /// Takes batches from memory while they line up with the cursor. Whatever has queued up is handled as one
    /// group, so under load a listener makes one call (and one cursor write) for many commits.
    async fn follow(&mut self) -> Step {
        // Return now and then even under steady load, so the caller can check the lease.
        let started = std::time::Instant::now();
        loop {
            if started.elapsed() >= LEASE_CHECK {
                return Step::Continue;
            }
            let received = tokio::select! {
                received = self.batches.recv() => received,
                _ = self.shutdown.cancelled() => return Step::Stop,
                // A quiet fallback: re-check the log now and then (another instance may have written).
                _ = tokio::time::sleep(Duration::from_secs(1)) => return Step::Continue,
            };
            let mut group = Vec::new();
            let mut through = self.cursor;
            let mut level = match received {
                Ok(batch) => absorb(&batch, &mut group, &mut through),
                Err(broadcast::error::RecvError::Lagged(_)) => false,
                Err(broadcast::error::RecvError::Closed) => return Step::Stop,
            };
            // Wait out the listener's interval only when nothing else is queued: with a backlog, waiting would
            // only let the broadcast channel overflow.
            let wait = self
                .handler
                .min_interval()
                .saturating_sub(self.last_call.elapsed());
            if level && !wait.is_zero() && self.batches.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    // Hand over what is in hand before stopping.
                    _ = self.shutdown.cancelled() => {}
                }
            }
            while level && group.len() < GROUP_MAX {
                match self.batches.try_recv() {
                    Ok(batch) => level = absorb(&batch, &mut group, &mut through),
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(_) => level = false,
                }
            }
            if through > self.cursor && !self.deliver(&group, through).await {
                return Step::Stop;
            }
            if !level {
                return Step::Continue;
            }
        }
    }

    /// Hands the matching events to the handler, retrying with backoff until it succeeds, then moves the cursor.
    /// Returns false when shutdown interrupted it.
    async fn deliver(&mut self, events: &[Arc<Event>], through: i64) -> bool {
        let matching: Vec<Arc<Event>> = events
            .iter()
            .filter(|e| any_matches(&self.patterns, e.event_type.as_str()))
            .cloned()
            .collect();
        let name = self.handler.name().to_string();
        let mut backoff = Duration::from_millis(100);
        loop {
            let result = if matching.is_empty() {
                self.save_skipped(&name, through).await
            } else {
                match self.handler.handle(&matching, through).await {
                    Ok(()) if self.handler.saves_cursor() => Ok(()),
                    Ok(()) => self
                        .hub
                        .store()
                        .save_cursor(&name, through)
                        .await
                        .map_err(anyhow::Error::from),
                    Err(err) => Err(err),
                }
            };
            match result {
                Ok(()) => break,
                Err(err) => {
                    metrics::counter!("switchboard_listener_errors_total", "listener" => name.clone()).increment(1);
                    tracing::warn!(listener = %name, error = %err, retry_in_ms = backoff.as_millis() as u64, "durable listener failed; will retry");
                    if self.pause(backoff).await {
                        return false;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        self.cursor = through;
        self.last_call = std::time::Instant::now();
        metrics::gauge!("switchboard_listener_cursor", "listener" => name.clone())
            .set(through as f64);
        let lag = (self.hub.durable_head() - through).max(0);
        metrics::gauge!("switchboard_listener_lag_events", "listener" => name).set(lag as f64);
        true
    }

    /// Moving past events a listener does not handle needs no durability of its own: at worst they are skipped
    /// again after a restart. So that cursor write happens at most once a second.
    async fn save_skipped(&mut self, name: &str, through: i64) -> anyhow::Result<()> {
        if self.last_skip_save.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        self.last_skip_save = std::time::Instant::now();
        Ok(self.hub.store().save_cursor(name, through).await?)
    }

    /// Sleeps unless shutdown comes first; returns true on shutdown.
    async fn pause(&self, duration: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(duration) => false,
            _ = self.shutdown.cancelled() => true,
        }
    }
}
