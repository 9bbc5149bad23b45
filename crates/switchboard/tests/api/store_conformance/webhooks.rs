//! Conformance of the webhook storage: subscriptions, the transactional outbox, claims with leases, attempt
//! records, replay, redrive, lease release and counts.

use super::{ev, fresh};
use std::collections::BTreeMap;
use std::sync::Arc;
use switchboard::event::Timestamp;
use switchboard::store::webhooks::{
    AttemptRecord, ClaimRequest, DeliveryCounts, DeliveryQuery, DeliveryStatus, DeliveryUpdate,
    EnqueueEntry, Filters, RetryConfig, SubscriptionRecord,
};
use switchboard::store::{DynStore, OutboxEntry, StoreError};

fn sub(id: &str, org: &str) -> SubscriptionRecord {
    SubscriptionRecord {
        id: id.into(),
        org_id: org.into(),
        name: format!("{id} name"),
        url: "https://example.com/hook".into(),
        events: vec!["**".into()],
        filters: Filters {
            message_types: Some(vec!["ADT^A01".into()]),
            resource_types: None,
            expression: Some("$.data".into()),
        },
        secret: "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0".into(),
        previous_secret: None,
        previous_secret_until: None,
        active: true,
        retry: RetryConfig::default(),
        headers: BTreeMap::from([("x-a".to_string(), "1".to_string())]),
        rate_limit: Some(2.5),
        disabled_reason: None,
        created_at: Timestamp(10),
        updated_at: Timestamp(10),
    }
}

/// Routes each event to the entries the test wrote for its position in the batch.
struct FixedRouter(std::collections::HashMap<uuid::Uuid, Vec<OutboxEntry>>);

impl switchboard::hub::OutboxRouter for FixedRouter {
    fn route(
        &self,
        events: &[switchboard::event::Event],
        _now: Timestamp,
        out: &mut Vec<OutboxEntry>,
    ) {
        for event in events {
            out.extend(self.0.get(&event.id).into_iter().flatten().cloned());
        }
    }

    fn committed(&self, _events: &[Arc<switchboard::event::Event>], _entries: &[OutboxEntry]) {}

    fn abandoned(&self, _entries: &[OutboxEntry]) {}
}

/// Appends `batch` with the given deliveries (`event_index` = position in the batch), durably.
async fn append_with_outbox(
    store: &DynStore,
    batch: Vec<switchboard::event::Event>,
    entries: Vec<OutboxEntry>,
) -> Result<(Vec<switchboard::event::Event>, Vec<OutboxEntry>), StoreError> {
    let mut routes: std::collections::HashMap<uuid::Uuid, Vec<OutboxEntry>> = Default::default();
    for entry in entries {
        routes
            .entry(batch[entry.event_index].id)
            .or_default()
            .push(entry);
    }
    let committed = store
        .commit(batch, Some(Arc::new(FixedRouter(routes))))
        .await?;
    store.sync(committed.ticket).await?;
    let events = committed
        .appended
        .into_iter()
        .map(|a| match a {
            switchboard::store::Appended::New(e) | switchboard::store::Appended::Existing(e) => e,
            switchboard::store::Appended::Refused(e) => panic!("refused: {e}"),
        })
        .collect();
    Ok((events, committed.outbox))
}

fn entry(index: usize, sub: &str, priority: u8, due: i64) -> OutboxEntry {
    OutboxEntry {
        event_index: index,
        subscription_id: Arc::from(sub),
        priority,
        due_at: Timestamp(due),
        claimed_until: None,
        delivery_id: 0,
    }
}

fn claim(sub: &str, max: usize) -> Vec<ClaimRequest> {
    vec![ClaimRequest {
        subscription_id: Arc::from(sub),
        max,
    }]
}

