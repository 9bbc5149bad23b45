//! The delivery worker: claims due deliveries from the outbox, sends them, records every attempt.
//!
//! Three kinds of task, talking through channels:
//! - the **claimer** (one) keeps, per subscription, how many deliveries it holds and when it may next have one
//!   due; it claims in one store transaction for every subscription with room and due work, and hands the
//!   deliveries to the subscriptions' lanes;
//! - a **lane** per subscription applies its rate limit (token bucket) and concurrency cap, and sends — so a
//!   slow or dead endpoint only ever holds its own lane's deliveries (no head-of-line blocking across
//!   subscriptions);
//! - the **recorder** (one) writes finished attempts in batches (one transaction each) and tells the claimer.
//!
//! [`Engine::step`] does one claim → send → record round synchronously at a given time, for tests.

use super::client::{Answer, DeliveryClient, SendError};
use super::lane_queue::LaneQueue;
use super::ratelimit::TokenBucket;
use super::router::SubscriptionIndex;
use super::schedule::{next_step, Next};
use super::subscription::Compiled;
use super::Signal;
use crate::event::Timestamp;
use crate::store::webhooks::{
    AttemptRecord, ClaimRequest, ClaimedDelivery, DeliveryStatus, DeliveryUpdate,
};
use crate::store::{DynStore, StoreResult};
use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const MICROS: i64 = 1_000_000;
/// Finished attempts written per recorder transaction, at most.
const RECORD_BATCH: usize = 4096;
/// How long shutdown waits for attempts in flight before leaving them to the lease.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// The worker's limits.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub max_in_flight: usize,
    pub per_subscription_concurrency: usize,
    pub per_subscription_queue: usize,
    pub poll_interval: Duration,
    pub lease: Duration,
}

/// A finished (or handed back) delivery on its way to the recorder.
struct Finished {
    subscription_id: Arc<str>,
    /// Claimed at birth: its lane's budget is given back once recorded.
    fresh: bool,
    update: DeliveryUpdate,
    /// Microseconds from the event's commit to the receiver's 2xx.
    latency_us: Option<i64>,
    /// False for a claim that ran out before its attempt could start: the row is due again by itself (and may be
    /// claimed by another worker already), so nothing is written.
    write: bool,
}

pub struct Engine {
    store: DynStore,
    index: Arc<SubscriptionIndex>,
    client: DeliveryClient,
    settings: EngineSettings,
    succeeded: AtomicU64,
    dead: AtomicU64,
}

fn header(name: &'static str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    HeaderValue::from_str(value)
        .ok()
        .map(|v| (HeaderName::from_static(name), v))
}

/// The headers of a delivery: the seed's, Standard Webhooks', then the subscription's own (which never
/// replace ours).
pub fn delivery_headers(
    sub: &Compiled,
    event_type: &str,
    message_id: &str,
    unix_secs: i64,
    body: &[u8],
) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(8 + sub.headers.len());
    for (name, value) in &sub.headers {
        headers.insert(name.clone(), value.clone());
    }
    let signer = &sub.signer;
    let ours = [
        header("x-ehrconnect-signature", &signer.legacy(body)),
        header("x-ehrconnect-event", event_type),
        header("x-ehrconnect-delivery", message_id),
        header("webhook-id", message_id),
        header("webhook-timestamp", &unix_secs.to_string()),
        header(
            "webhook-signature",
            &signer.standard(message_id, unix_secs, body),
        ),
        signer
            .legacy_previous(body)
            .and_then(|v| header("x-ehrconnect-signature-previous", &v)),
    ];
    for (name, value) in ours.into_iter().flatten() {
        headers.insert(name, value);
    }
    headers
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

impl Engine {
    pub fn new(
        store: DynStore,
        index: Arc<SubscriptionIndex>,
        client: DeliveryClient,
        settings: EngineSettings,
    ) -> Self {
        Engine {
            store,
            index,
            client,
            settings,
            succeeded: AtomicU64::new(0),
            dead: AtomicU64::new(0),
        }
    }

    pub fn client(&self) -> &DeliveryClient {
        &self.client
    }

