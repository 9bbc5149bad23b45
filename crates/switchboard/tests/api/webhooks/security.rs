//! SSRF: without `webhooks.allowed_networks` the delivery client refuses loopback, private, link-local and
//! metadata addresses after resolving the host, at connect time — IP literals and names alike. No packet is
//! sent to any refused address.

use super::{post_json, publish_custom, subscribe, TestReceiver};
use crate::helpers::{eventually, spawn_app_with, TestApp};
use serde_json::json;

async fn insecure_but_not_local() -> TestApp {
    spawn_app_with(|c| {
        c.webhooks.allow_insecure = true;
        c.webhooks.allowed_networks = Vec::new();
        c.webhooks.poll_interval_ms = 200;
    })
    .await
}

#[tokio::test]
async fn private_and_metadata_addresses_are_refused_at_connect_time() {
    let app = insecure_but_not_local().await;
    let receiver = TestReceiver::start().await;
    let key = app.org_key("org-a").await;
    let port = receiver.addr.port();
    let targets = [
        (format!("http://127.0.0.1:{port}/x"), "loopback"),
        (format!("http://localhost:{port}/x"), "loopback"),
        (format!("http://[::1]:{port}/x"), "loopback"),
        ("http://10.0.0.1/x".to_string(), "private"),
        (
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "metadata",
        ),
        ("http://100.64.0.1/x".to_string(), "CGNAT"),
        (format!("http://[::ffff:127.0.0.1]:{port}/x"), "loopback"),
    ];
    for (url, reason) in &targets {
        let sub = subscribe(
            &app,
            &key,
            json!({"name": "ssrf", "url": url, "events": ["custom.ssrf"]}),
        )
        .await;
        let id = sub["id"].as_str().expect("id");
        let (status, test) =
            post_json(&app, &key, &format!("/api/webhooks/{id}/test"), &json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(test["success"], false, "{url}");
        let error = test["error"].as_str().expect("error");
        assert!(
            error.contains("refused to connect") && error.contains(reason),
            "{url}: {error}"
        );
    }
    // Deliveries fail the same way and are logged with the reason.
    publish_custom(&app, &key, "custom.ssrf", json!({})).await;
    let subs = app.get_json(&key, "/api/webhooks").await;
    let first = subs[0]["id"].as_str().expect("id").to_string();
    eventually("the refused attempt is logged", || async {
        let log = app
            .get_json(&key, &format!("/api/webhooks/{first}/deliveries"))
            .await;
        log[0]["attemptLog"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("loopback"))
    })
    .await;
    assert!(
        receiver.received().is_empty(),
        "nothing reached the local receiver"
    );
}

#[tokio::test]
async fn allowed_networks_open_only_what_they_name() {
    let app = spawn_app_with(|c| {
        c.webhooks.allow_insecure = true;
        c.webhooks.allowed_networks = vec!["127.0.0.2/32".into()];
    })
    .await;
    let receiver = TestReceiver::start().await;
    let key = app.org_key("org-a").await;
    let sub = subscribe(
        &app,
        &key,
        json!({"name": "x", "url": receiver.url("/x"), "events": ["**"]}),
    )
    .await;
    let id = sub["id"].as_str().expect("id");
    let (_, test) = post_json(&app, &key, &format!("/api/webhooks/{id}/test"), &json!({})).await;
    assert_eq!(test["success"], false, "127.0.0.1 is outside 127.0.0.2/32");
    let inside = TestReceiver::start_on("127.0.0.2:0").await;
    let r = app
        .client
        .put(app.url(&format!("/api/webhooks/{id}")))
        .bearer_auth(&key)
        .json(&json!({"url": inside.url("/x")}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    let (_, test) = post_json(&app, &key, &format!("/api/webhooks/{id}/test"), &json!({})).await;
    assert_eq!(test["success"], true, "{test}");
    assert!(receiver.received().is_empty());
}
