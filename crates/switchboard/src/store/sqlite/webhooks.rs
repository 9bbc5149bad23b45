//! Webhook tables on SQLite: subscriptions, the delivery outbox and the attempt log.
//!
//! Open deliveries (`pending`, `failed`) sit in a partial index by (subscription, priority, due time), so a
//! claim is a handful of short index range scans per subscription, however many deliveries are finished or due
//! later. A claimed row's `due_at` moves to the end of its lease: nothing else needs to skip it, and after a
//! crash it becomes due again by itself.

use super::events::decode_row;
use super::SqliteStore;
use crate::event::{Event, Timestamp};
use crate::store::webhooks::{
    AttemptRecord, ClaimRequest, ClaimedDelivery, ClaimedLane, DeliveryCounts, DeliveryQuery,
    DeliveryRecord, DeliveryStatus, DeliveryUpdate, EnqueueEntry, Filters, OutboxEntry,
    RetryConfig, SubscriptionRecord, WebhookStore,
};
use crate::store::{StoreError, StoreResult};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use std::collections::HashMap;
use std::sync::Arc;

pub(super) const MIGRATION: &str = r#"
CREATE TABLE webhook_subscriptions (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    filters TEXT NOT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_until INTEGER,
    active INTEGER NOT NULL,
    retry_config TEXT NOT NULL,
    headers TEXT NOT NULL,
    rate_limit REAL,
    disabled_reason TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX webhook_subscriptions_org ON webhook_subscriptions (org_id, created_at);

CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    event_seq INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    due_at INTEGER NOT NULL,
    claimed_until INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    completed_at INTEGER,
    last_status INTEGER,
    last_error TEXT
);
CREATE UNIQUE INDEX webhook_deliveries_sub_event ON webhook_deliveries (subscription_id, event_seq);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (subscription_id, priority, due_at)
    WHERE status IN ('pending', 'failed');
CREATE INDEX webhook_deliveries_sub_status ON webhook_deliveries (subscription_id, status, id);
CREATE INDEX webhook_deliveries_dead ON webhook_deliveries (org_id, id) WHERE status = 'dead';
CREATE INDEX webhook_deliveries_claimed ON webhook_deliveries (claimed_until) WHERE claimed_until > 0;

CREATE TABLE webhook_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL,
    attempted_at INTEGER NOT NULL,
    status_code INTEGER,
    duration_us INTEGER NOT NULL,
    error TEXT,
    response_body TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
"#;

/// The priorities the hub assigns (see `webhooks::priority_of`); claims scan them in this order.
const PRIORITIES: [u8; 4] = [1, 2, 3, 5];

const SUB_COLUMNS: &str = "id, org_id, name, url, events, filters, secret, previous_secret, \
    previous_secret_until, active, retry_config, headers, rate_limit, disabled_reason, created_at, updated_at";

const EVENT_COLUMNS: &str = "e.seq, e.id, e.ts, e.org_id, e.event_type, e.source, e.message_type, \
    e.message_control_id, e.resource_type, e.resource_id, e.data, e.metadata, e.actor, e.idempotency_key";

/// Writes the deliveries of one newly stored event (called inside the append transaction).
pub(super) fn insert_outbox<'a>(
    tx: &Transaction<'_>,
    event: &Event,
    entries: impl Iterator<Item = &'a mut OutboxEntry>,
) -> StoreResult<()> {
    let mut insert = None;
    for entry in entries {
        let stmt = match &mut insert {
            Some(stmt) => stmt,
            None => insert.insert(tx.prepare_cached(
                "INSERT OR IGNORE INTO webhook_deliveries (subscription_id, org_id, event_seq, priority, status, \
                 attempts, due_at, claimed_until, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?6, ?7, ?7)",
            )?),
        };
        let inserted = stmt.execute(params![
            &*entry.subscription_id,
            event.org_id,
            event.seq,
            entry.priority,
            entry.claimed_until.unwrap_or(entry.due_at).0,
            entry.claimed_until.map_or(0, |t| t.0),
            event.timestamp.0,
        ])?;
        if inserted == 1 {
            entry.delivery_id = tx.last_insert_rowid();
        }
    }
    Ok(())
}

fn json_text<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(format!("encode: {e}")))
}

fn bad_column(idx: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        idx,
        rusqlite::types::Type::Text,
        what.to_string().into(),
    )
}

fn from_json<T: serde::de::DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|_| bad_column(idx, "bad json column"))
}

