//! Socket.IO with the npm `socket.io-client` v4: org and resource rooms, tenant walls, PHI-free payloads,
//! refused tokens, filters and limits.

use super::node::SocketIoClients;
use crate::helpers::{spawn_app, spawn_app_with, TestApp};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const PAYLOAD_FIELDS: [&str; 8] = [
    "id",
    "seq",
    "eventType",
    "timestamp",
    "messageType",
    "resourceType",
    "resourceId",
    "summary",
];

fn assert_phi_free(payload: &Value) {
    let object = payload.as_object().expect("payload is an object");
    for key in object.keys() {
        assert!(
            PAYLOAD_FIELDS.contains(&key.as_str()),
            "unexpected field {key} in {payload}"
        );
    }
    assert!(payload.get("data").is_none() && payload.get("metadata").is_none());
}

async fn publish(app: &TestApp, key: &str, body: Value) -> Value {
    let r = app.publish(key, &body).await;
    assert_eq!(r.status(), 201, "publish {body}");
    r.json().await.expect("json")
}

fn fhir(kind: &str, resource_id: &str) -> Value {
    json!({"eventType": kind, "resourceType": "Patient", "resourceId": resource_id,
           "data": {"resourceType": "Patient", "name": [{"family": "Doe", "given": ["Jane"]}]}})
}

#[tokio::test]
async fn org_room_delivers_phi_free_summaries_to_that_org_only() {
    // Without the transformer, whose transform.* events would interleave with the ones asserted here.
    let app = spawn_app_with(|c| {
        c.listeners.transformer = false;
        c.listeners.task_creator = false;
    })
    .await;
    let a = app.org_key("org-a").await;
    let b = app.org_key("org-b").await;
    let mut clients = SocketIoClients::start(&app.url(""));
    clients.connected("a1", json!({"token": a})).await;
    let polled = clients
        .connect_with("a2", json!({"token": a}), json!(["polling"]))
        .await;
    assert_eq!(
        polled["type"], "connect",
        "long-polling works too: {polled}"
    );
    clients.connected("b1", json!({"token": b})).await;

    let hl7 = publish(
        &app,
        &a,
        json!({"eventType": "hl7.received", "messageType": "ADT^A01",
        "messageControlId": "MSG1", "data": {"PID": "Doe^Jane"}}),
    )
    .await;
    for client in ["a1", "a2"] {
        let got = clients.next_event(client).await;
        assert_eq!(got["name"], "hl7.received");
        let payload = &got["payload"];
        assert_phi_free(payload);
        assert_eq!(payload["summary"], "HL7 ADT^A01 message received");
        assert_eq!(payload["id"], hl7["id"]);
        assert_eq!(payload["seq"], hl7["seq"]);
        assert_eq!(payload["messageType"], "ADT^A01");
        assert_eq!(payload["timestamp"], hl7["timestamp"]);
    }

    // The seed's appointment events are published as custom types and arrive the same way.
    publish(
        &app,
        &a,
        json!({"eventType": "custom.appointment.created", "resourceType": "Appointment",
        "resourceId": "ap-1", "data": {"patient": "Jane Doe"}}),
    )
    .await;
    let got = clients.next_event("a1").await;
    assert_eq!(got["name"], "custom.appointment.created");
    assert_eq!(got["payload"]["resourceId"], "ap-1");
    assert_eq!(got["payload"]["summary"], "custom.appointment.created");
    assert!(!got.to_string().contains("Jane"));

    publish(&app, &a, fhir("fhir.created", "p1")).await;
    let got = clients.next_event("a1").await;
    assert_eq!(got["payload"]["summary"], "Patient created");
    assert_phi_free(&got["payload"]);

    // org-b saw none of that: the first thing it receives is its own marker.
    publish(&app, &b, json!({"eventType": "custom.marker", "data": {}})).await;
    let first = clients.next_event("b1").await;
    assert_eq!(first["name"], "custom.marker");
    assert_eq!(first["payload"]["eventType"], "custom.marker");
}

