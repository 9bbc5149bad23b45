//! The Socket.IO fan-out: one task owns every connection's room memberships, filter and rate limit, reads the
//! hub's committed batches, and pushes each event to the sockets that want it.
//!
//! Owning the state in one task means no locks: socket handlers change memberships by sending a [`Command`].
//! Each event is rendered once ([`super::payload::render`]); a socket gets it at most once, when the event is
//! in its org and either passes the socket's `events` filter (the org room) or concerns a resource the socket
//! subscribed to (a resource room). Sending never waits: a socket over its rate, or whose send buffer is full
//! because its network or browser is slow, misses the event; misses are counted and the socket is sent one
//! `switchboard:dropped` notice a second. A gap in the batches (this task fell behind the broadcast) is filled
//! from the log, up to [`GAP_FILL_MAX`] events.

use super::limit::TokenBucket;
use super::payload::{render, resource_room, ResourceKey};
use super::RealtimeError;
use crate::event::{any_matches, Event, Pattern};
use crate::hub::CommittedBatch;
use crate::store::DynStore;
use serde::Serialize;
use serde_json::value::RawValue;
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError, SocketIo};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The event name of the notice that tells a socket it missed events.
pub const DROPPED_EVENT: &str = "switchboard:dropped";
/// The most events read back from the log to fill one gap; a larger gap is skipped (and counted).
pub const GAP_FILL_MAX: usize = 10_000;
const GAP_PAGE: usize = 1000;
/// A socket may receive this many seconds' worth of its rate at once: commits come in bursts, and a screen
/// that keeps to the rate on average should not miss events for it.
pub const BURST_SECONDS: u32 = 3;

/// A change to the rooms, sent by the socket handlers.
pub enum Command {
    Connect(Box<Conn>),
    Disconnect(Sid),
    Join {
        sid: Sid,
        key: ResourceKey,
        reply: oneshot::Sender<Result<String, RealtimeError>>,
    },
    Leave {
        sid: Sid,
        key: ResourceKey,
        reply: oneshot::Sender<Result<String, RealtimeError>>,
    },
}

/// One connected socket, as the fan-out sees it.
pub struct Conn {
    socket: SocketRef,
    org: Arc<str>,
    /// `None`: every event type of the org; `Some([])`: none (resource rooms only).
    filter: Option<Vec<Pattern>>,
    bucket: TokenBucket,
    subscriptions: HashSet<ResourceKey>,
    missed: Missed,
    closed: bool,
}

impl Conn {
    pub fn new(
        socket: SocketRef,
        org: Arc<str>,
        filter: Option<Vec<Pattern>>,
        per_sec: u32,
    ) -> Self {
        Conn {
            socket,
            org,
            filter,
            bucket: TokenBucket::with_burst(
                per_sec,
                per_sec.saturating_mul(BURST_SECONDS),
                Instant::now(),
            ),
            subscriptions: HashSet::new(),
            missed: Missed::default(),
            closed: false,
        }
    }

    fn wants_org_wide(&self, event_type: &str) -> bool {
        match &self.filter {
            None => true,
            Some(patterns) => !patterns.is_empty() && any_matches(patterns, event_type),
        }
    }

    fn deliver(
        &mut self,
        event_type: &str,
        payload: &RawValue,
        seq: i64,
        now: Instant,
        tally: &mut Tally,
    ) {
        if !self.bucket.try_take(now) {
            self.missed.note(seq);
            tally.rate_limited += 1;
            return;
        }
        match self.socket.emit(event_type, payload) {
            Ok(()) => tally.delivered += 1,
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                self.missed.note(seq);
                tally.buffer_full += 1;
            }
            Err(SendError::Socket(SocketError::Closed)) => self.closed = true,
            Err(err) => {
                tally.failed += 1;
                tracing::debug!(error = %err, "cannot emit to a socket");
            }
        }
    }
}

/// Events a socket missed since its last notice.
#[derive(Debug, Default, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
struct Missed {
    count: u64,
    first_seq: i64,
    last_seq: i64,
}

impl Missed {
    fn note(&mut self, seq: i64) {
        if self.count == 0 {
            self.first_seq = seq;
        }
        self.count += 1;
        self.last_seq = seq;
    }
}

/// Counts for one batch, added to the metrics once per batch rather than once per socket.
#[derive(Default)]
struct Tally {
    delivered: u64,
    rate_limited: u64,
    buffer_full: u64,
    failed: u64,
}

