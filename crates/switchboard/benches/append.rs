//! Benchmark of the durable append path: `hub.emit` with 1 KB payloads on SQLite, every event fsynced before
//! `emit` returns (the WAL is fsynced per group of commits, as `synchronous=FULL` would per commit).
//!
//! Run: `cargo bench -p switchboard --bench append` (add `-- --quick` for a short run, `-- --emitters N` for one
//! concurrency only, `-- --latency-only` for the latency run alone).
//! Prints events/s for 1, 16, 256 and 1024 concurrent emitters, then p50/p99 emit latency at 10,000 events/s offered.

use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::event::{EventType, NewEvent, Source};
use switchboard::hub::{Hub, HubConfig};

fn payload() -> Box<RawValue> {
    let body = format!(
        "{{\"patient\":\"{}\",\"note\":\"{}\"}}",
        "P".repeat(16),
        "x".repeat(990)
    );
    RawValue::from_string(body).expect("valid json")
}

async fn fresh_hub(dir: &tempfile::TempDir) -> Hub {
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = switchboard::store::open(&url).await.expect("store");
    Hub::start(store, HubConfig::default()).await.expect("hub")
}

async fn throughput(emitters: usize, total: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = fresh_hub(&dir).await;
    let event_type = EventType::parse("hl7.received").expect("type");
    let data = payload();
    let per_emitter = total / emitters;
    let started = Instant::now();
    let tasks: Vec<_> = (0..emitters)
        .map(|_| {
            let (hub, event_type, data) = (hub.clone(), event_type.clone(), data.clone());
            tokio::spawn(async move {
                for _ in 0..per_emitter {
                    let event = NewEvent::new(
                        event_type.clone(),
                        "org-bench",
                        Source::MllpServer,
                        data.clone(),
                    )
                    .message("ADT^A01", None);
                    hub.emit(event).await.expect("emit");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("join");
    }
    let rate = (per_emitter * emitters) as f64 / started.elapsed().as_secs_f64();
    hub.shutdown().await;
    rate
}

async fn latency_at(rate_per_sec: u64, seconds: u64) -> (Duration, Duration, Duration, usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = fresh_hub(&dir).await;
    let event_type = EventType::parse("hl7.received").expect("type");
    let data = payload();
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(
        (rate_per_sec * seconds) as usize,
    )));
    // Open loop: a ticker releases events on schedule whether or not earlier ones have committed.
    let tick = Duration::from_micros(1_000);
    let per_tick = rate_per_sec / 1_000;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut handles = Vec::new();
    for _ in 0..(seconds * 1_000) {
        interval.tick().await;
        for _ in 0..per_tick {
            let (hub, event_type, data, latencies) = (
                hub.clone(),
                event_type.clone(),
                data.clone(),
                Arc::clone(&latencies),
            );
            handles.push(tokio::spawn(async move {
                let started = Instant::now();
                let event = NewEvent::new(event_type, "org-bench", Source::MllpServer, data)
                    .message("ADT^A01", None);
                hub.emit(event).await.expect("emit");
                latencies.lock().expect("lock").push(started.elapsed());
            }));
        }
    }
    for h in handles {
        h.await.expect("join");
    }
    hub.shutdown().await;
    let mut all = latencies.lock().expect("lock").clone();
    all.sort();
    let pick = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    (pick(0.50), pick(0.99), *all.last().expect("max"), all.len())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!("durable append, 1 KB payloads, SQLite WAL, fsync before every acknowledgement, group commit");
        let mut runs = vec![
            (1, if quick { 500 } else { 2_000 }),
            (16, 50_000),
            (256, if quick { 200_000 } else { 1_000_000 }),
            (1024, if quick { 200_000 } else { 1_000_000 }),
        ];
        // `--emitters N` runs that one concurrency only.
        let args: Vec<String> = std::env::args().collect();
        if let Some(n) = args
            .iter()
            .position(|a| a == "--emitters")
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<usize>().ok())
        {
            runs = vec![(n, if quick { 100_000 } else { 500_000 })];
        }
        // `--latency-only` skips the throughput runs (their disk writes still being flushed would skew it).
        if args.iter().any(|a| a == "--latency-only") {
            runs.clear();
        }
        for (emitters, total) in runs {
            let rate = throughput(emitters, total).await;
            println!("  {emitters:>4} emitters: {rate:>10.0} events/s ({total} events)");
        }
        // The throughput runs leave gigabytes of dirty pages and deleted files for the kernel to write back; let it
        // finish, or their writeback shows up as fsync stalls in the latency run.
        let _ = std::process::Command::new("sync").status();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (p50, p99, max, n) = latency_at(10_000, if quick { 3 } else { 10 }).await;
        println!("  emit latency at 10,000 events/s offered ({n} events): p50 {p50:?}, p99 {p99:?}, max {max:?}");
    });
}