    /// Sends one delivery and decides what becomes of it. `clock` fixes the time used for the log and the
    /// schedule (tests); `None` reads the real clock.
    async fn attempt(
        &self,
        sub: &Compiled,
        delivery: &ClaimedDelivery,
        clock: Option<Timestamp>,
    ) -> Finished {
        let started = clock.unwrap_or_else(Timestamp::now);
        let attempts = delivery.attempts + 1;
        let Some(event) = &delivery.event else {
            let attempt = AttemptRecord {
                attempted_at: started,
                status_code: None,
                duration_us: 0,
                error: Some("the event is no longer in the history (retention purged it)".into()),
                response_body: None,
            };
            return self.finish(sub, delivery, attempt, attempts, Next::Dead, started);
        };
        let body = match serde_json::to_vec(&**event) {
            Ok(body) => Bytes::from(body),
            Err(err) => {
                let attempt = AttemptRecord {
                    attempted_at: started,
                    status_code: None,
                    duration_us: 0,
                    error: Some(format!("cannot encode the event: {err}")),
                    response_body: None,
                };
                return self.finish(sub, delivery, attempt, attempts, Next::Dead, started);
            }
        };
        let message_id = event.id.to_string();
        let headers = delivery_headers(
            sub,
            event.event_type.as_str(),
            &message_id,
            started.0.div_euclid(MICROS),
            &body,
        );
        let sent_at = Instant::now();
        let result = self.client.post(&sub.uri, headers, body).await;
        let elapsed = sent_at.elapsed();
        let (status, retry_after, response_body, error) = match &result {
            Ok(Answer {
                status,
                retry_after,
                body,
                ..
            }) => (
                Some(*status),
                *retry_after,
                Some(body.clone()).filter(|b| !b.is_empty()),
                (!(200..300).contains(status)).then(|| format!("HTTP {status}")),
            ),
            Err(err) => (None, None, None, Some(send_error_text(err))),
        };
        let attempt = AttemptRecord {
            attempted_at: started,
            status_code: status,
            duration_us: elapsed.as_micros() as i64,
            error,
            response_body,
        };
        let next = next_step(&sub.record.retry, attempts, status, retry_after);
        let finished_at = clock.unwrap_or_else(Timestamp::now);
        self.finish(sub, delivery, attempt, attempts, next, finished_at)
    }

    fn finish(
        &self,
        sub: &Compiled,
        delivery: &ClaimedDelivery,
        attempt: AttemptRecord,
        attempts: u32,
        next: Next,
        now: Timestamp,
    ) -> Finished {
        let mut update = DeliveryUpdate {
            delivery_id: delivery.id,
            attempt: Some(attempt),
            status: DeliveryStatus::Failed,
            attempts,
            due_at: now,
            completed_at: None,
            deactivate: None,
        };
        let mut latency_us = None;
        match next {
            Next::Succeeded => {
                update.status = DeliveryStatus::Succeeded;
                update.completed_at = Some(now);
                latency_us = Some(Timestamp::now().0 - delivery.created_at.0);
            }
            Next::RetryIn(delay) => {
                update.due_at = Timestamp(now.0.saturating_add(delay.as_micros() as i64));
            }
            Next::Dead => {
                update.status = DeliveryStatus::Dead;
                update.completed_at = Some(now);
            }
            Next::Gone => {
                update.status = DeliveryStatus::Dead;
                update.completed_at = Some(now);
                update.deactivate =
                    Some((Arc::clone(&sub.id), "the receiver answered 410 Gone".into()));
            }
        }
        Finished {
            subscription_id: Arc::clone(&delivery.subscription_id),
            fresh: delivery.fresh,
            update,
            latency_us,
            write: true,
        }
    }

    /// A delivery handed back unattempted (its subscription was switched off or deleted meanwhile).
    fn release(delivery: &ClaimedDelivery, now: Timestamp) -> Finished {
        Finished {
            subscription_id: Arc::clone(&delivery.subscription_id),
            fresh: delivery.fresh,
            update: DeliveryUpdate {
                delivery_id: delivery.id,
                attempt: None,
                status: if delivery.attempts == 0 {
                    DeliveryStatus::Pending
                } else {
                    DeliveryStatus::Failed
                },
                attempts: delivery.attempts,
                due_at: now,
                completed_at: None,
                deactivate: None,
            },
            latency_us: None,
            write: true,
        }
    }