fn decode_subscription(row: &Row<'_>) -> rusqlite::Result<SubscriptionRecord> {
    Ok(SubscriptionRecord {
        id: row.get(0)?,
        org_id: row.get(1)?,
        name: row.get(2)?,
        url: row.get(3)?,
        events: from_json(row, 4)?,
        filters: from_json::<Filters>(row, 5)?,
        secret: row.get(6)?,
        previous_secret: row.get(7)?,
        previous_secret_until: row.get::<_, Option<i64>>(8)?.map(Timestamp),
        active: row.get(9)?,
        retry: from_json::<RetryConfig>(row, 10)?,
        headers: from_json(row, 11)?,
        rate_limit: row.get(12)?,
        disabled_reason: row.get(13)?,
        created_at: Timestamp(row.get(14)?),
        updated_at: Timestamp(row.get(15)?),
    })
}

fn subscription_params(sub: &SubscriptionRecord) -> StoreResult<Vec<Value>> {
    Ok(vec![
        Value::Text(sub.id.clone()),
        Value::Text(sub.org_id.clone()),
        Value::Text(sub.name.clone()),
        Value::Text(sub.url.clone()),
        Value::Text(json_text(&sub.events)?),
        Value::Text(json_text(&sub.filters)?),
        Value::Text(sub.secret.clone()),
        sub.previous_secret.clone().map_or(Value::Null, Value::Text),
        sub.previous_secret_until
            .map_or(Value::Null, |t| Value::Integer(t.0)),
        Value::Integer(i64::from(sub.active)),
        Value::Text(json_text(&sub.retry)?),
        Value::Text(json_text(&sub.headers)?),
        sub.rate_limit.map_or(Value::Null, Value::Real),
        sub.disabled_reason.clone().map_or(Value::Null, Value::Text),
        Value::Integer(sub.created_at.0),
        Value::Integer(sub.updated_at.0),
    ])
}

fn insert_subscription(conn: &Connection, sub: &SubscriptionRecord) -> StoreResult<()> {
    let sql = format!(
        "INSERT INTO webhook_subscriptions ({SUB_COLUMNS}) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
    );
    conn.prepare_cached(&sql)?
        .execute(rusqlite::params_from_iter(subscription_params(sub)?))?;
    Ok(())
}

fn update_subscription(conn: &Connection, sub: &SubscriptionRecord) -> StoreResult<()> {
    let changed = conn
        .prepare_cached(
            "UPDATE webhook_subscriptions SET name = ?3, url = ?4, events = ?5, filters = ?6, secret = ?7, \
             previous_secret = ?8, previous_secret_until = ?9, active = ?10, retry_config = ?11, headers = ?12, \
             rate_limit = ?13, disabled_reason = ?14, updated_at = ?16 WHERE id = ?1 AND org_id = ?2",
        )?
        .execute(rusqlite::params_from_iter(subscription_params(sub)?))?;
    if changed == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

fn get_subscription(
    conn: &Connection,
    org_id: Option<&str>,
    id: &str,
) -> StoreResult<Option<SubscriptionRecord>> {
    let sql = format!(
        "SELECT {SUB_COLUMNS} FROM webhook_subscriptions WHERE id = ?1 AND (?2 IS NULL OR org_id = ?2)"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![id, org_id], decode_subscription)
        .optional()?)
}

fn list_subscriptions(
    conn: &Connection,
    org_id: Option<&str>,
) -> StoreResult<Vec<SubscriptionRecord>> {
    let sql = format!(
        "SELECT {SUB_COLUMNS} FROM webhook_subscriptions WHERE ?1 IS NULL OR org_id = ?1 \
         ORDER BY created_at, id"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![org_id], decode_subscription)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn delete_subscription(conn: &mut Connection, org_id: Option<&str>, id: &str) -> StoreResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let deleted = tx.execute(
        "DELETE FROM webhook_subscriptions WHERE id = ?1 AND (?2 IS NULL OR org_id = ?2)",
        params![id, org_id],
    )?;
    if deleted == 0 {
        return Err(StoreError::NotFound);
    }
    tx.execute(
        "DELETE FROM webhook_attempts WHERE delivery_id IN \
         (SELECT id FROM webhook_deliveries WHERE subscription_id = ?1)",
        params![id],
    )?;
    tx.execute(
        "DELETE FROM webhook_deliveries WHERE subscription_id = ?1",
        params![id],
    )?;
    tx.commit()?;
    Ok(())
}

