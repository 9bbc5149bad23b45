//! The zero-loss check and the exact-backoff check.
//!
//! Every acknowledged operation must be in the history (an API `201` by event id, a FHIR `201` as a
//! `fhir.created` of its resource, an MLLP `AA` as an `hl7.received` with its control id); every history event the
//! subscription matches must have reached the webhook receiver with a `2xx`; every history event must have reached
//! every SSE client, and every event of the Socket.IO type every socket. Duplicates are counted, not failures
//! (delivery is at least once). The backoff check compares the receiver-side gap between consecutive attempts of
//! an event with the subscription's schedule.

use crate::id::EventId;
use crate::live::LiveStats;
use crate::receiver::Delivery;
use crate::stats::{Samples, Summary};
use crate::target::{HistoryEvent, RetryConfig};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// A retry may arrive this much before its scheduled gap (clock reads on one machine) without counting as early.
pub const EARLY_TOLERANCE_MS: f64 = 5.0;

/// Does a subscription pattern list match `event_type`? Exact names, `prefix.**` and `**` (what the suite uses).
pub fn matches(patterns: &[String], event_type: &str) -> bool {
    patterns.iter().any(|p| {
        p == "**"
            || p == event_type
            || p.strip_suffix(".**").is_some_and(|prefix| {
                event_type.starts_with(prefix) && event_type[prefix.len()..].starts_with('.')
            })
    })
}

/// One kind of acknowledged operation checked against the history.
#[derive(Debug, Default, Serialize)]
pub struct Presence {
    pub acked: usize,
    pub missing: usize,
    pub missing_examples: Vec<String>,
}

fn presence(acked: &[String], found: impl Fn(&str) -> bool) -> Presence {
    let missing: Vec<&String> = acked.iter().filter(|id| !found(id)).collect();
    Presence {
        acked: acked.len(),
        missing: missing.len(),
        missing_examples: missing.iter().take(5).map(|s| s.to_string()).collect(),
    }
}

/// Acknowledged ids per path.
#[derive(Debug, Default)]
pub struct Acked {
    pub api: Vec<String>,
    pub fhir: Vec<String>,
    pub mllp: Vec<String>,
}

/// The history part of the check.
#[derive(Debug, Default, Serialize)]
pub struct HistoryCheck {
    pub events: usize,
    pub api: Presence,
    pub fhir: Presence,
    pub mllp: Presence,
}

pub fn check_history(history: &[HistoryEvent], acked: &Acked) -> HistoryCheck {
    let ids: HashSet<EventId> = history.iter().map(|e| e.id).collect();
    let api = presence(&acked.api, |id| ids.contains(&EventId::parse(id)));
    drop(ids);
    let fhir: HashSet<&str> = history
        .iter()
        .filter(|e| &*e.event_type == "fhir.created" && &*e.source == "fhir-api")
        .filter_map(|e| e.resource_id.as_deref())
        .collect();
    let mllp: HashSet<&str> = history
        .iter()
        .filter(|e| &*e.event_type == "hl7.received")
        .filter_map(|e| e.message_control_id.as_deref())
        .collect();
    HistoryCheck {
        events: history.len(),
        api,
        fhir: presence(&acked.fhir, |id| fhir.contains(id)),
        mllp: presence(&acked.mllp, |id| mllp.contains(id)),
    }
}

/// The webhook part of the check.
#[derive(Debug, Default, Serialize)]
pub struct WebhookCheck {
    pub expected: usize,
    pub delivered: usize,
    pub undelivered: usize,
    pub undelivered_examples: Vec<String>,
    /// Successful requests beyond the first, over all events.
    pub duplicates: usize,
    pub requests: usize,
    pub failed_requests: usize,
    /// Events that exhausted every attempt (dead) and were delivered after a redrive.
    pub delivered_after_redrive: usize,
    /// Event commit → first `2xx` at the receiver, retries included.
    pub latency: Summary,
    pub backoff: BackoffCheck,
}

