//! The SQLite WAL stays small under steady load: the checkpointer lets SQLite restart it instead of letting it grow
//! to the blocking truncation (which stalled every commit for about half a second).

use crate::helpers::is_postgres;
use serde_json::value::RawValue;
use std::time::{Duration, Instant};
use switchboard::event::{EventType, NewEvent, Source};
use switchboard::hub::{Hub, HubConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_restarts_under_steady_appends() {
    if is_postgres() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("wal.db");
    let store = switchboard::store::open(&format!("sqlite://{}", db.display()))
        .await
        .expect("store");
    let hub = Hub::start(store, HubConfig::default()).await.expect("hub");
    let data =
        RawValue::from_string(format!("{{\"note\":\"{}\"}}", "x".repeat(8 * 1024))).expect("json");
    let event_type = EventType::parse("custom.wal.fill").expect("type");
    // 192 MiB of payloads, appended without pause from 32 emitters: with the WAL never restarting it would hold all
    // of it, or reach the truncation at 256 MiB. Restarting, it holds what is appended during one checkpoint round,
    // which depends on the machine's speed (12–81 MiB seen), not on how much is appended in all.
    let per_task = 192 * 1024 / 8 / 32;
    let started = Instant::now();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (hub, data, event_type) = (hub.clone(), data.clone(), event_type.clone());
            tokio::spawn(async move {
                for _ in 0..per_task {
                    let event =
                        NewEvent::new(event_type.clone(), "org-wal", Source::Api, data.clone());
                    hub.emit(event).await.expect("emit");
                }
            })
        })
        .collect();
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    let mut largest = 0u64;
    loop {
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        if tasks.iter().all(|t| t.is_finished()) || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for task in tasks {
        task.await.expect("emitter");
    }
    hub.shutdown().await;
    eprintln!("largest WAL: {largest} bytes");
    assert!(
        largest < 128 * 1024 * 1024,
        "the WAL reached {largest} bytes while 192 MiB were appended; it should restart every checkpoint round"
    );
}
