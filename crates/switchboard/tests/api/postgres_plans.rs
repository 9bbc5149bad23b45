//! Query plans on PostgreSQL: the hot statements must use their indexes, whatever the table sizes. (Every resource
//! write reads the resource's current version while holding the log's lock; that read once matched the resource
//! id only as a filter over all resources of its type, through a collation mismatch or the wrong index, and the
//! whole PostgreSQL backend ran at 1,000 FHIR writes/s while every test passed.)

use crate::helpers::{is_postgres, postgres_url};
use switchboard::store;

/// The store's read of a resource's current version (`store/postgres/fhir.rs`, `read_current`).
const READ_CURRENT: &str = "SELECT version, last_updated, deleted, body FROM fhir_resources \
    WHERE org_id = $1 AND resource_type = $2 AND id = $3 ORDER BY version DESC LIMIT 1";

/// The batch's read of the current versions of the resources it writes (`current_versions`).
const CURRENT_VERSIONS: &str = "SELECT k.org_id, k.resource_type, k.id, r.version, r.last_updated, r.deleted, \
    r.body FROM (SELECT DISTINCT * FROM UNNEST($1::text[], $2::text[], $3::text[])) AS k(org_id, resource_type, id) \
    CROSS JOIN LATERAL (SELECT version, last_updated, deleted, body FROM fhir_resources f \
    WHERE f.org_id = k.org_id AND f.resource_type = k.resource_type AND f.id = k.id COLLATE \"C\" \
    ORDER BY f.version DESC LIMIT 1) r";

/// The store's vread (`read_version`).
const READ_VERSION: &str = "SELECT version, last_updated, deleted, body FROM fhir_resources \
    WHERE org_id = $1 AND resource_type = $2 AND id = $3 AND version = $4";

#[tokio::test]
async fn fhir_reads_use_the_primary_keys() {
    if !is_postgres() {
        eprintln!("fhir_reads_use_the_primary_keys: PostgreSQL only; not run on this backend");
        return;
    }
    let url = postgres_url();
    // Opening the store creates the schema and applies every migration.
    let _store = store::open(&url).await.expect("store");
    let (base, query) = url.split_once('?').expect("the test URL names a schema");
    let schema = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("schema="))
        .expect("schema parameter");
    let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    // With sequential scans priced out, the planner picks an index whenever one can serve the statement.
    client
        .batch_execute(&format!(
            "SET search_path TO \"{schema}\"; SET enable_seqscan = off"
        ))
        .await
        .expect("settings");
    for (name, sql, params) in [
        ("read_current", READ_CURRENT, "('o', 'Patient', 'p1')"),
        ("read_version", READ_VERSION, "('o', 'Patient', 'p1', 1)"),
        (
            "current_versions",
            CURRENT_VERSIONS,
            "('{o}', '{Patient}', '{p1}')",
        ),
    ] {
        client
            .batch_execute(&format!("PREPARE {name} AS {sql}"))
            .await
            .expect("prepare");
        let plan: Vec<String> = client
            .query(&format!("EXPLAIN EXECUTE {name} {params}"), &[])
            .await
            .expect("explain")
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect();
        // The resource id must be part of an index condition, not a filter applied to every resource of the type.
        let filtered_by_id = plan
            .iter()
            .any(|line| line.trim_start().starts_with("Filter:") && line.contains("id)"));
        let plan = plan.join("\n");
        assert!(
            !plan.contains("Seq Scan") && !filtered_by_id,
            "{name} scans a table instead of looking the resource up by its primary key:\n{plan}"
        );
    }
}
