//! Zero loss under `kill -9` with thousands of deliveries pending: the real binary is killed while a slow
//! receiver is working through the backlog; after a restart every acknowledged event reaches the receiver at
//! least once. Duplicates (deliveries in flight at the kill) are counted and reported.

use super::{Behaviour, TestReceiver};
use crate::kill::start_server;
use reqwest::Client;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const EVENTS: usize = 3200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_pending_deliveries_loses_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db_url = format!("sqlite://{}", dir.path().join("kill-webhooks.db").display());
    let admin = switchboard::auth::generate_key();
    let receiver = TestReceiver::start().await;
    receiver.set(
        "/hook",
        Behaviour {
            delay: Duration::from_millis(20),
            ..Behaviour::status(200)
        },
    );
    let env = [
        ("SWITCHBOARD_WEBHOOKS_ALLOW_INSECURE", "true"),
        (
            "SWITCHBOARD_WEBHOOKS_ALLOWED_NETWORKS",
            "127.0.0.0/8,::1/128",
        ),
        ("SWITCHBOARD_WEBHOOKS_PER_SUBSCRIPTION_CONCURRENCY", "4"),
    ];
    let mut server = start_server(&db_url, &admin, &env).await;
    let client = Client::new();
    let key = server.org_key(&admin, "org-kill").await;
    let r = client
        .post(format!("{}/api/webhooks", server.base))
        .bearer_auth(&key)
        .json(&json!({"name": "kill", "url": receiver.url("/hook"), "events": ["**"]}))
        .send()
        .await
        .expect("subscribe");
    assert_eq!(r.status(), 201);

    // Publish the backlog with a few concurrent publishers; every 201 is an event that must be delivered.
    let per_task = EVENTS / 16;
    let publishers: Vec<_> = (0..16)
        .map(|task| {
            let (client, base, key) = (client.clone(), server.base.clone(), key.clone());
            tokio::spawn(async move {
                let mut ids = Vec::with_capacity(per_task);
                for n in 0..per_task {
                    let body =
                        json!({"eventType": "custom.kill.webhook", "data": {"task": task, "n": n}});
                    let r = client
                        .post(format!("{base}/api/events"))
                        .bearer_auth(&key)
                        .json(&body)
                        .send()
                        .await
                        .expect("publish");
                    assert_eq!(r.status(), 201);
                    let event: Value = r.json().await.expect("json");
                    ids.push(event["id"].as_str().expect("id").to_string());
                }
                ids
            })
        })
        .collect();
    let mut acked = HashSet::new();
    for p in publishers {
        acked.extend(p.await.expect("publisher"));
    }
    receiver
        .wait_for("/hook", 50, Duration::from_secs(30))
        .await;
    server.child.kill().expect("kill -9");
    server.child.wait().expect("wait");
    let before_restart = receiver.received_on("/hook").len();
    assert!(
        before_restart < acked.len(),
        "thousands were still pending at the kill ({before_restart} of {} delivered)",
        acked.len()
    );

    receiver.set("/hook", Behaviour::status(200));
    let mut server = start_server(
        &db_url,
        &admin,
        &[
            ("SWITCHBOARD_WEBHOOKS_ALLOW_INSECURE", "true"),
            (
                "SWITCHBOARD_WEBHOOKS_ALLOWED_NETWORKS",
                "127.0.0.0/8,::1/128",
            ),
        ],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for r in receiver.received_on("/hook") {
            *counts.entry(r.header("webhook-id")).or_default() += 1;
        }
        if acked.iter().all(|id| counts.contains_key(id)) {
            break counts;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged events never reached the receiver",
            acked.iter().filter(|id| !counts.contains_key(*id)).count(),
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "webhook kill test: {} events acknowledged, {before_restart} delivered before kill -9, all {} delivered \
         after the restart, {duplicates} duplicate deliveries (in flight at the kill)",
        acked.len(),
        counts.len()
    );
    assert!(
        duplicates <= 64,
        "duplicates are bounded by what was in flight: {duplicates}"
    );
    let _ = server.child.kill();
    let _ = server.child.wait();
}
