//! Benchmark of webhook delivery: the real worker, SQLite outbox (`synchronous=FULL`) and HTTP client against a
//! local keep-alive receiver (axum) in the same process.
//!
//! Run: `cargo bench -p switchboard --bench webhooks` (add `-- --quick` for a short run).
//! 1. Throughput: a backlog of events with one subscription is queued with the worker stopped; the worker is then
//!    started and timed until every delivery is recorded as succeeded (claimed, sent, 2xx, attempt logged).
//! 2. Latency: 10,000 events/s offered for a few seconds with one subscription; for each delivery, the time from
//!    the event's commit timestamp (taken just before its transaction) to the receiver getting the request.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard::event::{EventType, NewEvent, Source, Timestamp};
use switchboard::hub::{Hub, HubConfig};
use switchboard::store::webhooks::{Filters, RetryConfig, SubscriptionRecord};
use switchboard::store::DynStore;
use switchboard::webhooks::{signature, Webhooks, WebhooksConfig};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Receiver {
    count: AtomicU64,
    /// Commit → receipt latencies in microseconds (latency run only).
    latencies: Mutex<Vec<i64>>,
    measure: std::sync::atomic::AtomicBool,
}

#[derive(serde::Deserialize)]
struct Stamp {
    timestamp: String,
}

async fn receive(State(state): State<Arc<Receiver>>, body: Bytes) -> StatusCode {
    state.count.fetch_add(1, Ordering::Relaxed);
    if state.measure.load(Ordering::Relaxed) {
        let now = Timestamp::now();
        if let Some(ts) = serde_json::from_slice::<Stamp>(&body)
            .ok()
            .and_then(|s| Timestamp::parse_rfc3339(&s.timestamp))
        {
            state.latencies.lock().expect("lock").push(now.0 - ts.0);
        }
    }
    StatusCode::NO_CONTENT
}

async fn start_receiver() -> (String, Arc<Receiver>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = Arc::new(Receiver::default());
    let app = axum::Router::new()
        .fallback(receive)
        .with_state(Arc::clone(&state));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), state)
}

fn config() -> WebhooksConfig {
    let mut config = switchboard::Config::defaults().expect("defaults").webhooks;
    config.allow_insecure = true;
    config.allowed_networks = vec!["127.0.0.0/8".into()];
    config
}

async fn setup(dir: &tempfile::TempDir, url: &str) -> (DynStore, Webhooks, Hub) {
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = switchboard::store::open(&db).await.expect("store");
    let now = Timestamp::now();
    let sub = SubscriptionRecord {
        id: "bench".into(),
        org_id: "org-bench".into(),
        name: "bench".into(),
        url: url.into(),
        events: vec!["hl7.*".into()],
        filters: Filters::default(),
        secret: signature::generate_secret(),
        previous_secret: None,
        previous_secret_until: None,
        active: true,
        retry: RetryConfig::default(),
        headers: BTreeMap::new(),
        rate_limit: None,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    };
    store
        .webhooks()
        .insert_subscription(&sub)
        .await
        .expect("subscription");
    let webhooks = Webhooks::new(Arc::clone(&store), config())
        .await
        .expect("webhooks");
    let hub = Hub::start_with_outbox(
        Arc::clone(&store),
        HubConfig::default(),
        Some(webhooks.outbox_router()),
    )
    .await
    .expect("hub");
    (store, webhooks, hub)
}

fn event() -> NewEvent {
    let data = serde_json::value::RawValue::from_string(format!(
        "{{\"patient\":\"{}\",\"note\":\"{}\"}}",
        "P".repeat(16),
        "x".repeat(480)
    ))
    .expect("json");
    NewEvent::new(
        EventType::parse("hl7.received").expect("type"),
        "org-bench",
        Source::MllpServer,
        data,
    )
    .message("ADT^A01", None)
}

async fn open_deliveries(store: &DynStore) -> u64 {
    store
        .webhooks()
        .delivery_counts()
        .await
        .expect("counts")
        .iter()
        .map(|c| c.open)
        .sum()
}

async fn throughput(total: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, receiver) = start_receiver().await;
    let (store, webhooks, hub) = setup(&dir, &url).await;
    // Queue the backlog with the worker stopped: 64 concurrent emitters, group commit.
    let per = total / 64;
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let hub = hub.clone();
            tokio::spawn(async move {
                for _ in 0..per {
                    hub.emit(event()).await.expect("emit");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("join");
    }
    let queued = open_deliveries(&store).await;
    assert_eq!(
        queued as usize,
        per * 64,
        "one delivery per event, written with it"
    );
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let workers = webhooks.spawn(shutdown.clone());
    let mut received_at = None;
    loop {
        if received_at.is_none() && receiver.count.load(Ordering::Relaxed) >= queued {
            received_at = Some(started.elapsed());
        }
        if received_at.is_some() && open_deliveries(&store).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let recorded = started.elapsed();
    shutdown.cancel();
    for w in workers {
        let _ = w.await;
    }
    hub.shutdown().await;
    let received = received_at.unwrap_or(recorded);
    (
        queued as f64 / received.as_secs_f64(),
        queued as f64 / recorded.as_secs_f64(),
    )
}

async fn latency(rate_per_sec: u64, seconds: u64) -> (usize, [f64; 4]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, receiver) = start_receiver().await;
    let (_store, webhooks, hub) = setup(&dir, &url).await;
    let shutdown = CancellationToken::new();
    let workers = webhooks.spawn(shutdown.clone());
    receiver.measure.store(true, Ordering::Relaxed);
    // Open loop: every millisecond release rate/1000 emits, whether or not earlier ones have committed.
    let per_tick = rate_per_sec / 1000;
    let mut interval = tokio::time::interval(Duration::from_millis(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut handles = Vec::new();
    for _ in 0..seconds * 1000 {
        interval.tick().await;
        for _ in 0..per_tick {
            let hub = hub.clone();
            handles.push(tokio::spawn(async move {
                hub.emit(event()).await.expect("emit")
            }));
        }
    }
    for h in handles {
        h.await.expect("join");
    }
    let expected = (rate_per_sec * seconds) as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while (receiver.count.load(Ordering::Relaxed) as usize) < expected && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    for w in workers {
        let _ = w.await;
    }
    hub.shutdown().await;
    let mut all = receiver.latencies.lock().expect("lock").clone();
    all.sort_unstable();
    let pick = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)] as f64 / 1000.0;
    (all.len(), [pick(0.5), pick(0.95), pick(0.99), pick(1.0)])
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let total = if quick { 20_000 } else { 100_000 };
        let (received, recorded) = throughput(total).await;
        println!(
            "throughput: {total} deliveries, one subscription: {received:.0}/s received by the endpoint, \
             {recorded:.0}/s recorded as succeeded"
        );
        let seconds = if quick { 3 } else { 10 };
        let (n, [p50, p95, p99, max]) = latency(10_000, seconds).await;
        println!(
            "latency at 10,000 events/s for {seconds} s ({n} deliveries): commit → receiver p50 {p50:.1} ms, \
             p95 {p95:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
        );
    });
}
