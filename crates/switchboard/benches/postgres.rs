//! Benchmark of the PostgreSQL backend, and of history queries on a large log on both backends.
//!
//! Run: `cargo bench -p switchboard --bench postgres` (`-- --quick` for a short run with 1 M stored events).
//! `BENCH_PG_URL` names the server (default `postgres://postgres@127.0.0.1:5432/test`); each run uses fresh
//! schemas and drops them at the end. Prints:
//! 1. durable append (`hub.emit`, `synchronous_commit = on`, 1 KB payloads) from one instance at 16, 256 and 1024
//!    concurrent emitters, and the aggregate of two instances (two hubs with their own pools on one database);
//! 2. history query latency (org + time range, page of 100, p50/p95/p99) with 10 M events stored, on PostgreSQL
//!    and on SQLite. The large logs are generated inside the database (`generate_series` / a recursive CTE), not
//!    through the hub, so loading takes minutes rather than hours.

use serde_json::value::RawValue;
use std::time::{Duration, Instant};
use switchboard::event::{EventType, NewEvent, Pattern, Source, Timestamp};
use switchboard::hub::{Hub, HubConfig};
use switchboard::store::{DynStore, EventQuery, Order};

const ORGS: i64 = 50;

fn pg_base() -> String {
    std::env::var("BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

fn schema_url(schema: &str) -> String {
    let base = pg_base();
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}schema={schema}&pool_size=8")
}

fn payload() -> Box<RawValue> {
    let body = format!(
        "{{\"patient\":\"{}\",\"note\":\"{}\"}}",
        "P".repeat(16),
        "x".repeat(990)
    );
    RawValue::from_string(body).expect("valid json")
}

async fn emit_from(hubs: &[Hub], emitters: usize, per_emitter: usize) -> f64 {
    let event_type = EventType::parse("hl7.received").expect("type");
    let data = payload();
    let started = Instant::now();
    let tasks: Vec<_> = (0..emitters)
        .map(|i| {
            let hub = hubs[i % hubs.len()].clone();
            let (event_type, data) = (event_type.clone(), data.clone());
            tokio::spawn(async move {
                for _ in 0..per_emitter {
                    let event = NewEvent::new(
                        event_type.clone(),
                        "org-bench",
                        Source::MllpServer,
                        data.clone(),
                    )
                    .message("ADT^A01", None);
                    hub.emit(event).await.expect("emit");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("join");
    }
    (per_emitter * emitters) as f64 / started.elapsed().as_secs_f64()
}

async fn pg_hub(schema: &str) -> Hub {
    let store = switchboard::store::open(&schema_url(schema))
        .await
        .expect("store");
    Hub::start(store, HubConfig::default()).await.expect("hub")
}

async fn drop_schema(schema: &str) {
    let (client, connection) = tokio_postgres::connect(&pg_base(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .expect("drop schema");
}

async fn append_benchmarks(quick: bool) {
    let total = if quick { 40_000 } else { 200_000 };
    for emitters in [16, 256, 1024] {
        let schema = format!("bench_append_{emitters}");
        drop_schema(&schema).await;
        let hub = pg_hub(&schema).await;
        let rate = emit_from(std::slice::from_ref(&hub), emitters, total / emitters).await;
        hub.shutdown().await;
        println!("postgres append, one instance, {emitters:>4} emitters: {rate:>9.0} events/s");
        drop_schema(&schema).await;
    }
    let schema = "bench_append_two";
    drop_schema(schema).await;
    let hubs = [pg_hub(schema).await, pg_hub(schema).await];
    let rate = emit_from(&hubs, 1024, total / 1024).await;
    for hub in &hubs {
        hub.shutdown().await;
    }
    println!("postgres append, two instances, 1024 emitters: {rate:>9.0} events/s (aggregate)");
    drop_schema(schema).await;
}

/// Fills the PostgreSQL log of `schema` with `n` events over 30 days, spread over [`ORGS`] orgs.
async fn fill_postgres(schema: &str, n: i64, start: i64, span: i64) {
    let (client, connection) = tokio_postgres::connect(&pg_base(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let sql = format!(
        "SET search_path = {schema}; \
         INSERT INTO events (seq, id, ts, org_id, event_type, source, message_type, data) \
         SELECT g, gen_random_uuid(), {start} + g * ({span} / {n}), 'org-' || (g % {ORGS}), \
         CASE WHEN g % 3 = 0 THEN 'hl7.received' ELSE 'fhir.created' END, 'mllp-server', 'ADT^A01', \
         '{{\"n\":' || g || ',\"note\":\"' || repeat('x', 200) || '\"}}' \
         FROM generate_series(1, {n}) g; \
         UPDATE log_head SET seq = {n}, ts = {start} + {n} * ({span} / {n}); ANALYZE events;"
    );
    client.batch_execute(&sql).await.expect("fill");
}

fn fill_sqlite(path: &std::path::Path, n: i64, start: i64, span: i64) {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; \
         WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {n}) \
         INSERT INTO events (seq, id, ts, org_id, event_type, source, message_type, data) \
         SELECT x, randomblob(16), {start} + x * ({span} / {n}), 'org-' || (x % {ORGS}), \
         CASE WHEN x % 3 = 0 THEN 'hl7.received' ELSE 'fhir.created' END, 'mllp-server', 'ADT^A01', \
         '{{\"n\":' || x || ',\"note\":\"' || printf('%.200c', 'x') || '\"}}' FROM g; \
         ANALYZE;"
    ))
    .expect("fill");
}

/// Random org + one-hour window queries, first page of 100 (newest first), as the history API runs them.
async fn history_latency(store: &DynStore, start: i64, span: i64, queries: usize) -> [Duration; 3] {
    let mut samples = Vec::with_capacity(queries);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let hour = 3_600_000_000i64;
    for _ in 0..queries {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let org = (seed % ORGS as u64) as i64;
        let from = start + (seed >> 8) as i64 % (span - hour).max(1);
        let query = EventQuery {
            org_id: Some(format!("org-{org}")),
            event_types: if seed.is_multiple_of(2) {
                vec![Pattern::parse("hl7.*").expect("pattern")]
            } else {
                Vec::new()
            },
            from: Some(Timestamp(from)),
            to: Some(Timestamp(from + hour)),
            order: Order::Desc,
            limit: 100,
            ..EventQuery::default()
        };
        let started = Instant::now();
        let page = store.query_events(&query).await.expect("query");
        samples.push(started.elapsed());
        std::hint::black_box(page);
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    [at(0.50), at(0.95), at(0.99)]
}

async fn history_benchmarks(quick: bool) {
    let n: i64 = if quick { 1_000_000 } else { 10_000_000 };
    let span = 30 * 86_400_000_000i64;
    let start = Timestamp::now().0 - span;
    let queries = if quick { 300 } else { 2000 };

    let schema = "bench_history";
    drop_schema(schema).await;
    let store = switchboard::store::open(&schema_url(schema))
        .await
        .expect("store");
    let loading = Instant::now();
    fill_postgres(schema, n, start, span).await;
    println!(
        "postgres: {n} events generated in {:.0?}",
        loading.elapsed()
    );
    let [p50, p95, p99] = history_latency(&store, start, span, queries).await;
    println!("postgres history (org + 1 h window, page of 100), {n} events: p50 {p50:.2?} p95 {p95:.2?} p99 {p99:.2?}");
    drop(store);
    drop_schema(schema).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.db");
    let url = format!("sqlite://{}", path.display());
    drop(switchboard::store::open(&url).await.expect("migrate"));
    let loading = Instant::now();
    fill_sqlite(&path, n, start, span);
    println!("sqlite: {n} events generated in {:.0?}", loading.elapsed());
    let store = switchboard::store::open(&url).await.expect("store");
    let [p50, p95, p99] = history_latency(&store, start, span, queries).await;
    println!("sqlite history (org + 1 h window, page of 100), {n} events: p50 {p50:.2?} p95 {p95:.2?} p99 {p99:.2?}");
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        if only.is_empty() || only == "append" {
            append_benchmarks(quick).await;
        }
        if only.is_empty() || only == "history" {
            history_benchmarks(quick).await;
        }
    });
}
