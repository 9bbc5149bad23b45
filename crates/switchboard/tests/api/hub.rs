//! The hub as a library: group commit, live listeners, durable listeners, backpressure and shutdown.

use crate::helpers::open_store;
use async_trait::async_trait;
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard::event::{Event, EventType, NewEvent, Pattern, Source};
use switchboard::hub::{
    spawn_durable, DurableHandler, EmitError, EventFilter, Hub, HubConfig, ListenerSpec,
};
use tokio_util::sync::CancellationToken;

fn event(kind: &str, org: &str, n: usize) -> NewEvent {
    let mut e = NewEvent::with_json(
        EventType::parse(kind).expect("type"),
        org,
        Source::Api,
        &json!({ "n": n }),
    )
    .expect("json");
    if kind.starts_with("hl7.") {
        e = e.message("ADT^A01", Some(format!("C{n}")));
    }
    if kind.starts_with("fhir.") {
        e = e.resource("Patient", Some(format!("p{n}")));
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_emits_share_batches_and_get_increasing_seqs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(open_store(&dir).await, HubConfig::default())
        .await
        .expect("hub");
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let hub = hub.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for n in 0..50 {
                    let stored = hub
                        .emit(event("custom.load", "org-a", t * 1000 + n))
                        .await
                        .expect("emit");
                    seqs.push((stored.seq, stored.timestamp));
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let seqs = task.await.expect("join");
        assert!(
            seqs.windows(2).all(|w| w[0].0 < w[1].0),
            "one emitter's events commit in order"
        );
        all.extend(seqs);
    }
    let unique: HashSet<i64> = all.iter().map(|(s, _)| *s).collect();
    assert_eq!(unique.len(), 64 * 50);
    all.sort();
    assert_eq!(all.first().map(|x| x.0), Some(1));
    assert_eq!(all.last().map(|x| x.0), Some(3200));
    assert!(
        all.windows(2).all(|w| w[0].1 <= w[1].1),
        "timestamps never decrease along seq"
    );
    let batches: HashSet<_> = all.iter().map(|(_, ts)| *ts).collect();
    assert!(
        batches.len() < 3200,
        "group commit put several events in one transaction ({} batches)",
        batches.len()
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn listeners_match_patterns_and_filters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(open_store(&dir).await, HubConfig::default())
        .await
        .expect("hub");
    let p = |s: &str| Pattern::parse(s).expect("pattern");
    let mut hl7 = hub.subscribe(ListenerSpec::new("hl7", vec![p("hl7.*")]));
    let mut errors = hub.subscribe(ListenerSpec::new(
        "errors",
        vec![p("*.error"), p("*.failed")],
    ));
    let mut org_b = hub.subscribe(ListenerSpec {
        filter: EventFilter {
            org_id: Some("org-b".into()),
            ..Default::default()
        },
        ..ListenerSpec::new("org-b", vec![p("**")])
    });
    let mut patients = hub.subscribe(ListenerSpec {
        filter: EventFilter {
            resource_types: vec!["Patient".into()],
            ..Default::default()
        },
        ..ListenerSpec::new("patients", vec![p("fhir.*")])
    });
    let first_error = hub.once(ListenerSpec::new("once", vec![p("*.error")]));
    let dropped = hub.subscribe(ListenerSpec::new("dropped", vec![p("**")]));
    drop(dropped);

    hub.emit(event("hl7.received", "org-a", 1))
        .await
        .expect("emit");
    hub.emit(event("hl7.error", "org-a", 2))
        .await
        .expect("emit");
    hub.emit(event("fhir.created", "org-b", 3))
        .await
        .expect("emit");
    hub.emit(event("transform.failed", "org-a", 4))
        .await
        .expect("emit");
    hub.emit(event("hl7.error", "org-a", 5))
        .await
        .expect("emit");

    let take = |l: &mut switchboard::hub::Listener, k: usize| {
        let mut out = Vec::new();
        for _ in 0..k {
            out.push(l.try_recv().map(|e| e.event_type.to_string()));
        }
        out
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        take(&mut hl7, 4),
        vec![
            Some("hl7.received".into()),
            Some("hl7.error".into()),
            Some("hl7.error".into()),
            None
        ]
    );
    assert_eq!(
        take(&mut errors, 4),
        vec![
            Some("hl7.error".into()),
            Some("transform.failed".into()),
            Some("hl7.error".into()),
            None
        ]
    );
    assert_eq!(take(&mut org_b, 2), vec![Some("fhir.created".into()), None]);
    assert_eq!(
        take(&mut patients, 2),
        vec![Some("fhir.created".into()), None]
    );
    let once = first_error.await.expect("once fired");
    assert_eq!(once.data.get(), "{\"n\":2}");
    hub.shutdown().await;
    assert!(
        hl7.recv().await.is_none(),
        "listeners end when the hub shuts down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_listener_blocks_nobody() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(open_store(&dir).await, HubConfig::default())
        .await
        .expect("hub");
    let _stuck = hub.subscribe(ListenerSpec {
        capacity: 1,
        ..ListenerSpec::new("stuck", vec![Pattern::all()])
    });
    let mut healthy = hub.subscribe(ListenerSpec {
        capacity: 10_000,
        ..ListenerSpec::new("healthy", vec![Pattern::all()])
    });
    let emitted = tokio::time::timeout(Duration::from_secs(20), async {
        for n in 0..2000 {
            hub.emit(event("custom.flood", "org-a", n))
                .await
                .expect("emit");
        }
    })
    .await;
    assert!(
        emitted.is_ok(),
        "the writer kept going while a listener never read"
    );
    let mut got = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(2), healthy.recv()).await {
        got += 1;
        if got == 2000 {
            break;
        }
    }
    assert_eq!(got, 2000, "the healthy listener got every event");
    hub.shutdown().await;
}

struct Recorder {
    name: &'static str,
    seen: Arc<Mutex<Vec<i64>>>,
    failures_left: AtomicUsize,
    calls: AtomicUsize,
}

#[async_trait]
impl DurableHandler for Recorder {
    fn name(&self) -> &str {
        self.name
    }

    fn patterns(&self) -> Vec<Pattern> {
        vec![Pattern::parse("custom.wanted").expect("pattern")]
    }

    async fn handle(&self, events: &[Arc<Event>], _through: i64) -> anyhow::Result<()> {
        if self.failures_left.load(Ordering::SeqCst) > 0 {
            self.failures_left.fetch_sub(1, Ordering::SeqCst);
            anyhow::bail!("simulated failure");
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen
            .lock()
            .expect("lock")
            .extend(events.iter().map(|e| e.seq));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_listener_resumes_from_its_cursor_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = |failures| {
        Arc::new(Recorder {
            name: "recorder",
            seen: Arc::clone(&seen),
            failures_left: AtomicUsize::new(failures),
            calls: AtomicUsize::new(0),
        })
    };
    let wait_for = |count: usize| {
        let seen = Arc::clone(&seen);
        async move {
            for _ in 0..500 {
                if seen.lock().expect("lock").len() >= count {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("listener did not reach {count} events");
        }
    };

    // First life: the listener handles 50 wanted events (after two failures it retries).
    let hub = Hub::start(open_store(&dir).await, HubConfig::default())
        .await
        .expect("hub");
    let stop = CancellationToken::new();
    let runner = spawn_durable(&hub, recorder(2), stop.clone());
    for n in 0..100 {
        let kind = if n % 2 == 0 {
            "custom.wanted"
        } else {
            "custom.other"
        };
        hub.emit(event(kind, "org-a", n)).await.expect("emit");
    }
    wait_for(50).await;
    hub.shutdown().await;
    stop.cancel();
    runner.await.expect("runner");

    // While the listener is not running, 100 more events are committed.
    let hub = Hub::start(open_store(&dir).await, HubConfig::default())
        .await
        .expect("hub");
    for n in 100..200 {
        let kind = if n % 2 == 0 {
            "custom.wanted"
        } else {
            "custom.other"
        };
        hub.emit(event(kind, "org-a", n)).await.expect("emit");
    }
    hub.shutdown().await;

    // Third life: the listener catches up from its cursor, then follows live events.
    let hub = Hub::start(open_store(&dir).await, HubConfig::default())
        .await
        .expect("hub");
    let stop = CancellationToken::new();
    let runner = spawn_durable(&hub, recorder(0), stop.clone());
    wait_for(100).await;
    for n in 200..220 {
        hub.emit(event("custom.wanted", "org-a", n))
            .await
            .expect("emit");
    }
    wait_for(120).await;
    let seen = seen.lock().expect("lock").clone();
    let expected: Vec<i64> = (1..=200).filter(|s| s % 2 == 1).chain(201..=220).collect();
    assert_eq!(seen, expected, "every wanted event exactly once, in order");
    hub.shutdown().await;
    stop.cancel();
    runner.await.expect("runner");
}

/// A listener that handles one type in eight and catches up from the log gets its events in large groups (one
/// handler call and one cursor write per group), not one small group per page read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_catching_up_gets_its_events_in_large_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(open_store(&dir).await, HubConfig::default())
        .await
        .expect("hub");
    let batch: Vec<NewEvent> = (0..4000)
        .map(|n| {
            let kind = if n % 8 == 0 {
                "custom.wanted"
            } else {
                "custom.other"
            };
            event(kind, "org-a", n)
        })
        .collect();
    // Which seqs the wanted events got (on PostgreSQL, batches may commit in another order than they were formed).
    let mut expected = Vec::new();
    let mut last = 0;
    for chunk in batch.chunks(500) {
        let stored = hub.emit_all(chunk.to_vec()).await.expect("emit");
        last = stored.iter().map(|e| e.seq).fold(last, i64::max);
        expected.extend(
            stored
                .iter()
                .filter(|e| e.event_type.as_str() == "custom.wanted")
                .map(|e| e.seq),
        );
    }
    expected.sort_unstable();
    // `emit_all` answers once its batch is durable, a moment before the hub publishes it; a listener starting in
    // that moment would read part of the log and get the rest as a second group from the broadcast.
    for _ in 0..500 {
        if hub.durable_head() >= last {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let recorder = Arc::new(Recorder {
        name: "late",
        seen: Arc::new(Mutex::new(Vec::new())),
        failures_left: AtomicUsize::new(0),
        calls: AtomicUsize::new(0),
    });
    let stop = CancellationToken::new();
    let runner = spawn_durable(
        &hub,
        Arc::clone(&recorder) as Arc<dyn DurableHandler>,
        stop.clone(),
    );
    for _ in 0..500 {
        if recorder.seen.lock().expect("lock").len() >= 500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(expected.len(), 500);
    assert_eq!(
        *recorder.seen.lock().expect("lock"),
        expected,
        "every wanted event once, in seq order"
    );
    // 4,000 events are eight pages of the log; the 500 wanted ones fit in one group.
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 1);
    stop.cancel();
    runner.await.expect("runner");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_makes_emitters_wait_not_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = HubConfig {
        queue_capacity: 4,
        batch_max_events: 2,
        ..HubConfig::default()
    };
    let hub = Hub::start(open_store(&dir).await, config)
        .await
        .expect("hub");
    let emits = (0..300).map(|n| {
        let hub = hub.clone();
        async move { hub.emit(event("custom.pressure", "org-a", n)).await }
    });
    let results = futures::future::join_all(emits).await;
    assert!(results.iter().all(Result::is_ok));
    let (head, _) = hub.store().head().await.expect("head");
    assert_eq!(head, 300);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_what_is_queued_then_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = HubConfig {
        batch_linger: Duration::from_millis(200),
        ..HubConfig::default()
    };
    let hub = Hub::start(open_store(&dir).await, config)
        .await
        .expect("hub");
    let pending: Vec<_> = (0..20)
        .map(|n| {
            let hub = hub.clone();
            tokio::spawn(async move { hub.emit(event("custom.late", "org-a", n)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    hub.shutdown().await;
    for p in pending {
        assert!(
            p.await.expect("join").is_ok(),
            "queued events are committed during shutdown"
        );
    }
    assert!(matches!(
        hub.emit(event("custom.late", "org-a", 99)).await,
        Err(EmitError::ShuttingDown)
    ));
    let (head, _) = hub.store().head().await.expect("head");
    assert_eq!(head, 20);
}