    /// A delivery whose lease would end before an attempt could finish: it is not sent (another worker may claim
    /// it once the lease ends, and two attempts must not overlap); it is due again at the end of its lease.
    fn expired(delivery: &ClaimedDelivery) -> Finished {
        let mut finished = Self::release(delivery, delivery.lease_until);
        finished.write = false;
        metrics::counter!("switchboard_webhook_leases_expired_total").increment(1);
        finished
    }

    /// Writes finished deliveries; returns true when a subscription was switched off.
    async fn record(&self, finished: &[Finished]) -> StoreResult<bool> {
        let updates: Vec<DeliveryUpdate> = finished
            .iter()
            .filter(|f| f.write)
            .map(|f| f.update.clone())
            .collect();
        self.store.webhooks().record_deliveries(updates).await?;
        let mut deactivated = false;
        for f in finished {
            let outcome = match (&f.update.attempt, f.update.status) {
                (None, _) => "released",
                (Some(_), DeliveryStatus::Succeeded) => "succeeded",
                (Some(_), DeliveryStatus::Dead) => "dead",
                (Some(_), _) => "retrying",
            };
            if f.update.attempt.is_some() {
                metrics::counter!("switchboard_webhook_attempts_total", "outcome" => if outcome == "succeeded" { "success" } else { "failure" }).increment(1);
            }
            if outcome != "retrying" && outcome != "released" {
                metrics::counter!("switchboard_webhook_deliveries_total", "outcome" => outcome)
                    .increment(1);
            }
            match outcome {
                "succeeded" => {
                    self.succeeded.fetch_add(1, Ordering::Relaxed);
                }
                "dead" => {
                    self.dead.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(subscription = %f.subscription_id, delivery = f.update.delivery_id,
                        error = f.update.attempt.as_ref().and_then(|a| a.error.as_deref()).unwrap_or(""),
                        "webhook delivery moved to the dead-letter queue");
                }
                _ => {}
            }
            if let Some(us) = f.latency_us {
                metrics::histogram!("switchboard_webhook_delivery_latency_seconds")
                    .record(us.max(0) as f64 / 1e6);
            }
            deactivated |= f.update.deactivate.is_some();
        }
        let ok = self.succeeded.load(Ordering::Relaxed) as f64;
        let dead = self.dead.load(Ordering::Relaxed) as f64;
        if ok + dead > 0.0 {
            metrics::gauge!("switchboard_webhook_success_rate").set(ok / (ok + dead));
        }
        if deactivated {
            tracing::warn!(
                "a webhook receiver answered 410 Gone; its subscription is now inactive"
            );
            self.index.reload(&self.store).await?;
        }
        Ok(deactivated)
    }

    /// One synchronous round at time `now`: claims every due delivery of every active subscription, sends them
    /// all, records the outcomes. Returns how many were attempted. For tests and tools; the background worker
    /// must not be running at the same time.
    pub async fn step(&self, now: Timestamp) -> StoreResult<usize> {
        let snapshot = self.index.snapshot();
        let requests: Vec<ClaimRequest> = snapshot
            .ids()
            .map(|id| ClaimRequest {
                subscription_id: Arc::clone(id),
                max: self.settings.per_subscription_queue,
            })
            .collect();
        if requests.is_empty() {
            return Ok(0);
        }
        let lease_until = Timestamp(now.0 + self.settings.lease.as_micros() as i64);
        let lanes = self
            .store
            .webhooks()
            .claim_deliveries(requests, now, lease_until)
            .await?;
        let mut sends = Vec::new();
        for lane in &lanes {
            for delivery in &lane.deliveries {
                let sub = snapshot.get(&delivery.subscription_id).cloned();
                sends.push(async move {
                    match sub {
                        Some(sub) => self.attempt(&sub, delivery, Some(now)).await,
                        None => Self::release(delivery, now),
                    }
                });
            }
        }
        let finished = futures::future::join_all(sends).await;
        if !finished.is_empty() {
            self.record(&finished).await?;
        }
        Ok(finished.len())
    }

