//! A stuck client (a websocket that stops reading) slows neither the hub nor the other clients.

use super::node::SocketIoClients;
use crate::helpers::spawn_app_with;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// Connects a Socket.IO client by hand over a websocket (engine.io v4 frames) and returns the open stream.
async fn raw_socketio_client(
    addr: std::net::SocketAddr,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    let open = ws.next().await.expect("open").expect("frame");
    assert!(open.to_text().expect("text").starts_with('0'), "{open:?}");
    ws.send(Message::text(format!("40{}", json!({"token": token}))))
        .await
        .expect("connect packet");
    let connected = ws.next().await.expect("connect").expect("frame");
    assert!(
        connected.to_text().expect("text").starts_with("40{\"sid\""),
        "{connected:?}"
    );
    ws
}

#[tokio::test]
async fn a_client_that_never_reads_slows_neither_the_hub_nor_other_clients() {
    let app = spawn_app_with(|c| {
        c.realtime.max_events_per_sec = 1_000_000;
        c.realtime.send_buffer = 16;
    })
    .await;
    let app = Arc::new(app);
    let key = app.org_key("org-a").await;
    // Connected, then never read again: its socket buffers fill, then its send queue.
    let _stuck = raw_socketio_client(app.addr, &key).await;
    let mut clients = SocketIoClients::start(&app.url(""));
    clients.connected("healthy", json!({"token": key})).await;

    let total = 4000;
    let long_id = "x".repeat(250);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut publishers = tokio::task::JoinSet::new();
    for worker in 0..16 {
        let (app, key, long_id) = (app.clone(), key.clone(), long_id.clone());
        publishers.spawn(async move {
            let mut slowest = Duration::ZERO;
            for i in (worker..total).step_by(16) {
                let body = json!({"eventType": "custom.load", "resourceType": "Bulk",
                    "resourceId": format!("{long_id}{i}"), "data": {"i": i}});
                let t = Instant::now();
                let r = app.publish(&key, &body).await;
                assert_eq!(r.status(), 201);
                slowest = slowest.max(t.elapsed());
            }
            slowest
        });
    }
    while let Some(done) = publishers.join_next().await {
        slowest = slowest.max(done.expect("publisher"));
    }
    let publish_time = started.elapsed();
    assert!(
        slowest < Duration::from_secs(2),
        "a publish took {slowest:?} with a stuck client connected"
    );

    let mut received = 0;
    while received < total {
        let event = clients.event_named("healthy", "custom.load").await;
        assert!(event["payload"].get("data").is_none());
        received += 1;
    }
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let dropped: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("switchboard_realtime_dropped_total")
                && l.contains("reason=\"buffer_full\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        dropped > 0.0,
        "the stuck client's queue filled and it missed events (published {total} in {publish_time:?})"
    );
}
