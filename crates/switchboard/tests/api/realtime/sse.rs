//! Server-Sent Events over real HTTP: a WHATWG EventSource (npm `eventsource`) that loses its connection and
//! reconnects with Last-Event-ID, plus a plain HTTP reader for resumption, filters, views and errors.

use super::node::{NodeProcess, WAIT};
use crate::helpers::{spawn_app, TestApp};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A TCP proxy the test can cut, and make refuse new connections, to play a network failure.
struct Proxy {
    addr: SocketAddr,
    refusing: Arc<AtomicBool>,
    live: Arc<Mutex<CancellationToken>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let refusing = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Mutex::new(CancellationToken::new()));
        let (refusing_, live_) = (refusing.clone(), live.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if refusing_.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let cut = live_.lock().expect("lock").clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.cancelled() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            refusing,
            live,
        }
    }

    /// Drops every proxied connection and refuses new ones until [`Proxy::heal`].
    fn cut(&self) {
        self.refusing.store(true, Ordering::SeqCst);
        let mut live = self.live.lock().expect("lock");
        live.cancel();
        *live = CancellationToken::new();
    }

    fn heal(&self) {
        self.refusing.store(false, Ordering::SeqCst);
    }
}

async fn publish(app: &TestApp, key: &str, body: Value) -> i64 {
    let r = app.publish(key, &body).await;
    assert_eq!(r.status(), 201);
    let event: Value = r.json().await.expect("json");
    event["seq"].as_i64().expect("seq")
}

fn tick(i: usize) -> Value {
    json!({"eventType": "custom.tick", "data": {"i": i, "patient": "Jane Doe"}})
}

#[tokio::test]
async fn a_reconnecting_event_source_gets_every_event_once_in_order() {
    let app = spawn_app().await;
    let a = app.org_key("org-a").await;
    let b = app.org_key("org-b").await;
    publish(&app, &a, tick(0)).await; // before the stream: not sent
    let proxy = Proxy::start(app.addr).await;
    let url = format!(
        "http://{}/api/events/stream?eventType=custom.tick&token={a}",
        proxy.addr
    );
    let mut client = NodeProcess::spawn("sse-client.mjs", &[url]);
    client.expect("open", |l| l["type"] == "open").await;

    let mut expected = Vec::new();
    for i in 1..=5 {
        expected.push(publish(&app, &a, tick(i)).await);
    }
    let mut received = Vec::new();
    while received.len() < 5 {
        let line = client.expect("a message", |l| l["type"] == "message").await;
        received.push(line);
    }

    proxy.cut();
    client
        .expect("the connection error", |l| l["type"] == "error")
        .await;
    // Committed while the client is away, mixed with events it must not get.
    for i in 6..=15 {
        expected.push(publish(&app, &a, tick(i)).await);
        publish(&app, &b, tick(i)).await;
        publish(&app, &a, json!({"eventType": "custom.other", "data": {}})).await;
    }
    proxy.heal();
    client
        .expect("the reconnection", |l| l["type"] == "open")
        .await;
    expected.push(publish(&app, &a, tick(16)).await);
    while received.len() < expected.len() {
        let line = client.expect("a message", |l| l["type"] == "message").await;
        received.push(line);
    }
    let ids: Vec<i64> = received
        .iter()
        .map(|l| l["id"].as_str().expect("id").parse().expect("seq"))
        .collect();
    assert_eq!(ids, expected, "every event once, in order");
    for line in &received {
        assert_eq!(
            line["data"]["seq"].to_string(),
            line["id"].as_str().expect("id")
        );
        assert!(
            line["data"].get("data").is_none(),
            "summary view by default"
        );
    }
    let extra = client.drain(std::time::Duration::from_millis(300)).await;
    assert!(
        extra.iter().all(|l| l["type"] != "message"),
        "no repeats: {extra:?}"
    );
}

/// Reads `text/event-stream` messages from a response.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

pub struct Message {
    pub id: Option<String>,
    pub data: String,
}