fn claim(
    conn: &mut Connection,
    requests: &[ClaimRequest],
    now: Timestamp,
    lease_until: Timestamp,
) -> StoreResult<Vec<ClaimedLane>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut lanes = Vec::with_capacity(requests.len());
    {
        let select_sql = format!(
            "SELECT {EVENT_COLUMNS}, d.id, d.attempts, d.created_at FROM webhook_deliveries d \
             LEFT JOIN events e ON e.seq = d.event_seq \
             WHERE d.subscription_id = ?1 AND d.priority = ?2 AND d.status IN ('pending', 'failed') \
             AND d.due_at <= ?3 ORDER BY d.due_at LIMIT ?4"
        );
        let mut select = tx.prepare_cached(&select_sql)?;
        let mut lease = tx.prepare_cached(
            "UPDATE webhook_deliveries SET due_at = ?2, claimed_until = ?2 WHERE id = ?1",
        )?;
        let mut next_due = tx.prepare_cached(
            "SELECT MIN(due_at) FROM webhook_deliveries WHERE subscription_id = ?1 AND priority = ?2 \
             AND status IN ('pending', 'failed')",
        )?;
        for request in requests {
            let mut deliveries = Vec::new();
            for priority in PRIORITIES {
                let room = request.max.saturating_sub(deliveries.len());
                if room == 0 {
                    break;
                }
                let rows = select.query_map(
                    params![&*request.subscription_id, priority, now.0, room as i64],
                    |row| {
                        // Columns 0..14 are the event's (NULL once retention purged it), then the delivery's.
                        let event = match row.get::<_, Option<i64>>(0)? {
                            Some(_) => Some(Arc::new(decode_row(row)?)),
                            None => None,
                        };
                        Ok(ClaimedDelivery {
                            id: row.get(14)?,
                            subscription_id: Arc::clone(&request.subscription_id),
                            attempts: row.get(15)?,
                            created_at: Timestamp(row.get(16)?),
                            fresh: false,
                            event,
                            lease_until,
                        })
                    },
                )?;
                for row in rows {
                    deliveries.push(row?);
                }
            }
            for delivery in &deliveries {
                lease.execute(params![delivery.id, lease_until.0])?;
            }
            let next = if deliveries.len() < request.max {
                let mut earliest: Option<i64> = None;
                for priority in PRIORITIES {
                    let due: Option<i64> = next_due
                        .query_row(params![&*request.subscription_id, priority], |r| r.get(0))?;
                    earliest = match (earliest, due) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                earliest.map(Timestamp)
            } else {
                Some(now)
            };
            lanes.push(ClaimedLane {
                subscription_id: Arc::clone(&request.subscription_id),
                deliveries,
                next_due: next,
            });
        }
    }
    tx.commit()?;
    Ok(lanes)
}

fn record(conn: &mut Connection, updates: &[DeliveryUpdate]) -> StoreResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut update = tx.prepare_cached(
            "UPDATE webhook_deliveries SET status = ?2, attempts = ?3, due_at = ?4, claimed_until = 0, \
             updated_at = ?5, completed_at = ?6, last_status = COALESCE(?7, last_status), last_error = ?8 WHERE id = ?1",
        )?;
        let mut log = tx.prepare_cached(
            "INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, duration_us, error, \
             response_body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut deactivate = tx.prepare_cached(
            "UPDATE webhook_subscriptions SET active = 0, disabled_reason = ?2, updated_at = ?3 WHERE id = ?1",
        )?;
        for u in updates {
            let (at, code, error) = match &u.attempt {
                Some(a) => (a.attempted_at, a.status_code, a.error.clone()),
                None => (u.due_at, None, None),
            };
            update.execute(params![
                u.delivery_id,
                u.status.as_str(),
                u.attempts,
                u.due_at.0,
                at.0,
                u.completed_at.map(|t| t.0),
                code,
                error,
            ])?;
            if let Some(a) = &u.attempt {
                log.execute(params![
                    u.delivery_id,
                    a.attempted_at.0,
                    a.status_code,
                    a.duration_us,
                    a.error,
                    a.response_body,
                ])?;
            }
            if let Some((sub, reason)) = &u.deactivate {
                deactivate.execute(params![&**sub, reason, at.0])?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

fn enqueue(conn: &mut Connection, entries: &[EnqueueEntry], now: Timestamp) -> StoreResult<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut changed = 0u64;
    {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO webhook_deliveries (subscription_id, org_id, event_seq, priority, status, attempts, \
             due_at, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5, ?5) \
             ON CONFLICT (subscription_id, event_seq) DO UPDATE SET status = 'pending', attempts = 0, \
             due_at = excluded.due_at, created_at = excluded.created_at, updated_at = excluded.updated_at, \
             completed_at = NULL WHERE status IN ('succeeded', 'dead')",
        )?;
        for e in entries {
            changed += upsert.execute(params![
                &*e.subscription_id,
                e.org_id,
                e.event_seq,
                e.priority,
                now.0
            ])? as u64;
        }
    }
    tx.commit()?;
    Ok(changed)
}