#[tokio::test]
async fn resource_rooms_deliver_that_resource_once_and_never_across_orgs() {
    let app = spawn_app().await;
    let a = app.org_key("org-a").await;
    let b = app.org_key("org-b").await;
    let mut clients = SocketIoClients::start(&app.url(""));
    // `events: []`: no org-wide feed, only subscribed resources.
    clients
        .connected("chart", json!({"token": a, "events": []}))
        .await;
    clients.connected("all", json!({"token": a})).await;
    clients
        .connected("other", json!({"token": b, "events": []}))
        .await;

    let ack = clients
        .emit(
            "chart",
            "subscribe",
            json!({"resourceType": "Patient", "resourceId": "p1"}),
        )
        .await;
    assert_eq!(ack, json!({"ok": true, "room": "org:org-a:Patient:p1"}));
    let ack = clients
        .emit("all", "subscribe", json!({"room": "org:org-a:Patient:p1"}))
        .await;
    assert_eq!(ack["ok"], true);
    let ack = clients
        .emit(
            "other",
            "subscribe",
            json!({"resourceType": "Patient", "resourceId": "p1"}),
        )
        .await;
    assert_eq!(
        ack["room"], "org:org-b:Patient:p1",
        "same id, its own org's room"
    );

    publish(&app, &a, fhir("fhir.updated", "p2")).await;
    let p1 = publish(&app, &a, fhir("fhir.updated", "p1")).await;
    let got = clients.next_event("chart").await;
    assert_eq!(got["payload"]["resourceId"], "p1", "p2 is not in its rooms");
    assert_eq!(got["payload"]["seq"], p1["seq"]);
    assert_eq!(got["payload"]["summary"], "Patient updated");
    assert_phi_free(&got["payload"]);

    // A socket in both the org room and the resource room gets each event once.
    publish(&app, &a, json!({"eventType": "custom.marker", "data": {}})).await;
    clients.event_named("all", "custom.marker").await;
    let seen: Vec<Value> = clients
        .events_of("all", Duration::from_millis(200))
        .await
        .iter()
        .map(|l| l["payload"]["seq"].clone())
        .collect();
    assert_eq!(seen, vec![json!(1), p1["seq"].clone()], "p2, then p1 once");

    // org-b's subscriber to its own Patient/p1 saw nothing of org-a's Patient/p1.
    let own = publish(&app, &b, fhir("fhir.updated", "p1")).await;
    let got = clients.next_event("other").await;
    assert_eq!(got["payload"]["seq"], own["seq"]);

    // Unsubscribe stops delivery.
    let ack = clients
        .emit(
            "chart",
            "unsubscribe",
            json!({"resourceType": "Patient", "resourceId": "p1"}),
        )
        .await;
    assert_eq!(ack["ok"], true);
    clients
        .emit(
            "chart",
            "subscribe",
            json!({"resourceType": "Patient", "resourceId": "p9"}),
        )
        .await;
    publish(&app, &a, fhir("fhir.updated", "p1")).await;
    publish(&app, &a, fhir("fhir.updated", "p9")).await;
    let got = clients.next_event("chart").await;
    assert_eq!(got["payload"]["resourceId"], "p9");
}

#[tokio::test]
async fn another_orgs_rooms_cannot_be_joined() {
    let app = spawn_app().await;
    let a = app.org_key("org-a").await;
    let b = app.org_key("org-b").await;
    let mut clients = SocketIoClients::start(&app.url(""));
    clients.connected("b1", json!({"token": b})).await;
    for attempt in [
        json!({"room": "org:org-a"}),
        json!({"room": "org:org-a:Patient:p1"}),
        json!({"orgId": "org-a", "resourceType": "Patient", "resourceId": "p1"}),
    ] {
        let ack = clients.emit("b1", "subscribe", attempt.clone()).await;
        assert_eq!(ack["ok"], false, "{attempt}");
        assert_eq!(ack["error"]["code"], "forbidden", "{attempt}: {ack}");
        assert!(ack["error"]["message"]
            .as_str()
            .expect("message")
            .contains("org-a"));
    }
    for bad in [
        json!("Patient:p1"),
        json!({"resourceType": "Pat:ient", "resourceId": "1"}),
        json!({}),
    ] {
        let ack = clients.emit("b1", "subscribe", bad.clone()).await;
        assert_eq!(ack["error"]["code"], "bad_request", "{bad}: {ack}");
    }
    let ack = clients.emit("b1", "join-everything", json!({})).await;
    assert_eq!(ack["error"]["code"], "bad_request");

    publish(&app, &a, fhir("fhir.updated", "p1")).await;
    publish(&app, &b, json!({"eventType": "custom.marker", "data": {}})).await;
    let first = clients.next_event("b1").await;
    assert_eq!(
        first["name"], "custom.marker",
        "org-a's event never arrived"
    );
}

#[tokio::test]
async fn bad_tokens_and_bad_auth_are_refused_with_a_reason() {
    let app = spawn_app().await;
    let a = app.org_key("org-a").await;
    let mut clients = SocketIoClients::start(&app.url(""));
    let cases = [
        (json!({}), "missing API key"),
        (json!({"token": ""}), "missing API key"),
        (
            json!({"token": "sb_not-a-real-key"}),
            "unknown or revoked API key",
        ),
        (json!({"token": 42}), "auth.token must be a string"),
        (
            json!({"token": a, "orgId": "org-b"}),
            "cannot see org 'org-b'",
        ),
        (
            json!({"token": a, "events": ["HL7.*"]}),
            "bad event type pattern",
        ),
        (
            json!({"token": app.admin_token}),
            "admin key must name the org",
        ),
    ];
    for (i, (auth, reason)) in cases.iter().enumerate() {
        let outcome = clients.connect(&format!("c{i}"), auth.clone()).await;
        assert_eq!(outcome["type"], "connect_error", "{auth}: {outcome}");
        let message = outcome["message"].as_str().expect("message");
        assert!(message.contains(reason), "{auth}: {message}");
    }
    // An admin key that names an org watches that org.
    clients
        .connected("admin", json!({"token": app.admin_token, "orgId": "org-a"}))
        .await;
    publish(&app, &a, json!({"eventType": "custom.marker", "data": {}})).await;
    let got = clients.next_event("admin").await;
    assert_eq!(got["name"], "custom.marker");
}