impl SseReader {
    pub async fn open(
        app: &TestApp,
        key: &str,
        query: &str,
        last_event_id: Option<i64>,
    ) -> SseReader {
        let mut request = app
            .client
            .get(app.url(&format!("/api/events/stream{query}")))
            .bearer_auth(key);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.expect("stream");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().expect("type"),
            "text/event-stream"
        );
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    pub async fn next(&mut self) -> Message {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut message = Message {
                    id: None,
                    data: String::new(),
                };
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id:") {
                        message.id = Some(id.trim().to_string());
                    } else if let Some(data) = line.strip_prefix("data:") {
                        message.data.push_str(data.trim_start());
                    }
                }
                if !message.data.is_empty() {
                    return message;
                }
                continue;
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("a message in time")
                .expect("read")
                .expect("stream still open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test]
async fn since_resumes_from_the_log_with_the_history_filters() {
    let app = spawn_app().await;
    let a = app.org_key("org-a").await;
    let b = app.org_key("org-b").await;
    let start = publish(&app, &a, json!({"eventType": "custom.start", "data": {}})).await;
    let mut wanted = Vec::new();
    for i in 0..3 {
        wanted.push(
            publish(
                &app,
                &a,
                json!({"eventType": "hl7.received", "messageType": "ADT^A01",
                "data": {"PID": format!("Doe^Jane^{i}")}}),
            )
            .await,
        );
        publish(
            &app,
            &a,
            json!({"eventType": "hl7.received", "messageType": "ORU^R01", "data": {}}),
        )
        .await;
        publish(
            &app,
            &a,
            json!({"eventType": "fhir.created", "resourceType": "Patient", "data": {}}),
        )
        .await;
        publish(
            &app,
            &b,
            json!({"eventType": "hl7.received", "messageType": "ADT^A01", "data": {}}),
        )
        .await;
    }
    let query = format!("?since={start}&eventType=hl7.*&messageType=ADT%5EA01&view=full");
    let mut stream = SseReader::open(&app, &a, &query, None).await;
    for seq in &wanted {
        let message = stream.next().await;
        assert_eq!(message.id.as_deref(), Some(seq.to_string().as_str()));
        let event: Value = serde_json::from_str(&message.data).expect("json");
        assert_eq!(event["orgId"], "org-a");
        assert!(event["data"]["PID"]
            .as_str()
            .expect("full view has data")
            .starts_with("Doe^Jane"));
    }
    // Then live: the next matching event arrives on the same stream.
    let live = publish(
        &app,
        &a,
        json!({"eventType": "hl7.sent", "messageType": "ADT^A01", "data": {}}),
    )
    .await;
    publish(
        &app,
        &b,
        json!({"eventType": "hl7.sent", "messageType": "ADT^A01", "data": {}}),
    )
    .await;
    assert_eq!(stream.next().await.id, Some(live.to_string()));

    // Last-Event-ID wins over since, and the summary view carries no data.
    let mut stream = SseReader::open(
        &app,
        &a,
        "?since=0&eventType=hl7.received&messageType=ADT%5EA01",
        Some(wanted[1]),
    )
    .await;
    let message = stream.next().await;
    assert_eq!(message.id, Some(wanted[2].to_string()));
    let summary: Value = serde_json::from_str(&message.data).expect("json");
    assert_eq!(summary["summary"], "HL7 ADT^A01 message received");
    assert!(summary.get("data").is_none());
    assert!(!message.data.contains("Jane"));
}

#[tokio::test]
async fn stream_requests_are_checked() {
    let app = spawn_app().await;
    let a = app.org_key("org-a").await;
    let get = |path: &str, key: Option<&str>| {
        let mut request = app.client.get(app.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    let cases = [
        ("/api/events/stream", None, 401),
        ("/api/events/stream?token=sb_wrong", None, 401),
        ("/api/events/stream?orgId=org-b", Some(a.as_str()), 403),
        ("/api/events/stream?view=everything", Some(a.as_str()), 400),
        ("/api/events/stream?since=yesterday", Some(a.as_str()), 400),
        ("/api/events/stream?eventType=HL7", Some(a.as_str()), 400),
        ("/api/events/stream?limit=5", Some(a.as_str()), 400),
    ];
    for (path, key, status) in cases {
        let r = get(path, key).await.expect("request");
        assert_eq!(r.status(), status, "{path}");
        let body: Value = r.json().await.expect("error body");
        assert!(
            body["error"]["message"].as_str().is_some(),
            "{path}: {body}"
        );
    }
    let r = app
        .client
        .get(app.url("/api/events/stream"))
        .bearer_auth(&a)
        .header("Last-Event-ID", "not-a-seq")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
    // ?token= authenticates an EventSource, which cannot send headers.
    let r = get(&format!("/api/events/stream?token={a}"), None)
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    // The stream is documented.
    let doc = app.get_json(&a, "/api/openapi.json").await;
    assert!(doc["paths"].get("/api/events/stream").is_some());
}

#[tokio::test]
async fn shutdown_closes_live_connections_and_drains() {
    let app = spawn_app().await;
    let a = app.org_key("org-a").await;
    let mut clients = super::node::SocketIoClients::start(&app.url(""));
    clients.connected("a1", json!({"token": a})).await;
    let mut stream = SseReader::open(&app, &a, "?since=0", None).await;
    publish(&app, &a, tick(1)).await;
    assert!(stream.next().await.id.is_some());
    tokio::time::timeout(std::time::Duration::from_secs(10), app.stop())
        .await
        .expect("the server drains with a socket and a stream open");
    let gone = clients.disconnected("a1").await;
    // The server's disconnect packet, or the closed transport if the server was gone first.
    assert!(
        gone["reason"] == "io server disconnect" || gone["reason"] == "transport close",
        "{gone}"
    );
    let rest = tokio::time::timeout(WAIT, stream.response.chunk())
        .await
        .expect("the stream ends");
    assert!(matches!(rest, Ok(None) | Err(_)), "the stream ended");
}
