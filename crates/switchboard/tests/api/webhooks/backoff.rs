//! The exact retry schedule with injected time: the worker is driven one step at a time at chosen instants
//! (`Engine::step`), against a real store and a real receiver that always fails.

use super::{Behaviour, TestReceiver};
use std::collections::BTreeMap;
use std::sync::Arc;
use switchboard::event::{EventType, NewEvent, Source, Timestamp};
use switchboard::hub::{Hub, HubConfig};
use switchboard::store::webhooks::{
    DeliveryQuery, DeliveryStatus, Filters, RetryConfig, SubscriptionRecord,
};
use switchboard::webhooks::{signature, Webhooks};
use switchboard::Config;

const SECOND: i64 = 1_000_000;

#[tokio::test]
async fn default_schedule_is_exactly_2_4_8_16_32_seconds_then_dead() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = crate::helpers::open_store(&dir).await;
    let receiver = TestReceiver::start().await;
    receiver.set("/fail", Behaviour::status(500));
    let mut config = Config::defaults().expect("defaults").webhooks;
    config.enabled = false;
    config.allowed_networks = vec!["127.0.0.0/8".into()];
    let webhooks = Webhooks::new(Arc::clone(&store), config)
        .await
        .expect("webhooks");
    let now = Timestamp::now();
    let sub = SubscriptionRecord {
        id: "sub-backoff".into(),
        org_id: "org-a".into(),
        name: "backoff".into(),
        url: receiver.url("/fail"),
        events: vec!["**".into()],
        filters: Filters::default(),
        secret: signature::generate_secret(),
        previous_secret: None,
        previous_secret_until: None,
        active: true,
        retry: RetryConfig::default(),
        headers: BTreeMap::new(),
        rate_limit: None,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    };
    store
        .webhooks()
        .insert_subscription(&sub)
        .await
        .expect("insert");
    webhooks.reload().await.expect("reload");
    let hub = Hub::start_with_outbox(
        Arc::clone(&store),
        HubConfig::default(),
        Some(webhooks.outbox_router()),
    )
    .await
    .expect("hub");
    let data = serde_json::value::RawValue::from_string("{}".into()).expect("raw");
    hub.emit(NewEvent::new(
        EventType::parse("custom.x").expect("type"),
        "org-a",
        Source::Api,
        data,
    ))
    .await
    .expect("emit");

    let engine = webhooks.engine();
    let query = DeliveryQuery {
        org_id: Some("org-a".into()),
        limit: 10,
        ..Default::default()
    };
    // Time is ours: t0 is a fixed instant after the commit; every step happens exactly when we say.
    let t0 = Timestamp(Timestamp::now().0 + SECOND);
    let mut t = t0;
    assert_eq!(
        engine.step(t).await.expect("step"),
        1,
        "first attempt at once"
    );
    let mut gaps = Vec::new();
    loop {
        let d = store
            .webhooks()
            .list_deliveries(&query)
            .await
            .expect("list")
            .remove(0);
        if d.status == DeliveryStatus::Dead {
            assert_eq!(d.attempts, 6, "one attempt and five retries");
            assert_eq!(d.attempt_log.len(), 6);
            break;
        }
        assert_eq!(d.status, DeliveryStatus::Failed);
        let due = d.next_attempt_at.expect("due");
        gaps.push((due.0 - t.0) / SECOND);
        // One microsecond early: nothing is due.
        assert_eq!(engine.step(Timestamp(due.0 - 1)).await.expect("step"), 0);
        t = due;
        assert_eq!(engine.step(t).await.expect("step"), 1);
    }
    assert_eq!(gaps, vec![2, 4, 8, 16, 32]);
    assert_eq!(receiver.received_on("/fail").len(), 6);
    assert_eq!(
        engine
            .step(Timestamp(t.0 + 3600 * SECOND))
            .await
            .expect("step"),
        0,
        "dead stays dead"
    );
    hub.shutdown().await;
}
