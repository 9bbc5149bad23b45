//! Webhook tables on PostgreSQL: subscriptions, the delivery outbox and the attempt log.
//!
//! Several instances claim from the same outbox: a claim locks due rows with `FOR UPDATE SKIP LOCKED` (so two
//! instances never take the same row) and moves their `due_at` to the end of the lease, so a crashed instance's
//! claims become due again by themselves and another instance retries them.

use super::events::decode as decode_event;
use super::PgStore;
use crate::event::Timestamp;
use crate::store::webhooks::{
    AttemptRecord, ClaimRequest, ClaimedDelivery, ClaimedLane, DeliveryCounts, DeliveryQuery,
    DeliveryRecord, DeliveryStatus, DeliveryUpdate, EnqueueEntry, SubscriptionRecord, WebhookStore,
};
use crate::store::{StoreError, StoreResult};
use deadpool_postgres::GenericClient;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_postgres::Row;

/// The priorities the hub assigns (see `webhooks::priority_of`); claims take them in this order.
const PRIORITIES: [i16; 4] = [1, 2, 3, 5];

/// The event columns (in `events::COLUMNS` order) of a claim's join.
const EVENT_COLUMNS: &str = "e.seq, e.id, e.ts, e.org_id, e.event_type, e.source, e.message_type, \
    e.message_control_id, e.resource_type, e.resource_id, e.data, e.metadata, e.actor, e.idempotency_key";

const SUB_COLUMNS: &str = "id, org_id, name, url, events, filters, secret, previous_secret, \
    previous_secret_until, active, retry_config, headers, rate_limit, disabled_reason, created_at, updated_at";

fn json_text<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(format!("encode: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(row: &Row, idx: usize) -> StoreResult<T> {
    let text: String = row.try_get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| StoreError::Database(format!("bad json in column {idx}: {e}")))
}

fn decode_subscription(row: &Row) -> StoreResult<SubscriptionRecord> {
    Ok(SubscriptionRecord {
        id: row.try_get(0)?,
        org_id: row.try_get(1)?,
        name: row.try_get(2)?,
        url: row.try_get(3)?,
        events: from_json(row, 4)?,
        filters: from_json(row, 5)?,
        secret: row.try_get(6)?,
        previous_secret: row.try_get(7)?,
        previous_secret_until: row.try_get::<_, Option<i64>>(8)?.map(Timestamp),
        active: row.try_get(9)?,
        retry: from_json(row, 10)?,
        headers: from_json(row, 11)?,
        rate_limit: row.try_get(12)?,
        disabled_reason: row.try_get(13)?,
        created_at: Timestamp(row.try_get(14)?),
        updated_at: Timestamp(row.try_get(15)?),
    })
}

/// Writes `sub` with `sql`, whose parameters are the subscription's columns in [`SUB_COLUMNS`] order.
async fn write_subscription<C: GenericClient>(
    client: &C,
    sql: &str,
    sub: &SubscriptionRecord,
) -> StoreResult<u64> {
    let (events, filters, retry, headers) = (
        json_text(&sub.events)?,
        json_text(&sub.filters)?,
        json_text(&sub.retry)?,
        json_text(&sub.headers)?,
    );
    let statement = client.prepare_cached(sql).await?;
    Ok(client
        .execute(
            &statement,
            &[
                &sub.id,
                &sub.org_id,
                &sub.name,
                &sub.url,
                &events,
                &filters,
                &sub.secret,
                &sub.previous_secret,
                &sub.previous_secret_until.map(|t| t.0),
                &sub.active,
                &retry,
                &headers,
                &sub.rate_limit,
                &sub.disabled_reason,
                &sub.created_at.0,
                &sub.updated_at.0,
            ],
        )
        .await?)
}

const DELIVERY_COLUMNS: &str = "d.id, d.subscription_id, d.org_id, d.event_seq, e.id, e.event_type, d.priority, \
    d.status, d.attempts, d.due_at, d.created_at, d.updated_at, d.completed_at, d.last_status, d.last_error";

