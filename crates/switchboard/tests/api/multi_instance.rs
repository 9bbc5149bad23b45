//! Several instances on one PostgreSQL: `seq` gap-free in commit order while two instances append, live fan-out
//! across instances (SSE, Socket.IO, in-process listeners), one webhook delivery per event, durable listener
//! failover, concurrent retention purges, and `kill -9` of one instance under load with the other finishing its
//! deliveries.
//!
//! These need the shared database, so they run only with `SWITCHBOARD_TEST_BACKEND=postgres` (`scripts/test.sh`
//! runs the suite once per backend).

use crate::helpers::{is_postgres, postgres_url, spawn_app_with, TestApp};
use crate::kill::start_server;
use crate::realtime::node::SocketIoClients;
use crate::realtime::sse::SseReader;
use crate::webhooks::{allow_local, subscribe, Behaviour, TestReceiver};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard::event::{Event, EventType, NewEvent, Pattern, Source};
use switchboard::hub::{spawn_durable, DurableHandler, Hub, HubConfig, ListenerSpec};
use switchboard::store;
use switchboard::Config;
use tokio_util::sync::CancellationToken;

fn postgres_only(test: &str) -> bool {
    if !is_postgres() {
        eprintln!(
            "{test}: PostgreSQL only (SWITCHBOARD_TEST_BACKEND=postgres); not run on this backend"
        );
    }
    is_postgres()
}

/// Two apps on one database (and one admin token).
async fn two_instances(adjust: impl Fn(&mut Config) + Clone) -> (TestApp, TestApp) {
    let url = postgres_url();
    let admin = switchboard::auth::generate_key();
    let (url_a, admin_a, adjust_a) = (url.clone(), admin.clone(), adjust.clone());
    let a = spawn_app_with(move |c| {
        c.database.url = url_a;
        c.auth.admin_token = admin_a;
        adjust_a(c);
    })
    .await;
    let b = spawn_app_with(move |c| {
        c.database.url = url;
        c.auth.admin_token = admin;
        adjust(c);
    })
    .await;
    (a, b)
}

fn quiet(c: &mut Config) {
    c.listeners.transformer = false;
    c.listeners.task_creator = false;
}

/// Publishes `{"eventType": event_type, "data": {"n": n}}`, expects 201, returns the stored event.
async fn publish_n(app: &TestApp, key: &str, event_type: &str, n: usize) -> Value {
    let r = app
        .publish(key, &json!({"eventType": event_type, "data": {"n": n}}))
        .await;
    assert_eq!(r.status(), 201, "publish {event_type}");
    r.json().await.expect("json")
}

