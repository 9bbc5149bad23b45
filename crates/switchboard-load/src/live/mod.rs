//! Live consumers of committed events: SSE streams (read here) and Socket.IO sockets (through the Node helper
//! `tests/js/sio-driver.mjs`, which uses the real socket.io-client). Each records, per event id, how often it
//! arrived and the latency from the event's timestamp (its commit) to arrival.

pub mod socketio;
pub mod sse;

use crate::clock::parse_rfc3339_micros;
use crate::id::EventId;
use crate::stats::Samples;
use std::collections::HashMap;

/// What one live client received.
#[derive(Debug, Default)]
pub struct LiveStats {
    pub client: String,
    pub connected: bool,
    pub error: Option<String>,
    /// Times each event id arrived.
    pub seen: HashMap<EventId, u32>,
    pub latency: Samples,
    /// `switchboard:dropped` notices (Socket.IO) with the total count they reported.
    pub dropped_reported: u64,
}

impl LiveStats {
    pub fn new(client: &str) -> Self {
        LiveStats {
            client: client.into(),
            ..Default::default()
        }
    }

    /// Records the arrival of an event payload (`id`, `timestamp`) at `at_micros`.
    pub fn arrived(&mut self, payload: &serde_json::Value, at_micros: i64) {
        let Some(id) = payload.get("id").and_then(|v| v.as_str()) else {
            return;
        };
        let count = self.seen.entry(EventId::parse(id)).or_default();
        *count += 1;
        if *count == 1 {
            if let Some(ts) = payload
                .get("timestamp")
                .and_then(|v| v.as_str())
                .and_then(parse_rfc3339_micros)
            {
                self.latency.record(at_micros - ts);
            }
        }
    }

    pub fn duplicates(&self) -> u64 {
        self.seen
            .values()
            .map(|&n| u64::from(n.saturating_sub(1)))
            .sum()
    }
}