async fn list(
    store: &DynStore,
    sub: &str,
    status: Option<DeliveryStatus>,
) -> Vec<switchboard::store::webhooks::DeliveryRecord> {
    store
        .webhooks()
        .list_deliveries(&DeliveryQuery {
            subscription_id: Some(sub.into()),
            status,
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list")
}

#[tokio::test]
async fn subscriptions_are_stored_whole_and_scoped_by_org() {
    let (store, _dir) = fresh().await;
    let w = store.webhooks();
    let a = sub("s1", "org-a");
    w.insert_subscription(&a).await.expect("insert");
    w.insert_subscription(&sub("s2", "org-b"))
        .await
        .expect("insert");
    assert!(w.insert_subscription(&a).await.is_err(), "ids are unique");
    let got = w
        .get_subscription(Some("org-a"), "s1")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got.filters, a.filters);
    assert_eq!(got.headers, a.headers);
    assert_eq!(got.rate_limit, Some(2.5));
    assert_eq!(got.retry, a.retry);
    assert!(w
        .get_subscription(Some("org-b"), "s1")
        .await
        .expect("get")
        .is_none());
    assert!(w.get_subscription(None, "s1").await.expect("get").is_some());
    assert_eq!(
        w.list_subscriptions(Some("org-a"))
            .await
            .expect("list")
            .len(),
        1
    );
    assert_eq!(w.list_subscriptions(None).await.expect("list").len(), 2);

    let mut changed = got.clone();
    changed.active = false;
    changed.previous_secret = Some("old".into());
    changed.previous_secret_until = Some(Timestamp(99));
    w.update_subscription(&changed).await.expect("update");
    let got = w
        .get_subscription(None, "s1")
        .await
        .expect("get")
        .expect("found");
    assert!(!got.active);
    assert_eq!(got.previous_secret_until, Some(Timestamp(99)));
    let mut foreign = changed.clone();
    foreign.org_id = "org-b".into();
    assert!(matches!(
        w.update_subscription(&foreign).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        w.delete_subscription(Some("org-b"), "s1").await,
        Err(StoreError::NotFound)
    ));
    w.delete_subscription(Some("org-a"), "s1")
        .await
        .expect("delete");
    assert!(w.get_subscription(None, "s1").await.expect("get").is_none());
}

#[tokio::test]
async fn the_outbox_commits_with_its_events_and_skips_idempotent_repeats() {
    let (store, _dir) = fresh().await;
    store
        .webhooks()
        .insert_subscription(&sub("s1", "org-a"))
        .await
        .expect("insert");
    let mut first = ev("custom.x", "org-a", 100);
    first.idempotency_key = Some("k".into());
    let plain = ev("fhir.deleted", "org-a", 100);
    let mut born_claimed = entry(1, "s1", 1, 100);
    born_claimed.claimed_until = Some(Timestamp(5_000));
    let (stored, written) = append_with_outbox(
        &store,
        vec![first.clone(), plain],
        vec![entry(0, "s1", 5, 100), born_claimed],
    )
    .await
    .expect("append");
    assert_eq!(stored.len(), 2);
    assert!(
        written.iter().all(|e| e.delivery_id > 0),
        "both written, ids returned"
    );
    let lanes = store
        .webhooks()
        .claim_deliveries(claim("s1", 10), Timestamp(1_000), Timestamp(2_000))
        .await
        .expect("claim");
    assert_eq!(
        lanes[0].deliveries.len(),
        1,
        "a delivery claimed at birth is leased"
    );
    assert_eq!(lanes[0].deliveries[0].id, written[0].delivery_id);
    assert_eq!(
        store
            .webhooks()
            .release_claims(Timestamp(1_500))
            .await
            .expect("release"),
        2
    );
    let mut repeat = ev("custom.x", "org-a", 200);
    repeat.idempotency_key = Some("k".into());
    let (stored, written) = append_with_outbox(
        &store,
        vec![repeat, ev("custom.y", "org-a", 200)],
        vec![entry(0, "s1", 5, 200)],
    )
    .await
    .expect("append");
    assert_eq!(stored[0].id, first.id, "an idempotent repeat");
    assert!(written.is_empty(), "a repeat is not routed: no delivery");
    let all = list(&store, "s1", None).await;
    assert_eq!(
        all.len(),
        2,
        "no delivery for the repeat, none for the unrouted event"
    );
    assert!(all
        .iter()
        .all(|d| d.status == DeliveryStatus::Pending && d.attempts == 0));
    assert!(all.iter().all(|d| d.event_id.is_some()));
    assert_eq!(
        store.webhooks().delivery_counts().await.expect("counts"),
        vec![DeliveryCounts {
            subscription_id: "s1".into(),
            open: 2,
            dead: 0
        }]
    );
}

#[tokio::test]
async fn claims_go_by_priority_then_due_time_and_hold_a_lease() {
    let (store, _dir) = fresh().await;
    let w = store.webhooks();
    w.insert_subscription(&sub("s1", "org-a"))
        .await
        .expect("insert");
    let batch: Vec<_> = (0..5).map(|i| ev("custom.x", "org-a", 100 + i)).collect();
    let outbox = vec![
        entry(0, "s1", 5, 100),
        entry(1, "s1", 2, 300),
        entry(2, "s1", 1, 200),
        entry(3, "s1", 2, 150),
        entry(4, "s1", 1, 10_000),
    ];
    let (stored, _) = append_with_outbox(&store, batch, outbox)
        .await
        .expect("append");
    let lanes = w
        .claim_deliveries(claim("s1", 3), Timestamp(1_000), Timestamp(5_000))
        .await
        .expect("claim");
    let seqs: Vec<i64> = lanes[0]
        .deliveries
        .iter()
        .map(|d| d.event.as_ref().expect("event").seq)
        .collect();
    assert_eq!(
        seqs,
        vec![stored[2].seq, stored[3].seq, stored[1].seq],
        "priority 1, then 2 by due time"
    );
    assert_eq!(
        lanes[0].next_due,
        Some(Timestamp(1_000)),
        "full: maybe more due now"
    );
    let lanes = w
        .claim_deliveries(claim("s1", 10), Timestamp(1_000), Timestamp(5_000))
        .await
        .expect("claim");
    assert_eq!(
        lanes[0].deliveries.len(),
        1,
        "only the last due one; claimed ones are leased"
    );
    assert_eq!(
        lanes[0].deliveries[0].event.as_ref().expect("event").seq,
        stored[0].seq
    );
    assert_eq!(
        lanes[0].next_due,
        Some(Timestamp(5_000)),
        "the earliest lease or due time"
    );
    let lanes = w
        .claim_deliveries(claim("s1", 10), Timestamp(5_000), Timestamp(9_000))
        .await
        .expect("claim");
    assert_eq!(
        lanes[0].deliveries.len(),
        4,
        "expired leases are claimable again"
    );
    assert_eq!(lanes[0].next_due, Some(Timestamp(9_000)));
    assert_eq!(
        w.release_claims(Timestamp(6_000)).await.expect("release"),
        4
    );
    let lanes = w
        .claim_deliveries(claim("s1", 10), Timestamp(6_000), Timestamp(9_000))
        .await
        .expect("claim");
    assert_eq!(
        lanes[0].deliveries.len(),
        4,
        "released claims are due at once"
    );
    let lanes = w
        .claim_deliveries(claim("other", 10), Timestamp(6_000), Timestamp(9_000))
        .await
        .expect("claim");
    assert!(lanes[0].deliveries.is_empty());
    assert_eq!(lanes[0].next_due, None);
}

fn attempt(at: i64, code: Option<u16>, error: Option<&str>) -> AttemptRecord {
    AttemptRecord {
        attempted_at: Timestamp(at),
        status_code: code,
        duration_us: 1_500,
        error: error.map(str::to_string),
        response_body: Some("body".into()),
    }
}

#[tokio::test]
async fn attempts_are_recorded_and_dead_ones_redriven() {
    let (store, _dir) = fresh().await;
    let w = store.webhooks();
    w.insert_subscription(&sub("s1", "org-a"))
        .await
        .expect("insert");
    let batch: Vec<_> = (0..3).map(|i| ev("custom.x", "org-a", 100 + i)).collect();
    let (stored, _) = append_with_outbox(
        &store,
        batch,
        (0..3).map(|i| entry(i, "s1", 5, 100)).collect(),
    )
    .await
    .expect("append");
    let lanes = w
        .claim_deliveries(claim("s1", 10), Timestamp(200), Timestamp(9_000))
        .await
        .expect("claim");
    let ids: Vec<i64> = lanes[0].deliveries.iter().map(|d| d.id).collect();
    w.record_deliveries(vec![
        DeliveryUpdate {
            delivery_id: ids[0],
            attempt: Some(attempt(300, Some(200), None)),
            status: DeliveryStatus::Succeeded,
            attempts: 1,
            due_at: Timestamp(300),
            completed_at: Some(Timestamp(300)),
            deactivate: None,
        },
        DeliveryUpdate {
            delivery_id: ids[1],
            attempt: Some(attempt(300, None, Some("timed out"))),
            status: DeliveryStatus::Failed,
            attempts: 1,
            due_at: Timestamp(2_300),
            completed_at: None,
            deactivate: None,
        },
        DeliveryUpdate {
            delivery_id: ids[2],
            attempt: Some(attempt(300, Some(410), Some("HTTP 410"))),
            status: DeliveryStatus::Dead,
            attempts: 1,
            due_at: Timestamp(300),
            completed_at: Some(Timestamp(300)),
            deactivate: Some((Arc::from("s1"), "gone".into())),
        },
    ])
    .await
    .expect("record");
    let sub_now = w
        .get_subscription(None, "s1")
        .await
        .expect("get")
        .expect("found");
    assert!(!sub_now.active);
    assert_eq!(sub_now.disabled_reason.as_deref(), Some("gone"));
    let failed = list(&store, "s1", Some(DeliveryStatus::Failed)).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].next_attempt_at, Some(Timestamp(2_300)));
    assert_eq!(failed[0].attempt_log[0].error.as_deref(), Some("timed out"));
    assert_eq!(failed[0].event_seq, stored[1].seq);
    let dead = list(&store, "s1", Some(DeliveryStatus::Dead)).await;
    assert_eq!(dead[0].last_status_code, Some(410));
    assert_eq!(dead[0].attempt_log.len(), 1);
    assert_eq!(
        store.webhooks().delivery_counts().await.expect("counts")[0],
        DeliveryCounts {
            subscription_id: "s1".into(),
            open: 1,
            dead: 1
        }
    );
    // Dead-letter listing across subscriptions, by org.
    let dlq = w
        .list_deliveries(&DeliveryQuery {
            org_id: Some("org-b".into()),
            status: Some(DeliveryStatus::Dead),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert!(dlq.is_empty(), "another org sees none");
    assert!(matches!(
        w.redrive_delivery(Some("org-b"), dead[0].id, Timestamp(400))
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        w.redrive_delivery(Some("org-a"), dead[0].id, Timestamp(400))
            .await
            .expect("redrive"),
        "s1"
    );
    assert!(
        matches!(
            w.redrive_delivery(Some("org-a"), dead[0].id, Timestamp(400))
                .await,
            Err(StoreError::NotFound)
        ),
        "no longer dead"
    );
    let redriven = list(&store, "s1", Some(DeliveryStatus::Pending)).await;
    assert_eq!(
        (redriven[0].attempts, redriven[0].next_attempt_at),
        (0, Some(Timestamp(400)))
    );
    assert_eq!(
        redriven[0].attempt_log.len(),
        1,
        "the log keeps the old attempt"
    );
    assert_eq!(
        w.redrive_subscription(Some("org-a"), "s1", Timestamp(500))
            .await
            .expect("all"),
        0
    );
    assert!(matches!(
        w.redrive_subscription(Some("org-b"), "s1", Timestamp(500))
            .await,
        Err(StoreError::NotFound)
    ));

    // Replay: finished deliveries reopen, open ones are left alone, new ones are created.
    let entries: Vec<EnqueueEntry> = stored
        .iter()
        .map(|e| EnqueueEntry {
            subscription_id: Arc::from("s1"),
            org_id: "org-a".into(),
            event_seq: e.seq,
            priority: 5,
        })
        .collect();
    assert_eq!(
        w.enqueue_deliveries(entries.clone(), Timestamp(600))
            .await
            .expect("enqueue"),
        1
    );
    let mut fresh_event = entries[0].clone();
    fresh_event.subscription_id = Arc::from("s2");
    assert_eq!(
        w.enqueue_deliveries(vec![fresh_event], Timestamp(600))
            .await
            .expect("enqueue"),
        1
    );
    assert!(list(&store, "s1", Some(DeliveryStatus::Succeeded))
        .await
        .is_empty());

    // Deleting the subscription takes its deliveries along.
    w.delete_subscription(None, "s1").await.expect("delete");
    assert!(list(&store, "s1", None).await.is_empty());
}
