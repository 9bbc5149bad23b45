//! The webhook receiver: an HTTP server in the driver's process that answers `500` to a share of requests chosen
//! at random (the rest `204`), verifies every request's signatures, and records for each event id the time and
//! outcome of every attempt, from which the loss check takes first-success times, duplicates and retry gaps.

pub mod signature;

use crate::clock::{now_micros, parse_rfc3339_micros};
use crate::id::{intern, EventId};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One request received for an event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attempt {
    pub at_micros: i64,
    pub status: u16,
}

/// Everything received for one event id.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// The event's own timestamp (its commit), from the body.
    pub event_micros: Option<i64>,
    pub event_type: Option<Arc<str>>,
    pub attempts: Vec<Attempt>,
}

impl Delivery {
    pub fn successes(&self) -> usize {
        self.attempts.iter().filter(|a| a.status < 300).count()
    }

    pub fn first_success(&self) -> Option<i64> {
        self.attempts
            .iter()
            .filter(|a| a.status < 300)
            .map(|a| a.at_micros)
            .min()
    }
}

/// Shared state of the receiver.
pub struct Receiver {
    secret: String,
    /// Fail when the random draw (0..1_000_000) is below this.
    fail_below: u64,
    counter: AtomicU64,
    seed: u64,
    bad_signatures: AtomicU64,
    deliveries: Mutex<HashMap<EventId, Delivery>>,
}

impl Receiver {
    pub fn new(secret: &str, fail_ratio: f64) -> Arc<Self> {
        Arc::new(Receiver {
            secret: secret.to_string(),
            fail_below: (fail_ratio.clamp(0.0, 1.0) * 1_000_000.0) as u64,
            counter: AtomicU64::new(0),
            seed: now_micros() as u64,
            bad_signatures: AtomicU64::new(0),
            deliveries: Mutex::new(HashMap::new()),
        })
    }

    /// Serves on an already-bound listener until the process ends; returns the address.
    pub async fn serve(
        self: &Arc<Self>,
        listener: tokio::net::TcpListener,
    ) -> std::io::Result<SocketAddr> {
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(addr)
    }

    pub fn bad_signatures(&self) -> u64 {
        self.bad_signatures.load(Ordering::Relaxed)
    }

    /// What has been received so far, taken out of the receiver (which then starts empty): the check runs once,
    /// after the drain, and a copy of millions of records would double the driver's memory.
    pub fn take(&self) -> HashMap<EventId, Delivery> {
        self.deliveries
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
    }

    /// Those of `ids` without a successful delivery yet.
    pub fn undelivered(&self, ids: &[EventId]) -> Vec<EventId> {
        let Ok(all) = self.deliveries.lock() else {
            return ids.to_vec();
        };
        ids.iter()
            .filter(|id| all.get(id).is_none_or(|d| d.successes() == 0))
            .copied()
            .collect()
    }

    /// Whether every one of `ids` has had more than `attempts` attempts after `since` (µs): all dead.
    pub fn all_exhausted(&self, ids: &[EventId], since: i64, attempts: usize) -> bool {
        let Ok(all) = self.deliveries.lock() else {
            return false;
        };
        ids.iter().all(|id| {
            all.get(id).is_some_and(|d| {
                d.attempts.iter().filter(|a| a.at_micros > since).count() > attempts
            })
        })
    }

    /// How many distinct event ids have had a successful delivery.
    pub fn delivered_count(&self) -> usize {
        self.deliveries
            .lock()
            .map(|d| d.values().filter(|x| x.successes() > 0).count())
            .unwrap_or(0)
    }

    fn draw(&self) -> u64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        splitmix64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % 1_000_000
    }
}

/// A well-mixed 64-bit hash: the receiver's random numbers.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(serde::Deserialize)]
struct Head<'a> {
    id: EventId,
    #[serde(rename = "eventType", default, borrow)]
    event_type: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    timestamp: Option<std::borrow::Cow<'a, str>>,
}

async fn receive(State(rx): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at_micros = now_micros();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let verified = signature::verify_request(
        &rx.secret,
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
        header("x-ehrconnect-signature"),
        &body,
    );
    if !verified {
        rx.bad_signatures.fetch_add(1, Ordering::Relaxed);
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(head) = serde_json::from_slice::<Head>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let status = if rx.draw() < rx.fail_below {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    };
    if let Ok(mut all) = rx.deliveries.lock() {
        let entry = all.entry(head.id).or_default();
        if entry.event_micros.is_none() {
            entry.event_micros = head.timestamp.as_deref().and_then(parse_rfc3339_micros);
            entry.event_type = head.event_type.as_deref().map(intern);
        }
        entry.attempts.push(Attempt {
            at_micros,
            status: status.as_u16(),
        });
    }
    status
}