    /// Runs the worker until `shutdown`; returns after recording what was in flight (or the grace ran out).
    pub async fn run(
        self: Arc<Self>,
        mut signals: mpsc::UnboundedReceiver<Signal>,
        shutdown: CancellationToken,
    ) {
        // Single-process storage: no other worker can hold a claim now, so deliveries that were in flight when
        // the process last stopped are due at once. On a shared database other instances' claims are live:
        // they become due when their leases end.
        let shared = self.store.log_changes().is_some();
        let released = if shared {
            Ok(0)
        } else {
            self.store.webhooks().release_claims(Timestamp::now()).await
        };
        match released {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deliveries = n,
                "resuming webhook deliveries that were in flight at the last stop"
            ),
            Err(err) => {
                tracing::error!(error = %err, "cannot release webhook claims; they expire with their lease")
            }
        }
        let (done_tx, done_rx) = mpsc::unbounded_channel::<Finished>();
        let (recorded_tx, mut recorded_rx) =
            mpsc::unbounded_channel::<Vec<(Arc<str>, Option<Timestamp>)>>();
        let recorder = tokio::spawn(Arc::clone(&self).recorder(done_rx, recorded_tx));
        let mut claimer = Claimer {
            engine: Arc::clone(&self),
            lanes: HashMap::new(),
            outstanding: 0,
            done_tx,
            last_sweep: Instant::now(),
        };
        claimer.sync_lanes();
        let mut batch = Vec::with_capacity(256);
        loop {
            claimer.claim_round().await;
            let wake = claimer.next_wake();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(recorded) = recorded_rx.recv() => {
                    claimer.on_recorded(recorded);
                    while let Ok(more) = recorded_rx.try_recv() {
                        claimer.on_recorded(more);
                    }
                }
                n = signals.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        break;
                    }
                    for signal in batch.drain(..) {
                        claimer.on_signal(signal);
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        // Stop: lanes hand back what they have not started; attempts in flight get a grace period.
        let lanes: Vec<Lane> = claimer.lanes.drain().map(|(_, lane)| lane).collect();
        for lane in &lanes {
            lane.stop.cancel();
        }
        let Claimer { done_tx, .. } = claimer;
        drop(done_tx);
        let drain = async {
            for lane in lanes {
                drop(lane.queue);
                let _ = lane.task.await;
            }
            let _ = recorder.await;
        };
        if tokio::time::timeout(DRAIN_GRACE, drain).await.is_err() {
            tracing::warn!("webhook attempts still in flight at shutdown; they will be retried after a restart");
        }
        tracing::info!("webhook worker stopped");
    }

    async fn recorder(
        self: Arc<Self>,
        mut done: mpsc::UnboundedReceiver<Finished>,
        recorded: mpsc::UnboundedSender<Vec<(Arc<str>, Option<Timestamp>)>>,
    ) {
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        loop {
            if done.recv_many(&mut batch, RECORD_BATCH).await == 0 {
                break;
            }
            let mut tries = 0;
            loop {
                match self.record(&batch).await {
                    Ok(_) => break,
                    Err(err) if tries < 5 => {
                        tries += 1;
                        tracing::error!(error = %err, "cannot record webhook attempts; retrying");
                        tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                    }
                    Err(err) => {
                        // The deliveries stay claimed and are sent again when their lease ends: at least once.
                        tracing::error!(error = %err, deliveries = batch.len(),
                            "giving up recording webhook attempts; they will be retried after their lease");
                        break;
                    }
                }
            }
            for f in batch.iter().filter(|f| f.fresh) {
                self.index.return_budget(&f.subscription_id);
            }
            let summary = batch
                .drain(..)
                .map(|f| {
                    let retry = (f.update.status.is_open()).then_some(f.update.due_at);
                    (f.subscription_id, retry)
                })
                .collect();
            let _ = recorded.send(summary);
        }
    }
}

fn send_error_text(err: &SendError) -> String {
    truncate(&err.to_string(), 1024)
}