const DELIVERY_COLUMNS: &str = "d.id, d.subscription_id, d.org_id, d.event_seq, e.id, e.event_type, d.priority, \
    d.status, d.attempts, d.due_at, d.created_at, d.updated_at, d.completed_at, d.last_status, d.last_error";

fn decode_delivery(row: &Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    let event_id: Option<Vec<u8>> = row.get(4)?;
    let status: String = row.get(7)?;
    let status = DeliveryStatus::parse(&status).ok_or_else(|| bad_column(7, "bad status"))?;
    let due: i64 = row.get(9)?;
    Ok(DeliveryRecord {
        id: row.get(0)?,
        subscription_id: row.get(1)?,
        org_id: row.get(2)?,
        event_seq: row.get(3)?,
        event_id: event_id.and_then(|b| uuid::Uuid::from_slice(&b).ok()),
        event_type: row.get(5)?,
        priority: row.get(6)?,
        status,
        attempts: row.get(8)?,
        next_attempt_at: status.is_open().then_some(Timestamp(due)),
        created_at: Timestamp(row.get(10)?),
        updated_at: Timestamp(row.get(11)?),
        completed_at: row.get::<_, Option<i64>>(12)?.map(Timestamp),
        last_status_code: row.get(13)?,
        last_error: row.get(14)?,
        attempt_log: Vec::new(),
    })
}

fn list_deliveries(conn: &Connection, q: &DeliveryQuery) -> StoreResult<Vec<DeliveryRecord>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d LEFT JOIN events e ON e.seq = d.event_seq \
         WHERE (?1 IS NULL OR d.org_id = ?1) AND (?2 IS NULL OR d.subscription_id = ?2) \
         AND (?3 IS NULL OR d.status = ?3) AND (?4 IS NULL OR d.id < ?4) ORDER BY d.id DESC LIMIT ?5"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            q.org_id,
            q.subscription_id,
            q.status.map(DeliveryStatus::as_str),
            q.before_id,
            q.limit as i64
        ],
        decode_delivery,
    )?;
    let mut deliveries: Vec<DeliveryRecord> = rows.collect::<Result<_, _>>()?;
    let mut attempts = conn.prepare_cached(
        "SELECT attempted_at, status_code, duration_us, error, response_body FROM webhook_attempts \
         WHERE delivery_id = ?1 ORDER BY id",
    )?;
    for d in &mut deliveries {
        let rows = attempts.query_map(params![d.id], |r| {
            Ok(AttemptRecord {
                attempted_at: Timestamp(r.get(0)?),
                status_code: r.get(1)?,
                duration_us: r.get(2)?,
                error: r.get(3)?,
                response_body: r.get(4)?,
            })
        })?;
        d.attempt_log = rows.collect::<Result<_, _>>()?;
    }
    Ok(deliveries)
}

fn redrive_one(
    conn: &mut Connection,
    org_id: Option<&str>,
    id: i64,
    now: Timestamp,
) -> StoreResult<String> {
    let sub: Option<String> = conn
        .prepare_cached(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, due_at = ?3, updated_at = ?3, \
             completed_at = NULL WHERE id = ?1 AND status = 'dead' AND (?2 IS NULL OR org_id = ?2) \
             RETURNING subscription_id",
        )?
        .query_row(params![id, org_id, now.0], |r| r.get(0))
        .optional()?;
    sub.ok_or(StoreError::NotFound)
}

fn redrive_all(
    conn: &mut Connection,
    org_id: Option<&str>,
    subscription_id: &str,
    now: Timestamp,
) -> StoreResult<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let visible: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM webhook_subscriptions WHERE id = ?1 AND (?2 IS NULL OR org_id = ?2)",
            params![subscription_id, org_id],
            |r| r.get(0),
        )
        .optional()?;
    if visible.is_none() {
        return Err(StoreError::NotFound);
    }
    let n = tx.execute(
        "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, due_at = ?2, updated_at = ?2, \
         completed_at = NULL WHERE subscription_id = ?1 AND status = 'dead'",
        params![subscription_id, now.0],
    )?;
    tx.commit()?;
    Ok(n as u64)
}