fn custom(n: usize) -> NewEvent {
    NewEvent::with_json(
        EventType::parse("custom.multi").expect("type"),
        "org-m",
        Source::Api,
        &json!({ "n": n }),
    )
    .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_append_with_seq_gap_free_in_commit_order() {
    if !postgres_only("gap_free") {
        return;
    }
    let url = postgres_url();
    let small_batches = HubConfig {
        batch_max_events: 16,
        ..HubConfig::default()
    };
    let a = Hub::start(store::open(&url).await.expect("a"), small_batches.clone())
        .await
        .expect("hub a");
    let b = Hub::start(store::open(&url).await.expect("b"), small_batches)
        .await
        .expect("hub b");
    let reader = store::open(&url).await.expect("reader");
    // An in-process listener on B hears A's events too, in seq order (its hub tails the shared log).
    let mut heard_on_b = b.subscribe(ListenerSpec {
        capacity: 8192,
        ..ListenerSpec::new("multi", vec![Pattern::parse("custom.**").expect("pattern")])
    });

    // A tailer reading `seq > cursor` as fast as it can: if a later seq ever became visible before an earlier
    // one, it would read past the hole and see the earlier one out of order (or never).
    let done = tokio_util::sync::CancellationToken::new();
    let tailer = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut cursor = 0i64;
            let mut seen = Vec::new();
            loop {
                let finishing = done.is_cancelled();
                let page = reader.events_after(cursor, 256).await.expect("read");
                for event in &page {
                    assert_eq!(
                        event.seq,
                        cursor + 1,
                        "the tailer saw a hole before {}",
                        event.seq
                    );
                    cursor = event.seq;
                    seen.push(event.id);
                }
                if page.is_empty() {
                    if finishing {
                        return seen;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };

    let emitters: Vec<_> = (0..16)
        .map(|t| {
            let hub = if t % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..60 {
                    ids.push(hub.emit(custom(t * 1000 + n)).await.expect("emit").id);
                }
                ids
            })
        })
        .collect();
    let mut acknowledged = HashSet::new();
    for emitter in emitters {
        acknowledged.extend(emitter.await.expect("emitter"));
    }
    done.cancel();
    let seen = tailer.await.expect("tailer");
    assert_eq!(
        seen.len(),
        acknowledged.len(),
        "no duplicates, none missing"
    );
    let seen: HashSet<_> = seen.into_iter().collect();
    assert_eq!(seen, acknowledged);
    let mut last_seq = 0;
    let mut heard = HashSet::new();
    while heard.len() < acknowledged.len() {
        let event = tokio::time::timeout(Duration::from_secs(10), heard_on_b.recv())
            .await
            .expect("B's listener hears every event in time")
            .expect("event");
        assert!(event.seq > last_seq, "in seq order");
        last_seq = event.seq;
        heard.insert(event.id);
    }
    assert_eq!(heard, acknowledged);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_on_one_instance_reach_listeners_sse_and_socketio_on_the_other() {
    if !postgres_only("fan_out") {
        return;
    }
    let (a, b) = two_instances(quiet).await;
    let key = a.org_key("org-fan").await;
    let mut sse = SseReader::open(&b, &key, "?eventType=custom.**", None).await;
    let mut sockets = SocketIoClients::start(&b.url(""));
    sockets.connected("s1", json!({"token": key})).await;

    let mut published = Vec::new();
    for n in 0..5 {
        published.push(publish_n(&a, &key, "custom.fan.out", n).await);
    }
    for event in &published {
        let message = sse.next().await;
        let got: Value = serde_json::from_str(&message.data).expect("sse json");
        assert_eq!(got["id"], event["id"]);
        assert_eq!(
            message.id.as_deref(),
            Some(event["seq"].to_string().as_str())
        );
        let pushed = sockets.next_event("s1").await;
        assert_eq!(pushed["name"], "custom.fan.out");
        assert_eq!(pushed["payload"]["id"], event["id"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_gets_each_event_once_whichever_instance_commits_it() {
    if !postgres_only("webhook_once") {
        return;
    }
    let (a, b) = two_instances(|c| {
        quiet(c);
        allow_local(c);
    })
    .await;
    let receiver = TestReceiver::start().await;
    let key = a.org_key("org-once").await;
    subscribe(
        &a,
        &key,
        json!({"name": "once", "url": receiver.url("/once"), "events": ["custom.**"]}),
    )
    .await;
    // B learns of the subscription by a notification from the database.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ids = HashSet::new();
    for n in 0..40 {
        let app = if n % 2 == 0 { &a } else { &b };
        let body = publish_n(app, &key, "custom.once", n).await;
        ids.insert(body["id"].as_str().expect("id").to_string());
    }
    let received = receiver
        .wait_for("/once", 40, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let received = receiver.received_on("/once").len().max(received.len());
    let got: HashSet<String> = receiver
        .received_on("/once")
        .iter()
        .map(|r| r.json()["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(got, ids, "every event delivered");
    assert_eq!(
        received, 40,
        "each event exactly once, not once per instance"
    );
}

/// A hub of its own (an instance) on the shared database at `url`.
async fn hub_on(url: &str) -> Hub {
    let store = store::open(url).await.expect("store");
    Hub::start(store, HubConfig::default()).await.expect("hub")
}

/// A durable listener that records which instance handled which event.
struct Tally {
    instance: &'static str,
    seen: Arc<Mutex<Vec<(&'static str, i64)>>>,
}

#[async_trait]
impl DurableHandler for Tally {
    fn name(&self) -> &str {
        "tally"
    }

    fn patterns(&self) -> Vec<Pattern> {
        vec![Pattern::parse("custom.multi").expect("pattern")]
    }

    async fn handle(&self, events: &[Arc<Event>], _through: i64) -> anyhow::Result<()> {
        let mut seen = self.seen.lock().expect("lock");
        seen.extend(events.iter().map(|e| (self.instance, e.seq)));
        Ok(())
    }
}

/// Waits until `n` events were handled (or 15 s), checks that each was handled once, and returns who handled which.
async fn handled_once_each(
    seen: &Mutex<Vec<(&'static str, i64)>>,
    n: usize,
) -> Vec<(&'static str, i64)> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen.lock().expect("lock").len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Anything handled twice would show up a moment later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = seen.lock().expect("lock").clone();
    let seqs: HashSet<i64> = tally.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(
        (tally.len(), seqs.len()),
        (n, n),
        "handled once each: {tally:?}"
    );
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_listener_runs_on_one_instance_and_fails_over() {
    if !postgres_only("listener_failover") {
        return;
    }
    let url = postgres_url();
    let (hub_a, hub_b) = (hub_on(&url).await, hub_on(&url).await);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let tally = |instance| {
        Arc::new(Tally {
            instance,
            seen: Arc::clone(&seen),
        })
    };
    let runner_a = spawn_durable(&hub_a, tally("a"), stop_a.clone());
    let runner_b = spawn_durable(&hub_b, tally("b"), stop_b.clone());
    // Both run the listener; only the lease holder handles events, so each is handled once.
    for n in 0..10 {
        hub_b.emit(custom(n)).await.expect("emit");
    }
    let first = handled_once_each(&seen, 10).await;
    let holder = first[0].0;
    assert!(
        first.iter().all(|(i, _)| *i == holder),
        "one instance handled them: {first:?}"
    );

    // Stop the holder's listener: the other takes the lease over and handles what follows.
    let (stopped, stop, standby, other) = if holder == "a" {
        (runner_a, &stop_a, runner_b, "b")
    } else {
        (runner_b, &stop_b, runner_a, "a")
    };
    stop.cancel();
    stopped.await.expect("stopped runner");
    for n in 10..20 {
        hub_a.emit(custom(n)).await.expect("emit");
    }
    let all = handled_once_each(&seen, 20).await;
    assert!(
        all[10..].iter().all(|(i, _)| *i == other),
        "{other} took the listener over: {all:?}"
    );
    stop_a.cancel();
    stop_b.cancel();
    standby.await.expect("runner");
    hub_a.shutdown().await;
    hub_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_instance_under_load_the_other_finishes_its_deliveries() {
    if !postgres_only("kill_failover") {
        return;
    }
    let url = postgres_url();
    let admin = switchboard::auth::generate_key();
    let receiver = TestReceiver::start().await;
    receiver.set(
        "/kill",
        Behaviour {
            delay: Duration::from_millis(30),
            ..Behaviour::status(200)
        },
    );
    let env = [
        ("SWITCHBOARD_WEBHOOKS_ALLOW_INSECURE", "true"),
        (
            "SWITCHBOARD_WEBHOOKS_ALLOWED_NETWORKS",
            "127.0.0.0/8,::1/128",
        ),
        ("SWITCHBOARD_WEBHOOKS_LEASE_SECS", "3"),
        ("SWITCHBOARD_WEBHOOKS_TIMEOUT_MS", "2000"),
        ("SWITCHBOARD_WEBHOOKS_PER_SUBSCRIPTION_CONCURRENCY", "2"),
    ];
    let mut a = start_server(&url, &admin, &env).await;
    let (url_b, admin_b) = (url.clone(), admin.clone());
    let b = spawn_app_with(move |c| {
        c.database.url = url_b;
        c.auth.admin_token = admin_b;
        allow_local(c);
        c.webhooks.lease_secs = 3;
        c.webhooks.timeout_ms = 2000;
    })
    .await;
    let client = reqwest::Client::new();
    let key = a.org_key(&admin, "org-kill").await;
    let r = client
        .post(format!("{}/api/webhooks", a.base))
        .bearer_auth(&key)
        .json(&json!({"name": "kill", "url": receiver.url("/kill"), "events": ["custom.**"]}))
        .send()
        .await
        .expect("subscribe");
    assert_eq!(r.status(), 201);

    // Publishers on A until it dies; every 201 is an event that must be delivered.
    let publishers: Vec<_> = (0..8)
        .map(|t| {
            let (client, base, key) = (client.clone(), a.base.clone(), key.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for n in 0..200 {
                    let sent = client
                        .post(format!("{base}/api/events"))
                        .bearer_auth(&key)
                        .json(&json!({"eventType": "custom.kill", "data": {"t": t, "n": n}}))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 201 => {
                            let body: Value = r.json().await.expect("json");
                            acknowledged.push(body["id"].as_str().expect("id").to_string());
                        }
                        _ => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.child.kill().expect("kill -9");
    let _ = a.child.wait();
    let mut acknowledged = HashSet::new();
    for p in publishers {
        acknowledged.extend(p.await.expect("publisher"));
    }
    assert!(
        acknowledged.len() > 50,
        "load was running: {}",
        acknowledged.len()
    );

    // B delivers what A had claimed once A's leases end, and everything A never got to.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: HashSet<String> = receiver
            .received_on("/kill")
            .iter()
            .map(|r| r.json()["id"].as_str().expect("id").to_string())
            .collect();
        let missing = acknowledged.difference(&got).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} acknowledged events never delivered",
            acknowledged.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deliveries = receiver.received_on("/kill").len();
    eprintln!(
        "kill failover: {} acknowledged, {deliveries} deliveries ({} duplicates from attempts in flight at the kill)",
        acknowledged.len(),
        deliveries.saturating_sub(acknowledged.len())
    );
    // Every acknowledged event is in the shared history too.
    for id in acknowledged.iter().take(50) {
        let r = b
            .client
            .get(b.url(&format!("/api/events/{id}")))
            .bearer_auth(&b.admin_token)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200, "{id} in the log");
    }
}

/// Every instance runs retention: several purging the same log at once take turns on the audit cursor, so each
/// deleted event's audit entry is written once, not once per instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_purging_at_once_keep_each_audit_entry_once() {
    if !postgres_only("concurrent_purge") {
        return;
    }
    let url = postgres_url();
    let hub = hub_on(&url).await;
    let mut ids = HashSet::new();
    for chunk in (0..900).collect::<Vec<_>>().chunks(100) {
        let stored = hub
            .emit_all(chunk.iter().map(|n| custom(*n)).collect())
            .await
            .expect("emit");
        ids.extend(stored.iter().map(|e| e.id.to_string()));
    }
    hub.shutdown().await;
    let cutoff = switchboard::event::Timestamp::now();
    // Four instances, small batches, all starting at once: their purges overlap all the time.
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(store::open(&url).await.expect("store"));
    }
    let start = Arc::new(tokio::sync::Barrier::new(stores.len()));
    let purgers: Vec<_> = stores
        .into_iter()
        .map(|store| {
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                let mut deleted = 0;
                // A purge that lost the race for a batch deletes nothing; go on while events are left.
                while !store.events_after(0, 1).await.expect("after").is_empty() {
                    deleted += store.purge_events_before(cutoff, 10).await.expect("purge");
                }
                deleted
            })
        })
        .collect();
    let mut deleted = 0;
    for purger in purgers {
        deleted += purger.await.expect("purger");
    }
    assert_eq!(deleted, 900, "each event deleted once");
    let store = store::open(&url).await.expect("store");
    assert!(store.events_after(0, 10).await.expect("after").is_empty());
    let entries = store
        .query_audit(&store::AuditQuery {
            org_id: Some("org-m".into()),
            action: Some("event.emit".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("audit");
    let targets: HashSet<String> = entries.iter().map(|e| e.target.clone()).collect();
    assert_eq!(entries.len(), 900, "one entry per event, none twice");
    assert_eq!(targets, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_holds_across_instances() {
    if !postgres_only("idempotency") {
        return;
    }
    let (a, b) = two_instances(quiet).await;
    let key = a.org_key("org-idem").await;
    let send = |app: &TestApp| {
        app.client
            .post(app.url("/api/events"))
            .bearer_auth(&key)
            .header("Idempotency-Key", "order-7")
            .json(&json!({"eventType": "custom.order", "data": {"n": 1}}))
            .send()
    };
    let first = send(&a).await.expect("first");
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    let again = send(&b).await.expect("again");
    assert_eq!(
        again.status(),
        200,
        "a repeat on the other instance is recognised"
    );
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["seq"], first["seq"]);
}

#[tokio::test]
async fn tls_to_postgres_is_verified_against_the_given_root() {
    if !postgres_only("tls") {
        return;
    }
    // The local server's certificate (Debian's snakeoil, for `localhost`); skip where there is none.
    let root = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
    if !std::path::Path::new(root).exists() {
        eprintln!("tls: no {root} on this machine; not run");
        return;
    }
    let schema = format!("sbt_tls_{}", uuid::Uuid::now_v7().simple());
    let url = format!("postgres://postgres@localhost:5432/test?sslmode=require&schema={schema}");
    let trusted = format!("{url}&sslrootcert={root}");
    let store = store::open(&trusted)
        .await
        .expect("TLS with the server's certificate trusted");
    store.ping().await.expect("ping over TLS");
    let untrusted = store::open(&url).await;
    assert!(
        untrusted.is_err(),
        "a certificate no trusted root vouches for is refused"
    );
}

/// A TCP proxy in front of PostgreSQL that the test can cut (close every connection, refuse new ones) and restore,
/// as a network partition or a database restart would.
struct CuttableProxy {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl CuttableProxy {
    async fn start(target: &'static str) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> =
            Default::default();
        let (up_flag, tasks) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up_flag.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed at once
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().expect("lock").push(task.abort_handle());
            }
        });
        CuttableProxy {
            port,
            up,
            connections,
        }
    }

    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for task in self.connections.lock().expect("lock").drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_is_answered_503_and_the_server_recovers() {
    if !postgres_only("unavailable") {
        return;
    }
    let proxy = CuttableProxy::start("127.0.0.1:5432").await;
    let schema = format!("sbt_unavail_{}", uuid::Uuid::now_v7().simple());
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/test?schema={schema}&pool_size=4",
        proxy.port
    );
    let app = spawn_app_with(move |c| {
        c.database.url = url;
        quiet(c);
    })
    .await;
    let key = app.org_key("org-unavail").await;
    publish_n(&app, &key, "custom.before.cut", 0).await;

    proxy.cut();
    for n in 0..3 {
        let r = app
            .publish(
                &key,
                &json!({"eventType": "custom.during.cut", "data": {"n": n}}),
            )
            .await;
        assert_eq!(r.status(), 503, "the database is unreachable");
        assert_eq!(r.headers()["retry-after"], "1");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "storage_unavailable");
    }

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = app
            .publish(&key, &json!({"eventType": "custom.after.cut", "data": {}}))
            .await;
        if r.status() == 201 {
            break;
        }
        assert_eq!(r.status(), 503, "only 503 until the database is back");
        assert!(Instant::now() < deadline, "the server recovers by itself");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