#[tokio::test]
async fn an_events_filter_narrows_the_org_feed() {
    let app = spawn_app().await;
    let a = app.org_key("org-a").await;
    let mut clients = SocketIoClients::start(&app.url(""));
    clients
        .connected("hl7-screen", json!({"token": a, "events": ["hl7.*"]}))
        .await;
    publish(&app, &a, fhir("fhir.created", "p1")).await;
    publish(&app, &a, json!({"eventType": "custom.x", "data": {}})).await;
    publish(
        &app,
        &a,
        json!({"eventType": "hl7.error", "messageType": "ORU^R01", "data": {}}),
    )
    .await;
    let got = clients.next_event("hl7-screen").await;
    assert_eq!(got["name"], "hl7.error");
}

#[tokio::test]
async fn a_connection_over_its_rate_misses_events_and_is_told_how_many() {
    let app = spawn_app_with(|c| c.realtime.max_events_per_sec = 5).await;
    let a = app.org_key("org-a").await;
    let mut clients = SocketIoClients::start(&app.url(""));
    clients.connected("a1", json!({"token": a})).await;
    let total: u64 = 40;
    for i in 0..total {
        publish(
            &app,
            &a,
            json!({"eventType": "custom.tick", "data": {"i": i}}),
        )
        .await;
    }
    let notice = clients.event_named("a1", "switchboard:dropped").await;
    assert!(
        notice["payload"]["count"].as_u64().expect("count") >= 1,
        "{notice}"
    );
    // Every event is either delivered or counted in a notice.
    let mut delivered = 0;
    let mut missed = notice["payload"]["count"].as_u64().expect("count");
    for line in clients.events_of("a1", Duration::from_millis(1500)).await {
        match line["name"].as_str() {
            Some("custom.tick") => delivered += 1,
            Some("switchboard:dropped") => {
                missed += line["payload"]["count"].as_u64().expect("count")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(delivered < total, "the rate limit applied: {delivered}");
    assert_eq!(delivered + missed, total);
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            "switchboard_realtime_dropped_total{transport=\"socketio\",reason=\"rate_limited\"}"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn client_messages_are_rate_limited() {
    let app = spawn_app_with(|c| c.realtime.max_inbound_per_sec = 3).await;
    let a = app.org_key("org-a").await;
    let mut clients = SocketIoClients::start(&app.url(""));
    clients.connected("a1", json!({"token": a})).await;
    for i in 0..10 {
        clients
            .send(json!({"op": "emit", "client": "a1", "event": "subscribe",
                "data": {"resourceType": "Patient", "resourceId": format!("p{i}")}, "ref": 1000 + i}))
            .await;
    }
    let mut codes = BTreeSet::new();
    let mut ok = 0;
    for i in 0..10 {
        let reference = 1000 + i;
        let line = clients.ack(reference).await;
        if line["response"]["ok"] == true {
            ok += 1;
        } else {
            codes.insert(
                line["response"]["error"]["code"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
        }
    }
    assert!((3..10).contains(&ok), "{ok} accepted");
    assert_eq!(codes, BTreeSet::from(["rate_limited".to_string()]));
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused() {
    let app = spawn_app_with(|c| c.realtime.max_connections = 1).await;
    let a = app.org_key("org-a").await;
    let mut clients = SocketIoClients::start(&app.url(""));
    clients.connected("first", json!({"token": a})).await;
    let outcome = clients.connect("second", json!({"token": a})).await;
    assert_eq!(outcome["type"], "connect_error");
    assert!(outcome["message"]
        .as_str()
        .expect("message")
        .contains("too many live connections"));
    let r = app.get(&a, "/api/events/stream").await;
    assert_eq!(r.status(), 503, "SSE streams count too");
    clients
        .send(json!({"op": "close", "client": "first"}))
        .await;
    let mut connected = false;
    for i in 0..50 {
        let outcome = clients
            .connect(&format!("retry{i}"), json!({"token": a}))
            .await;
        if outcome["type"] == "connect" {
            connected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(connected, "the slot is freed when a client leaves");
}
