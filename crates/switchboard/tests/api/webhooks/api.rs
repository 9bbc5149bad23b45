//! The subscription API: create, read, update, delete, secrets, validation errors, and org walls.

use super::{post_json, subscribe, webhook_app, TestReceiver};
use crate::helpers::spawn_app;
use serde_json::{json, Value};

#[tokio::test]
async fn subscriptions_round_trip_and_secrets_stay_out_of_lists() {
    let app = webhook_app().await;
    let key = app.org_key("org-a").await;
    let created = subscribe(
        &app,
        &key,
        json!({
            "name": "adt feed", "url": "http://127.0.0.1:9/hook", "events": ["hl7.*", "fhir.created"],
            "filters": {"messageTypes": ["ADT^A01"], "expression": "$.data.pid[?@.sex == 'F']"},
            "retryConfig": {"maxAttempts": 3, "backoffType": "linear", "initialDelay": 500},
            "headers": {"X-Team": "lab"}, "rateLimit": 50
        }),
    )
    .await;
    let id = created["id"].as_str().expect("id");
    let secret = created["secret"].as_str().expect("secret on create");
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created["orgId"], "org-a");
    assert_eq!(created["active"], true);
    assert_eq!(created["retryConfig"]["backoffType"], "linear");

    let list = app.get_json(&key, "/api/webhooks").await;
    assert_eq!(list.as_array().expect("array").len(), 1);
    assert!(list[0].get("secret").is_none(), "no secret in lists");
    let one = app.get_json(&key, &format!("/api/webhooks/{id}")).await;
    assert!(one.get("secret").is_none(), "no secret in reads");
    assert_eq!(one["filters"]["messageTypes"][0], "ADT^A01");
    let shown = app
        .get_json(&key, &format!("/api/webhooks/{id}/secret"))
        .await;
    assert_eq!(shown["secret"], secret);

    // Partial update; rateLimit null removes the limit.
    let r = app
        .client
        .put(app.url(&format!("/api/webhooks/{id}")))
        .bearer_auth(&key)
        .json(&json!({"name": "renamed", "active": false, "rateLimit": null}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    let updated: Value = r.json().await.expect("json");
    assert_eq!(updated["name"], "renamed");
    assert_eq!(updated["active"], false);
    assert!(updated.get("rateLimit").is_none());
    assert_eq!(
        updated["events"],
        json!(["hl7.*", "fhir.created"]),
        "untouched fields stay"
    );

    // Rotation: a new secret, the old one still listed as signing for 24 h.
    let (status, rotated) = post_json(
        &app,
        &key,
        &format!("/api/webhooks/{id}/secret/rotate"),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert_ne!(rotated["secret"], secret);
    assert_eq!(rotated["previousSecret"], secret);
    assert!(rotated["previousSecretExpiresAt"].is_string());

    let r = app
        .client
        .delete(app.url(&format!("/api/webhooks/{id}")))
        .bearer_auth(&key)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.get(&key, &format!("/api/webhooks/{id}")).await.status(),
        404
    );
    let audit = app
        .get_json(&app.admin_token, "/api/audit?orgId=org-a")
        .await;
    let actions: Vec<&str> = audit
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    for action in [
        "webhook.create",
        "webhook.update",
        "webhook.secret.rotate",
        "webhook.delete",
    ] {
        assert!(actions.contains(&action), "{action} audited: {actions:?}");
    }
}

#[tokio::test]
async fn bad_subscriptions_are_400_with_the_reason() {
    let app = spawn_app().await; // allow_insecure is off here
    let key = app.org_key("org-a").await;
    let base = json!({"name": "x", "url": "https://example.com/hook", "events": ["hl7.received"]});
    let cases = [
        (json!({"url": "http://example.com/hook"}), "https"),
        (json!({"url": "not a url"}), "url"),
        (
            json!({"url": "https://user:pw@example.com/"}),
            "user information",
        ),
        (json!({"events": ["hl7.unknown"]}), "unknown event type"),
        (json!({"events": ["HL7.*"]}), "pattern"),
        (json!({"events": []}), "events"),
        (json!({"filters": {"expression": "$.data["}}), "JSONPath"),
        (
            json!({"headers": {"webhook-signature": "forged"}}),
            "cannot be overridden",
        ),
        (json!({"headers": {"bad header": "x"}}), "header name"),
        (json!({"secret": "short"}), "secret"),
        (json!({"retryConfig": {"maxAttempts": 99}}), "maxAttempts"),
        (
            json!({"retryConfig": {"backoffType": "fibonacci"}}),
            "unknown variant",
        ),
        (json!({"rateLimit": -3}), "rateLimit"),
        (json!({"name": ""}), "name"),
        (json!({"surprise": true}), "unknown field"),
    ];
    for (patch, reason) in cases {
        let mut body = base.clone();
        for (k, v) in patch.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, answer) = post_json(&app, &key, "/api/webhooks", &body).await;
        assert_eq!(status, 400, "{body} → {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(reason),
            "{body}: '{message}' should mention '{reason}'"
        );
    }
    let (status, _) = post_json(
        &app,
        &key,
        "/api/webhooks",
        &json!({"name": "x", "events": ["**"]}),
    )
    .await;
    assert_eq!(status, 400, "url is required");
    // An admin key must say which org.
    let (status, answer) = post_json(&app, &app.admin_token, "/api/webhooks", &base).await;
    assert_eq!(status, 400, "{answer}");
    // A server that still answers after all that.
    assert_eq!(app.get(&key, "/api/webhooks").await.status(), 200);
}

