//! Event log statements: the batched append, history queries and the retention purge.

use crate::event::{Event, EventType, Source, Timestamp, SPEC_VERSION};
use crate::hub::OutboxRouter;
use crate::store::{Appended, EventQuery, Order, OutboxEntry, StoreError, StoreResult};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde_json::value::RawValue;
use uuid::Uuid;

const COLUMNS: &str = "seq, id, ts, org_id, event_type, source, message_type, message_control_id, \
                       resource_type, resource_id, data, metadata, actor, idempotency_key";

/// Inserts the batch (applying resource writes first) and, for each newly stored event, the webhook deliveries
/// the router picks for it; returns what became of each event and the deliveries written.
pub(super) fn append(
    conn: &mut Connection,
    batch: Vec<Event>,
    router: Option<&dyn OutboxRouter>,
) -> StoreResult<(Vec<Appended>, Vec<OutboxEntry>)> {
    let mut outbox = Vec::new();
    match append_routed(conn, batch, router, &mut outbox) {
        Ok(results) => Ok((results, outbox)),
        Err(err) => {
            // Nothing was written: give back what the router reserved for these deliveries.
            if let Some(router) = router {
                router.abandoned(&outbox);
            }
            Err(err)
        }
    }
}

fn append_routed(
    conn: &mut Connection,
    batch: Vec<Event>,
    router: Option<&dyn OutboxRouter>,
    outbox: &mut Vec<OutboxEntry>,
) -> StoreResult<Vec<Appended>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(batch.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO events (id, ts, org_id, event_type, source, message_type, message_control_id, \
             resource_type, resource_id, data, metadata, actor, idempotency_key) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        for (index, mut event) in batch.into_iter().enumerate() {
            // A repeat of an idempotency key must not apply its resource write again.
            if event.write.is_some() && event.idempotency_key.is_some() {
                let sql = format!(
                    "SELECT {COLUMNS} FROM events WHERE org_id = ?1 AND idempotency_key = ?2"
                );
                let existing = tx
                    .prepare_cached(&sql)?
                    .query_row(params![event.org_id, event.idempotency_key], decode_row)
                    .optional()?;
                if let Some(first) = existing {
                    results.push(Appended::Existing(first));
                    continue;
                }
            }
            if let Some(write) = event.write.take() {
                match super::fhir::apply_write(&tx, &mut event, *write) {
                    Ok(()) => {}
                    Err(refusal) if refusal.is_refusal() => {
                        results.push(Appended::Refused(refusal));
                        continue;
                    }
                    Err(other) => return Err(other),
                }
            }
            let inserted = insert.execute(params![
                &event.id.as_bytes()[..],
                event.timestamp.0,
                event.org_id,
                event.event_type.as_str(),
                event.source.as_str(),
                event.message_type,
                event.message_control_id,
                event.resource_type,
                event.resource_id,
                event.data.get(),
                event.metadata.as_ref().map(|m| m.get()),
                event.actor,
                event.idempotency_key,
            ])?;
            if inserted == 1 {
                event.seq = tx.last_insert_rowid();
                if let Some(router) = router {
                    let first = outbox.len();
                    router.route(std::slice::from_ref(&event), event.timestamp, outbox);
                    for entry in &mut outbox[first..] {
                        entry.event_index = index;
                    }
                    super::webhooks::insert_outbox(&tx, &event, outbox[first..].iter_mut())?;
                }
                results.push(Appended::New(event));
            } else {
                let first = first_with_idempotency_key(
                    &tx,
                    &event.org_id,
                    event.idempotency_key.as_deref(),
                )?;
                results.push(Appended::Existing(first));
            }
        }
    }
    tx.commit()?;
    Ok(results)
}

fn first_with_idempotency_key(
    conn: &Connection,
    org_id: &str,
    key: Option<&str>,
) -> StoreResult<Event> {
    let sql = format!("SELECT {COLUMNS} FROM events WHERE org_id = ?1 AND idempotency_key = ?2");
    let found = conn
        .prepare_cached(&sql)?
        .query_row(params![org_id, key], decode_row)
        .optional()?;
    found.ok_or_else(|| StoreError::Conflict("event rejected by a uniqueness constraint".into()))
}

pub(super) fn head(conn: &Connection) -> StoreResult<(i64, Timestamp)> {
    let row = conn
        .prepare_cached("SELECT seq, ts FROM events ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
        .optional()?;
    // The log may be empty because retention purged it: seq must still continue from the high-water mark.
    let high_water: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'events'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    Ok(match row {
        Some((seq, ts)) => (seq.max(high_water), Timestamp(ts)),
        None => (high_water, Timestamp(0)),
    })
}

pub(super) fn events_after(conn: &Connection, after: i64, limit: usize) -> StoreResult<Vec<Event>> {
    let sql = format!("SELECT {COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![after, limit as i64], decode_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn get(conn: &Connection, org_id: Option<&str>, id: Uuid) -> StoreResult<Option<Event>> {
    let sql = format!("SELECT {COLUMNS} FROM events WHERE id = ?1 AND (?2 IS NULL OR org_id = ?2)");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![&id.as_bytes()[..], org_id], decode_row)
        .optional()?)
}

