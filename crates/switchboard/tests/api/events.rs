//! The event API: publishing, validation, idempotency, history filters, pagination, export, audit and metrics.

use crate::helpers::{eventually, spawn_app, spawn_app_with};
use serde_json::{json, Value};
use std::collections::HashSet;

#[tokio::test]
async fn publish_returns_the_committed_event() {
    let app = spawn_app().await;
    let key = app.org_key("org-a").await;
    let r = app
        .publish(&key, &json!({"eventType": "custom.lab.critical", "data": {"value": 7.2}, "metadata": {"k": "v"}}))
        .await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let event: Value = r.json().await.expect("json");
    assert_eq!(event["eventType"], "custom.lab.critical");
    assert_eq!(event["orgId"], "org-a");
    assert_eq!(event["source"], "api");
    assert_eq!(event["specVersion"], "1.0");
    assert_eq!(event["data"], json!({"value": 7.2}));
    assert_eq!(event["metadata"], json!({"k": "v"}));
    assert!(event["seq"].as_i64().expect("seq") >= 1);
    let id = uuid::Uuid::parse_str(event["id"].as_str().expect("id")).expect("uuid");
    assert_eq!(id.get_version_num(), 7);
    assert!(event["timestamp"].as_str().expect("ts").ends_with('Z'));
    assert_eq!(location, format!("/api/events/{id}"));
    let fetched = app.get_json(&key, &location).await;
    assert_eq!(fetched, event);
}

