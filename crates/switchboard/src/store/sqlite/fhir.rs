//! FHIR resource statements: applying a resource write inside the append transaction, reads, and search.

use crate::event::{Event, EventType, Timestamp};
use crate::fhir::resource::plan_write;
use crate::fhir::search::{Match, SearchQuery, TokenMatch};
use crate::store::{ResourcePage, ResourceWrite, StoreError, StoreResult, StoredResource};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::value::RawValue;
use std::collections::HashMap;

/// Applies `write` for `event` (whose resource type and id name the resource) and rewrites the event to say what
/// happened. Runs inside the caller's transaction.
pub(super) fn apply_write(
    conn: &Connection,
    event: &mut Event,
    write: ResourceWrite,
) -> StoreResult<()> {
    let (Some(resource_type), Some(id)) = (event.resource_type.clone(), event.resource_id.clone())
    else {
        return Err(StoreError::Conflict(
            "a resource write needs resourceType and resourceId".into(),
        ));
    };
    let current = read_current(conn, &event.org_id, &resource_type, &id)?;
    let existed = current.is_some();
    let plan = plan_write(
        &resource_type,
        &id,
        current.as_ref(),
        write,
        event.timestamp,
    )?;
    conn.prepare_cached(
        "INSERT INTO fhir_resources (org_id, resource_type, id, version, last_updated, deleted, body) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![event.org_id, resource_type, id, plan.version, event.timestamp.0, plan.deleted, plan.body])?;
    conn.prepare_cached(
        "INSERT INTO fhir_current (org_id, resource_type, id, version, last_updated, deleted) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (org_id, resource_type, id) DO UPDATE SET \
         version = excluded.version, last_updated = excluded.last_updated, deleted = excluded.deleted",
    )?
    .execute(params![event.org_id, resource_type, id, plan.version, event.timestamp.0, plan.deleted])?;
    if existed {
        conn.prepare_cached(
            "DELETE FROM fhir_search WHERE org_id = ?1 AND resource_type = ?2 AND id = ?3",
        )?
        .execute(params![event.org_id, resource_type, id])?;
    }
    let mut index = conn.prepare_cached(
        "INSERT OR IGNORE INTO fhir_search (org_id, resource_type, param, value, id) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for entry in &plan.index {
        index.execute(params![
            event.org_id,
            resource_type,
            entry.param,
            entry.value,
            id
        ])?;
    }
    event.event_type =
        EventType::parse(plan.event_type).map_err(|e| StoreError::Database(e.to_string()))?;
    event.data =
        RawValue::from_string(plan.body).map_err(|e| StoreError::Database(e.to_string()))?;
    Ok(())
}

fn decode(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredResource> {
    Ok(StoredResource {
        version: row.get(0)?,
        last_updated: Timestamp(row.get(1)?),
        deleted: row.get(2)?,
        body: row.get(3)?,
    })
}

/// The latest version of a resource (what `fhir_current` points to): the last entry of its primary key, one
/// index lookup with no join.
pub(super) fn read_current(
    conn: &Connection,
    org: &str,
    resource_type: &str,
    id: &str,
) -> StoreResult<Option<StoredResource>> {
    Ok(conn
        .prepare_cached(
            "SELECT version, last_updated, deleted, body FROM fhir_resources \
             WHERE org_id = ?1 AND resource_type = ?2 AND id = ?3 ORDER BY version DESC LIMIT 1",
        )?
        .query_row(params![org, resource_type, id], decode)
        .optional()?)
}

pub(super) fn read_version(
    conn: &Connection,
    org: &str,
    resource_type: &str,
    id: &str,
    version: i64,
) -> StoreResult<Option<StoredResource>> {
    Ok(conn
        .prepare_cached(
            "SELECT version, last_updated, deleted, body FROM fhir_resources \
             WHERE org_id = ?1 AND resource_type = ?2 AND id = ?3 AND version = ?4",
        )?
        .query_row(params![org, resource_type, id, version], decode)
        .optional()?)
}

pub(super) fn find_ids(
    conn: &Connection,
    org: &str,
    resource_type: &str,
    param: &str,
    values: Vec<String>,
) -> StoreResult<HashMap<String, String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT MIN(id) FROM fhir_search WHERE org_id = ?1 AND resource_type = ?2 AND param = ?3 AND value = ?4",
    )?;
    let mut found = HashMap::with_capacity(values.len());
    for value in values {
        let id: Option<String> =
            stmt.query_row(params![org, resource_type, param, value], |r| r.get(0))?;
        if let Some(id) = id {
            found.insert(value, id);
        }
    }
    Ok(found)
}

