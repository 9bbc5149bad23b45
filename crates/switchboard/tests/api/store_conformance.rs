//! The storage conformance suite: one story every backend must pass. Each test opens a fresh store from
//! `helpers::test_database_url`, so the same tests run against whichever backend that selects.

use serde_json::value::RawValue;
use switchboard::event::{Event, EventType, Pattern, Source, Timestamp};
use switchboard::fhir::resource::PreparedBody;
use switchboard::store::{
    self, ApiKeyRecord, Appended, AuditEntry, AuditQuery, DynStore, EventCursor, EventQuery, Order,
    ResourceWrite, StoreError, WriteAction,
};
use uuid::Uuid;

async fn fresh() -> (DynStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store::open(&crate::helpers::test_database_url(&dir))
        .await
        .expect("open store");
    (store, dir)
}

/// The events of an append, failing on refusals.
async fn append(store: &DynStore, batch: Vec<Event>) -> Vec<Event> {
    let results = store.append(batch).await.expect("append");
    results
        .into_iter()
        .map(|a| match a {
            Appended::New(e) | Appended::Existing(e) => e,
            Appended::Refused(e) => panic!("refused: {e}"),
        })
        .collect()
}

fn ev(kind: &str, org: &str, ts: i64) -> Event {
    let mut e = Event {
        id: Uuid::now_v7(),
        seq: 0,
        spec_version: "1.0",
        event_type: EventType::parse(kind).expect("type"),
        timestamp: Timestamp(ts),
        org_id: org.into(),
        source: Source::Api,
        message_type: None,
        message_control_id: None,
        resource_type: None,
        resource_id: None,
        data: RawValue::from_string(format!("{{\"ts\":{ts}}}")).expect("raw"),
        metadata: None,
        actor: Some("tester".into()),
        idempotency_key: None,
        write: None,
    };
    if kind.starts_with("fhir.") {
        e.resource_type = Some("Patient".into());
        e.resource_id = Some(format!("p{}", ts % 3));
    }
    e
}

