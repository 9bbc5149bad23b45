//! The report of a run: everything as JSON (for the fault suite and for comparing runs) and a markdown summary;
//! [`resources`] samples CPU and memory of the processes involved; [`timeline`] samples memory and queues during the load; [`compare`] puts a Switchboard run and a
//! baseline run side by side.

pub mod compare;
pub mod markdown;
pub mod resources;
pub mod timeline;

pub use resources::{ProcUsage, ResourceReport, Resources};

use crate::loss::{HistoryCheck, LiveCheck, WebhookCheck};
use crate::run::RunConfig;
use crate::workload::PathReport;
use serde::Serialize;

/// "Exact backoff": no retry before its scheduled delay, and 95 % of them within this much after it.
pub const EXACT_BACKOFF_P95_LATE_MS: f64 = 250.0;

/// Everything a run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub config: RunConfig,
    pub started: String,
    pub paths: Vec<PathReport>,
    /// Events committed during the load window (their timestamps), all types (HL7 stage events, transformer
    /// output, …); for the baseline, acknowledged API events.
    pub committed_events: usize,
    pub committed_events_per_sec: f64,
    pub history_events: Option<usize>,
    /// History events by type.
    pub events_by_type: std::collections::BTreeMap<String, usize>,
    /// Events per acknowledged MLLP message actually stored (sources mllp-server and transformer).
    pub mllp_events_per_message_measured: Option<f64>,
    pub history: Option<HistoryCheck>,
    pub webhook: WebhookCheck,
    pub bad_signatures: u64,
    pub redrives: u32,
    pub drain_secs: f64,
    /// The drain gave up (`--drain-timeout`) with deliveries still outstanding: undelivered ones may still be
    /// pending retries, not lost.
    pub drain_timed_out: bool,
    pub sse: Vec<LiveCheck>,
    pub socketio: Vec<LiveCheck>,
    pub resources: ResourceReport,
    pub timeline: Vec<timeline::TimelineSample>,
    pub targets: Targets,
}

/// The seed's non-functional targets, judged on this run.
#[derive(Debug, Default, Serialize)]
pub struct Targets {
    pub events_per_sec_10k: bool,
    pub no_backpressure: bool,
    pub webhook_p95_under_5s: bool,
    pub exact_backoff: bool,
    pub zero_loss: bool,
}

impl Report {
    pub fn with_targets(mut self) -> Self {
        let history_ok = self
            .history
            .as_ref()
            .is_none_or(|h| h.api.missing == 0 && h.fhir.missing == 0 && h.mllp.missing == 0);
        let live_ok = self
            .sse
            .iter()
            .chain(&self.socketio)
            .all(|c| c.connected && c.missing == 0);
        self.targets = Targets {
            events_per_sec_10k: self.committed_events_per_sec >= 10_000.0,
            no_backpressure: self.paths.iter().all(|p| p.kept_schedule),
            webhook_p95_under_5s: self.webhook.latency.count > 0
                && self.webhook.latency.p95_ms < 5000.0,
            exact_backoff: self.webhook.backoff.gaps_checked > 0
                && self.webhook.backoff.early == 0
                && self.webhook.backoff.lateness.p95_ms <= EXACT_BACKOFF_P95_LATE_MS,
            zero_loss: history_ok && live_ok && self.webhook.undelivered == 0,
        };
        self
    }
}
