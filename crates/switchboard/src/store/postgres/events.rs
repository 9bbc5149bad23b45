//! Event log statements on PostgreSQL: the batched append, history queries and the retention purge.
//!
//! An append locks the single `log_head` row first and keeps it until commit, so appends of every instance commit
//! one at a time and each batch takes the `seq` range right after the previous commit: `seq` is gap-free in
//! commit order, and a reader that has seen `seq = n` committed can never later find a smaller `seq` appear. The
//! rows go in with one multi-row `INSERT … SELECT FROM UNNEST` per table, and the statements after the lock are
//! pipelined on the connection. The lock also keeps timestamps non-decreasing along `seq`: a batch is never
//! stamped earlier than the last one committed, whichever instance and clock stamped it.

use super::fhir;
use crate::event::{Event, EventType, Source, Timestamp, SPEC_VERSION};
use crate::hub::OutboxRouter;
use crate::store::{Appended, EventQuery, Order, OutboxEntry, StoreError, StoreResult};
use deadpool_postgres::{GenericClient, Object};
use serde_json::value::RawValue;
use std::collections::HashMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

pub(super) const COLUMNS: &str =
    "seq, id, ts, org_id, event_type, source, message_type, message_control_id, \
                       resource_type, resource_id, data, metadata, actor, idempotency_key";

/// Dynamic statement parameters.
pub(super) type Params = Vec<Box<dyn ToSql + Sync + Send>>;

pub(super) fn refs(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
}

/// Pushes a parameter and returns its placeholder.
pub(super) fn arg(params: &mut Params, value: impl ToSql + Sync + Send + 'static) -> String {
    params.push(Box::new(value));
    format!("${}", params.len())
}

/// Appends the batch in one transaction (see the module docs); the router's deliveries for new events go into
/// `outbox` and into the same transaction.
pub(super) async fn append(
    client: &mut Object,
    channel: &str,
    batch: Vec<Event>,
    router: Option<&dyn OutboxRouter>,
    outbox: &mut Vec<OutboxEntry>,
) -> StoreResult<Vec<Appended>> {
    let tx = client.transaction().await?;
    let lock = tx
        .prepare_cached("SELECT seq, ts FROM log_head WHERE one = 1 FOR UPDATE")
        .await?;
    let (_, head_row) = futures::try_join!(
        tx.batch_execute("SET LOCAL synchronous_commit TO on"),
        tx.query_one(&lock, &[]),
    )?;
    let mut head: i64 = head_row.try_get(0)?;
    // Batches of this and other instances may reach the lock in another order than their clocks stamped them:
    // timestamps must still never decrease along seq (history pages rely on it).
    let floor = Timestamp(head_row.try_get(1)?);
    let mut batch = batch;
    for event in &mut batch {
        event.timestamp = event.timestamp.max(floor);
    }
    let mut latest = floor;

    let (mut first_by_key, mut versions) = futures::try_join!(
        existing_idempotent(&tx, &batch),
        fhir::current_versions(&tx, &batch)
    )?;
    let mut results = Vec::with_capacity(batch.len());
    for (index, mut event) in batch.into_iter().enumerate() {
        if let Some(key) = &event.idempotency_key {
            if let Some(first) = first_by_key.get(&(event.org_id.clone(), key.clone())) {
                results.push(Appended::Existing(first.clone()));
                continue;
            }
        }
        if let Some(write) = event.write.take() {
            match fhir::apply_write(&tx, &mut event, *write, &mut versions).await {
                Ok(()) => {}
                Err(refusal) if refusal.is_refusal() => {
                    results.push(Appended::Refused(refusal));
                    continue;
                }
                Err(other) => return Err(other),
            }
        }
        head += 1;
        event.seq = head;
        latest = latest.max(event.timestamp);
        if let Some(key) = &event.idempotency_key {
            first_by_key.insert((event.org_id.clone(), key.clone()), event.clone());
        }
        if let Some(router) = router {
            let first = outbox.len();
            router.route(std::slice::from_ref(&event), event.timestamp, outbox);
            for entry in &mut outbox[first..] {
                entry.event_index = index;
            }
        }
        results.push(Appended::New(event));
    }

    let new: Vec<&Event> = results
        .iter()
        .filter_map(|r| match r {
            Appended::New(e) => Some(e),
            _ => None,
        })
        .collect();
    if !new.is_empty() {
        let insert_events = tx
            .prepare_cached(
                "INSERT INTO events (seq, id, ts, org_id, event_type, source, message_type, message_control_id, \
                 resource_type, resource_id, data, metadata, actor, idempotency_key) \
                 SELECT * FROM UNNEST($1::int8[], $2::uuid[], $3::int8[], $4::text[], $5::text[], $6::text[], \
                 $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[])",
            )
            .await?;
        let seqs: Vec<i64> = new.iter().map(|e| e.seq).collect();
        let ids: Vec<Uuid> = new.iter().map(|e| e.id).collect();
        let timestamps: Vec<i64> = new.iter().map(|e| e.timestamp.0).collect();
        let orgs: Vec<&str> = new.iter().map(|e| e.org_id.as_str()).collect();
        let types: Vec<&str> = new.iter().map(|e| e.event_type.as_str()).collect();
        let sources: Vec<&str> = new.iter().map(|e| e.source.as_str()).collect();
        let message_types: Vec<Option<&str>> =
            new.iter().map(|e| e.message_type.as_deref()).collect();
        let control_ids: Vec<Option<&str>> = new
            .iter()
            .map(|e| e.message_control_id.as_deref())
            .collect();
        let resource_types: Vec<Option<&str>> =
            new.iter().map(|e| e.resource_type.as_deref()).collect();
        let resource_ids: Vec<Option<&str>> =
            new.iter().map(|e| e.resource_id.as_deref()).collect();
        let data: Vec<&str> = new.iter().map(|e| e.data.get()).collect();
        let metadata: Vec<Option<&str>> = new
            .iter()
            .map(|e| e.metadata.as_ref().map(|m| m.get()))
            .collect();
        let actors: Vec<Option<&str>> = new.iter().map(|e| e.actor.as_deref()).collect();
        let keys: Vec<Option<&str>> = new.iter().map(|e| e.idempotency_key.as_deref()).collect();
        let set_head = tx
            .prepare_cached("UPDATE log_head SET seq = $1, ts = $2 WHERE one = 1")
            .await?;
        let notify = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
        let head_text = head.to_string();
        if let Some(entry) = outbox
            .iter()
            .find(|e| !matches!(results.get(e.event_index), Some(Appended::New(_))))
        {
            return Err(StoreError::Database(format!(
                "a webhook delivery was routed for event {} of the batch, which is not new",
                entry.event_index
            )));
        }
        let inserted = insert_deliveries(&tx, &results, outbox);
        let event_params: [&(dyn ToSql + Sync); 14] = [
            &seqs,
            &ids,
            &timestamps,
            &orgs,
            &types,
            &sources,
            &message_types,
            &control_ids,
            &resource_types,
            &resource_ids,
            &data,
            &metadata,
            &actors,
            &keys,
        ];
        let head_params: [&(dyn ToSql + Sync); 2] = [&head, &latest.0];
        let notify_params: [&(dyn ToSql + Sync); 2] = [&channel, &head_text];
        let (_, delivery_ids, _, _) = futures::try_join!(
            tx.execute(&insert_events, &event_params),
            inserted,
            tx.execute(&set_head, &head_params),
            tx.query_one(&notify, &notify_params),
        )?;
        for (entry, id) in outbox.iter_mut().zip(delivery_ids) {
            entry.delivery_id = id;
        }
    }
    tx.commit().await?;
    Ok(results)
}

