//! FHIR resource statements on PostgreSQL: applying a resource write inside the append transaction, reads, and
//! search (the same tables and plan as on SQLite).

use super::events::{arg, refs, Params};
use crate::event::{Event, EventType, Timestamp};
use crate::fhir::resource::plan_write;
use crate::fhir::search::{Match, SearchQuery, TokenMatch};
use crate::store::{ResourcePage, ResourceWrite, StoreError, StoreResult, StoredResource};
use deadpool_postgres::GenericClient;
use serde_json::value::RawValue;
use std::collections::HashMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// The current state of the resources a batch writes, by (org, type, id): read once per batch
/// ([`current_versions`]) and kept up to date as the batch's writes apply, so a resource written twice in one
/// batch sees its first write.
pub(super) type CurrentVersions = HashMap<(String, String, String), StoredResource>;

/// Reads, in one round trip, the current version of every resource the batch's events write.
pub(super) async fn current_versions<C: GenericClient>(
    tx: &C,
    batch: &[Event],
) -> StoreResult<CurrentVersions> {
    let keys: Vec<(&str, &str, &str)> = batch
        .iter()
        .filter(|e| e.write.is_some())
        .filter_map(|e| {
            Some((
                e.org_id.as_str(),
                e.resource_type.as_deref()?,
                e.resource_id.as_deref()?,
            ))
        })
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let statement = tx
        .prepare_cached(
            "SELECT k.org_id, k.resource_type, k.id, r.version, r.last_updated, r.deleted, r.body \
             FROM (SELECT DISTINCT * FROM UNNEST($1::text[], $2::text[], $3::text[])) AS k(org_id, resource_type, id) \
             CROSS JOIN LATERAL (SELECT version, last_updated, deleted, body FROM fhir_resources f \
               WHERE f.org_id = k.org_id AND f.resource_type = k.resource_type AND f.id = k.id COLLATE \"C\" \
               ORDER BY f.version DESC LIMIT 1) r",
        )
        .await?;
    let orgs: Vec<&str> = keys.iter().map(|k| k.0).collect();
    let types: Vec<&str> = keys.iter().map(|k| k.1).collect();
    let ids: Vec<&str> = keys.iter().map(|k| k.2).collect();
    let rows = tx.query(&statement, &[&orgs, &types, &ids]).await?;
    let mut current = HashMap::with_capacity(rows.len());
    for row in rows {
        current.insert(
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?),
            StoredResource {
                version: row.try_get(3)?,
                last_updated: Timestamp(row.try_get(4)?),
                deleted: row.try_get(5)?,
                body: row.try_get(6)?,
            },
        );
    }
    Ok(current)
}