#[tokio::test]
async fn append_assigns_increasing_seq_and_round_trips_every_field() {
    let (store, _dir) = fresh().await;
    assert_eq!(store.head().await.expect("head").0, 0);
    let mut first = ev("fhir.created", "org-a", 1_000);
    first.metadata = Some(RawValue::from_string("{\"m\":true}".into()).expect("raw"));
    first.message_control_id = Some("ctl".into());
    let stored = append(&store, vec![first.clone(), ev("custom.x", "org-a", 1_000)]).await;
    assert_eq!(stored.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    let more = append(&store, vec![ev("custom.x", "org-b", 2_000)]).await;
    assert_eq!(more[0].seq, 3);
    assert_eq!(store.head().await.expect("head"), (3, Timestamp(2_000)));
    let got = store
        .get_event(Some("org-a"), first.id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got.seq, 1);
    assert_eq!(got.data.get(), first.data.get());
    assert_eq!(got.metadata.as_ref().map(|m| m.get()), Some("{\"m\":true}"));
    assert_eq!(got.resource_id, first.resource_id);
    assert_eq!(got.message_control_id.as_deref(), Some("ctl"));
    assert_eq!(got.actor.as_deref(), Some("tester"));
    assert!(
        store
            .get_event(Some("org-b"), first.id)
            .await
            .expect("get")
            .is_none(),
        "scoped by org"
    );
    assert!(store
        .get_event(None, first.id)
        .await
        .expect("get")
        .is_some());
    let after = store.events_after(1, 10).await.expect("after");
    assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
}

#[tokio::test]
async fn idempotency_keys_store_once_per_org() {
    let (store, _dir) = fresh().await;
    let mut a = ev("custom.x", "org-a", 1);
    a.idempotency_key = Some("k1".into());
    let mut again = ev("custom.x", "org-a", 2);
    again.idempotency_key = Some("k1".into());
    let mut other_org = ev("custom.x", "org-b", 3);
    other_org.idempotency_key = Some("k1".into());
    let stored = append(&store, vec![a.clone(), again, other_org]).await;
    assert_eq!(stored[0].id, a.id);
    assert_eq!(stored[1].id, a.id, "the repeat resolves to the first event");
    assert_eq!(stored[1].seq, stored[0].seq);
    assert_ne!(stored[2].id, a.id);
    let mut later = ev("custom.x", "org-a", 4);
    later.idempotency_key = Some("k1".into());
    let stored = append(&store, vec![later]).await;
    assert_eq!(stored[0].id, a.id);
    assert_eq!(store.events_after(0, 10).await.expect("after").len(), 2);
}

#[tokio::test]
async fn queries_filter_order_and_page() {
    let (store, _dir) = fresh().await;
    let mut batch = Vec::new();
    for i in 0..30 {
        let kind = ["fhir.created", "custom.a.b", "custom.c"][i % 3];
        let org = if i % 5 == 0 { "org-b" } else { "org-a" };
        batch.push(ev(kind, org, 1_000 + i as i64));
    }
    append(&store, batch).await;
    let base = EventQuery {
        org_id: Some("org-a".into()),
        limit: 100,
        ..Default::default()
    };
    let all = store.query_events(&base).await.expect("query");
    assert_eq!(all.len(), 24);
    assert!(all.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
    let asc = store
        .query_events(&EventQuery {
            order: Order::Asc,
            ..base.clone()
        })
        .await
        .expect("query");
    assert!(asc.windows(2).all(|w| w[0].seq < w[1].seq));
    let custom = store
        .query_events(&EventQuery {
            event_types: vec![Pattern::parse("custom.**").expect("p")],
            ..base.clone()
        })
        .await
        .expect("query");
    assert!(custom
        .iter()
        .all(|e| e.event_type.as_str().starts_with("custom.")));
    assert_eq!(custom.len(), 16);
    let one_segment = store
        .query_events(&EventQuery {
            event_types: vec![Pattern::parse("custom.*").expect("p")],
            ..base.clone()
        })
        .await
        .expect("query");
    assert!(one_segment
        .iter()
        .all(|e| e.event_type.as_str() == "custom.c"));
    let ranged = store
        .query_events(&EventQuery {
            from: Some(Timestamp(1_010)),
            to: Some(Timestamp(1_020)),
            ..base.clone()
        })
        .await
        .expect("query");
    assert!(ranged
        .iter()
        .all(|e| (1_010..1_020).contains(&e.timestamp.0)));
    assert_eq!(ranged.len(), 8);
    let resource = store
        .query_events(&EventQuery {
            resource_type: Some("Patient".into()),
            resource_id: Some("p1".into()),
            ..base.clone()
        })
        .await
        .expect("query");
    assert!(
        !resource.is_empty()
            && resource
                .iter()
                .all(|e| e.resource_id.as_deref() == Some("p1"))
    );

    for order in [Order::Desc, Order::Asc] {
        for org in [Some("org-a".to_string()), None] {
            let mut walked = Vec::new();
            let mut after = None;
            loop {
                let page = store
                    .query_events(&EventQuery {
                        org_id: org.clone(),
                        order,
                        after,
                        limit: 7,
                        ..Default::default()
                    })
                    .await
                    .expect("page");
                walked.extend(page.iter().map(|e| e.seq));
                if page.len() < 7 {
                    break;
                }
                let last = page.last().expect("last");
                after = Some(EventCursor {
                    timestamp: last.timestamp,
                    seq: last.seq,
                });
            }
            let expected = store
                .query_events(&EventQuery {
                    org_id: org.clone(),
                    order,
                    limit: 1000,
                    ..Default::default()
                })
                .await
                .expect("all");
            assert_eq!(
                walked,
                expected.iter().map(|e| e.seq).collect::<Vec<_>>(),
                "{order:?} {org:?}"
            );
        }
    }
}

#[tokio::test]
async fn matching_after_a_seq_filters_in_seq_order_and_pages() {
    let (store, _dir) = fresh().await;
    let mut batch = Vec::new();
    for i in 0..30 {
        let kind = ["fhir.created", "custom.a.b", "hl7.received"][i % 3];
        let org = if i % 5 == 0 { "org-b" } else { "org-a" };
        let mut e = ev(kind, org, 1_000 + i as i64);
        if kind == "hl7.received" {
            e.message_type = Some(if i % 2 == 0 { "ADT^A01" } else { "ORU^R01" }.into());
        }
        batch.push(e);
    }
    let stored = append(&store, batch).await;
    let query = EventQuery {
        org_id: Some("org-a".into()),
        limit: 4,
        // Ignored by this method: it always pages forward in seq order.
        order: Order::Desc,
        ..Default::default()
    };
    let expected: Vec<i64> = stored
        .iter()
        .filter(|e| e.org_id == "org-a" && e.seq > 3)
        .map(|e| e.seq)
        .collect();
    let mut seen = Vec::new();
    let mut after = 3;
    loop {
        let page = store
            .events_matching_after(&query, after)
            .await
            .expect("page");
        seen.extend(page.iter().map(|e| e.seq));
        match page.last() {
            Some(last) if page.len() == query.limit => after = last.seq,
            _ => break,
        }
    }
    assert_eq!(
        seen, expected,
        "every org-a event after seq 3, in seq order"
    );
    let filtered = store
        .events_matching_after(
            &EventQuery {
                event_types: vec![Pattern::parse("hl7.*").expect("pattern")],
                message_type: Some("ADT^A01".into()),
                limit: 100,
                ..query.clone()
            },
            0,
        )
        .await
        .expect("filtered");
    assert!(!filtered.is_empty());
    assert!(filtered.iter().all(|e| e.org_id == "org-a"
        && e.event_type.as_str() == "hl7.received"
        && e.message_type.as_deref() == Some("ADT^A01")));
    let patients = store
        .events_matching_after(
            &EventQuery {
                org_id: None,
                resource_type: Some("Patient".into()),
                resource_id: Some("p1".into()),
                limit: 100,
                ..Default::default()
            },
            0,
        )
        .await
        .expect("by resource");
    assert!(!patients.is_empty());
    assert!(patients
        .iter()
        .all(|e| e.resource_id.as_deref() == Some("p1")));
    assert!(
        patients.iter().any(|e| e.org_id == "org-b"),
        "no org: every org"
    );
}

#[tokio::test]
async fn purge_deletes_old_events_in_batches_and_seq_never_goes_back() {
    let (store, _dir) = fresh().await;
    let batch: Vec<Event> = (0..50).map(|i| ev("custom.x", "org-a", i)).collect();
    append(&store, batch).await;
    assert_eq!(
        store
            .purge_events_before(Timestamp(30), 10)
            .await
            .expect("purge"),
        10
    );
    let mut total = 10;
    loop {
        let n = store
            .purge_events_before(Timestamp(30), 10)
            .await
            .expect("purge");
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, 30);
    let left = store.events_after(0, 100).await.expect("after");
    assert_eq!(left.len(), 20);
    assert!(left.iter().all(|e| e.timestamp.0 >= 30));
    assert_eq!(
        store
            .purge_events_before(Timestamp(1_000), 100)
            .await
            .expect("purge"),
        20
    );
    assert_eq!(
        store.head().await.expect("head").0,
        50,
        "an emptied log keeps its high-water mark"
    );
    let next = append(&store, vec![ev("custom.x", "org-a", 2_000)]).await;
    assert_eq!(next[0].seq, 51);
}

#[tokio::test]
async fn cursors_keys_and_audit() {
    let (store, _dir) = fresh().await;
    assert_eq!(store.load_cursor("l1").await.expect("load"), None);
    store.save_cursor("l1", 5).await.expect("save");
    store.save_cursor("l1", 9).await.expect("save");
    assert_eq!(store.load_cursor("l1").await.expect("load"), Some(9));

    let audit = |action: &str, org: Option<&str>| AuditEntry {
        timestamp: Timestamp::now(),
        actor: Some("admin".into()),
        org_id: org.map(Into::into),
        action: action.into(),
        target: "t".into(),
        outcome: "ok".into(),
        detail: None,
    };
    let key = ApiKeyRecord {
        id: "k1".into(),
        org_id: Some("org-a".into()),
        name: "n".into(),
        key_hash: vec![1; 32],
        prefix: "sb_abc".into(),
        created_at: Timestamp::now(),
    };
    assert!(!store.any_admin_key().await.expect("admin"));
    store
        .insert_api_key(&key, &audit("key.create", Some("org-a")))
        .await
        .expect("insert");
    assert_eq!(
        store
            .find_api_key(&[1; 32])
            .await
            .expect("find")
            .map(|k| k.id),
        Some("k1".into())
    );
    assert!(store.find_api_key(&[2; 32]).await.expect("find").is_none());
    assert_eq!(
        store
            .list_api_keys(Some("org-b"))
            .await
            .expect("list")
            .len(),
        0
    );
    assert_eq!(store.list_api_keys(None).await.expect("list").len(), 1);
    let admin = ApiKeyRecord {
        id: "admin".into(),
        org_id: None,
        key_hash: vec![3; 32],
        ..key.clone()
    };
    store.upsert_api_key(&admin).await.expect("upsert");
    store
        .upsert_api_key(&ApiKeyRecord {
            key_hash: vec![4; 32],
            ..admin
        })
        .await
        .expect("upsert");
    assert!(store.any_admin_key().await.expect("admin"));
    assert!(
        store.find_api_key(&[3; 32]).await.expect("find").is_none(),
        "the old admin token stops working"
    );
    assert!(store.find_api_key(&[4; 32]).await.expect("find").is_some());
    assert!(matches!(
        store
            .delete_api_key("k1", Some("org-b"), &audit("key.delete", None))
            .await,
        Err(StoreError::NotFound)
    ));
    store
        .delete_api_key("k1", Some("org-a"), &audit("key.delete", None))
        .await
        .expect("delete");
    assert!(store.find_api_key(&[1; 32]).await.expect("find").is_none());

    store
        .record_audit(vec![
            audit("event.emit", Some("org-a")),
            audit("event.emit", Some("org-b")),
        ])
        .await
        .expect("record");
    let org_a = store
        .query_audit(&AuditQuery {
            org_id: Some("org-a".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(org_a.len(), 2);
    let emits = store
        .query_audit(&AuditQuery {
            action: Some("event.emit".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(emits.len(), 2);
    store.ping().await.expect("ping");
}

/// A large group of audit rows comes back row by row with every field, whatever the backend's way of batching the
/// inserts (SQLite writes 32 rows per statement, so 70 is two full statements and a remainder).
#[tokio::test]
async fn a_large_audit_group_round_trips_every_row() {
    let (store, _dir) = fresh().await;
    let entries: Vec<AuditEntry> = (0..70i64)
        .map(|i| AuditEntry {
            timestamp: Timestamp(1_700_000_000_000_000 + i),
            actor: (i % 3 != 0).then(|| format!("actor-{i}")),
            org_id: Some(if i % 2 == 0 { "org-a" } else { "org-b" }.into()),
            action: "event.emit".into(),
            target: format!("target-{i}"),
            outcome: "committed".into(),
            detail: (i % 5 != 0).then(|| format!("detail-{i}")),
        })
        .collect();
    store.record_audit(entries.clone()).await.expect("record");
    let mut back = store
        .query_audit(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("audit");
    back.reverse(); // newest first
    assert_eq!(back.len(), 70);
    for (want, got) in entries.iter().zip(&back) {
        assert_eq!(got.timestamp, want.timestamp);
        assert_eq!(got.actor, want.actor);
        assert_eq!(got.org_id, want.org_id);
        assert_eq!(got.action, want.action);
        assert_eq!(got.target, want.target);
        assert_eq!(got.outcome, want.outcome);
        assert_eq!(got.detail, want.detail);
    }
}

fn audit_row(action: &str, org: &str, ts: i64) -> AuditEntry {
    AuditEntry {
        timestamp: Timestamp(ts),
        actor: Some("admin".into()),
        org_id: Some(org.into()),
        action: action.into(),
        target: "t".into(),
        outcome: "committed".into(),
        detail: None,
    }
}

fn audit_query(org: Option<&str>, action: Option<&str>) -> AuditQuery {
    AuditQuery {
        org_id: org.map(Into::into),
        action: action.map(Into::into),
        limit: 1000,
        ..Default::default()
    }
}

/// Every event in the log is its own `event.emit` audit entry, answered with the stored rows, newest first, and
/// filtered like them.
#[tokio::test]
async fn events_are_audit_entries_beside_the_stored_rows() {
    let (store, _dir) = fresh().await;
    let mut by_source = ev("custom.a", "org-a", 1_000);
    by_source.actor = None;
    let stored = append(
        &store,
        vec![
            by_source,
            ev("custom.b", "org-b", 2_000),
            ev("custom.c", "org-a", 4_000),
        ],
    )
    .await;
    let mut key_created = audit_row("key.create", "org-a", 3_000);
    key_created.target = "k1".into();
    store.record_audit(vec![key_created]).await.expect("record");

    let all = store
        .query_audit(&audit_query(None, None))
        .await
        .expect("audit");
    let seen: Vec<(i64, &str, &str)> = all
        .iter()
        .map(|e| (e.timestamp.0, e.action.as_str(), e.target.as_str()))
        .collect();
    let (a, b, c) = (
        stored[0].id.to_string(),
        stored[1].id.to_string(),
        stored[2].id.to_string(),
    );
    assert_eq!(
        seen,
        vec![
            (4_000, "event.emit", c.as_str()),
            (3_000, "key.create", "k1"),
            (2_000, "event.emit", b.as_str()),
            (1_000, "event.emit", a.as_str()),
        ],
        "newest first, the event ids as the API writes them"
    );
    let first = &all[3];
    assert_eq!(
        first.actor.as_deref(),
        Some("api"),
        "the source when no actor"
    );
    assert_eq!(first.org_id.as_deref(), Some("org-a"));
    assert_eq!(first.outcome, "committed");
    assert_eq!(
        first.detail.as_deref(),
        Some("custom.a"),
        "the event type, never data"
    );
    assert_eq!(all[0].actor.as_deref(), Some("tester"));

    let org_a = store
        .query_audit(&audit_query(Some("org-a"), None))
        .await
        .expect("audit");
    assert_eq!(org_a.len(), 3);
    assert!(org_a.iter().all(|e| e.org_id.as_deref() == Some("org-a")));
    let emits = store
        .query_audit(&audit_query(Some("org-a"), Some("event.emit")))
        .await
        .expect("audit");
    assert_eq!(emits.len(), 2);
    let keys = store
        .query_audit(&audit_query(None, Some("key.create")))
        .await
        .expect("audit");
    assert_eq!(keys.len(), 1, "another action reads no events");
    let window = store
        .query_audit(&AuditQuery {
            from: Some(Timestamp(2_000)),
            to: Some(Timestamp(4_000)),
            ..audit_query(None, None)
        })
        .await
        .expect("audit");
    assert_eq!(
        window.iter().map(|e| e.timestamp.0).collect::<Vec<_>>(),
        vec![3_000, 2_000],
        "from inclusive, to exclusive"
    );
    let newest = store
        .query_audit(&AuditQuery {
            limit: 2,
            ..audit_query(None, None)
        })
        .await
        .expect("audit");
    assert_eq!(
        newest.iter().map(|e| e.timestamp.0).collect::<Vec<_>>(),
        vec![4_000, 3_000]
    );
}

/// Retention deletes events but not their audit entries: each purge writes them as rows first, so every emission
/// is answered exactly once before, between and after purges; emissions already written as rows (by earlier
/// releases, through the `audit-logger` cursor) are not answered twice either.
#[tokio::test]
async fn purged_events_keep_their_audit_entries_once() {
    let (store, _dir) = fresh().await;
    let early = append(&store, (0..3).map(|i| ev("custom.x", "org-a", i)).collect()).await;
    // An earlier release wrote rows for the first three events and moved its cursor.
    let rows = early
        .iter()
        .map(|e| AuditEntry {
            target: e.id.to_string(),
            ..audit_row("event.emit", "org-a", e.timestamp.0)
        })
        .collect();
    store.record_audit(rows).await.expect("record");
    store
        .save_cursor(store::EMISSIONS_STORED_THROUGH, early[2].seq)
        .await
        .expect("cursor");
    let later = append(
        &store,
        (3..40).map(|i| ev("custom.x", "org-a", i)).collect(),
    )
    .await;
    let ids: Vec<String> = early
        .iter()
        .chain(&later)
        .map(|e| e.id.to_string())
        .collect();
    let emissions = |entries: Vec<AuditEntry>| {
        let mut targets: Vec<String> = entries
            .into_iter()
            .filter(|e| e.action == "event.emit")
            .map(|e| e.target)
            .collect();
        targets.sort();
        targets
    };
    let mut want = ids.clone();
    want.sort();
    let query = audit_query(Some("org-a"), Some("event.emit"));
    assert_eq!(
        emissions(store.query_audit(&query).await.expect("audit")),
        want
    );

    assert_eq!(
        store
            .purge_events_before(Timestamp(25), 10)
            .await
            .expect("purge"),
        10
    );
    assert_eq!(
        emissions(store.query_audit(&query).await.expect("audit")),
        want
    );
    while store
        .purge_events_before(Timestamp(25), 10)
        .await
        .expect("purge")
        > 0
    {}
    assert_eq!(store.events_after(0, 100).await.expect("after").len(), 15);
    assert_eq!(
        emissions(store.query_audit(&query).await.expect("audit")),
        want
    );
    assert_eq!(
        store
            .load_cursor(store::EMISSIONS_STORED_THROUGH)
            .await
            .expect("cursor"),
        Some(later[21].seq),
        "the cursor follows the purge"
    );
    let newer = append(&store, vec![ev("custom.x", "org-a", 50)]).await;
    want.push(newer[0].id.to_string());
    want.sort();
    assert_eq!(
        emissions(store.query_audit(&query).await.expect("audit")),
        want
    );
    assert_eq!(
        store
            .purge_events_before(Timestamp(1_000), 100)
            .await
            .expect("purge"),
        16
    );
    let all = store.query_audit(&query).await.expect("audit");
    assert_eq!(
        emissions(all.clone()),
        want,
        "an empty log keeps the whole trail"
    );
    assert!(
        all.windows(2).all(|w| w[0].timestamp >= w[1].timestamp),
        "rows written by purges are in time order with the rest"
    );
}

fn fhir_write(
    org: &str,
    id: &str,
    action: WriteAction,
    if_match: Option<i64>,
    family: &str,
) -> Event {
    let mut e = ev("fhir.created", org, 10);
    e.resource_id = Some(id.into());
    e.write = Some(Box::new(ResourceWrite {
        action,
        if_match,
        body: Some(PreparedBody::new(
            "Patient",
            id,
            serde_json::json!({"resourceType": "Patient", "name": [{"family": family}], "birthDate": "1970-05-06"}),
        )),
    }));
    e
}

#[tokio::test]
async fn resource_writes_commit_with_their_event_and_refusals_spare_the_batch() {
    let (store, _dir) = fresh().await;
    let results = store
        .append(vec![
            fhir_write("org-a", "p1", WriteAction::Upsert, None, "Smith"),
            fhir_write("org-a", "p1", WriteAction::Upsert, Some(1), "Smyth"),
            fhir_write("org-a", "p1", WriteAction::Upsert, Some(1), "Stale"),
            fhir_write("org-a", "nobody", WriteAction::Delete, None, ""),
            fhir_write("org-b", "p1", WriteAction::Upsert, None, "Other"),
        ])
        .await
        .expect("append");
    let kinds: Vec<String> = results
        .iter()
        .map(|r| match r {
            Appended::New(e) => e.event_type.to_string(),
            Appended::Existing(_) => "existing".into(),
            Appended::Refused(e) => format!("refused: {e}"),
        })
        .collect();
    assert_eq!(kinds[0], "fhir.created");
    assert_eq!(kinds[1], "fhir.updated");
    assert!(
        kinds[2].starts_with("refused: precondition failed"),
        "{}",
        kinds[2]
    );
    assert_eq!(kinds[3], "refused: not found");
    assert_eq!(kinds[4], "fhir.created", "ids are per org");
    let Appended::New(updated) = &results[1] else {
        panic!("not stored")
    };
    let data: serde_json::Value = serde_json::from_str(updated.data.get()).expect("json");
    assert_eq!(data["meta"]["versionId"], "2");
    assert_eq!(data["name"][0]["family"], "Smyth");
    assert_eq!(
        store.head().await.expect("head").0,
        3,
        "refused writes store no event"
    );

    let current = store
        .read_resource("org-a", "Patient", "p1")
        .await
        .expect("read")
        .expect("found");
    assert_eq!((current.version, current.deleted), (2, false));
    let v1 = store
        .read_resource_version("org-a", "Patient", "p1", 1)
        .await
        .expect("vread")
        .expect("v1");
    assert!(v1.body.contains("Smith"));
    assert!(store
        .read_resource("org-c", "Patient", "p1")
        .await
        .expect("read")
        .is_none());

    use switchboard::fhir::search::SearchQuery;
    let q = |pairs: &[(&str, &str)]| {
        SearchQuery::parse(
            "Patient",
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        )
        .expect("query")
    };
    let found = store
        .search_resources("org-a", "Patient", &q(&[("family", "smy")]))
        .await
        .expect("search");
    assert_eq!(found.total, 1);
    let found = store
        .search_resources("org-a", "Patient", &q(&[("family", "smith")]))
        .await
        .expect("search");
    assert_eq!(found.total, 0, "the index follows the current version");
    let found = store
        .search_resources("org-a", "Patient", &q(&[("birthdate", "gt1970-01-01")]))
        .await
        .expect("search");
    assert_eq!(found.total, 1);
    let found = store
        .search_resources("org-a", "Patient", &q(&[("birthdate", "lt1970-01-01")]))
        .await
        .expect("search");
    assert_eq!(found.total, 0);
    let values = ["smyth".to_string(), "smith".into(), "other".into()];
    let ids = store
        .find_resource_ids("org-a", "Patient", "family", &values)
        .await
        .expect("find ids");
    assert_eq!(
        ids,
        [("smyth".to_string(), "p1".to_string())].into(),
        "only current values of the org's resources"
    );

    let deleted = store
        .append(vec![fhir_write(
            "org-a",
            "p1",
            WriteAction::Delete,
            None,
            "",
        )])
        .await
        .expect("append");
    assert!(matches!(&deleted[0], Appended::New(e) if e.event_type.as_str() == "fhir.deleted"));
    let current = store
        .read_resource("org-a", "Patient", "p1")
        .await
        .expect("read")
        .expect("found");
    assert!(current.deleted);
    let found = store
        .search_resources("org-a", "Patient", &q(&[]))
        .await
        .expect("search");
    assert_eq!(found.total, 0, "deleted resources are not found");
    let ids = store
        .find_resource_ids("org-a", "Patient", "family", &values)
        .await
        .expect("find ids");
    assert!(ids.is_empty(), "deleted resources are not found: {ids:?}");
    let again = store
        .append(vec![fhir_write(
            "org-a",
            "p1",
            WriteAction::Delete,
            None,
            "",
        )])
        .await
        .expect("append");
    assert!(matches!(&again[0], Appended::Refused(StoreError::Gone(_))));
}
/// The webhook part of the contract (subscriptions, outbox, claims, attempts).
mod webhooks;

#[tokio::test]
async fn a_repeated_idempotency_key_does_not_apply_its_resource_write_again() {
    let (store, _dir) = fresh().await;
    let mut first = fhir_write("org-a", "p9", WriteAction::Upsert, None, "Once");
    first.idempotency_key = Some("same".into());
    let mut again = fhir_write("org-a", "p9", WriteAction::Upsert, None, "Twice");
    again.idempotency_key = Some("same".into());
    store.append(vec![first]).await.expect("append");
    let results = store.append(vec![again]).await.expect("append");
    assert!(matches!(&results[0], Appended::Existing(_)));
    let current = store
        .read_resource("org-a", "Patient", "p9")
        .await
        .expect("read")
        .expect("found");
    assert_eq!(current.version, 1);
    assert!(current.body.contains("Once"));
}