/// Inserts the deliveries of the new events; returns each entry's new id, in `outbox` order.
async fn insert_deliveries(
    tx: &deadpool_postgres::Transaction<'_>,
    results: &[Appended],
    outbox: &[OutboxEntry],
) -> Result<Vec<i64>, tokio_postgres::Error> {
    if outbox.is_empty() {
        return Ok(Vec::new());
    }
    let mut subscriptions = Vec::with_capacity(outbox.len());
    let mut orgs = Vec::with_capacity(outbox.len());
    let mut seqs = Vec::with_capacity(outbox.len());
    let mut priorities = Vec::with_capacity(outbox.len());
    let mut due = Vec::with_capacity(outbox.len());
    let mut claimed = Vec::with_capacity(outbox.len());
    let mut created = Vec::with_capacity(outbox.len());
    // Every entry is for a new event (checked by the caller), so the ids come back one per entry.
    for entry in outbox {
        let Some(Appended::New(event)) = results.get(entry.event_index) else {
            continue;
        };
        subscriptions.push(&*entry.subscription_id);
        orgs.push(event.org_id.as_str());
        seqs.push(event.seq);
        priorities.push(i16::from(entry.priority));
        due.push(entry.claimed_until.unwrap_or(entry.due_at).0);
        claimed.push(entry.claimed_until.map_or(0, |t| t.0));
        created.push(event.timestamp.0);
    }
    // Rows come back in insertion order (the ordinality sort), one per entry: every (subscription, new seq)
    // pair is new, so none conflicts.
    let statement = tx
        .prepare_cached(
            "INSERT INTO webhook_deliveries (subscription_id, org_id, event_seq, priority, status, attempts, \
             due_at, claimed_until, created_at, updated_at) \
             SELECT s, o, q, p, 'pending', 0, d, c, t, t FROM UNNEST($1::text[], $2::text[], $3::int8[], \
             $4::int2[], $5::int8[], $6::int8[], $7::int8[]) WITH ORDINALITY AS u(s, o, q, p, d, c, t, n) \
             ORDER BY n RETURNING id",
        )
        .await?;
    let rows = tx
        .query(
            &statement,
            &[
                &subscriptions,
                &orgs,
                &seqs,
                &priorities,
                &due,
                &claimed,
                &created,
            ],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get::<_, i64>(0)).collect())
}

