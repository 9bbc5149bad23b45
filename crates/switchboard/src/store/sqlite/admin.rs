//! Statements for everything that is not the event log: listener cursors, API keys and the audit log.

use crate::event::Timestamp;
use crate::store::{
    ApiKeyRecord, AuditEntry, AuditQuery, StoreError, StoreResult, EMISSIONS_STORED_THROUGH,
    EMIT_ACTION, EMIT_OUTCOME,
};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row};

pub(super) fn load_cursor(conn: &Connection, name: &str) -> StoreResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT seq FROM listener_cursors WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?)
}

pub(super) fn save_cursor(conn: &Connection, name: &str, seq: i64) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO listener_cursors (name, seq, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
    )?
    .execute(params![name, seq, Timestamp::now().0])?;
    Ok(())
}

const KEY_COLUMNS: &str = "id, org_id, name, key_hash, prefix, created_at";

fn decode_key(row: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.get(0)?,
        org_id: row.get(1)?,
        name: row.get(2)?,
        key_hash: row.get(3)?,
        prefix: row.get(4)?,
        created_at: Timestamp(row.get(5)?),
    })
}

pub(super) fn insert_key(
    conn: &mut Connection,
    key: &ApiKeyRecord,
    audit: &AuditEntry,
) -> StoreResult<()> {
    let tx = conn.transaction()?;
    tx.execute(
        &format!("INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![
            key.id,
            key.org_id,
            key.name,
            key.key_hash,
            key.prefix,
            key.created_at.0
        ],
    )?;
    insert_audit(&tx, audit)?;
    tx.commit()?;
    Ok(())
}

pub(super) fn upsert_key(conn: &Connection, key: &ApiKeyRecord) -> StoreResult<()> {
    conn.execute(
        &format!(
            "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (id) DO UPDATE SET key_hash = excluded.key_hash, prefix = excluded.prefix"
        ),
        params![
            key.id,
            key.org_id,
            key.name,
            key.key_hash,
            key.prefix,
            key.created_at.0
        ],
    )?;
    Ok(())
}

pub(super) fn find_key(conn: &Connection, hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1"
        ))?
        .query_row([hash], decode_key)
        .optional()?)
}

pub(super) fn list_keys(conn: &Connection, org_id: Option<&str>) -> StoreResult<Vec<ApiKeyRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE (?1 IS NULL OR org_id = ?1) ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map([org_id], decode_key)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn delete_key(
    conn: &mut Connection,
    id: &str,
    org_id: Option<&str>,
    audit: &AuditEntry,
) -> StoreResult<()> {
    let tx = conn.transaction()?;
    let deleted = tx.execute(
        "DELETE FROM api_keys WHERE id = ?1 AND (?2 IS NULL OR org_id = ?2)",
        params![id, org_id],
    )?;
    if deleted == 0 {
        return Err(StoreError::NotFound);
    }
    insert_audit(&tx, audit)?;
    tx.commit()?;
    Ok(())
}

pub(super) fn any_admin_key(conn: &Connection) -> StoreResult<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM api_keys WHERE org_id IS NULL)",
        [],
        |r| r.get(0),
    )?)
}

fn insert_audit(conn: &Connection, e: &AuditEntry) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO audit_log (ts, actor, org_id, action, target, outcome, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        e.timestamp.0,
        e.actor,
        e.org_id,
        e.action,
        e.target,
        e.outcome,
        e.detail
    ])?;
    Ok(())
}

pub(super) fn record_audit(conn: &mut Connection, entries: &[AuditEntry]) -> StoreResult<()> {
    let tx = conn.transaction()?;
    for entry in entries {
        insert_audit(&tx, entry)?;
    }
    tx.commit()?;
    Ok(())
}

/// An event's id (16 bytes in SQLite) as text, the way the API writes it.
const EVENT_ID_TEXT: &str =
    "lower(substr(hex(id), 1, 8) || '-' || substr(hex(id), 9, 4) || '-' || \
     substr(hex(id), 13, 4) || '-' || substr(hex(id), 17, 4) || '-' || substr(hex(id), 21))";

/// The emission audit entry of each selected event, in `audit_log`'s column order (see [`EMIT_ACTION`]).
fn emission_columns() -> String {
    format!(
        "ts, COALESCE(actor, source), org_id, '{EMIT_ACTION}', {EVENT_ID_TEXT}, '{EMIT_OUTCOME}', event_type"
    )
}

/// The seq through which emissions are rows in `audit_log`.
fn stored_through() -> String {
    format!(
        "(SELECT COALESCE(MAX(seq), 0) FROM listener_cursors WHERE name = '{EMISSIONS_STORED_THROUGH}')"
    )
}

/// Rows and emissions in one statement (one snapshot: a purge moving emissions into rows meanwhile cannot show
/// one twice or not at all). Parameters by number, the same in both halves: `?1` org, `?2` from, `?3` to,
/// `?4` action, `?5` limit.
pub(super) fn query_audit(conn: &Connection, q: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
    let mut filters = String::new();
    if q.org_id.is_some() {
        filters.push_str(" AND org_id = ?1");
    }
    if q.from.is_some() {
        filters.push_str(" AND ts >= ?2");
    }
    if q.to.is_some() {
        filters.push_str(" AND ts < ?3");
    }
    let action = if q.action.is_some() {
        " AND action = ?4"
    } else {
        ""
    };
    let rows = format!(
        "SELECT ts, actor, org_id, action, target, outcome, detail FROM audit_log WHERE 1 = 1{filters}{action} \
         ORDER BY ts DESC, id DESC LIMIT ?5"
    );
    let sql = if q.wants_emissions() {
        let order = q.emissions_order();
        format!(
            "SELECT * FROM ({rows}) UNION ALL SELECT * FROM (SELECT {} FROM events WHERE seq > {}{filters} \
             ORDER BY {order} LIMIT ?5) ORDER BY 1 DESC LIMIT ?5",
            emission_columns(),
            stored_through()
        )
    } else {
        rows
    };
    let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::Text);
    let time = |v: Option<Timestamp>| v.map_or(Value::Null, |t| Value::Integer(t.0));
    let args = [
        text(&q.org_id),
        time(q.from),
        time(q.to),
        text(&q.action),
        Value::Integer(q.limit as i64),
    ];
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
        Ok(AuditEntry {
            timestamp: Timestamp(r.get(0)?),
            actor: r.get(1)?,
            org_id: r.get(2)?,
            action: r.get(3)?,
            target: r.get(4)?,
            outcome: r.get(5)?,
            detail: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Writes the emission entries of the events through `last` that are not rows yet into `audit_log`, and moves
/// [`EMISSIONS_STORED_THROUGH`] to `last` (part of a retention purge, in its transaction).
pub(super) fn store_emissions_through(conn: &Connection, last: i64) -> StoreResult<()> {
    let sql = format!(
        "INSERT INTO audit_log (ts, actor, org_id, action, target, outcome, detail) \
         SELECT {} FROM events WHERE seq > {} AND seq <= ?1 ORDER BY seq",
        emission_columns(),
        stored_through()
    );
    conn.prepare_cached(&sql)?.execute([last])?;
    conn.prepare_cached(
        "INSERT INTO listener_cursors (name, seq, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET seq = MAX(seq, excluded.seq), updated_at = excluded.updated_at",
    )?
    .execute(params![EMISSIONS_STORED_THROUGH, last, Timestamp::now().0])?;
    Ok(())
}
