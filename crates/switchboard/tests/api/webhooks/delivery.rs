//! Delivery end to end over real HTTP: signatures, filters, retries on the real clock, the dead-letter queue,
//! redrive, replay, 410 Gone, Retry-After, rate limits and independence of slow endpoints.

use super::{
    post_json, publish_custom, subscribe, verify_signatures, verify_signatures_with, webhook_app,
    Behaviour, TestReceiver,
};
use crate::helpers::eventually;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn deliveries_are_signed_for_standard_webhooks_and_the_seed_header() {
    let app = webhook_app().await;
    let receiver = TestReceiver::start().await;
    let key = app.org_key("org-a").await;
    let sub = subscribe(
        &app,
        &key,
        json!({"name": "all", "url": receiver.url("/hook"), "events": ["**"], "headers": {"X-Team": "lab"}}),
    )
    .await;
    let secret = sub["secret"].as_str().expect("secret");
    let event = publish_custom(
        &app,
        &key,
        "custom.lab.result",
        json!({"value": 42, "text": "ünïcode"}),
    )
    .await;
    let got = receiver.wait_for("/hook", 1, WAIT).await;
    let delivery = &got[0];
    assert_eq!(
        delivery.json(),
        event,
        "the body is the event as the history shows it"
    );
    assert_eq!(delivery.header("content-type"), "application/json");
    assert_eq!(delivery.header("x-ehrconnect-event"), "custom.lab.result");
    assert_eq!(
        delivery.header("x-ehrconnect-delivery"),
        event["id"].as_str().expect("id")
    );
    assert_eq!(
        delivery.header("webhook-id"),
        event["id"].as_str().expect("id")
    );
    assert_eq!(delivery.header("x-team"), "lab");
    verify_signatures(secret, delivery);

    // After a rotation both secrets verify, and a caller-chosen plain secret works for the seed header.
    let id = sub["id"].as_str().expect("id");
    let (_, rotated) = post_json(
        &app,
        &key,
        &format!("/api/webhooks/{id}/secret/rotate"),
        &json!({}),
    )
    .await;
    publish_custom(&app, &key, "custom.lab.result", json!({"value": 43})).await;
    let got = receiver.wait_for("/hook", 2, WAIT).await;
    verify_signatures(rotated["secret"].as_str().expect("new"), &got[1]);
    verify_signatures_with(secret, &got[1], "x-ehrconnect-signature-previous");

    let (status, test) =
        post_json(&app, &key, &format!("/api/webhooks/{id}/test"), &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(test["success"], true);
    assert_eq!(test["statusCode"], 200);
    assert_eq!(test["body"], "ok");
    assert!(test["latencyMs"].as_f64().expect("latency") >= 0.0);
    let ping = receiver.wait_for("/hook", 3, WAIT).await;
    assert_eq!(ping[2].json()["eventType"], "webhook.test");
    verify_signatures(rotated["secret"].as_str().expect("new"), &ping[2]);
}

#[tokio::test]
async fn filters_choose_the_events() {
    let app = webhook_app().await;
    let receiver = TestReceiver::start().await;
    let key = app.org_key("org-a").await;
    subscribe(
        &app,
        &key,
        json!({"name": "women", "url": receiver.url("/f"), "events": ["custom.*"],
               "filters": {"expression": "$.data.pid[?@.sex == 'F']"}}),
    )
    .await;
    subscribe(
        &app,
        &key,
        json!({"name": "adt", "url": receiver.url("/adt"), "events": ["hl7.received"],
               "filters": {"messageTypes": ["ADT^A01"]}}),
    )
    .await;
    publish_custom(&app, &key, "custom.x", json!({"pid": [{"sex": "M"}]})).await;
    let wanted = publish_custom(&app, &key, "custom.x", json!({"pid": [{"sex": "F"}]})).await;
    publish_custom(&app, &key, "custom.x", json!({"other": true})).await;
    for (mt, n) in [("ORM^O01", 1), ("ADT^A01", 2)] {
        let r = app
            .publish(
                &key,
                &json!({"eventType": "hl7.received", "messageType": mt, "data": {"n": n}}),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    let f = receiver.wait_for("/f", 1, WAIT).await;
    let adt = receiver.wait_for("/adt", 1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received_on("/f").len(), 1);
    assert_eq!(f[0].json()["id"], wanted["id"]);
    assert_eq!(receiver.received_on("/adt").len(), 1);
    assert_eq!(adt[0].json()["messageType"], "ADT^A01");
}

async fn deliveries(
    app: &crate::helpers::TestApp,
    key: &str,
    id: &str,
    status: &str,
) -> Vec<Value> {
    app.get_json(
        key,
        &format!("/api/webhooks/{id}/deliveries?status={status}"),
    )
    .await
    .as_array()
    .expect("array")
    .clone()
}

#[tokio::test]
async fn failures_retry_on_schedule_then_dead_letter_then_redrive() {
    let app = webhook_app().await;
    let receiver = TestReceiver::start().await;
    receiver.set(
        "/down",
        Behaviour {
            body: "x".repeat(10_000),
            ..Behaviour::status(500)
        },
    );
    let key = app.org_key("org-a").await;
    let sub = subscribe(
        &app,
        &key,
        json!({"name": "down", "url": receiver.url("/down"), "events": ["**"],
               "retryConfig": {"maxAttempts": 3, "backoffType": "exponential", "initialDelay": 300}}),
    )
    .await;
    let id = sub["id"].as_str().expect("id");
    publish_custom(&app, &key, "custom.x", json!({})).await;
    let got = receiver.wait_for("/down", 4, WAIT).await;
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    for (gap, expected_ms) in gaps.iter().zip([300u64, 600, 1200]) {
        let expected = Duration::from_millis(expected_ms);
        assert!(
            *gap >= expected && *gap < expected + Duration::from_millis(400),
            "gaps {gaps:?} should be 300, 600, 1200 ms"
        );
    }
    let dead = loop {
        let dead = deliveries(&app, &key, id, "dead").await;
        if !dead.is_empty() {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let d = &dead[0];
    assert_eq!(d["attempts"], 4);
    assert_eq!(d["lastStatusCode"], 500);
    let log = d["attemptLog"].as_array().expect("attempts");
    assert_eq!(log.len(), 4, "every attempt is logged");
    assert_eq!(log[0]["statusCode"], 500);
    assert_eq!(log[0]["error"], "HTTP 500");
    assert_eq!(
        log[0]["responseBody"].as_str().expect("body").len(),
        4096,
        "truncated to 4 KiB"
    );
    assert!(log[0]["durationUs"].as_i64().expect("duration") > 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received_on("/down").len(),
        4,
        "no attempt after the last retry"
    );

    let dlq = app.get_json(&key, "/api/dlq").await;
    assert_eq!(dlq.as_array().expect("array").len(), 1);
    let delivery_id = dlq[0]["id"].as_i64().expect("id");

    // Redrive one delivery: the receiver is back, the delivery succeeds.
    receiver.set("/down", Behaviour::status(204));
    let (status, _) = post_json(
        &app,
        &key,
        &format!("/api/dlq/{delivery_id}/redrive"),
        &json!({}),
    )
    .await;
    assert_eq!(status, 202);
    receiver.wait_for("/down", 5, WAIT).await;
    eventually("the redriven delivery succeeds", || async {
        deliveries(&app, &key, id, "succeeded").await.len() == 1
    })
    .await;
    assert_eq!(app.get_json(&key, "/api/dlq").await, json!([]));
    let (status, _) = post_json(
        &app,
        &key,
        &format!("/api/dlq/{delivery_id}/redrive"),
        &json!({}),
    )
    .await;
    assert_eq!(status, 404, "only dead deliveries can be redriven");

    // Redrive a whole subscription.
    receiver.set("/down", Behaviour::status(503));
    let second = publish_custom(&app, &key, "custom.y", json!({})).await;
    eventually("the second delivery dies", || async {
        deliveries(&app, &key, id, "dead").await.len() == 1
    })
    .await;
    receiver.set("/down", Behaviour::status(200));
    let (status, answer) = post_json(
        &app,
        &key,
        &format!("/api/webhooks/{id}/redrive"),
        &json!({}),
    )
    .await;
    assert_eq!((status, answer["redriven"].as_u64()), (202, Some(1)));
    eventually("the second delivery succeeds", || async {
        receiver
            .received_on("/down")
            .iter()
            .filter(|r| r.json()["id"] == second["id"])
            .count()
            == 5
    })
    .await;
}

#[tokio::test]
async fn gone_switches_the_subscription_off() {
    let app = webhook_app().await;
    let receiver = TestReceiver::start().await;
    receiver.set("/gone", Behaviour::status(410));
    let key = app.org_key("org-a").await;
    let sub = subscribe(
        &app,
        &key,
        json!({"name": "g", "url": receiver.url("/gone"), "events": ["**"]}),
    )
    .await;
    let id = sub["id"].as_str().expect("id");
    publish_custom(&app, &key, "custom.x", json!({})).await;
    receiver.wait_for("/gone", 1, WAIT).await;
    eventually("the subscription is switched off", || async {
        app.get_json(&key, &format!("/api/webhooks/{id}")).await["active"] == false
    })
    .await;
    let shown = app.get_json(&key, &format!("/api/webhooks/{id}")).await;
    assert!(shown["disabledReason"]
        .as_str()
        .expect("reason")
        .contains("410"));
    assert_eq!(deliveries(&app, &key, id, "dead").await.len(), 1);
    publish_custom(&app, &key, "custom.x", json!({})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received_on("/gone").len(), 1, "no more deliveries");
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let app = webhook_app().await;
    let receiver = TestReceiver::start().await;
    receiver.set(
        "/busy",
        Behaviour {
            headers: vec![("retry-after", "1".into())],
            ..Behaviour::status(429)
        },
    );
    let key = app.org_key("org-a").await;
    subscribe(
        &app,
        &key,
        json!({"name": "b", "url": receiver.url("/busy"), "events": ["**"],
               "retryConfig": {"maxAttempts": 2, "initialDelay": 5000}}),
    )
    .await;
    publish_custom(&app, &key, "custom.x", json!({})).await;
    receiver.wait_for("/busy", 1, WAIT).await;
    receiver.set("/busy", Behaviour::status(200));
    let got = receiver.wait_for("/busy", 2, WAIT).await;
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_secs(1) && gap < Duration::from_millis(2500),
        "Retry-After: 1 instead of the 5 s schedule, got {gap:?}"
    );
}

#[tokio::test]
async fn replay_redelivers_a_range_of_history() {
    let app = webhook_app().await;
    let receiver = TestReceiver::start().await;
    let key = app.org_key("org-a").await;
    let before = publish_custom(&app, &key, "custom.old", json!({"n": 0})).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let from = time::OffsetDateTime::now_utc();
    let a = publish_custom(&app, &key, "custom.a", json!({"n": 1})).await;
    let b = publish_custom(&app, &key, "custom.b", json!({"n": 2})).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let to = time::OffsetDateTime::now_utc();
    publish_custom(&app, &key, "custom.a", json!({"n": 3})).await;
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .expect("fmt")
    };

    let sub = subscribe(
        &app,
        &key,
        json!({"name": "r", "url": receiver.url("/r"), "events": ["custom.*"]}),
    )
    .await;
    let id = sub["id"].as_str().expect("id");
    let (status, report) = post_json(
        &app,
        &key,
        &format!("/api/webhooks/{id}/replay"),
        &json!({"from": fmt(from), "to": fmt(to)}),
    )
    .await;
    assert_eq!(status, 202, "{report}");
    assert_eq!(report["queued"], 2);
    let got = receiver.wait_for("/r", 2, WAIT).await;
    let mut ids: Vec<Value> = got.iter().map(|r| r.json()["id"].clone()).collect();
    ids.sort_by_key(|v| v.to_string());
    let mut expected = vec![a["id"].clone(), b["id"].clone()];
    expected.sort_by_key(|v| v.to_string());
    assert_eq!(ids, expected);
    assert!(!ids.contains(&before["id"]));

    // Once they are delivered, a replay reopens them; eventType narrows it.
    eventually("both succeeded", || async {
        deliveries(&app, &key, id, "succeeded").await.len() == 2
    })
    .await;
    let (status, report) = post_json(
        &app,
        &key,
        &format!("/api/webhooks/{id}/replay"),
        &json!({"from": fmt(from), "to": fmt(to), "eventType": "custom.b"}),
    )
    .await;
    assert_eq!((status, report["queued"].as_u64()), (202, Some(1)));
    let got = receiver.wait_for("/r", 3, WAIT).await;
    assert_eq!(got[2].json()["id"], b["id"]);
    let (status, _) = post_json(
        &app,
        &key,
        &format!("/api/webhooks/{id}/replay"),
        &json!({"from": fmt(to), "to": fmt(from)}),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn rate_limits_pace_one_subscription() {
    let app = webhook_app().await;
    let receiver = TestReceiver::start().await;
    let key = app.org_key("org-a").await;
    subscribe(
        &app,
        &key,
        json!({"name": "slow", "url": receiver.url("/rl"), "events": ["**"], "rateLimit": 5}),
    )
    .await;
    for n in 0..15 {
        publish_custom(&app, &key, "custom.x", json!({"n": n})).await;
    }
    let got = receiver.wait_for("/rl", 15, WAIT).await;
    let spread = got[14].at - got[0].at;
    // A burst of 5, then 5 per second: the last of 15 comes about 2 s after the first.
    assert!(
        spread >= Duration::from_millis(1700),
        "15 deliveries at 5/s took {spread:?}"
    );
}

#[tokio::test]
async fn a_slow_endpoint_does_not_hold_up_others() {
    let app = webhook_app().await;
    let receiver = TestReceiver::start().await;
    let slow = Duration::from_secs(8);
    receiver.set(
        "/slow",
        Behaviour {
            delay: slow,
            ..Behaviour::status(200)
        },
    );
    let key = app.org_key("org-a").await;
    for (name, path) in [("slow", "/slow"), ("fast", "/fast")] {
        subscribe(
            &app,
            &key,
            json!({"name": name, "url": receiver.url(path), "events": ["**"]}),
        )
        .await;
    }
    let started = Instant::now();
    for n in 0..100 {
        publish_custom(&app, &key, "custom.x", json!({"n": n})).await;
    }
    receiver.wait_for("/fast", 100, WAIT).await;
    assert!(
        started.elapsed() < slow,
        "the fast endpoint got everything before the slow one answered once ({:?})",
        started.elapsed()
    );
    let held = receiver.received_on("/slow").len();
    assert!(
        held <= 64,
        "the slow endpoint holds at most its concurrency cap, got {held}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_that_outlives_its_lease_is_claimed_again_not_sent_twice() {
    // One attempt at a time, 400 ms each: 16 deliveries need ~6.4 s, twice the 3 s lease (timeout 1 s).
    let app = crate::helpers::spawn_app_with(|c| {
        super::allow_local(c);
        c.webhooks.lease_secs = 3;
        c.webhooks.timeout_ms = 1000;
        c.webhooks.per_subscription_concurrency = 1;
        c.listeners.transformer = false;
        c.listeners.task_creator = false;
    })
    .await;
    let receiver = TestReceiver::start().await;
    receiver.set(
        "/slow",
        Behaviour {
            delay: Duration::from_millis(400),
            ..Behaviour::status(200)
        },
    );
    let key = app.org_key("org-lease").await;
    subscribe(
        &app,
        &key,
        json!({"name": "slow", "url": receiver.url("/slow"), "events": ["custom.**"]}),
    )
    .await;
    for n in 0..16 {
        publish_custom(&app, &key, "custom.backlog", json!({ "n": n })).await;
    }
    let received = receiver
        .wait_for("/slow", 16, Duration::from_secs(30))
        .await;
    // Let any second claim of an expired lease play out before counting.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let received = receiver.received_on("/slow").len().max(received.len());
    assert_eq!(received, 16, "each delivery sent once, none twice");
}