/// A subscription's lane as the claimer sees it.
struct Lane {
    queue: mpsc::UnboundedSender<ClaimedDelivery>,
    /// Claimed and not yet recorded.
    outstanding: usize,
    /// When this subscription may next have a due delivery; `None`: nothing known.
    due_hint: Option<Timestamp>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

struct Claimer {
    engine: Arc<Engine>,
    lanes: HashMap<Arc<str>, Lane>,
    outstanding: usize,
    done_tx: mpsc::UnboundedSender<Finished>,
    last_sweep: Instant,
}

impl Claimer {
    /// Opens lanes for new active subscriptions (due: now) and closes lanes of those gone.
    fn sync_lanes(&mut self) {
        let snapshot = self.engine.index.snapshot();
        self.lanes.retain(|id, lane| {
            let keep = snapshot.get(id).is_some();
            if !keep {
                lane.stop.cancel();
            }
            keep
        });
        for id in snapshot.ids() {
            if !self.lanes.contains_key(id) {
                let (queue, receiver) = mpsc::unbounded_channel();
                let stop = CancellationToken::new();
                let task = tokio::spawn(run_lane(
                    Arc::clone(&self.engine),
                    Arc::clone(id),
                    receiver,
                    self.done_tx.clone(),
                    stop.clone(),
                ));
                self.lanes.insert(
                    Arc::clone(id),
                    Lane {
                        queue,
                        outstanding: 0,
                        due_hint: Some(Timestamp(0)),
                        stop,
                        task,
                    },
                );
            }
        }
    }

    fn on_signal(&mut self, signal: Signal) {
        match signal {
            Signal::Reloaded => self.sync_lanes(),
            Signal::Due(subs) => {
                for sub in subs {
                    if let Some(lane) = self.lanes.get_mut(&sub) {
                        lane.due_hint = Some(Timestamp(0));
                    }
                }
            }
            Signal::Claimed(deliveries) => {
                for delivery in deliveries {
                    self.outstanding += 1;
                    let queued = match self.lanes.get_mut(&delivery.subscription_id) {
                        Some(lane) => {
                            lane.outstanding += 1;
                            lane.queue.send(delivery).map_err(|e| e.0)
                        }
                        None => Err(delivery),
                    };
                    if let Err(delivery) = queued {
                        let _ = self
                            .done_tx
                            .send(Engine::release(&delivery, Timestamp::now()));
                    }
                }
            }
        }
    }

    fn on_recorded(&mut self, recorded: Vec<(Arc<str>, Option<Timestamp>)>) {
        self.outstanding = self.outstanding.saturating_sub(recorded.len());
        for (sub, retry_at) in recorded {
            if let Some(lane) = self.lanes.get_mut(&sub) {
                lane.outstanding = lane.outstanding.saturating_sub(1);
                if let Some(at) = retry_at {
                    lane.due_hint = Some(lane.due_hint.map_or(at, |h| h.min(at)));
                }
            }
        }
    }

    fn room(&self, lane: &Lane) -> usize {
        let settings = &self.engine.settings;
        settings
            .per_subscription_queue
            .saturating_sub(lane.outstanding)
            .min(settings.max_in_flight.saturating_sub(self.outstanding))
    }

    /// When the loop should wake without a signal: the earliest hint of a lane with room, or the next sweep.
    fn next_wake(&self) -> tokio::time::Instant {
        let poll = self.engine.settings.poll_interval;
        let now = Timestamp::now();
        let mut wake = poll.saturating_sub(self.last_sweep.elapsed());
        for lane in self.lanes.values() {
            if let Some(hint) = lane.due_hint {
                if self.room(lane) > 0 {
                    let until = Duration::from_micros((hint.0 - now.0).max(0) as u64);
                    wake = wake.min(until);
                }
            }
        }
        tokio::time::Instant::now() + wake
    }

