//! FHIR resource statements on PostgreSQL: applying a resource write inside the append transaction, reads, and
//! search (the same tables and plan as on SQLite).

use super::events::{arg, refs, Params};
use crate::event::{Event, EventType, Timestamp};
use crate::fhir::resource::plan_write;
use crate::fhir::search::{Match, SearchQuery};
use crate::store::{ResourcePage, ResourceWrite, StoreError, StoreResult, StoredResource};
use deadpool_postgres::GenericClient;
use serde_json::value::RawValue;
use tokio_postgres::Row;

/// Applies `write` for `event` and rewrites the event to say what happened. Runs inside the append transaction,
/// which holds the log lock, so no other instance writes the same resource meanwhile.
pub(super) async fn apply_write<C: GenericClient>(
    tx: &C,
    event: &mut Event,
    write: ResourceWrite,
) -> StoreResult<()> {
    let (Some(resource_type), Some(id)) = (event.resource_type.clone(), event.resource_id.clone())
    else {
        return Err(StoreError::Conflict(
            "a resource write needs resourceType and resourceId".into(),
        ));
    };
    let current = read_current(tx, &event.org_id, &resource_type, &id).await?;
    let plan = plan_write(
        &resource_type,
        &id,
        current.as_ref(),
        write,
        event.timestamp,
    )?;
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
    tx.execute(
        &insert_version,
        &[
            &org,
            &resource_type,
            &id,
            &plan.version,
            &ts,
            &plan.deleted,
            &plan.body,
        ],
    )
    .await?;
    tx.execute(
        &set_current,
        &[&org, &resource_type, &id, &plan.version, &ts, &plan.deleted],
    )
    .await?;
    tx.execute(&clear_index, &[&org, &resource_type, &id])
        .await?;
    tx.execute(&add_index, &[&org, &resource_type, &id, &params, &values])
        .await?;
    event.event_type =
        EventType::parse(plan.event_type).map_err(|e| StoreError::Database(e.to_string()))?;
    event.data =
        RawValue::from_string(plan.body).map_err(|e| StoreError::Database(e.to_string()))?;
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

pub(super) async fn read_current<C: GenericClient>(
    client: &C,
    org: &str,
    resource_type: &str,
    id: &str,
) -> StoreResult<Option<StoredResource>> {
    let statement = client
        .prepare_cached(
            "SELECT c.version, c.last_updated, c.deleted, r.body FROM fhir_current c JOIN fhir_resources r \
             ON r.org_id = c.org_id AND r.resource_type = c.resource_type AND r.id = c.id AND r.version = c.version \
             WHERE c.org_id = $1 AND c.resource_type = $2 AND c.id = $3",
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