#[tokio::test]
async fn org_keys_never_see_other_orgs_subscriptions_or_deliveries() {
    let app = webhook_app().await;
    let receiver = TestReceiver::start().await;
    let key_a = app.org_key("org-a").await;
    let key_b = app.org_key("org-b").await;
    let sub = subscribe(
        &app,
        &key_a,
        json!({"name": "a", "url": receiver.url("/a"), "events": ["**"]}),
    )
    .await;
    let id = sub["id"].as_str().expect("id");
    super::publish_custom(&app, &key_a, "custom.x", json!({"n": 1})).await;
    super::publish_custom(&app, &key_b, "custom.x", json!({"n": 2})).await;
    let got = receiver
        .wait_for("/a", 1, std::time::Duration::from_secs(10))
        .await;
    assert_eq!(got[0].json()["orgId"], "org-a");

    for path in [
        format!("/api/webhooks/{id}"),
        format!("/api/webhooks/{id}/secret"),
        format!("/api/webhooks/{id}/deliveries"),
    ] {
        assert_eq!(app.get(&key_b, &path).await.status(), 404, "{path}");
    }
    for path in [
        format!("/api/webhooks/{id}/test"),
        format!("/api/webhooks/{id}/secret/rotate"),
        format!("/api/webhooks/{id}/redrive"),
    ] {
        let (status, _) = post_json(&app, &key_b, &path, &json!({})).await;
        assert_eq!(status, 404, "{path}");
    }
    let r = app
        .client
        .put(app.url(&format!("/api/webhooks/{id}")))
        .bearer_auth(&key_b)
        .json(&json!({"url": receiver.url("/stolen")}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 404);
    let r = app
        .client
        .delete(app.url(&format!("/api/webhooks/{id}")))
        .bearer_auth(&key_b)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 404);
    assert_eq!(app.get_json(&key_b, "/api/webhooks").await, json!([]));
    assert_eq!(
        app.get(&key_b, "/api/webhooks?orgId=org-a").await.status(),
        403
    );
    assert_eq!(app.get(&key_b, "/api/dlq?orgId=org-a").await.status(), 403);
    let (status, _) = post_json(
        &app,
        &key_b,
        "/api/webhooks",
        &json!({"orgId": "org-a", "name": "x", "url": receiver.url("/x"), "events": ["**"]}),
    )
    .await;
    assert_eq!(status, 403, "an org key cannot subscribe to another org");
    // The owner sees its delivery log; the admin sees every org's subscriptions.
    let log = app
        .get_json(&key_a, &format!("/api/webhooks/{id}/deliveries"))
        .await;
    assert!(!log.as_array().expect("array").is_empty());
    let all = app.get_json(&app.admin_token, "/api/webhooks").await;
    assert_eq!(all.as_array().expect("array").len(), 1);
    assert!(receiver.received_on("/stolen").is_empty());
}