fn decode_delivery(row: &Row) -> StoreResult<DeliveryRecord> {
    let status: String = row.try_get(7)?;
    let status = DeliveryStatus::parse(&status)
        .ok_or_else(|| StoreError::Database(format!("bad delivery status '{status}'")))?;
    let due: i64 = row.try_get(9)?;
    Ok(DeliveryRecord {
        id: row.try_get(0)?,
        subscription_id: row.try_get(1)?,
        org_id: row.try_get(2)?,
        event_seq: row.try_get(3)?,
        event_id: row.try_get(4)?,
        event_type: row.try_get(5)?,
        priority: row.try_get::<_, i16>(6)?.clamp(0, 255) as u8,
        status,
        attempts: row.try_get::<_, i32>(8)?.max(0) as u32,
        next_attempt_at: status.is_open().then_some(Timestamp(due)),
        created_at: Timestamp(row.try_get(10)?),
        updated_at: Timestamp(row.try_get(11)?),
        completed_at: row.try_get::<_, Option<i64>>(12)?.map(Timestamp),
        last_status_code: status_code(row.try_get(13)?),
        last_error: row.try_get(14)?,
        attempt_log: Vec::new(),
    })
}

fn status_code(code: Option<i32>) -> Option<u16> {
    code.and_then(|c| u16::try_from(c).ok())
}

/// Claims the due deliveries of one subscription inside the claim transaction.
async fn claim_lane<C: GenericClient>(
    tx: &C,
    request: &ClaimRequest,
    now: Timestamp,
    lease_until: Timestamp,
) -> StoreResult<ClaimedLane> {
    let sql = format!(
        "WITH picked AS ( \
           SELECT x.id, x.due_at, pr.n FROM UNNEST($2::int2[]) WITH ORDINALITY AS pr(p, n) \
           CROSS JOIN LATERAL (SELECT id, due_at FROM webhook_deliveries WHERE subscription_id = $1 \
             AND priority = pr.p AND status IN ('pending', 'failed') AND due_at <= $3 \
             ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED) x \
           ORDER BY pr.n, x.due_at LIMIT $4), \
         leased AS (UPDATE webhook_deliveries d SET due_at = $5, claimed_until = $5 FROM picked p \
           WHERE d.id = p.id RETURNING d.id, d.event_seq, d.attempts, d.created_at) \
         SELECT {EVENT_COLUMNS}, l.id, l.attempts, l.created_at FROM leased l JOIN picked p ON p.id = l.id \
         LEFT JOIN events e ON e.seq = l.event_seq ORDER BY p.n, p.due_at"
    );
    let statement = tx.prepare_cached(&sql).await?;
    let max = request.max as i64;
    let rows = tx
        .query(
            &statement,
            &[
                &&*request.subscription_id,
                &&PRIORITIES[..],
                &now.0,
                &max,
                &lease_until.0,
            ],
        )
        .await?;
    let mut deliveries = Vec::with_capacity(rows.len());
    for row in &rows {
        // Columns 0..14 are the event's (NULL once retention purged it), then the delivery's.
        let event = match row.try_get::<_, Option<i64>>(0)? {
            Some(_) => Some(Arc::new(decode_event(row, 0)?)),
            None => None,
        };
        deliveries.push(ClaimedDelivery {
            id: row.try_get(14)?,
            subscription_id: Arc::clone(&request.subscription_id),
            attempts: row.try_get::<_, i32>(15)?.max(0) as u32,
            created_at: Timestamp(row.try_get(16)?),
            fresh: false,
            event,
            lease_until,
        });
    }
    let next_due = if deliveries.len() < request.max {
        let statement = tx
            .prepare_cached(
                "SELECT MIN(x.due_at) FROM UNNEST($2::int2[]) AS pr(p) CROSS JOIN LATERAL \
                 (SELECT due_at FROM webhook_deliveries WHERE subscription_id = $1 AND priority = pr.p \
                 AND status IN ('pending', 'failed') ORDER BY due_at LIMIT 1) x",
            )
            .await?;
        let row = tx
            .query_one(&statement, &[&&*request.subscription_id, &&PRIORITIES[..]])
            .await?;
        row.try_get::<_, Option<i64>>(0)?.map(Timestamp)
    } else {
        Some(now)
    };
    Ok(ClaimedLane {
        subscription_id: Arc::clone(&request.subscription_id),
        deliveries,
        next_due,
    })
}