pub(super) fn query(conn: &Connection, q: &EventQuery) -> StoreResult<Vec<Event>> {
    let mut sql = format!("SELECT {COLUMNS} FROM events WHERE 1 = 1");
    let mut args: Vec<Value> = Vec::new();
    push_filters(&mut sql, &mut args, q, "org_id");
    let mut push = |sql: &mut String, clause: &str, value: Value| {
        args.push(value);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    let by_time = q.org_id.is_some();
    if let Some(cursor) = q.after {
        let op = if q.order == Order::Desc { "<" } else { ">" };
        if by_time {
            push(
                &mut sql,
                &format!(" AND ts {op}= ?"),
                Value::Integer(cursor.timestamp.0),
            );
            push(
                &mut sql,
                &format!(" AND (ts, seq) {op} (?"),
                Value::Integer(cursor.timestamp.0),
            );
            push(&mut sql, ", ?)", Value::Integer(cursor.seq));
        } else {
            push(
                &mut sql,
                &format!(" AND seq {op} ?"),
                Value::Integer(cursor.seq),
            );
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
    push(&mut sql, " LIMIT ?", Value::Integer(q.limit as i64));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), decode_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Events after a `seq` that pass the query's filters, in `seq` order. The org is compared without its index
/// (`+org_id`) so SQLite walks the rowid range from `after`, which is short for a stream resuming near the head.
pub(super) fn matching_after(
    conn: &Connection,
    q: &EventQuery,
    after: i64,
) -> StoreResult<Vec<Event>> {
    let mut sql = format!("SELECT {COLUMNS} FROM events WHERE seq > ?1");
    let mut args: Vec<Value> = vec![Value::Integer(after)];
    push_filters(&mut sql, &mut args, q, "+org_id");
    args.push(Value::Integer(q.limit as i64));
    sql.push_str(&format!(" ORDER BY seq LIMIT ?{}", args.len()));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), decode_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Appends the filter clauses shared by history queries and stream resumption (`org_column` is `org_id`, or
/// `+org_id` to keep SQLite off the org index).
fn push_filters(sql: &mut String, args: &mut Vec<Value>, q: &EventQuery, org_column: &str) {
    let mut push = |sql: &mut String, clause: &str, value: Value| {
        args.push(value);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(org) = &q.org_id {
        push(
            sql,
            &format!(" AND {org_column} = ?"),
            Value::Text(org.clone()),
        );
    }
    if let Some(from) = q.from {
        push(sql, " AND ts >= ?", Value::Integer(from.0));
    }
    if let Some(to) = q.to {
        push(sql, " AND ts < ?", Value::Integer(to.0));
    }
    for (field, value) in [
        ("resource_type", &q.resource_type),
        ("resource_id", &q.resource_id),
        ("message_type", &q.message_type),
    ] {
        if let Some(value) = value {
            push(
                sql,
                &format!(" AND {field} = ?"),
                Value::Text(value.clone()),
            );
        }
    }
    if let Some(source) = q.source {
        push(sql, " AND source = ?", Value::Text(source.as_str().into()));
    }
    if !q.event_types.is_empty() {
        sql.push_str(" AND (0");
        for pattern in &q.event_types {
            let clause = if pattern.is_exact() {
                " OR event_type = ?"
            } else {
                " OR event_type_matches(?, event_type)"
            };
            push(sql, clause, Value::Text(pattern.as_str().into()));
        }
        sql.push(')');
    }
}

pub(super) fn purge_before(
    conn: &mut Connection,
    cutoff: Timestamp,
    limit: usize,
) -> StoreResult<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let oldest: Option<(i64, i64)> = tx
        .prepare_cached("SELECT seq, ts FROM events ORDER BY seq LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((first_seq, first_ts)) = oldest else {
        return Ok(0);
    };
    if first_ts >= cutoff.0 {
        return Ok(0);
    }
    let last: Option<i64> = tx
        .prepare_cached("SELECT MAX(seq) FROM events WHERE seq < ?1 AND ts < ?2")?
        .query_row(params![first_seq + limit as i64, cutoff.0], |r| r.get(0))?;
    let Some(last) = last else {
        return Ok(0);
    };
    // The audit trail outlives the events: their emission entries become rows before the events go.
    super::admin::store_emissions_through(&tx, last)?;
    let deleted = tx
        .prepare_cached("DELETE FROM events WHERE seq <= ?1 AND ts < ?2")?
        .execute(params![last, cutoff.0])?;
    tx.commit()?;
    Ok(deleted as u64)
}

pub(super) fn decode_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let bad = |idx: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            what.to_string().into(),
        )
    };
    let id_bytes: Vec<u8> = row.get(1)?;
    let id = Uuid::from_slice(&id_bytes).map_err(|_| bad(1, "bad event id"))?;
    let event_type: String = row.get(4)?;
    let source: String = row.get(5)?;
    let data: String = row.get(10)?;
    let metadata: Option<String> = row.get(11)?;
    Ok(Event {
        seq: row.get(0)?,
        id,
        spec_version: SPEC_VERSION,
        timestamp: Timestamp(row.get(2)?),
        org_id: row.get(3)?,
        event_type: EventType::parse(&event_type).map_err(|_| bad(4, "bad event type"))?,
        source: Source::parse(&source).ok_or_else(|| bad(5, "bad source"))?,
        message_type: row.get(6)?,
        message_control_id: row.get(7)?,
        resource_type: row.get(8)?,
        resource_id: row.get(9)?,
        data: RawValue::from_string(data).map_err(|_| bad(10, "bad data"))?,
        metadata: metadata
            .map(RawValue::from_string)
            .transpose()
            .map_err(|_| bad(11, "bad metadata"))?,
        actor: row.get(12)?,
        idempotency_key: row.get(13)?,
        write: None,
    })
}
