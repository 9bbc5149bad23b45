//! The OpenAPI document is generated from the code; the checked-in copy must match it.

use crate::helpers::spawn_app;

#[tokio::test]
async fn checked_in_openapi_document_is_current() {
    let generated = switchboard::api::openapi::document();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).expect("write docs/openapi.json");
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/openapi.json is stale: run `cargo run -- openapi > docs/openapi.json` (or UPDATE_OPENAPI=1 cargo test)"
    );
    let app = spawn_app().await;
    let served: serde_json::Value = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let expected: serde_json::Value = serde_json::from_str(&generated).expect("json");
    assert_eq!(served, expected);
    for route in [
        "/api/events",
        "/api/events/{id}",
        "/api/events/export",
        "/api/keys",
        "/api/keys/{id}",
        "/api/audit",
        "/health/ready",
        "/metrics",
    ] {
        assert!(
            served["paths"].get(route).is_some(),
            "{route} is documented"
        );
    }
}
