//! Statements for everything that is not the event log, on PostgreSQL: listener cursors, API keys and the audit
//! log.

use super::events::{arg, refs, Params};
use crate::event::Timestamp;
use crate::store::{
    ApiKeyRecord, AuditEntry, AuditQuery, StoreError, StoreResult, EMISSIONS_STORED_THROUGH,
    EMIT_ACTION, EMIT_OUTCOME,
};
use deadpool_postgres::{GenericClient, Object};
use tokio_postgres::Row;

pub(super) async fn load_cursor<C: GenericClient>(
    client: &C,
    name: &str,
) -> StoreResult<Option<i64>> {
    let statement = client
        .prepare_cached("SELECT seq FROM listener_cursors WHERE name = $1")
        .await?;
    let row = client.query_opt(&statement, &[&name]).await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

pub(super) async fn save_cursor<C: GenericClient>(
    client: &C,
    name: &str,
    seq: i64,
) -> StoreResult<()> {
    let statement = client
        .prepare_cached(
            "INSERT INTO listener_cursors (name, seq, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
        )
        .await?;
    client
        .execute(&statement, &[&name, &seq, &Timestamp::now().0])
        .await?;
    Ok(())
}

const KEY_COLUMNS: &str = "id, org_id, name, key_hash, prefix, created_at";

fn decode_key(row: &Row) -> StoreResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.try_get(0)?,
        org_id: row.try_get(1)?,
        name: row.try_get(2)?,
        key_hash: row.try_get(3)?,
        prefix: row.try_get(4)?,
        created_at: Timestamp(row.try_get(5)?),
    })
}

async fn write_key<C: GenericClient>(
    client: &C,
    key: &ApiKeyRecord,
    on_conflict: &str,
) -> StoreResult<()> {
    let sql = format!(
        "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6){on_conflict}"
    );
    let statement = client.prepare_cached(&sql).await?;
    client
        .execute(
            &statement,
            &[
                &key.id,
                &key.org_id,
                &key.name,
                &key.key_hash,
                &key.prefix,
                &key.created_at.0,
            ],
        )
        .await?;
    Ok(())
}

pub(super) async fn insert_key(
    client: &mut Object,
    key: &ApiKeyRecord,
    audit: &AuditEntry,
) -> StoreResult<()> {
    let tx = client.transaction().await?;
    write_key(&tx, key, "").await?;
    insert_audit(&tx, audit).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn upsert_key<C: GenericClient>(
    client: &C,
    key: &ApiKeyRecord,
) -> StoreResult<()> {
    write_key(
        client,
        key,
        " ON CONFLICT (id) DO UPDATE SET key_hash = excluded.key_hash, prefix = excluded.prefix",
    )
    .await
}

pub(super) async fn find_key<C: GenericClient>(
    client: &C,
    hash: &[u8],
) -> StoreResult<Option<ApiKeyRecord>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"
        ))
        .await?;
    let row = client.query_opt(&statement, &[&hash]).await?;
    row.as_ref().map(decode_key).transpose()
}

pub(super) async fn list_keys<C: GenericClient>(
    client: &C,
    org_id: Option<&str>,
) -> StoreResult<Vec<ApiKeyRecord>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE ($1::text IS NULL OR org_id = $1) ORDER BY created_at, id"
        ))
        .await?;
    let rows = client.query(&statement, &[&org_id]).await?;
    rows.iter().map(decode_key).collect()
}

pub(super) async fn delete_key(
    client: &mut Object,
    id: &str,
    org_id: Option<&str>,
    audit: &AuditEntry,
) -> StoreResult<()> {
    let tx = client.transaction().await?;
    let deleted = tx
        .execute(
            "DELETE FROM api_keys WHERE id = $1 AND ($2::text IS NULL OR org_id = $2)",
            &[&id, &org_id],
        )
        .await?;
    if deleted == 0 {
        return Err(StoreError::NotFound);
    }
    insert_audit(&tx, audit).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn any_admin_key<C: GenericClient>(client: &C) -> StoreResult<bool> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM api_keys WHERE org_id IS NULL)",
            &[],
        )
        .await?;
    Ok(row.try_get(0)?)
}