#[async_trait::async_trait]
impl WebhookStore for PgStore {
    async fn insert_subscription(&self, sub: &SubscriptionRecord) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO webhook_subscriptions ({SUB_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        );
        write_subscription(&self.client().await?, &sql, sub).await?;
        self.notify_subscriptions_changed().await
    }

    async fn update_subscription(&self, sub: &SubscriptionRecord) -> StoreResult<()> {
        // Every column is a parameter (as for insert); id, org and created_at only select the row.
        let sql = "UPDATE webhook_subscriptions SET name = $3, url = $4, events = $5, filters = $6, secret = $7, \
             previous_secret = $8, previous_secret_until = $9, active = $10, retry_config = $11, headers = $12, \
             rate_limit = $13, disabled_reason = $14, updated_at = $16 WHERE id = $1 AND org_id = $2 \
             AND $15::int8 IS NOT NULL";
        let changed = write_subscription(&self.client().await?, sql, sub).await?;
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        self.notify_subscriptions_changed().await
    }

    async fn get_subscription(
        &self,
        org_id: Option<&str>,
        id: &str,
    ) -> StoreResult<Option<SubscriptionRecord>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {SUB_COLUMNS} FROM webhook_subscriptions WHERE id = $1 AND ($2::text IS NULL OR org_id = $2)"
            ))
            .await?;
        let row = client.query_opt(&statement, &[&id, &org_id]).await?;
        row.as_ref().map(decode_subscription).transpose()
    }

    async fn list_subscriptions(
        &self,
        org_id: Option<&str>,
    ) -> StoreResult<Vec<SubscriptionRecord>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {SUB_COLUMNS} FROM webhook_subscriptions WHERE $1::text IS NULL OR org_id = $1 \
                 ORDER BY created_at, id"
            ))
            .await?;
        let rows = client.query(&statement, &[&org_id]).await?;
        rows.iter().map(decode_subscription).collect()
    }

    async fn delete_subscription(&self, org_id: Option<&str>, id: &str) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let deleted = tx
            .execute(
                "DELETE FROM webhook_subscriptions WHERE id = $1 AND ($2::text IS NULL OR org_id = $2)",
                &[&id, &org_id],
            )
            .await?;
        if deleted == 0 {
            return Err(StoreError::NotFound);
        }
        tx.execute(
            "DELETE FROM webhook_attempts WHERE delivery_id IN \
             (SELECT id FROM webhook_deliveries WHERE subscription_id = $1)",
            &[&id],
        )
        .await?;
        tx.execute(
            "DELETE FROM webhook_deliveries WHERE subscription_id = $1",
            &[&id],
        )
        .await?;
        tx.commit().await?;
        self.notify_subscriptions_changed().await
    }

    async fn claim_deliveries(
        &self,
        requests: Vec<ClaimRequest>,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Vec<ClaimedLane>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The lanes are independent: their statements are pipelined on the connection.
        let lanes = futures::future::try_join_all(
            requests
                .iter()
                .map(|request| claim_lane(&tx, request, now, lease_until)),
        )
        .await?;
        tx.commit().await?;
        Ok(lanes)
    }

    async fn record_deliveries(&self, updates: Vec<DeliveryUpdate>) -> StoreResult<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let update = tx
            .prepare_cached(
                "UPDATE webhook_deliveries d SET status = u.status, attempts = u.attempts, due_at = u.due, \
                 claimed_until = 0, updated_at = u.at, completed_at = u.completed, \
                 last_status = COALESCE(u.code, d.last_status), last_error = u.error \
                 FROM UNNEST($1::int8[], $2::text[], $3::int4[], $4::int8[], $5::int8[], $6::int8[], $7::int4[], \
                 $8::text[]) AS u(id, status, attempts, due, at, completed, code, error) WHERE d.id = u.id",
            )
            .await?;
        let log = tx
            .prepare_cached(
                "INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, duration_us, error, \
                 response_body) SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int4[], $4::int8[], $5::text[], \
                 $6::text[])",
            )
            .await?;
        let mut ids = Vec::with_capacity(updates.len());
        let mut statuses = Vec::with_capacity(updates.len());
        let mut attempts = Vec::with_capacity(updates.len());
        let mut due = Vec::with_capacity(updates.len());
        let mut at = Vec::with_capacity(updates.len());
        let mut completed = Vec::with_capacity(updates.len());
        let mut codes = Vec::with_capacity(updates.len());
        let mut errors = Vec::with_capacity(updates.len());
        let mut log_ids = Vec::new();
        let mut log_at = Vec::new();
        let mut log_codes = Vec::new();
        let mut log_durations = Vec::new();
        let mut log_errors = Vec::new();
        let mut log_bodies = Vec::new();
        for u in &updates {
            ids.push(u.delivery_id);
            statuses.push(u.status.as_str());
            attempts.push(i32::try_from(u.attempts).unwrap_or(i32::MAX));
            due.push(u.due_at.0);
            completed.push(u.completed_at.map(|t| t.0));
            match &u.attempt {
                Some(a) => {
                    at.push(a.attempted_at.0);
                    codes.push(a.status_code.map(i32::from));
                    errors.push(a.error.as_deref());
                    log_ids.push(u.delivery_id);
                    log_at.push(a.attempted_at.0);
                    log_codes.push(a.status_code.map(i32::from));
                    log_durations.push(a.duration_us);
                    log_errors.push(a.error.as_deref());
                    log_bodies.push(a.response_body.as_deref());
                }
                None => {
                    at.push(u.due_at.0);
                    codes.push(None);
                    errors.push(None);
                }
            }
        }
        tx.execute(
            &update,
            &[
                &ids, &statuses, &attempts, &due, &at, &completed, &codes, &errors,
            ],
        )
        .await?;
        if !log_ids.is_empty() {
            tx.execute(
                &log,
                &[
                    &log_ids,
                    &log_at,
                    &log_codes,
                    &log_durations,
                    &log_errors,
                    &log_bodies,
                ],
            )
            .await?;
        }
        let mut deactivated = false;
        for u in &updates {
            if let Some((sub, reason)) = &u.deactivate {
                deactivated = true;
                let when = u.attempt.as_ref().map_or(u.due_at, |a| a.attempted_at);
                tx.execute(
                    "UPDATE webhook_subscriptions SET active = false, disabled_reason = $2, updated_at = $3 \
                     WHERE id = $1",
                    &[&&**sub, reason, &when.0],
                )
                .await?;
            }
        }
        tx.commit().await?;
        if deactivated {
            self.notify_subscriptions_changed().await?;
        }
        Ok(())
    }

    async fn enqueue_deliveries(
        &self,
        entries: Vec<EnqueueEntry>,
        now: Timestamp,
    ) -> StoreResult<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO webhook_deliveries (subscription_id, org_id, event_seq, priority, status, attempts, \
                 due_at, created_at, updated_at) SELECT s, o, q, p, 'pending', 0, $5, $5, $5 \
                 FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int2[]) AS u(s, o, q, p) \
                 ON CONFLICT (subscription_id, event_seq) DO UPDATE SET status = 'pending', attempts = 0, \
                 due_at = excluded.due_at, created_at = excluded.created_at, updated_at = excluded.updated_at, \
                 completed_at = NULL WHERE webhook_deliveries.status IN ('succeeded', 'dead')",
            )
            .await?;
        let subs: Vec<&str> = entries.iter().map(|e| &*e.subscription_id).collect();
        let orgs: Vec<&str> = entries.iter().map(|e| e.org_id.as_str()).collect();
        let seqs: Vec<i64> = entries.iter().map(|e| e.event_seq).collect();
        let priorities: Vec<i16> = entries.iter().map(|e| i16::from(e.priority)).collect();
        Ok(client
            .execute(&statement, &[&subs, &orgs, &seqs, &priorities, &now.0])
            .await?)
    }

    async fn list_deliveries(&self, q: &DeliveryQuery) -> StoreResult<Vec<DeliveryRecord>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d LEFT JOIN events e ON e.seq = d.event_seq \
                 WHERE ($1::text IS NULL OR d.org_id = $1) AND ($2::text IS NULL OR d.subscription_id = $2) \
                 AND ($3::text IS NULL OR d.status = $3) AND ($4::int8 IS NULL OR d.id < $4) \
                 ORDER BY d.id DESC LIMIT $5"
            ))
            .await?;
        let rows = client
            .query(
                &statement,
                &[
                    &q.org_id,
                    &q.subscription_id,
                    &q.status.map(DeliveryStatus::as_str),
                    &q.before_id,
                    &(q.limit as i64),
                ],
            )
            .await?;
        let mut deliveries: Vec<DeliveryRecord> = rows
            .iter()
            .map(decode_delivery)
            .collect::<StoreResult<_>>()?;
        let ids: Vec<i64> = deliveries.iter().map(|d| d.id).collect();
        let attempts = client
            .prepare_cached(
                "SELECT delivery_id, attempted_at, status_code, duration_us, error, response_body \
                 FROM webhook_attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, id",
            )
            .await?;
        let mut by_delivery: HashMap<i64, Vec<AttemptRecord>> = HashMap::new();
        for r in client.query(&attempts, &[&ids]).await? {
            by_delivery
                .entry(r.try_get(0)?)
                .or_default()
                .push(AttemptRecord {
                    attempted_at: Timestamp(r.try_get(1)?),
                    status_code: status_code(r.try_get(2)?),
                    duration_us: r.try_get(3)?,
                    error: r.try_get(4)?,
                    response_body: r.try_get(5)?,
                });
        }
        for d in &mut deliveries {
            d.attempt_log = by_delivery.remove(&d.id).unwrap_or_default();
        }
        Ok(deliveries)
    }

    async fn redrive_delivery(
        &self,
        org_id: Option<&str>,
        delivery_id: i64,
        now: Timestamp,
    ) -> StoreResult<String> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, due_at = $3, updated_at = $3, \
                 completed_at = NULL WHERE id = $1 AND status = 'dead' AND ($2::text IS NULL OR org_id = $2) \
                 RETURNING subscription_id",
                &[&delivery_id, &org_id, &now.0],
            )
            .await?;
        match row {
            Some(row) => Ok(row.try_get(0)?),
            None => Err(StoreError::NotFound),
        }
    }

    async fn redrive_subscription(
        &self,
        org_id: Option<&str>,
        subscription_id: &str,
        now: Timestamp,
    ) -> StoreResult<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let visible = tx
            .query_opt(
                "SELECT 1 FROM webhook_subscriptions WHERE id = $1 AND ($2::text IS NULL OR org_id = $2)",
                &[&subscription_id, &org_id],
            )
            .await?;
        if visible.is_none() {
            return Err(StoreError::NotFound);
        }
        let n = tx
            .execute(
                "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, due_at = $2, updated_at = $2, \
                 completed_at = NULL WHERE subscription_id = $1 AND status = 'dead'",
                &[&subscription_id, &now.0],
            )
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Only for a database no other instance uses (the engine does not call it on a shared one).
    async fn release_claims(&self, now: Timestamp) -> StoreResult<u64> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "UPDATE webhook_deliveries SET due_at = LEAST(due_at, $1), claimed_until = 0 WHERE claimed_until > 0",
                &[&now.0],
            )
            .await?)
    }

    async fn delivery_counts(&self) -> StoreResult<Vec<DeliveryCounts>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT subscription_id, \
                 COUNT(*) FILTER (WHERE status IN ('pending', 'failed')), \
                 COUNT(*) FILTER (WHERE status = 'dead') \
                 FROM webhook_deliveries WHERE status != 'succeeded' GROUP BY subscription_id \
                 ORDER BY subscription_id",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryCounts {
                    subscription_id: r.try_get(0)?,
                    open: r.try_get::<_, i64>(1)?.max(0) as u64,
                    dead: r.try_get::<_, i64>(2)?.max(0) as u64,
                })
            })
            .collect()
    }
}