/// The first stored event of each `(org, idempotency key)` of the batch that is already in the log.
async fn existing_idempotent(
    tx: &deadpool_postgres::Transaction<'_>,
    batch: &[Event],
) -> StoreResult<HashMap<(String, String), Event>> {
    let (orgs, keys): (Vec<&str>, Vec<&str>) = batch
        .iter()
        .filter_map(|e| Some((e.org_id.as_str(), e.idempotency_key.as_deref()?)))
        .unzip();
    let mut found = HashMap::new();
    if keys.is_empty() {
        return Ok(found);
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE (org_id, idempotency_key) IN \
         (SELECT * FROM UNNEST($1::text[], $2::text[]))"
    );
    let statement = tx.prepare_cached(&sql).await?;
    for row in tx.query(&statement, &[&orgs, &keys]).await? {
        let event = decode(&row, 0)?;
        if let Some(key) = event.idempotency_key.clone() {
            found.insert((event.org_id.clone(), key), event);
        }
    }
    Ok(found)
}

pub(super) async fn head<C: GenericClient>(client: &C) -> StoreResult<(i64, Timestamp)> {
    let statement = client
        .prepare_cached("SELECT seq, ts FROM log_head WHERE one = 1")
        .await?;
    let row = client.query_one(&statement, &[]).await?;
    Ok((row.try_get(0)?, Timestamp(row.try_get(1)?)))
}

pub(super) async fn events_after<C: GenericClient>(
    client: &C,
    after: i64,
    limit: usize,
) -> StoreResult<Vec<Event>> {
    let sql = format!("SELECT {COLUMNS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2");
    let statement = client.prepare_cached(&sql).await?;
    let rows = client.query(&statement, &[&after, &(limit as i64)]).await?;
    rows.iter().map(|r| decode(r, 0)).collect()
}

pub(super) async fn get<C: GenericClient>(
    client: &C,
    org_id: Option<&str>,
    id: Uuid,
) -> StoreResult<Option<Event>> {
    let sql =
        format!("SELECT {COLUMNS} FROM events WHERE id = $1 AND ($2::text IS NULL OR org_id = $2)");
    let statement = client.prepare_cached(&sql).await?;
    let row = client.query_opt(&statement, &[&id, &org_id]).await?;
    row.map(|r| decode(&r, 0)).transpose()
}

pub(super) async fn query<C: GenericClient>(client: &C, q: &EventQuery) -> StoreResult<Vec<Event>> {
    let mut sql = format!("SELECT {COLUMNS} FROM events WHERE true");
    let mut params = Params::new();
    push_filters(&mut sql, &mut params, q, "org_id");
    let by_time = q.org_id.is_some();
    if let Some(cursor) = q.after {
        let op = if q.order == Order::Desc { "<" } else { ">" };
        if by_time {
            let ts = arg(&mut params, cursor.timestamp.0);
            let seq = arg(&mut params, cursor.seq);
            sql.push_str(&format!(
                " AND ts {op}= {ts} AND (ts, seq) {op} ({ts}, {seq})"
            ));
        } else {
            let seq = arg(&mut params, cursor.seq);
            sql.push_str(&format!(" AND seq {op} {seq}"));
        }
    }
    let dir = if q.order == Order::Desc {
        "DESC"
    } else {
        "ASC"
    };
    // Timestamps never decrease along seq, so both orders are the same; each names the index that serves it.
    if by_time {
        sql.push_str(&format!(" ORDER BY ts {dir}, seq {dir}"));
    } else {
        sql.push_str(&format!(" ORDER BY seq {dir}"));
    }
    let limit = arg(&mut params, q.limit as i64);
    sql.push_str(&format!(" LIMIT {limit}"));
    let statement = client.prepare_cached(&sql).await?;
    let rows = client.query(&statement, &refs(&params)).await?;
    rows.iter().map(|r| decode(r, 0)).collect()
}