fn release_claims(conn: &mut Connection, now: Timestamp) -> StoreResult<u64> {
    let n = conn
        .prepare_cached(
            "UPDATE webhook_deliveries SET due_at = MIN(due_at, ?1), claimed_until = 0 WHERE claimed_until > 0",
        )?
        .execute(params![now.0])?;
    Ok(n as u64)
}

fn counts(conn: &Connection) -> StoreResult<Vec<DeliveryCounts>> {
    let mut stmt = conn.prepare_cached(
        "SELECT subscription_id, status, COUNT(*) FROM webhook_deliveries \
         WHERE status != 'succeeded' GROUP BY subscription_id, status",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut by_sub: HashMap<String, DeliveryCounts> = HashMap::new();
    for row in rows {
        let (sub, status, n) = row?;
        let entry = by_sub.entry(sub.clone()).or_insert_with(|| DeliveryCounts {
            subscription_id: sub,
            ..Default::default()
        });
        match DeliveryStatus::parse(&status) {
            Some(DeliveryStatus::Dead) => entry.dead += n as u64,
            Some(s) if s.is_open() => entry.open += n as u64,
            _ => {}
        }
    }
    let mut all: Vec<_> = by_sub.into_values().collect();
    all.sort_by(|a, b| a.subscription_id.cmp(&b.subscription_id));
    Ok(all)
}

#[async_trait::async_trait]
impl WebhookStore for SqliteStore {
    async fn insert_subscription(&self, sub: &SubscriptionRecord) -> StoreResult<()> {
        let sub = sub.clone();
        self.write(move |conn| insert_subscription(conn, &sub))
            .await
    }

    async fn update_subscription(&self, sub: &SubscriptionRecord) -> StoreResult<()> {
        let sub = sub.clone();
        self.write(move |conn| update_subscription(conn, &sub))
            .await
    }

    async fn get_subscription(
        &self,
        org_id: Option<&str>,
        id: &str,
    ) -> StoreResult<Option<SubscriptionRecord>> {
        let (org, id) = (org_id.map(str::to_owned), id.to_owned());
        self.read(move |conn| get_subscription(conn, org.as_deref(), &id))
            .await
    }

    async fn list_subscriptions(
        &self,
        org_id: Option<&str>,
    ) -> StoreResult<Vec<SubscriptionRecord>> {
        let org = org_id.map(str::to_owned);
        self.read(move |conn| list_subscriptions(conn, org.as_deref()))
            .await
    }

    async fn delete_subscription(&self, org_id: Option<&str>, id: &str) -> StoreResult<()> {
        let (org, id) = (org_id.map(str::to_owned), id.to_owned());
        self.write(move |conn| delete_subscription(conn, org.as_deref(), &id))
            .await
    }

    async fn claim_deliveries(
        &self,
        requests: Vec<ClaimRequest>,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Vec<ClaimedLane>> {
        self.write(move |conn| claim(conn, &requests, now, lease_until))
            .await
    }

    async fn record_deliveries(&self, updates: Vec<DeliveryUpdate>) -> StoreResult<()> {
        self.write(move |conn| record(conn, &updates)).await
    }

    async fn enqueue_deliveries(
        &self,
        entries: Vec<EnqueueEntry>,
        now: Timestamp,
    ) -> StoreResult<u64> {
        self.write(move |conn| enqueue(conn, &entries, now)).await
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> StoreResult<Vec<DeliveryRecord>> {
        let query = query.clone();
        self.read(move |conn| list_deliveries(conn, &query)).await
    }

    async fn redrive_delivery(
        &self,
        org_id: Option<&str>,
        delivery_id: i64,
        now: Timestamp,
    ) -> StoreResult<String> {
        let org = org_id.map(str::to_owned);
        self.write(move |conn| redrive_one(conn, org.as_deref(), delivery_id, now))
            .await
    }

    async fn redrive_subscription(
        &self,
        org_id: Option<&str>,
        subscription_id: &str,
        now: Timestamp,
    ) -> StoreResult<u64> {
        let (org, sub) = (org_id.map(str::to_owned), subscription_id.to_owned());
        self.write(move |conn| redrive_all(conn, org.as_deref(), &sub, now))
            .await
    }

    async fn release_claims(&self, now: Timestamp) -> StoreResult<u64> {
        self.write(move |conn| release_claims(conn, now)).await
    }

    async fn delivery_counts(&self) -> StoreResult<Vec<DeliveryCounts>> {
        self.read(counts).await
    }
}
