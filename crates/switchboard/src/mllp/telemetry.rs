//! The MLLP listener's internal events: each function writes the log line and the metric for one thing that
//! happened, so the two never drift apart. Metric handles are registered once per listener, not per message.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `switchboard_mllp_messages_total` | listener, ack | frames answered, by ACK code (`none` when MSH-15 asked for no ACK) |
//! | `switchboard_mllp_frame_errors_total` | listener, kind | `too_large`, `truncated`, `incomplete` (peer left mid-frame) |
//! | `switchboard_mllp_discarded_bytes_total` | listener | bytes outside any frame |
//! | `switchboard_mllp_connections_total` / `_active` | listener | connections accepted / open now |
//! | `switchboard_mllp_bytes_received_total` / `_sent_total` | listener | bytes read / written |
//! | `switchboard_mllp_commit_failures_total` | listener | messages NAKed because their events could not be stored |
//! | `switchboard_mllp_commit_to_ack_seconds` | listener | from the commit returning to the ACK written |
//! | `switchboard_mllp_ack_seconds` | listener | from the frame decoded to the ACK written |

use metrics::{Counter, Gauge, Histogram};
use std::time::Duration;
use switchboard_hl7::AckCode;

pub(crate) struct ListenerMetrics {
    listener: String,
    acks: [Counter; 6],
    no_ack: Counter,
    too_large: Counter,
    truncated: Counter,
    incomplete: Counter,
    discarded: Counter,
    connections: Counter,
    active: Gauge,
    bytes_in: Counter,
    bytes_out: Counter,
    commit_failures: Counter,
    commit_to_ack: Histogram,
    ack_latency: Histogram,
}

const CODES: [AckCode; 6] = [
    AckCode::AA,
    AckCode::AE,
    AckCode::AR,
    AckCode::CA,
    AckCode::CE,
    AckCode::CR,
];

impl ListenerMetrics {
    pub fn new(listener: &str) -> Self {
        let l = listener.to_string();
        let frame = |kind: &'static str| metrics::counter!("switchboard_mllp_frame_errors_total", "listener" => l.clone(), "kind" => kind);
        ListenerMetrics {
            acks: CODES.map(|c| {
                metrics::counter!("switchboard_mllp_messages_total", "listener" => l.clone(), "ack" => c.as_str())
            }),
            no_ack: metrics::counter!("switchboard_mllp_messages_total", "listener" => l.clone(), "ack" => "none"),
            too_large: frame("too_large"),
            truncated: frame("truncated"),
            incomplete: frame("incomplete"),
            discarded: metrics::counter!("switchboard_mllp_discarded_bytes_total", "listener" => l.clone()),
            connections: metrics::counter!("switchboard_mllp_connections_total", "listener" => l.clone()),
            active: metrics::gauge!("switchboard_mllp_connections_active", "listener" => l.clone()),
            bytes_in: metrics::counter!("switchboard_mllp_bytes_received_total", "listener" => l.clone()),
            bytes_out: metrics::counter!("switchboard_mllp_bytes_sent_total", "listener" => l.clone()),
            commit_failures: metrics::counter!("switchboard_mllp_commit_failures_total", "listener" => l.clone()),
            commit_to_ack: metrics::histogram!("switchboard_mllp_commit_to_ack_seconds", "listener" => l.clone()),
            ack_latency: metrics::histogram!("switchboard_mllp_ack_seconds", "listener" => l.clone()),
            listener: l,
        }
    }

    pub fn connection_opened(&self, peer: &str) {
        self.connections.increment(1);
        self.active.increment(1.0);
        tracing::debug!(listener = %self.listener, %peer, "MLLP connection opened");
    }

    pub fn connection_closed(&self, peer: &str, messages: u64, reason: &str) {
        self.active.decrement(1.0);
        tracing::debug!(listener = %self.listener, %peer, messages, reason, "MLLP connection closed");
    }

    pub fn bytes_received(&self, n: usize) {
        self.bytes_in.increment(n as u64);
    }

    pub fn bytes_sent(&self, n: usize) {
        self.bytes_out.increment(n as u64);
    }

    pub fn discarded(&self, peer: &str, n: usize) {
        self.discarded.increment(n as u64);
        tracing::warn!(listener = %self.listener, %peer, bytes = n, "Discarded bytes received outside an MLLP frame.");
    }

    pub fn frame_too_large(&self, peer: &str, limit: usize) {
        self.too_large.increment(1);
        tracing::warn!(listener = %self.listener, %peer, limit, "MLLP frame over the size limit; answering with a NAK and closing the connection.");
    }

    pub fn frame_truncated(&self, peer: &str, dropped: usize) {
        self.truncated.increment(1);
        tracing::warn!(listener = %self.listener, %peer, dropped, "MLLP frame cut short by a new start block; its bytes were dropped.");
    }

    pub fn frame_incomplete(&self, peer: &str, buffered: usize) {
        self.incomplete.increment(1);
        tracing::warn!(listener = %self.listener, %peer, buffered, "Peer closed the connection in the middle of an MLLP frame.");
    }

    pub fn message_rejected(&self, peer: &str, control_id: Option<&str>, stage: &str, error: &str) {
        tracing::warn!(listener = %self.listener, %peer, control_id, stage, %error, "HL7 message refused.");
    }

    pub fn commit_failed(&self, peer: &str, control_id: Option<&str>, error: &str) {
        self.commit_failures.increment(1);
        tracing::error!(listener = %self.listener, %peer, control_id, %error, "HL7 message could not be stored; answering with a NAK.");
    }

    pub fn acked(
        &self,
        code: Option<AckCode>,
        since_commit: Option<Duration>,
        since_frame: Duration,
    ) {
        match code.and_then(|c| CODES.iter().position(|k| *k == c)) {
            Some(i) => self.acks[i].increment(1),
            None => self.no_ack.increment(1),
        }
        if let Some(d) = since_commit {
            self.commit_to_ack.record(d.as_secs_f64());
        }
        self.ack_latency.record(since_frame.as_secs_f64());
    }
}