pub(super) fn search(
    conn: &Connection,
    org: &str,
    resource_type: &str,
    q: &SearchQuery,
) -> StoreResult<ResourcePage> {
    let mut filter =
        String::from(" WHERE c.org_id = ?1 AND c.resource_type = ?2 AND c.deleted = 0");
    let mut args: Vec<Value> = vec![Value::Text(org.into()), Value::Text(resource_type.into())];
    let arg = |args: &mut Vec<Value>, v: Value| {
        args.push(v);
        format!("?{}", args.len())
    };
    if !q.ids.is_empty() {
        let list: Vec<String> = q
            .ids
            .iter()
            .map(|id| arg(&mut args, Value::Text(id.clone())))
            .collect();
        filter.push_str(&format!(" AND c.id IN ({})", list.join(", ")));
    }
    for (prefix, ts) in &q.last_updated {
        let p = arg(&mut args, Value::Integer(ts.0));
        filter.push_str(&format!(" AND c.last_updated {} {p}", prefix.sql()));
    }
    for f in &q.filters {
        let param = arg(&mut args, Value::Text(f.param.into()));
        let condition = match &f.matches {
            Match::Exact(values) => {
                let list: Vec<String> = values
                    .iter()
                    .map(|v| arg(&mut args, Value::Text(v.clone())))
                    .collect();
                format!("s.value IN ({})", list.join(", "))
            }
            Match::Prefix(values) => {
                let alternatives: Vec<String> = values
                    .iter()
                    .map(|v| {
                        let low = arg(&mut args, Value::Text(v.clone()));
                        let high = arg(&mut args, Value::Text(format!("{v}\u{10FFFF}")));
                        format!("(s.value >= {low} AND s.value < {high})")
                    })
                    .collect();
                format!("({})", alternatives.join(" OR "))
            }
            Match::Date(prefix, date) => {
                let d = arg(&mut args, Value::Text(date.clone()));
                format!("s.value {} {d}", prefix.sql())
            }
            Match::Token(tokens) => {
                let alternatives: Vec<String> = tokens
                    .iter()
                    .map(|t| match t {
                        TokenMatch::Exact(v) => {
                            format!("s.value = {}", arg(&mut args, Value::Text(v.clone())))
                        }
                        TokenMatch::Prefix(v) => {
                            let low = arg(&mut args, Value::Text(v.clone()));
                            let high = arg(&mut args, Value::Text(format!("{v}\u{10FFFF}")));
                            format!("(s.value >= {low} AND s.value < {high})")
                        }
                    })
                    .collect();
                format!("({})", alternatives.join(" OR "))
            }
        };
        filter.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM fhir_search s WHERE s.org_id = c.org_id AND s.resource_type = c.resource_type \
             AND s.id = c.id AND s.param = {param} AND {condition})"
        ));
    }
    let total: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM fhir_current c{filter}"))?
        .query_row(rusqlite::params_from_iter(args.iter()), |r| r.get(0))?;
    let limit = arg(&mut args, Value::Integer(q.count as i64));
    let offset = arg(&mut args, Value::Integer(q.offset as i64));
    let sql = format!(
        "SELECT r.body FROM fhir_current c JOIN fhir_resources r ON r.org_id = c.org_id AND \
         r.resource_type = c.resource_type AND r.id = c.id AND r.version = c.version{filter} \
         ORDER BY c.last_updated, c.id LIMIT {limit} OFFSET {offset}"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
        r.get::<_, String>(0)
    })?;
    Ok(ResourcePage {
        total: total as usize,
        resources: rows.collect::<Result<_, _>>()?,
    })
}