    async fn claim_round(&mut self) {
        let now = Timestamp::now();
        if self.last_sweep.elapsed() >= self.engine.settings.poll_interval {
            // Safety net: look at every lane now and then, whatever the hints say.
            self.last_sweep = Instant::now();
            for lane in self.lanes.values_mut() {
                lane.due_hint = Some(Timestamp(0));
            }
        }
        let mut requests = Vec::new();
        let mut budget = self
            .engine
            .settings
            .max_in_flight
            .saturating_sub(self.outstanding);
        for (id, lane) in &self.lanes {
            let due = lane.due_hint.is_some_and(|h| h <= now);
            let room = self
                .engine
                .settings
                .per_subscription_queue
                .saturating_sub(lane.outstanding)
                .min(budget);
            if due && room > 0 {
                budget -= room;
                requests.push(ClaimRequest {
                    subscription_id: Arc::clone(id),
                    max: room,
                });
            }
        }
        if requests.is_empty() {
            return;
        }
        let lease_until = Timestamp(now.0 + self.engine.settings.lease.as_micros() as i64);
        let claimed = match self
            .engine
            .store
            .webhooks()
            .claim_deliveries(requests, now, lease_until)
            .await
        {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::error!(error = %err, "cannot claim webhook deliveries; trying again shortly");
                tokio::time::sleep(Duration::from_millis(200)).await;
                return;
            }
        };
        for lane_claim in claimed {
            let Some(lane) = self.lanes.get_mut(&lane_claim.subscription_id) else {
                // Deleted meanwhile: hand the claims straight back.
                for d in &lane_claim.deliveries {
                    self.outstanding += 1;
                    let _ = self.done_tx.send(Engine::release(d, now));
                }
                continue;
            };
            lane.due_hint = lane_claim.next_due;
            for delivery in lane_claim.deliveries {
                lane.outstanding += 1;
                self.outstanding += 1;
                if let Err(mpsc::error::SendError(delivery)) = lane.queue.send(delivery) {
                    let _ = self.done_tx.send(Engine::release(&delivery, now));
                }
            }
        }
        metrics::gauge!("switchboard_webhook_in_flight").set(self.outstanding as f64);
    }
}

/// One subscription's lane: rate limit, concurrency cap, send; due retries before new deliveries
/// ([`LaneQueue`]).
async fn run_lane(
    engine: Arc<Engine>,
    id: Arc<str>,
    mut queue: mpsc::UnboundedReceiver<ClaimedDelivery>,
    done: mpsc::UnboundedSender<Finished>,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(
        engine.settings.per_subscription_concurrency.max(1),
    ));
    let mut bucket: Option<TokenBucket> = None;
    let mut in_flight = Vec::new();
    let mut waiting = LaneQueue::default();
    let release_all = |waiting: &mut LaneQueue| {
        for delivery in waiting.drain() {
            let _ = done.send(Engine::release(&delivery, Timestamp::now()));
        }
    };
    loop {
        if waiting.is_empty() {
            match queue.recv().await {
                Some(delivery) => waiting.push(delivery),
                None => break,
            }
        }
        let snapshot = engine.index.snapshot();
        let sub = match snapshot.get(&id) {
            Some(sub) if !stop.is_cancelled() => Arc::clone(sub),
            _ => {
                while let Ok(delivery) = queue.try_recv() {
                    waiting.push(delivery);
                }
                release_all(&mut waiting);
                continue;
            }
        };
        if let Some(rate) = sub.record.rate_limit {
            if bucket.as_ref().is_none_or(|b| b.rate() != rate) {
                bucket = Some(TokenBucket::new(rate, Instant::now()));
            }
            if let Some(b) = bucket.as_mut() {
                while let Some(wait) = b.take(Instant::now()) {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.cancelled() => break,
                    }
                }
            }
        } else {
            bucket = None;
        }
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.ok(),
            _ = stop.cancelled() => None,
        };
        let Some(permit) = permit.filter(|_| !stop.is_cancelled()) else {
            release_all(&mut waiting);
            continue;
        };
        // What arrived while waiting for the slot competes for it too: a retry due meanwhile goes first.
        while let Ok(delivery) = queue.try_recv() {
            waiting.push(delivery);
        }
        let Some(delivery) = waiting.pop() else {
            continue;
        };
        let latest_start = delivery.lease_until.0 - engine.client.timeout().as_micros() as i64;
        if Timestamp::now().0 >= latest_start {
            let _ = done.send(Engine::expired(&delivery));
            continue;
        }
        let (engine, done) = (Arc::clone(&engine), done.clone());
        in_flight.retain(|t: &JoinHandle<()>| !t.is_finished());
        in_flight.push(tokio::spawn(async move {
            let finished = engine.attempt(&sub, &delivery, None).await;
            drop(permit);
            let _ = done.send(finished);
        }));
    }
    for task in in_flight {
        let _ = task.await;
    }
}