/// Events after a `seq` that pass the query's filters, in `seq` order. The org is compared as an expression
/// (`org_id || ''`) so the planner walks the primary key from `after`, which is short for a stream resuming near
/// the head.
pub(super) async fn matching_after<C: GenericClient>(
    client: &C,
    q: &EventQuery,
    after: i64,
) -> StoreResult<Vec<Event>> {
    let mut sql = format!("SELECT {COLUMNS} FROM events WHERE seq > $1");
    let mut params: Params = vec![Box::new(after)];
    push_filters(&mut sql, &mut params, q, "(org_id || '')");
    let limit = arg(&mut params, q.limit as i64);
    sql.push_str(&format!(" ORDER BY seq LIMIT {limit}"));
    let statement = client.prepare_cached(&sql).await?;
    let rows = client.query(&statement, &refs(&params)).await?;
    rows.iter().map(|r| decode(r, 0)).collect()
}

/// The filter clauses shared by history queries and stream resumption.
fn push_filters(sql: &mut String, params: &mut Params, q: &EventQuery, org_column: &str) {
    if let Some(org) = &q.org_id {
        let p = arg(params, org.clone());
        sql.push_str(&format!(" AND {org_column} = {p}"));
    }
    if let Some(from) = q.from {
        let p = arg(params, from.0);
        sql.push_str(&format!(" AND ts >= {p}"));
    }
    if let Some(to) = q.to {
        let p = arg(params, to.0);
        sql.push_str(&format!(" AND ts < {p}"));
    }
    for (field, value) in [
        ("resource_type", &q.resource_type),
        ("resource_id", &q.resource_id),
        ("message_type", &q.message_type),
    ] {
        if let Some(value) = value {
            let p = arg(params, value.clone());
            sql.push_str(&format!(" AND {field} = {p}"));
        }
    }
    if let Some(source) = q.source {
        let p = arg(params, source.as_str().to_string());
        sql.push_str(&format!(" AND source = {p}"));
    }
    if !q.event_types.is_empty() {
        let clauses: Vec<String> = q
            .event_types
            .iter()
            .map(|pattern| {
                if pattern.is_exact() {
                    format!("event_type = {}", arg(params, pattern.as_str().to_string()))
                } else {
                    format!(
                        "('.' || event_type) ~ {}",
                        arg(params, pattern.dotted_regex())
                    )
                }
            })
            .collect();
        sql.push_str(&format!(" AND ({})", clauses.join(" OR ")));
    }
}

pub(super) async fn purge_before(
    client: &mut Object,
    cutoff: Timestamp,
    limit: usize,
) -> StoreResult<u64> {
    let oldest = client
        .query_opt("SELECT seq, ts FROM events ORDER BY seq LIMIT 1", &[])
        .await?;
    let Some(oldest) = oldest else {
        return Ok(0);
    };
    let (first_seq, first_ts): (i64, i64) = (oldest.try_get(0)?, oldest.try_get(1)?);
    if first_ts >= cutoff.0 {
        return Ok(0);
    }
    let tx = client.transaction().await?;
    let last: Option<i64> = tx
        .query_one(
            "SELECT MAX(seq) FROM events WHERE seq < $1 AND ts < $2",
            &[&(first_seq + limit as i64), &cutoff.0],
        )
        .await?
        .try_get(0)?;
    let Some(last) = last else {
        return Ok(0);
    };
    // The audit trail outlives the events: their emission entries become rows before the events go.
    super::admin::store_emissions_through(&tx, last).await?;
    let statement = tx
        .prepare_cached("DELETE FROM events WHERE seq <= $1 AND ts < $2")
        .await?;
    let deleted = tx.execute(&statement, &[&last, &cutoff.0]).await?;
    tx.commit().await?;
    Ok(deleted)
}

/// Decodes the event columns (in [`COLUMNS`] order) starting at column `at`.
pub(super) fn decode(row: &Row, at: usize) -> StoreResult<Event> {
    let bad = |what: &str| StoreError::Database(format!("stored event has a bad {what}"));
    let event_type: String = row.try_get(at + 4)?;
    let source: String = row.try_get(at + 5)?;
    let data: String = row.try_get(at + 10)?;
    let metadata: Option<String> = row.try_get(at + 11)?;
    Ok(Event {
        seq: row.try_get(at)?,
        id: row.try_get(at + 1)?,
        spec_version: SPEC_VERSION,
        timestamp: Timestamp(row.try_get(at + 2)?),
        org_id: row.try_get(at + 3)?,
        event_type: EventType::parse(&event_type).map_err(|_| bad("type"))?,
        source: Source::parse(&source).ok_or_else(|| bad("source"))?,
        message_type: row.try_get(at + 6)?,
        message_control_id: row.try_get(at + 7)?,
        resource_type: row.try_get(at + 8)?,
        resource_id: row.try_get(at + 9)?,
        data: RawValue::from_string(data).map_err(|_| bad("data"))?,
        metadata: metadata
            .map(RawValue::from_string)
            .transpose()
            .map_err(|_| bad("metadata"))?,
        actor: row.try_get(at + 12)?,
        idempotency_key: row.try_get(at + 13)?,
        write: None,
    })
}
