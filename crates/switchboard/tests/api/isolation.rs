//! Tenants are walls: an org key never reads, exports, fetches or publishes another org's events.

use crate::helpers::spawn_app;
use serde_json::{json, Value};

#[tokio::test]
async fn org_keys_see_only_their_own_org() {
    let app = spawn_app().await;
    let a = app.org_key("org-a").await;
    let b = app.org_key("org-b").await;
    let r = app
        .publish(
            &b,
            &json!({"eventType": "custom.private", "data": {"secret": "b-only"}}),
        )
        .await;
    let b_event: Value = r.json().await.expect("json");
    app.publish(
        &a,
        &json!({"eventType": "custom.private", "data": {"secret": "a-only"}}),
    )
    .await;

    let page = app.get_json(&a, "/api/events").await;
    let events = page["events"].as_array().expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["orgId"], "org-a");

    let r = app.get(&a, "/api/events?orgId=org-b").await;
    assert_eq!(r.status(), 403);
    let r = app
        .get(
            &a,
            &format!("/api/events/{}", b_event["id"].as_str().expect("id")),
        )
        .await;
    assert_eq!(
        r.status(),
        404,
        "another org's event does not exist for this key"
    );

    let export = app
        .get(&a, "/api/events/export?format=ndjson")
        .await
        .text()
        .await
        .expect("text");
    assert!(export.contains("a-only") && !export.contains("b-only"));
    let r = app.get(&a, "/api/events/export?orgId=org-b").await;
    assert_eq!(r.status(), 403);

    let r = app
        .publish(
            &a,
            &json!({"eventType": "custom.x", "orgId": "org-b", "data": {}}),
        )
        .await;
    assert_eq!(r.status(), 403);
    let page = app.get_json(&b, "/api/events").await;
    assert_eq!(
        page["events"].as_array().expect("events").len(),
        1,
        "nothing was published into org-b"
    );

    let r = app.get(&a, "/api/audit?orgId=org-b").await;
    assert_eq!(r.status(), 403);
    let audit = app.get_json(&a, "/api/audit").await;
    assert!(audit
        .as_array()
        .expect("rows")
        .iter()
        .all(|row| row["orgId"] == "org-a"));

    let keys = app.get_json(&a, "/api/keys").await;
    assert!(keys
        .as_array()
        .expect("keys")
        .iter()
        .all(|k| k["orgId"] == "org-a"));
}

#[tokio::test]
async fn admin_sees_every_org_and_must_name_one_to_publish() {
    let app = spawn_app().await;
    let a = app.org_key("org-a").await;
    let b = app.org_key("org-b").await;
    app.publish(&a, &json!({"eventType": "custom.x", "data": {}}))
        .await;
    app.publish(&b, &json!({"eventType": "custom.x", "data": {}}))
        .await;
    let admin = app.admin_token.clone();
    let all = app.get_json(&admin, "/api/events").await;
    assert_eq!(all["events"].as_array().expect("events").len(), 2);
    let only_b = app.get_json(&admin, "/api/events?orgId=org-b").await;
    assert_eq!(only_b["events"].as_array().expect("events").len(), 1);
    let r = app
        .publish(&admin, &json!({"eventType": "custom.x", "data": {}}))
        .await;
    assert_eq!(r.status(), 400);
    let r = app
        .publish(
            &admin,
            &json!({"eventType": "custom.x", "orgId": "org-c", "data": {}}),
        )
        .await;
    assert_eq!(r.status(), 201);
}