impl Tally {
    fn flush(&mut self) {
        let counts = [
            ("rate_limited", self.rate_limited),
            ("buffer_full", self.buffer_full),
            ("failed", self.failed),
        ];
        if self.delivered > 0 {
            metrics::counter!("switchboard_realtime_delivered_total", "transport" => "socketio")
                .increment(self.delivered);
        }
        for (reason, n) in counts {
            if n > 0 {
                metrics::counter!("switchboard_realtime_dropped_total", "transport" => "socketio", "reason" => reason)
                    .increment(n);
            }
        }
        *self = Tally::default();
    }
}

/// The sockets of one org, and who is in which resource room (resource type → id → sockets).
#[derive(Default)]
struct OrgRoom {
    conns: HashMap<Sid, Conn>,
    resources: HashMap<Box<str>, HashMap<Box<str>, HashSet<Sid>>>,
}

/// The fan-out task's state.
pub struct Fanout {
    orgs: HashMap<Arc<str>, OrgRoom>,
    org_of: HashMap<Sid, Arc<str>>,
    store: DynStore,
    max_subscriptions: usize,
    /// The last `seq` pushed (or skipped); `None` until the first batch.
    cursor: Option<i64>,
    tally: Tally,
}

impl Fanout {
    pub fn new(store: DynStore, max_subscriptions: usize) -> Self {
        Fanout {
            orgs: HashMap::new(),
            org_of: HashMap::new(),
            store,
            max_subscriptions,
            cursor: None,
            tally: Tally::default(),
        }
    }

