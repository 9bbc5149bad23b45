//! Stuck clients slow neither the hub nor the other clients: a websocket that stops reading (its TCP buffers
//! fill), and a long-polling client that stops polling (its send queue fills at once).

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
    loop {
        let frame = ws.next().await.expect("connect").expect("frame");
        let text = frame.to_text().expect("text");
        // The first engine.io ping comes at once; answer it while waiting for the namespace.
        if text == "2" {
            ws.send(Message::text("3")).await.expect("pong");
            continue;
        }
        assert!(text.starts_with("40{\"sid\""), "{frame:?}");
        return ws;
    }
}

/// Opens a Socket.IO session over HTTP long-polling, then never polls again.
async fn stalled_polling_client(client: &reqwest::Client, addr: std::net::SocketAddr, token: &str) {
    let base = format!("http://{addr}/socket.io/?EIO=4&transport=polling");
    let open = client
        .get(&base)
        .send()
        .await
        .expect("handshake")
        .text()
        .await
        .expect("body");
    let handshake: serde_json::Value =
        serde_json::from_str(open.strip_prefix('0').expect("open packet")).expect("json");
    let sid = handshake["sid"].as_str().expect("sid");
    let url = format!("{base}&sid={sid}");
    let r = client
        .post(&url)
        .body(format!("40{}", json!({"token": token})))
        .send()
        .await
        .expect("connect packet");
    assert!(r.status().is_success());
    // A poll answers with whatever is queued (packets separated by \x1e): the first ping may come first.
    for _ in 0..5 {
        let polled = client
            .get(&url)
            .send()
            .await
            .expect("poll")
            .text()
            .await
            .expect("body");
        if polled.split('\u{1e}').any(|p| p.starts_with("40{\"sid\"")) {
            return;
        }
    }
    panic!("the polling client was not connected");
}

#[tokio::test]
async fn a_client_that_never_reads_slows_neither_the_hub_nor_other_clients() {
    let app = spawn_app_with(|c| {
        c.realtime.max_events_per_sec = 1_000_000;
        // Small enough that the stalled polling client (which takes nothing) fills its queue, large enough for the
        // healthy client to absorb a few batches of the 16 publishers arriving back to back (with 16 it missed
        // one now and then on a slow machine).
        c.realtime.send_buffer = 256;
    })
    .await;
    let app = Arc::new(app);
    let key = app.org_key("org-a").await;
    // Connected, then never read again: its socket buffers fill, then its send queue.
    let _stuck = raw_socketio_client(app.addr, &key).await;
    stalled_polling_client(&app.client, app.addr, &key).await;
    let mut clients = SocketIoClients::start(&app.url(""));
    clients.connected("healthy", json!({"token": key})).await;

    let total = 2000;
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
        "the stalled client's queue filled and it missed events (published {total} in {publish_time:?})"
    );
}
