//! Webhook tests: a local axum `TestReceiver` on 127.0.0.1:0 captures deliveries; helpers create subscriptions
//! and verify signatures with the independent `standardwebhooks` package (Python).

mod api;
mod backoff;
mod delivery;
mod kill;
mod security;

use crate::helpers::{spawn_app_with, TestApp};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard::Config;
use tokio_util::sync::CancellationToken;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("json body")
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }
}

/// How a path answers.
#[derive(Debug, Clone)]
pub struct Behaviour {
    pub status: u16,
    pub delay: Duration,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Behaviour {
    pub fn status(status: u16) -> Self {
        Behaviour {
            status,
            delay: Duration::ZERO,
            headers: Vec::new(),
            body: "ok".into(),
        }
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    behaviours: Mutex<HashMap<String, Behaviour>>,
}

/// A local webhook receiver; every path answers 200 unless told otherwise.
pub struct TestReceiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
    stop: CancellationToken,
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let behaviour = state
        .behaviours
        .lock()
        .expect("lock")
        .get(&path)
        .cloned()
        .unwrap_or_else(|| Behaviour::status(200));
    state.received.lock().expect("lock").push(Received {
        path,
        at: Instant::now(),
        headers,
        body,
    });
    if !behaviour.delay.is_zero() {
        tokio::time::sleep(behaviour.delay).await;
    }
    let mut response = (
        StatusCode::from_u16(behaviour.status).expect("status"),
        behaviour.body.clone(),
    )
        .into_response();
    for (name, value) in behaviour.headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("header value"));
    }
    response
}

impl TestReceiver {
    pub async fn start() -> TestReceiver {
        Self::start_on("127.0.0.1:0").await
    }

    pub async fn start_on(addr: &str) -> TestReceiver {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&state));
        let stop = CancellationToken::new();
        let graceful = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(graceful.cancelled_owned())
                .await;
        });
        TestReceiver { addr, state, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn set(&self, path: &str, behaviour: Behaviour) {
        self.state
            .behaviours
            .lock()
            .expect("lock")
            .insert(path.to_string(), behaviour);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }

    pub fn received_on(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until `path` got at least `n` requests, or panics after `within`.
    pub async fn wait_for(&self, path: &str, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received_on(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{path}: got {} of {n} requests within {within:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Lets the delivery client reach local receivers (tests only).
pub fn allow_local(config: &mut Config) {
    config.webhooks.allow_insecure = true;
    config.webhooks.allowed_networks = vec!["127.0.0.0/8".into(), "::1/128".into()];
    config.webhooks.poll_interval_ms = 200;
}

pub async fn webhook_app() -> TestApp {
    spawn_app_with(allow_local).await
}

/// Creates a subscription and returns the answer (with its secret).
pub async fn subscribe(app: &TestApp, key: &str, body: Value) -> Value {
    let r = app
        .client
        .post(app.url("/api/webhooks"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("create webhook");
    let status = r.status();
    let answer: Value = r.json().await.expect("json");
    assert_eq!(status, 201, "create webhook: {answer}");
    answer
}

pub async fn post_json(app: &TestApp, key: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(path))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("post");
    let status = r.status().as_u16();
    let text = r.text().await.expect("text");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub async fn publish_custom(app: &TestApp, key: &str, event_type: &str, data: Value) -> Value {
    let r = app
        .publish(key, &json!({"eventType": event_type, "data": data}))
        .await;
    assert_eq!(r.status(), 201);
    r.json().await.expect("json")
}

/// Checks a delivery with the Standard Webhooks reference library (Python) and by recomputing the seed's
/// `X-EHRConnect-Signature` header.
pub fn verify_signatures(secret: &str, received: &Received) {
    verify_signatures_with(secret, received, "x-ehrconnect-signature");
}

/// As [`verify_signatures`], with the seed-style signature read from `seed_header` (the previous secret's
/// signature travels in `X-EHRConnect-Signature-Previous` during a rotation).
pub fn verify_signatures_with(secret: &str, received: &Received, seed_header: &str) {
    let headers: HashMap<String, String> = received
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().expect("ascii").to_string()))
        .collect();
    let body = std::str::from_utf8(&received.body).expect("utf8 body");
    let input = json!({"secret": secret, "headers": headers, "body": body}).to_string();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/py/verify_webhook.py"
    );
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test.sh installs tests/requirements.txt)");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("python");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "standardwebhooks says: {said}");
    assert_eq!(said.trim(), "verified");

    // The seed's header: sha256=<hex HMAC-SHA256 of the body>, keyed with the decoded whsec_ secret.
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};
    let key = match secret.strip_prefix("whsec_") {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64 secret"),
        None => secret.as_bytes().to_vec(),
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
    mac.update(&received.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(received.header(seed_header), expected);
}