#[tokio::test]
async fn invalid_events_get_precise_errors() {
    let app = spawn_app_with(|c| c.hub.max_event_bytes = 4096).await;
    let key = app.org_key("org-a").await;
    let cases = [
        (
            json!({"eventType": "hl7.unknown", "data": {}}),
            400,
            "invalid_event_type",
        ),
        (
            json!({"eventType": "custom.Bad Name", "data": {}}),
            400,
            "invalid_event_type",
        ),
        (
            json!({"eventType": "hl7.received", "data": {}}),
            400,
            "invalid_event",
        ),
        (
            json!({"eventType": "fhir.created", "data": {}}),
            400,
            "invalid_event",
        ),
        (
            json!({"eventType": "custom.x", "data": {}, "surprise": 1}),
            400,
            "invalid_body",
        ),
        (json!({"eventType": "custom.x"}), 400, "invalid_body"),
        (
            json!({"eventType": "custom.x", "data": {}, "metadata": [1]}),
            400,
            "invalid_event",
        ),
        (
            json!({"eventType": "custom.x", "data": "x".repeat(5000)}),
            413,
            "event_too_large",
        ),
    ];
    for (body, status, code) in cases {
        let r = app.publish(&key, &body).await;
        assert_eq!(r.status(), status, "{body}");
        let err: Value = r.json().await.expect("json");
        assert_eq!(err["error"]["code"], code, "{body}: {err}");
        assert!(!err["error"]["message"]
            .as_str()
            .expect("message")
            .is_empty());
    }
    let r = app
        .client
        .post(app.url("/api/events"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{\"eventType\": \"custom.x\", \"data\": {")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.expect("json");
    assert_eq!(err["error"]["code"], "malformed_json");
    let r = app
        .client
        .post(app.url("/api/events"))
        .json(&json!({"eventType": "custom.x", "data": {}}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let r = app
        .publish(
            "sb_not-a-key",
            &json!({"eventType": "custom.x", "data": {}}),
        )
        .await;
    assert_eq!(r.status(), 401);
    // Nothing of the refused events was stored, and the server still serves.
    let page = app.get_json(&key, "/api/events").await;
    assert_eq!(page["events"].as_array().expect("events").len(), 0);
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_parsing() {
    let app = spawn_app_with(|c| {
        c.hub.max_event_bytes = 1024;
        c.http.max_body_bytes = 2048;
    })
    .await;
    let key = app.org_key("org-a").await;
    let r = app
        .publish(
            &key,
            &json!({"eventType": "custom.x", "data": "y".repeat(10_000)}),
        )
        .await;
    assert_eq!(r.status(), 413);
    let err: Value = r.json().await.expect("json");
    assert_eq!(err["error"]["code"], "body_too_large");
}

#[tokio::test]
async fn idempotency_key_returns_the_first_event() {
    let app = spawn_app().await;
    let key = app.org_key("org-a").await;
    let send = |n: i64| {
        app.client
            .post(app.url("/api/events"))
            .bearer_auth(&key)
            .header("Idempotency-Key", "order-42")
            .json(&json!({"eventType": "custom.order.placed", "data": {"n": n}}))
            .send()
    };
    let first = send(1).await.expect("send");
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    let again = send(2).await.expect("send");
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.expect("json");
    assert_eq!(again, first);
    // Concurrent repeats in one batch are also stored once.
    let results = futures::future::join_all((0..20).map(|n| send(100 + n))).await;
    assert!(results
        .iter()
        .all(|r| r.as_ref().is_ok_and(|r| r.status() == 200)));
    let page = app.get_json(&key, "/api/events").await;
    assert_eq!(page["events"].as_array().expect("events").len(), 1);
    // Another org may use the same key independently.
    let other = app.org_key("org-b").await;
    let r = app
        .client
        .post(app.url("/api/events"))
        .bearer_auth(&other)
        .header("Idempotency-Key", "order-42")
        .json(&json!({"eventType": "custom.order.placed", "data": {}}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
}

async fn seed(app: &crate::helpers::TestApp, key: &str) {
    let bodies = [
        json!({"eventType": "hl7.received", "messageType": "ADT^A01", "messageControlId": "M1", "data": {"n": 1}}),
        json!({"eventType": "hl7.error", "messageType": "ORU^R01", "data": {"n": 2}}),
        json!({"eventType": "fhir.created", "resourceType": "Patient", "resourceId": "p1", "data": {"n": 3}}),
        json!({"eventType": "fhir.updated", "resourceType": "Patient", "resourceId": "p1", "data": {"n": 4}}),
        json!({"eventType": "fhir.created", "resourceType": "Observation", "resourceId": "o1", "data": {"n": 5}}),
        json!({"eventType": "transform.failed", "data": {"n": 6}}),
        json!({"eventType": "custom.lab.critical", "data": {"n": 7}}),
    ];
    for body in bodies {
        assert_eq!(app.publish(key, &body).await.status(), 201);
    }
}

fn ns(page: &Value) -> Vec<i64> {
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["data"]["n"].as_i64().expect("n"))
        .collect()
}

#[tokio::test]
async fn history_filters_by_type_resource_message_and_source() {
    let app = spawn_app_with(|c| {
        // The transformer and task creator would add their own events to this org's history.
        c.listeners.transformer = false;
        c.listeners.task_creator = false;
    })
    .await;
    let key = app.org_key("org-a").await;
    seed(&app, &key).await;
    let q = |path: &'static str| app.get_json(&key, path);
    assert_eq!(ns(&q("/api/events").await), vec![7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(
        ns(&q("/api/events?order=asc").await),
        vec![1, 2, 3, 4, 5, 6, 7]
    );
    assert_eq!(ns(&q("/api/events?eventType=hl7.*").await), vec![2, 1]);
    assert_eq!(
        ns(&q("/api/events?eventType=*.error,*.failed").await),
        vec![6, 2]
    );
    assert_eq!(
        ns(&q("/api/events?eventType=fhir.created,custom.**").await),
        vec![7, 5, 3]
    );
    assert_eq!(ns(&q("/api/events?resourceType=Patient").await), vec![4, 3]);
    assert_eq!(
        ns(&q("/api/events?resourceType=Patient&resourceId=p1&eventType=fhir.updated").await),
        vec![4]
    );
    assert_eq!(ns(&q("/api/events?messageType=ADT%5EA01").await), vec![1]);
    assert_eq!(ns(&q("/api/events?source=api&limit=2").await), vec![7, 6]);
    assert_eq!(
        ns(&q("/api/events?source=mllp-server").await),
        Vec::<i64>::new()
    );
    let all = q("/api/events?order=asc").await;
    let third_ts = all["events"][2]["timestamp"]
        .as_str()
        .expect("ts")
        .to_string();
    let from = app
        .get_json(
            &key,
            &format!(
                "/api/events?order=asc&from={}",
                third_ts.replace(':', "%3A")
            ),
        )
        .await;
    // Sequential publishes commit in separate batches, each with its own timestamp.
    assert_eq!(ns(&from), vec![3, 4, 5, 6, 7]);
    let to = app
        .get_json(
            &key,
            &format!("/api/events?order=asc&to={}", third_ts.replace(':', "%3A")),
        )
        .await;
    assert_eq!(ns(&to), vec![1, 2], "to is exclusive");
    for bad in [
        "/api/events?limit=0",
        "/api/events?limit=1001",
        "/api/events?from=yesterday",
        "/api/events?eventType=HL7",
        "/api/events?source=fax",
        "/api/events?order=up",
        "/api/events?cursor=zzz",
        "/api/events?colour=red",
    ] {
        let r = app.get(&key, bad).await;
        assert_eq!(r.status(), 400, "{bad}");
        let err: Value = r.json().await.expect("json");
        assert_eq!(err["error"]["code"], "bad_query", "{bad}");
    }
}

#[tokio::test]
async fn pagination_is_stable_under_concurrent_appends() {
    let app = spawn_app().await;
    let key = app.org_key("org-a").await;
    for n in 0..250 {
        assert_eq!(
            app.publish(&key, &json!({"eventType": "custom.tick", "data": {"n": n}}))
                .await
                .status(),
            201
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut extra = 1000;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/events?limit=40&cursor={c}"),
            None => "/api/events?limit=40".to_string(),
        };
        let page = app.get_json(&key, &path).await;
        seen.extend(ns(&page));
        // New events arrive between pages; they are newer than the first page, so they never show up mid-walk.
        assert_eq!(
            app.publish(
                &key,
                &json!({"eventType": "custom.tick", "data": {"n": extra}})
            )
            .await
            .status(),
            201
        );
        extra += 1;
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let expected: Vec<i64> = (0..250).rev().collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn export_streams_csv_and_ndjson() {
    let app = spawn_app().await;
    let key = app.org_key("org-a").await;
    for n in 0..2500 {
        let data = json!({"n": n, "note": "comma, \"quote\"\nnewline"});
        assert_eq!(
            app.publish(&key, &json!({"eventType": "custom.bulk", "data": data}))
                .await
                .status(),
            201
        );
    }
    let ndjson = app
        .get(&key, "/api/events/export?format=ndjson&order=asc")
        .await;
    assert_eq!(ndjson.status(), 200);
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let text = ndjson.text().await.expect("text");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect();
    assert_eq!(lines.len(), 2500);
    assert!(lines
        .iter()
        .enumerate()
        .all(|(i, e)| e["data"]["n"] == i as i64));
    let csv = app
        .get(&key, "/api/events/export?format=csv&eventType=custom.bulk")
        .await
        .text()
        .await
        .expect("csv");
    assert!(csv.starts_with("seq,id,timestamp,eventType,orgId,source,"));
    // Parse the CSV with quoting rules: 2500 records plus the header.
    let records = parse_csv(&csv);
    assert_eq!(records.len(), 2501);
    let data: Value = serde_json::from_str(&records[1][10]).expect("data column is JSON");
    assert_eq!(data["n"], 2499);
    assert_eq!(data["note"], "comma, \"quote\"\nnewline");
    assert_eq!(
        app.get(&key, "/api/events/export?format=xml")
            .await
            .status(),
        400
    );
}

fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    records
}

#[tokio::test]
async fn every_emission_is_audited_without_data() {
    let app = spawn_app().await;
    let key = app.org_key("org-a").await;
    let mut ids = HashSet::new();
    for n in 0..30 {
        let r = app
            .publish(
                &key,
                &json!({"eventType": "custom.secret", "data": {"ssn": format!("123-45-{n:04}")}}),
            )
            .await;
        let event: Value = r.json().await.expect("json");
        ids.insert(event["id"].as_str().expect("id").to_string());
    }
    let admin = app.admin_token.clone();
    eventually("audit rows for every event", || async {
        let rows = app
            .get_json(&admin, "/api/audit?action=event.emit&limit=1000")
            .await;
        rows.as_array().expect("rows").len() == 30
    })
    .await;
    let rows = app
        .get_json(&admin, "/api/audit?action=event.emit&limit=1000")
        .await;
    let text = rows.to_string();
    assert!(
        !text.contains("123-45"),
        "audit rows must not carry event data"
    );
    let targets: HashSet<String> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["target"].as_str().expect("t").to_string())
        .collect();
    assert_eq!(targets, ids);
    assert!(rows
        .as_array()
        .expect("rows")
        .iter()
        .all(|r| r["orgId"] == "org-a"
            && r["detail"] == "custom.secret"
            && r["outcome"] == "committed"));
    let key_rows = app.get_json(&admin, "/api/audit?action=key.create").await;
    assert_eq!(key_rows.as_array().expect("rows").len(), 1);
    assert_eq!(key_rows[0]["actor"], "admin");
}

#[tokio::test]
async fn health_and_metrics_are_served() {
    let app = spawn_app().await;
    let key = app.org_key("org-a").await;
    assert_eq!(
        app.client
            .get(app.url("/health/live"))
            .send()
            .await
            .expect("live")
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/health/ready"))
            .send()
            .await
            .expect("ready")
            .status(),
        200
    );
    app.publish(
        &key,
        &json!({"eventType": "custom.metric.probe", "data": {}}),
    )
    .await;
    eventually("events_total in /metrics", || async {
        let text = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.contains(
            "switchboard_events_total{event_type=\"custom.metric.probe\",source=\"api\"} 1",
        ) && text.contains("switchboard_commit_seconds_bucket")
            && text.contains("switchboard_append_batch_size")
    })
    .await;
    let r = app
        .client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .expect("404");
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn graceful_restart_keeps_everything() {
    let app = spawn_app().await;
    let key = app.org_key("org-a").await;
    for n in 0..50 {
        app.publish(&key, &json!({"eventType": "custom.keep", "data": {"n": n}}))
            .await;
    }
    let (config, dir) = app.stop().await;
    let app = crate::helpers::start(config, dir).await;
    let page = app.get_json(&key, "/api/events?limit=100").await;
    assert_eq!(ns(&page).len(), 50);
    let r = app
        .publish(
            &key,
            &json!({"eventType": "custom.keep", "data": {"n": 50}}),
        )
        .await;
    let event: Value = r.json().await.expect("json");
    assert_eq!(event["seq"], 51, "seq continues after a restart");
}