    /// Runs until `shutdown`, then disconnects every socket.
    pub async fn run(
        mut self,
        mut batches: broadcast::Receiver<Arc<CommittedBatch>>,
        mut commands: mpsc::Receiver<Command>,
        io: SocketIo,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(command) = commands.recv() => self.apply(command),
                received = batches.recv() => match received {
                    Ok(batch) => self.on_batch(&batch).await,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        // The next batch's `prev_head` shows the gap; `on_batch` fills it from the log.
                        metrics::counter!("switchboard_realtime_lagged_batches_total").increment(missed);
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => self.sweep(),
            }
        }
        self.orgs.clear();
        self.org_of.clear();
        io.close().await;
        tracing::info!("socket.io fan-out stopped");
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Connect(conn) => {
                if !conn.socket.connected() {
                    return;
                }
                let sid = conn.socket.id;
                let org = Arc::clone(&conn.org);
                self.org_of.insert(sid, Arc::clone(&org));
                self.orgs.entry(org).or_default().conns.insert(sid, *conn);
            }
            Command::Disconnect(sid) => self.remove(sid),
            Command::Join { sid, key, reply } => {
                let _ = reply.send(self.join(sid, key));
            }
            Command::Leave { sid, key, reply } => {
                let _ = reply.send(self.leave(sid, key));
            }
        }
        metrics::gauge!("switchboard_realtime_connections", "transport" => "socketio")
            .set(self.org_of.len() as f64);
    }

    fn join(&mut self, sid: Sid, key: ResourceKey) -> Result<String, RealtimeError> {
        let max = self.max_subscriptions;
        let (org, room) = self.room_of(sid)?;
        let conn = room
            .conns
            .get_mut(&sid)
            .ok_or(RealtimeError::NotConnected)?;
        let name = resource_room(&org, &key);
        if conn.subscriptions.contains(&key) {
            return Ok(name);
        }
        if conn.subscriptions.len() >= max {
            return Err(RealtimeError::TooManySubscriptions(max));
        }
        room.resources
            .entry(key.resource_type.clone())
            .or_default()
            .entry(key.resource_id.clone())
            .or_default()
            .insert(sid);
        conn.subscriptions.insert(key);
        Ok(name)
    }

    fn leave(&mut self, sid: Sid, key: ResourceKey) -> Result<String, RealtimeError> {
        let (org, room) = self.room_of(sid)?;
        let name = resource_room(&org, &key);
        if let Some(conn) = room.conns.get_mut(&sid) {
            conn.subscriptions.remove(&key);
        }
        unlist(&mut room.resources, &key, sid);
        Ok(name)
    }

    fn room_of(&mut self, sid: Sid) -> Result<(Arc<str>, &mut OrgRoom), RealtimeError> {
        let org = self.org_of.get(&sid).ok_or(RealtimeError::NotConnected)?;
        let room = self.orgs.get_mut(org).ok_or(RealtimeError::NotConnected)?;
        Ok((Arc::clone(org), room))
    }

    fn remove(&mut self, sid: Sid) {
        let Some(org) = self.org_of.remove(&sid) else {
            return;
        };
        let Some(room) = self.orgs.get_mut(&org) else {
            return;
        };
        if let Some(conn) = room.conns.remove(&sid) {
            for key in &conn.subscriptions {
                unlist(&mut room.resources, key, sid);
            }
        }
        if room.conns.is_empty() {
            self.orgs.remove(&org);
        }
    }

    async fn on_batch(&mut self, batch: &CommittedBatch) {
        if let Some(cursor) = self.cursor {
            if batch.prev_head > cursor {
                self.fill_gap(cursor, batch.prev_head).await;
            }
        }
        let now = Instant::now();
        for event in &batch.events {
            if self.cursor.is_some_and(|c| event.seq <= c) {
                continue;
            }
            self.push(event, now);
        }
        self.cursor = Some(self.cursor.unwrap_or(0).max(batch.last_seq()));
        self.finish_batch();
    }

    /// Reads events `(from, to]` back from the log after this task fell behind the broadcast.
    async fn fill_gap(&mut self, from: i64, to: i64) {
        let missing = usize::try_from(to - from).unwrap_or(usize::MAX);
        if self.orgs.is_empty() || missing > GAP_FILL_MAX {
            metrics::counter!("switchboard_realtime_gap_skipped_events_total")
                .increment(missing as u64);
            if !self.orgs.is_empty() {
                tracing::warn!(
                    from,
                    to,
                    "socket.io fan-out fell too far behind; live sockets miss these events"
                );
            }
            return;
        }
        let mut after = from;
        while after < to {
            let page = match self.store.events_after(after, GAP_PAGE).await {
                Ok(page) => page,
                Err(err) => {
                    tracing::error!(error = %err, "cannot read the log to fill a fan-out gap");
                    return;
                }
            };
            let now = Instant::now();
            for event in page.iter().take_while(|e| e.seq <= to) {
                self.push(event, now);
                after = event.seq;
            }
            if page.len() < GAP_PAGE || page.last().is_some_and(|e| e.seq >= to) {
                break;
            }
        }
        self.cursor = Some(to);
    }

    /// Pushes one event to the sockets that want it, rendering it at most once.
    fn push(&mut self, event: &Event, now: Instant) {
        let Some(room) = self.orgs.get_mut(event.org_id.as_str()) else {
            return;
        };
        let OrgRoom { conns, resources } = room;
        let name = event.event_type.as_str();
        let mut payload: Option<Box<RawValue>> = None;
        for conn in conns.values_mut() {
            if conn.wants_org_wide(name) {
                let payload = payload.get_or_insert_with(|| render(event));
                conn.deliver(name, payload, event.seq, now, &mut self.tally);
            }
        }
        let members = match (&event.resource_type, &event.resource_id) {
            (Some(t), Some(id)) => resources
                .get(t.as_str())
                .and_then(|ids| ids.get(id.as_str())),
            _ => None,
        };
        for sid in members.into_iter().flatten() {
            if let Some(conn) = conns.get_mut(sid) {
                if !conn.wants_org_wide(name) {
                    let payload = payload.get_or_insert_with(|| render(event));
                    conn.deliver(name, payload, event.seq, now, &mut self.tally);
                }
            }
        }
    }

    fn finish_batch(&mut self) {
        self.tally.flush();
        let closed: Vec<Sid> = self
            .orgs
            .values()
            .flat_map(|room| room.conns.iter())
            .filter(|(_, conn)| conn.closed)
            .map(|(sid, _)| *sid)
            .collect();
        for sid in closed {
            self.remove(sid);
        }
    }

    /// Once a second: tell sockets what they missed, and forget sockets that closed without a disconnect.
    fn sweep(&mut self) {
        let mut gone = Vec::new();
        for (sid, conn) in self
            .orgs
            .values_mut()
            .flat_map(|room| room.conns.iter_mut())
        {
            if conn.closed || !conn.socket.connected() {
                gone.push(*sid);
                continue;
            }
            if conn.missed.count > 0 && conn.socket.emit(DROPPED_EVENT, &conn.missed).is_ok() {
                conn.missed = Missed::default();
            }
        }
        for sid in gone {
            self.remove(sid);
        }
        metrics::gauge!("switchboard_realtime_connections", "transport" => "socketio")
            .set(self.org_of.len() as f64);
    }
}

fn unlist(
    resources: &mut HashMap<Box<str>, HashMap<Box<str>, HashSet<Sid>>>,
    key: &ResourceKey,
    sid: Sid,
) {
    if let Some(ids) = resources.get_mut(&key.resource_type) {
        if let Some(members) = ids.get_mut(&key.resource_id) {
            members.remove(&sid);
            if members.is_empty() {
                ids.remove(&key.resource_id);
            }
        }
        if ids.is_empty() {
            resources.remove(&key.resource_type);
        }
    }
}