/// Gaps between consecutive attempts compared with the schedule.
#[derive(Debug, Default, Serialize)]
pub struct BackoffCheck {
    pub retry_config: Option<RetryConfig>,
    pub gaps_checked: usize,
    /// Retries that came earlier than scheduled (beyond [`EARLY_TOLERANCE_MS`]).
    pub early: usize,
    /// Gaps by retry number (1-based): (count, expected ms, lateness summary).
    pub by_retry: Vec<RetryGaps>,
    /// Lateness (gap − scheduled delay) over all gaps.
    pub lateness: Summary,
    pub late_over_1s: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct RetryGaps {
    pub retry: u32,
    pub expected_ms: u64,
    pub lateness: Summary,
}

/// Checks `expected` ids against what the receiver got; attempts at or after `redrive_at` are not gaps.
pub fn check_webhooks(
    expected: &[EventId],
    deliveries: &HashMap<EventId, Delivery>,
    retry: RetryConfig,
    redrive_at: Option<i64>,
) -> WebhookCheck {
    let mut check = WebhookCheck {
        expected: expected.len(),
        ..Default::default()
    };
    let mut latency = Samples::new();
    let mut undelivered = Vec::new();
    for id in expected {
        match deliveries
            .get(id)
            .and_then(|d| Some((d, d.first_success()?)))
        {
            Some((d, first)) => {
                check.delivered += 1;
                if let Some(ts) = d.event_micros {
                    latency.record(first - ts);
                }
                let failures_before = d
                    .attempts
                    .iter()
                    .filter(|a| a.status >= 300 && a.at_micros < first)
                    .count();
                if failures_before > retry.max_attempts as usize {
                    check.delivered_after_redrive += 1;
                }
            }
            None => undelivered.push(id.to_string()),
        }
    }
    for d in deliveries.values() {
        check.requests += d.attempts.len();
        check.failed_requests += d.attempts.iter().filter(|a| a.status >= 300).count();
        check.duplicates += d.successes().saturating_sub(1);
    }
    check.undelivered = undelivered.len();
    check.undelivered_examples = undelivered.into_iter().take(5).collect();
    check.latency = latency.summary();
    check.backoff = check_backoff(deliveries, retry, redrive_at);
    check
}

/// Compares attempt gaps with `retry`'s schedule.
pub fn check_backoff(
    deliveries: &HashMap<EventId, Delivery>,
    retry: RetryConfig,
    redrive_at: Option<i64>,
) -> BackoffCheck {
    let n = retry.max_attempts as usize;
    let mut per_retry: Vec<Samples> = vec![Samples::new(); n];
    let mut all = Samples::new();
    let mut early = 0;
    let mut late_over_1s = 0;
    for d in deliveries.values() {
        let mut attempts = d.attempts.clone();
        attempts.sort_by_key(|a| a.at_micros);
        for (k, pair) in attempts.windows(2).enumerate().take(n) {
            let (a, b) = (pair[0], pair[1]);
            if a.status < 300 || redrive_at.is_some_and(|r| b.at_micros >= r) {
                break;
            }
            let expected_ms = retry.delay_ms(k as u32 + 1) as f64;
            let lateness_ms = (b.at_micros - a.at_micros) as f64 / 1000.0 - expected_ms;
            if lateness_ms < -EARLY_TOLERANCE_MS {
                early += 1;
            }
            if lateness_ms > 1000.0 {
                late_over_1s += 1;
            }
            let micros = (lateness_ms * 1000.0) as i64;
            per_retry[k].record(micros);
            all.record(micros);
        }
    }
    BackoffCheck {
        retry_config: Some(retry),
        gaps_checked: all.len(),
        early,
        by_retry: per_retry
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_empty())
            .map(|(k, s)| RetryGaps {
                retry: k as u32 + 1,
                expected_ms: retry.delay_ms(k as u32 + 1),
                lateness: s.summary(),
            })
            .collect(),
        lateness: all.summary(),
        late_over_1s,
    }
}

/// One live client against the events it should have seen.
#[derive(Debug, Default, Serialize)]
pub struct LiveCheck {
    pub client: String,
    pub connected: bool,
    pub error: Option<String>,
    pub expected: usize,
    pub received: usize,
    pub missing: usize,
    pub duplicates: u64,
    pub dropped_reported: u64,
    pub latency: Summary,
}

pub fn check_live(client: &LiveStats, expected: &[EventId]) -> LiveCheck {
    let missing = expected
        .iter()
        .filter(|id| !client.seen.contains_key(id))
        .count();
    LiveCheck {
        client: client.client.clone(),
        connected: client.connected,
        error: client.error.clone(),
        expected: expected.len(),
        received: client.seen.len(),
        missing,
        duplicates: client.duplicates(),
        dropped_reported: client.dropped_reported,
        latency: client.latency.summary(),
    }
}