async fn insert_audit<C: GenericClient>(client: &C, e: &AuditEntry) -> StoreResult<()> {
    let statement = client
        .prepare_cached(
            "INSERT INTO audit_log (ts, actor, org_id, action, target, outcome, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    client
        .execute(
            &statement,
            &[
                &e.timestamp.0,
                &e.actor,
                &e.org_id,
                &e.action,
                &e.target,
                &e.outcome,
                &e.detail,
            ],
        )
        .await?;
    Ok(())
}

/// Writes audit rows in one multi-row insert, in one transaction.
pub(super) async fn record_audit(client: &mut Object, entries: &[AuditEntry]) -> StoreResult<()> {
    let tx = client.transaction().await?;
    if !entries.is_empty() {
        let statement = tx
            .prepare_cached(
                "INSERT INTO audit_log (ts, actor, org_id, action, target, outcome, detail) \
                 SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::text[])",
            )
            .await?;
        let ts: Vec<i64> = entries.iter().map(|e| e.timestamp.0).collect();
        let actors: Vec<Option<&str>> = entries.iter().map(|e| e.actor.as_deref()).collect();
        let orgs: Vec<Option<&str>> = entries.iter().map(|e| e.org_id.as_deref()).collect();
        let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        let targets: Vec<&str> = entries.iter().map(|e| e.target.as_str()).collect();
        let outcomes: Vec<&str> = entries.iter().map(|e| e.outcome.as_str()).collect();
        let details: Vec<Option<&str>> = entries.iter().map(|e| e.detail.as_deref()).collect();
        tx.execute(
            &statement,
            &[&ts, &actors, &orgs, &actions, &targets, &outcomes, &details],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The emission audit entry of each selected event, in `audit_log`'s column order (see [`EMIT_ACTION`]).
fn emission_columns() -> String {
    format!(
        "ts, COALESCE(actor, source), org_id, '{EMIT_ACTION}', id::text, '{EMIT_OUTCOME}', event_type"
    )
}

/// Rows and emissions in one statement, so in one snapshot (a purge moving emissions into rows meanwhile cannot
/// show one twice or not at all). Each filter's placeholder serves both halves.
pub(super) async fn query_audit<C: GenericClient>(
    client: &C,
    q: &AuditQuery,
) -> StoreResult<Vec<AuditEntry>> {
    let mut params = Params::new();
    let mut filters = String::new();
    if let Some(org) = &q.org_id {
        filters.push_str(&format!(" AND org_id = {}", arg(&mut params, org.clone())));
    }
    if let Some(from) = q.from {
        filters.push_str(&format!(" AND ts >= {}", arg(&mut params, from.0)));
    }
    if let Some(to) = q.to {
        filters.push_str(&format!(" AND ts < {}", arg(&mut params, to.0)));
    }
    let action = match &q.action {
        Some(action) => format!(" AND action = {}", arg(&mut params, action.clone())),
        None => String::new(),
    };
    let limit = arg(&mut params, q.limit as i64);
    let rows = format!(
        "SELECT ts, actor, org_id, action, target, outcome, detail FROM audit_log WHERE true{filters}{action} \
         ORDER BY ts DESC, id DESC LIMIT {limit}"
    );
    let sql = if q.wants_emissions() {
        let order = q.emissions_order();
        format!(
            "({rows}) UNION ALL (SELECT {} FROM events WHERE seq > (SELECT COALESCE(MAX(seq), 0) \
             FROM listener_cursors WHERE name = '{EMISSIONS_STORED_THROUGH}'){filters} ORDER BY {order} \
             LIMIT {limit}) ORDER BY 1 DESC LIMIT {limit}",
            emission_columns()
        )
    } else {
        rows
    };
    let statement = client.prepare_cached(&sql).await?;
    let rows = client.query(&statement, &refs(&params)).await?;
    rows.iter()
        .map(|r| {
            Ok(AuditEntry {
                timestamp: Timestamp(r.try_get(0)?),
                actor: r.try_get(1)?,
                org_id: r.try_get(2)?,
                action: r.try_get(3)?,
                target: r.try_get(4)?,
                outcome: r.try_get(5)?,
                detail: r.try_get(6)?,
            })
        })
        .collect()
}

/// Writes the emission entries of the events through `last` that are not rows yet into `audit_log`, and moves
/// [`EMISSIONS_STORED_THROUGH`] to `last` (part of a retention purge, in its transaction). The cursor row is
/// locked first, so instances purging at once take turns instead of writing an entry twice.
pub(super) async fn store_emissions_through<C: GenericClient>(
    client: &C,
    last: i64,
) -> StoreResult<()> {
    let now = Timestamp::now().0;
    let ensure = client
        .prepare_cached(
            "INSERT INTO listener_cursors (name, seq, updated_at) VALUES ($1, 0, $2) ON CONFLICT (name) DO NOTHING",
        )
        .await?;
    client
        .execute(&ensure, &[&EMISSIONS_STORED_THROUGH, &now])
        .await?;
    let lock = client
        .prepare_cached("SELECT seq FROM listener_cursors WHERE name = $1 FOR UPDATE")
        .await?;
    let through: i64 = client
        .query_one(&lock, &[&EMISSIONS_STORED_THROUGH])
        .await?
        .try_get(0)?;
    if through >= last {
        return Ok(());
    }
    let insert = client
        .prepare_cached(&format!(
            "INSERT INTO audit_log (ts, actor, org_id, action, target, outcome, detail) \
             SELECT {} FROM events WHERE seq > $1 AND seq <= $2 ORDER BY seq",
            emission_columns()
        ))
        .await?;
    client.execute(&insert, &[&through, &last]).await?;
    let advance = client
        .prepare_cached("UPDATE listener_cursors SET seq = $2, updated_at = $3 WHERE name = $1")
        .await?;
    client
        .execute(&advance, &[&EMISSIONS_STORED_THROUGH, &last, &now])
        .await?;
    Ok(())
}