/// Applies `write` for `event` and rewrites the event to say what happened. Runs inside the append transaction,
/// which holds the log lock, so no other instance writes the same resource meanwhile. `versions` holds the
/// resource's current state (from [`current_versions`]) and gets its new one.
pub(super) async fn apply_write<C: GenericClient>(
    tx: &C,
    event: &mut Event,
    write: ResourceWrite,
    versions: &mut CurrentVersions,
) -> StoreResult<()> {
    let (Some(resource_type), Some(id)) = (event.resource_type.clone(), event.resource_id.clone())
    else {
        return Err(StoreError::Conflict(
            "a resource write needs resourceType and resourceId".into(),
        ));
    };
    let key = (event.org_id.clone(), resource_type, id);
    let current = versions.get(&key);
    let (_, resource_type, id) = &key;
    let (resource_type, id) = (resource_type.as_str(), id.as_str());
    let plan = plan_write(resource_type, id, current, write, event.timestamp)?;
    let org = event.org_id.as_str();
    let ts = event.timestamp.0;
    let insert_version = tx
        .prepare_cached(
            "INSERT INTO fhir_resources (org_id, resource_type, id, version, last_updated, deleted, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    let set_current = tx
        .prepare_cached(
            "INSERT INTO fhir_current (org_id, resource_type, id, version, last_updated, deleted) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (org_id, resource_type, id) DO UPDATE SET \
             version = excluded.version, last_updated = excluded.last_updated, deleted = excluded.deleted",
        )
        .await?;
    let clear_index = tx
        .prepare_cached(
            "DELETE FROM fhir_search WHERE org_id = $1 AND resource_type = $2 AND id = $3",
        )
        .await?;
    let add_index = tx
        .prepare_cached(
            "INSERT INTO fhir_search (org_id, resource_type, param, value, id) \
             SELECT $1, $2, p, v, $3 FROM UNNEST($4::text[], $5::text[]) AS u(p, v) ON CONFLICT DO NOTHING",
        )
        .await?;
    let params: Vec<&str> = plan.index.iter().map(|e| e.param).collect();
    let values: Vec<&str> = plan.index.iter().map(|e| e.value.as_str()).collect();
    // One round trip for the four statements: sent together (pipelined) and run by the server in this order, so
    // the old search rows are gone before the new ones go in. A new resource has no search rows to clear.
    let existed = current.is_some();
    let version_row: [&(dyn ToSql + Sync); 7] = [
        &org,
        &resource_type,
        &id,
        &plan.version,
        &ts,
        &plan.deleted,
        &plan.body,
    ];
    let current_row: [&(dyn ToSql + Sync); 6] =
        [&org, &resource_type, &id, &plan.version, &ts, &plan.deleted];
    let search_key: [&(dyn ToSql + Sync); 3] = [&org, &resource_type, &id];
    let index_rows: [&(dyn ToSql + Sync); 5] = [&org, &resource_type, &id, &params, &values];
    futures::try_join!(
        tx.execute(&insert_version, &version_row),
        tx.execute(&set_current, &current_row),
        async {
            if existed {
                tx.execute(&clear_index, &search_key).await
            } else {
                Ok(0)
            }
        },
        tx.execute(&add_index, &index_rows),
    )?;
    let stored = StoredResource {
        version: plan.version,
        last_updated: event.timestamp,
        deleted: plan.deleted,
        body: plan.body,
    };
    event.event_type =
        EventType::parse(plan.event_type).map_err(|e| StoreError::Database(e.to_string()))?;
    event.data = RawValue::from_string(stored.body.clone())
        .map_err(|e| StoreError::Database(e.to_string()))?;
    versions.insert(key, stored);
    Ok(())
}

fn decode(row: &Row) -> StoreResult<StoredResource> {
    Ok(StoredResource {
        version: row.try_get(0)?,
        last_updated: Timestamp(row.try_get(1)?),
        deleted: row.try_get(2)?,
        body: row.try_get(3)?,
    })
}

/// The latest version of a resource (what `fhir_current` points to): the last entry of its primary key, one
/// index lookup with no join.
pub(super) async fn read_current<C: GenericClient>(
    client: &C,
    org: &str,
    resource_type: &str,
    id: &str,
) -> StoreResult<Option<StoredResource>> {
    let statement = client
        .prepare_cached(
            "SELECT version, last_updated, deleted, body FROM fhir_resources \
             WHERE org_id = $1 AND resource_type = $2 AND id = $3 ORDER BY version DESC LIMIT 1",
        )
        .await?;
    let row = client
        .query_opt(&statement, &[&org, &resource_type, &id])
        .await?;
    row.as_ref().map(decode).transpose()
}

pub(super) async fn read_version<C: GenericClient>(
    client: &C,
    org: &str,
    resource_type: &str,
    id: &str,
    version: i64,
) -> StoreResult<Option<StoredResource>> {
    let statement = client
        .prepare_cached(
            "SELECT version, last_updated, deleted, body FROM fhir_resources \
             WHERE org_id = $1 AND resource_type = $2 AND id = $3 AND version = $4",
        )
        .await?;
    let row = client
        .query_opt(&statement, &[&org, &resource_type, &id, &version])
        .await?;
    row.as_ref().map(decode).transpose()
}

pub(super) async fn find_ids<C: GenericClient>(
    client: &C,
    org: &str,
    resource_type: &str,
    param: &str,
    values: &[String],
) -> StoreResult<HashMap<String, String>> {
    if values.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            "SELECT value, MIN(id) FROM fhir_search WHERE org_id = $1 AND resource_type = $2 AND param = $3 \
             AND value = ANY($4) GROUP BY value",
            &[&org, &resource_type, &param, &values],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

pub(super) async fn search<C: GenericClient>(
    client: &C,
    org: &str,
    resource_type: &str,
    q: &SearchQuery,
) -> StoreResult<ResourcePage> {
    let mut params: Params = vec![
        Box::new(org.to_string()),
        Box::new(resource_type.to_string()),
    ];
    let mut filter =
        String::from(" WHERE c.org_id = $1 AND c.resource_type = $2 AND NOT c.deleted");
    if !q.ids.is_empty() {
        let ids = arg(&mut params, q.ids.clone());
        filter.push_str(&format!(" AND c.id = ANY({ids})"));
    }
    for (prefix, ts) in &q.last_updated {
        let p = arg(&mut params, ts.0);
        filter.push_str(&format!(" AND c.last_updated {} {p}", prefix.sql()));
    }
    for f in &q.filters {
        let param = arg(&mut params, f.param.to_string());
        let condition = match &f.matches {
            Match::Exact(values) => {
                let list = arg(&mut params, values.clone());
                format!("s.value = ANY({list})")
            }
            Match::Prefix(values) => {
                let alternatives: Vec<String> = values
                    .iter()
                    .map(|v| {
                        let low = arg(&mut params, v.clone());
                        let high = arg(&mut params, format!("{v}\u{10FFFF}"));
                        format!("(s.value >= {low} AND s.value < {high})")
                    })
                    .collect();
                format!("({})", alternatives.join(" OR "))
            }
            Match::Date(prefix, date) => {
                let d = arg(&mut params, date.clone());
                format!("s.value {} {d}", prefix.sql())
            }
            Match::Token(tokens) => {
                let alternatives: Vec<String> = tokens
                    .iter()
                    .map(|t| match t {
                        TokenMatch::Exact(v) => {
                            format!("s.value = {}", arg(&mut params, v.clone()))
                        }
                        TokenMatch::Prefix(v) => {
                            let low = arg(&mut params, v.clone());
                            let high = arg(&mut params, format!("{v}\u{10FFFF}"));
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
    let count = client
        .prepare_cached(&format!("SELECT COUNT(*) FROM fhir_current c{filter}"))
        .await?;
    let total: i64 = client.query_one(&count, &refs(&params)).await?.try_get(0)?;
    let limit = arg(&mut params, q.count as i64);
    let offset = arg(&mut params, q.offset as i64);
    let sql = format!(
        "SELECT r.body FROM fhir_current c JOIN fhir_resources r ON r.org_id = c.org_id AND \
         r.resource_type = c.resource_type AND r.id = c.id AND r.version = c.version{filter} \
         ORDER BY c.last_updated, c.id LIMIT {limit} OFFSET {offset}"
    );
    let statement = client.prepare_cached(&sql).await?;
    let rows = client.query(&statement, &refs(&params)).await?;
    Ok(ResourcePage {
        total: total as usize,
        resources: rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?,
    })
}
