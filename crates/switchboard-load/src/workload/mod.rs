//! The mixed workload: each path (MLLP, FHIR creates, `POST /api/events`) runs on its own open-loop schedule and
//! records, per operation, the latency from its due time to its acknowledgement and the id it was acknowledged
//! with (the zero-loss check looks for every one of them afterwards).

pub mod http;
pub mod mllp;
pub mod pacer;

use crate::stats::Samples;
use pacer::{lag_ms, Schedule};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// What one operation came to: the id it was acknowledged with, or why it failed.
pub type OpResult = Result<String, String>;
/// One operation of a path, given its index.
pub type Operation =
    Arc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = OpResult> + Send>> + Send + Sync>;

/// What a path did, filled in while it runs.
#[derive(Debug, Default)]
pub struct PathStats {
    pub latency: Samples,
    /// Ids acknowledged (event ids, FHIR resource ids, MLLP control ids).
    pub acked: Vec<String>,
    pub errors: BTreeMap<String, u64>,
    /// Operations started later than due, beyond 10 ms.
    pub late_starts: u64,
    pub max_start_lag_ms: f64,
    /// Operations still waiting to start when the schedule's window closed (backpressure): never sent.
    pub unsent: u64,
    pub first_due: Option<Instant>,
    pub last_done: Option<Instant>,
}

impl PathStats {
    pub fn record(&mut self, due: Instant, done: Instant, result: OpResult) {
        self.latency
            .record(done.saturating_duration_since(due).as_micros() as i64);
        self.last_done = Some(self.last_done.map_or(done, |d| d.max(done)));
        match result {
            Ok(id) => self.acked.push(id),
            Err(e) => *self.errors.entry(e).or_default() += 1,
        }
    }

    pub fn started(&mut self, due: Instant, started: Instant) {
        let lag = lag_ms(due, started);
        if lag > 10.0 {
            self.late_starts += 1;
        }
        self.max_start_lag_ms = self.max_start_lag_ms.max(lag);
        self.first_due.get_or_insert(due);
    }

    pub fn merge(&mut self, other: PathStats) {
        self.latency.extend(other.latency);
        self.acked.extend(other.acked);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.late_starts += other.late_starts;
        self.unsent += other.unsent;
        self.max_start_lag_ms = self.max_start_lag_ms.max(other.max_start_lag_ms);
        self.first_due = match (self.first_due, other.first_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_done = match (self.last_done, other.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// A path's figures for the report.
#[derive(Debug, Clone, Serialize)]
pub struct PathReport {
    pub path: String,
    pub offered_per_sec: f64,
    pub scheduled: u64,
    pub acked: usize,
    pub errors: BTreeMap<String, u64>,
    /// Acknowledged operations per second over the schedule's duration.
    pub achieved_per_sec: f64,
    pub latency: crate::stats::Summary,
    pub late_starts: u64,
    pub max_start_lag_ms: f64,
    /// Operations not sent because the window closed while they waited for room (backpressure).
    pub unsent: u64,
    /// Whether the path kept its schedule: every operation sent and acknowledged, none started over 1 s late.
    pub kept_schedule: bool,
}

impl PathReport {
    pub fn new(path: &str, schedule: &Schedule, stats: &PathStats) -> Self {
        let secs = schedule.duration.as_secs_f64().max(1e-9);
        let scheduled = schedule.total();
        PathReport {
            path: path.into(),
            offered_per_sec: schedule.rate,
            scheduled,
            acked: stats.acked.len(),
            errors: stats.errors.clone(),
            achieved_per_sec: stats.acked.len() as f64 / secs,
            latency: stats.latency.summary(),
            late_starts: stats.late_starts,
            max_start_lag_ms: stats.max_start_lag_ms,
            unsent: stats.unsent,
            kept_schedule: stats.acked.len() as u64 == scheduled
                && stats.unsent == 0
                && stats.max_start_lag_ms < 1000.0,
        }
    }
}

/// Runs `op` on `schedule`, at most `max_in_flight` at once, and returns what happened. Operations that could
/// not start before the window (`start + duration`) closed are counted as unsent, so an overloaded server does
/// not stretch the run.
pub async fn run_paced(schedule: Schedule, max_in_flight: usize, op: Operation) -> PathStats {
    let stats = Arc::new(Mutex::new(PathStats::default()));
    let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let total = schedule.total();
    let mut tasks = tokio::task::JoinSet::new();
    let end = schedule.start + schedule.duration;
    let mut i = 0;
    'pacing: while i < total {
        let upto = schedule.due_by(Instant::now());
        while i < upto {
            let permit = match tokio::time::timeout_at(end, permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                _ => break 'pacing,
            };
            let due = schedule.due(i);
            if let Ok(mut s) = stats.lock() {
                s.started(due, Instant::now());
            }
            let (op, stats) = (op.clone(), stats.clone());
            tasks.spawn(async move {
                let result = op(i).await;
                let done = Instant::now();
                if let Ok(mut s) = stats.lock() {
                    s.record(due, done, result);
                }
                drop(permit);
            });
            i += 1;
        }
        while tasks.try_join_next().is_some() {}
        if i < total {
            tokio::time::sleep_until(schedule.due(i)).await;
        }
    }
    while tasks.join_next().await.is_some() {}
    let mut out = PathStats::default();
    if let Ok(mut s) = stats.lock() {
        std::mem::swap(&mut out, &mut s);
    }
    out.unsent = total - i;
    out
}
