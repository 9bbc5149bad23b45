//! The embedded backend: SQLite in WAL mode with `synchronous=FULL`.
//!
//! One writer connection (appends, deletes, key and audit writes) behind a mutex that the hub's single writer
//! takes once per batch; a small pool of reader connections for queries, which WAL lets run beside the writer.
//! SQLite calls run on tokio's blocking pool, except the append path ([`WriterLog`]), which the hub's writer and
//! acknowledge threads call directly.

mod admin;
mod events;
mod fhir;
mod migrations;
mod syncer;
mod webhooks;

use super::{BlockingLog as _, StoreError, StoreResult};
use crate::event::Pattern;
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const READER_POOL_MAX: usize = 8;
/// How often the background checkpointer copies WAL frames into the database file.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);
/// The writer checkpoints by itself only if the WAL grows past this many pages (the checkpointer fell behind).
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 262_144;
/// Past this size the checkpointer truncates the WAL. SQLite restarts the WAL by itself whenever a checkpoint caught
/// up and no reader still uses it; under steady load with continuous readers that never happens and the WAL grew
/// to GiBs. Truncating blocks writers for a few hundred milliseconds, so it is kept for that case only.
const WAL_TRUNCATE_BYTES: u64 = 256 * 1024 * 1024;
/// How long a truncating checkpoint may wait for readers; writers wait for it meanwhile, so keep it short.
const TRUNCATE_BUSY_MS: i64 = 100;
/// Past this size the checkpointer finishes each round with the writer held off (see [`spawn_checkpointer`]).
const WAL_RESTART_BYTES: u64 = 4 * 1024 * 1024;

pub struct SqliteStore {
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    checkpointer_stop: Arc<std::sync::atomic::AtomicBool>,
    syncer: Arc<syncer::WalSyncer>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpointer_stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Checkpoints run on their own connection and thread, so the fsync of the database file rarely sits in the
/// writer's commit path (the writer only fsyncs the WAL). A PASSIVE checkpoint never blocks the writer, but under
/// steady load it never catches up either: commits land while it copies, so SQLite never gets to restart the WAL,
/// which then grew until the blocking TRUNCATE below (hundreds of milliseconds, every few seconds under heavy
/// load). So once the WAL passes [`WAL_RESTART_BYTES`], each round copies what is there without blocking, then
/// holds the writer off while a second PASSIVE pass copies the few frames committed meanwhile and fsyncs the
/// database (a few milliseconds); with every frame copied, the next commit starts the WAL again from its
/// beginning, overwriting pages the kernel already has instead of growing the file. If readers still hold old
/// frames and the WAL passes [`WAL_TRUNCATE_BYTES`] anyway, a TRUNCATE checkpoint (waiting at most
/// [`TRUNCATE_BUSY_MS`] for readers) copies it, fsyncs the database and empties the WAL.
fn spawn_checkpointer(
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> StoreResult<()> {
    let conn = open_connection(&path)?;
    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(CHECKPOINT_INTERVAL);
                let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
                let result = if size > WAL_TRUNCATE_BYTES {
                    truncate_wal(&conn)
                } else if size > WAL_RESTART_BYTES {
                    checkpoint_to_the_end(&conn, &writer)
                } else {
                    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                };
                if let Err(err) = result {
                    tracing::warn!(error = %err, "WAL checkpoint failed; will retry");
                }
            }
        })
        .map_err(|e| StoreError::Database(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(())
}

/// Copies every committed frame into the database: most of them beside the writer, the rest with it held off.
fn checkpoint_to_the_end(conn: &Connection, writer: &Mutex<Connection>) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
    // A poisoned lock means a writer panicked; the checkpoint does not touch its connection, so go on.
    let _held = writer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

/// Empties the WAL into the database unless readers keep it busy for longer than [`TRUNCATE_BUSY_MS`].
fn truncate_wal(conn: &Connection) -> rusqlite::Result<()> {
    // Copy (and fsync) what is there without blocking the writer first, so the truncating checkpoint, which
    // writers wait for, has little left to do.
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
    conn.pragma_update(None, "busy_timeout", TRUNCATE_BUSY_MS)?;
    let busy: rusqlite::Result<i64> =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0));
    conn.pragma_update(None, "busy_timeout", 5000)?;
    if busy? == 1 {
        metrics::counter!("switchboard_wal_truncate_busy_total").increment(1);
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub async fn open(path: &str) -> StoreResult<Self> {
        let path = PathBuf::from(path);
        let opened = tokio::task::spawn_blocking(move || -> StoreResult<SqliteStore> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Database(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let mut writer = open_connection(&path)?;
            // Every commit appends a full copy of each page it touched to the WAL, and the hot pages (the table's
            // last leaf, one leaf per index) are touched by every commit. 4 KiB pages (SQLite's default) wrote 30 %
            // fewer bytes per event than 16 KiB ones and were faster at every batch size but the largest, where
            // the disk's write bandwidth, not the frame count, is the limit. Takes effect when the file is created.
            writer.pragma_update(None, "page_size", 4096)?;
            writer.pragma_update(None, "journal_mode", "WAL")?;
            // Commits on the writer do not fsync (NORMAL keeps the WAL consistent and syncs around checkpoints);
            // the syncer fsyncs the WAL before anything is acknowledged. See `syncer.rs`.
            writer.pragma_update(None, "synchronous", "NORMAL")?;
            writer.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
            writer.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
            apply_migrations(&mut writer)?;
            let checkpointer_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let writer = Arc::new(Mutex::new(writer));
            spawn_checkpointer(
                path.clone(),
                Arc::clone(&writer),
                Arc::clone(&checkpointer_stop),
            )?;
            let syncer = Arc::new(syncer::WalSyncer::open(&path)?);
            Ok(SqliteStore {
                path,
                writer,
                readers: Arc::new(Mutex::new(Vec::new())),
                checkpointer_stop,
                syncer,
            })
        })
        .await
        .map_err(join_error)??;
        Ok(opened)
    }

    fn log(&self) -> WriterLog {
        WriterLog {
            writer: Arc::clone(&self.writer),
            syncer: Arc::clone(&self.syncer),
        }
    }

    /// Runs `f` on the writer connection on the blocking pool.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let writer = Arc::clone(&self.writer);
        tokio::task::spawn_blocking(move || {
            let mut conn = writer
                .lock()
                .map_err(|_| StoreError::Database("writer lock poisoned".into()))?;
            f(&mut conn)
        })
        .await
        .map_err(join_error)?
    }

    /// Runs `f` on a pooled reader connection on the blocking pool.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().ok().and_then(|mut pool| pool.pop());
            let conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&path)?,
            };
            let result = f(&conn);
            if let Ok(mut pool) = readers.lock() {
                if pool.len() < READER_POOL_MAX {
                    pool.push(conn);
                }
            }
            result
        })
        .await
        .map_err(join_error)?
    }
}

/// The writer connection and the WAL syncer: the append path, called by the hub's writer on its own thread.
struct WriterLog {
    writer: Arc<Mutex<Connection>>,
    syncer: Arc<syncer::WalSyncer>,
}

impl super::BlockingLog for WriterLog {
    fn commit(
        &self,
        batch: Vec<crate::event::Event>,
        router: Option<&dyn crate::hub::OutboxRouter>,
    ) -> StoreResult<super::Committed> {
        let mut conn = self
            .writer
            .lock()
            .map_err(|_| StoreError::Database("writer lock poisoned".into()))?;
        let (appended, outbox) = events::append(&mut conn, batch, router)?;
        // (On an error, `events::append` has already handed back what the router reserved.)
        Ok(super::Committed {
            appended,
            outbox,
            ticket: self.syncer.committed(),
        })
    }

    fn sync(&self, ticket: super::SyncTicket) -> StoreResult<()> {
        self.syncer.sync(ticket)
    }
}

fn join_error(err: tokio::task::JoinError) -> StoreError {
    StoreError::Database(format!("storage task failed: {err}"))
}

fn open_connection(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    conn.pragma_update(None, "cache_size", -32_000)?;
    conn.set_prepared_statement_cache_capacity(64);
    register_functions(&conn)?;
    Ok(conn)
}

/// `event_type_matches(pattern, type)`: the hub's wildcard rules inside SQL. The parsed pattern is cached per
/// statement, so a query parses each pattern once.
fn register_functions(conn: &Connection) -> StoreResult<()> {
    conn.create_scalar_function(
        "event_type_matches",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let pattern =
                ctx.get_or_create_aux(0, |value| -> Result<Option<Pattern>, rusqlite::Error> {
                    Ok(value.as_str().ok().and_then(|p| Pattern::parse(p).ok()))
                })?;
            let event_type = ctx.get_raw(1).as_str().unwrap_or("");
            Ok(pattern
                .as_ref()
                .as_ref()
                .is_some_and(|p| p.matches(event_type)))
        },
    )?;
    Ok(())
}

/// Applies every migration not yet recorded (by number, so branches that add migrations in any order merge).
fn apply_migrations(conn: &mut Connection) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let applied: Vec<i64> = {
        let mut stmt = conn.prepare("SELECT version FROM schema_migrations")?;
        let rows = stmt.query_map([], |row| row.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for (version, sql) in migrations::MIGRATIONS
        .iter()
        .filter(|(v, _)| !applied.contains(v))
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Migration(format!("migration {version}: {e}")))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            rusqlite::params![version, crate::event::Timestamp::now().0],
        )?;
        tx.commit()?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}

#[async_trait::async_trait]
impl super::Store for SqliteStore {
    async fn commit(
        &self,
        batch: Vec<crate::event::Event>,
        router: Option<Arc<dyn crate::hub::OutboxRouter>>,
    ) -> StoreResult<super::Committed> {
        let log = self.log();
        tokio::task::spawn_blocking(move || log.commit(batch, router.as_deref()))
            .await
            .map_err(join_error)?
    }

    async fn sync(&self, ticket: super::SyncTicket) -> StoreResult<()> {
        if self.syncer.is_synced(ticket) {
            return Ok(());
        }
        let syncer = Arc::clone(&self.syncer);
        tokio::task::spawn_blocking(move || syncer.sync(ticket))
            .await
            .map_err(join_error)?
    }

    fn blocking_log(&self) -> Option<Arc<dyn super::BlockingLog>> {
        Some(Arc::new(self.log()))
    }

    fn webhooks(&self) -> &dyn super::WebhookStore {
        self
    }

    async fn head(&self) -> StoreResult<(i64, crate::event::Timestamp)> {
        self.read(events::head).await
    }

    async fn events_after(
        &self,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<crate::event::Event>> {
        self.read(move |conn| events::events_after(conn, after, limit))
            .await
    }

    async fn get_event(
        &self,
        org_id: Option<&str>,
        id: uuid::Uuid,
    ) -> StoreResult<Option<crate::event::Event>> {
        let org = org_id.map(str::to_owned);
        self.read(move |conn| events::get(conn, org.as_deref(), id))
            .await
    }

    async fn query_events(
        &self,
        query: &super::EventQuery,
    ) -> StoreResult<Vec<crate::event::Event>> {
        let query = query.clone();
        self.read(move |conn| events::query(conn, &query)).await
    }

    async fn events_matching_after(
        &self,
        query: &super::EventQuery,
        after: i64,
    ) -> StoreResult<Vec<crate::event::Event>> {
        let query = query.clone();
        self.read(move |conn| events::matching_after(conn, &query, after))
            .await
    }

    async fn purge_events_before(
        &self,
        cutoff: crate::event::Timestamp,
        limit: usize,
    ) -> StoreResult<u64> {
        self.write(move |conn| events::purge_before(conn, cutoff, limit))
            .await
    }

    async fn load_cursor(&self, listener: &str) -> StoreResult<Option<i64>> {
        let name = listener.to_owned();
        self.read(move |conn| admin::load_cursor(conn, &name)).await
    }

    async fn save_cursor(&self, listener: &str, seq: i64) -> StoreResult<()> {
        let name = listener.to_owned();
        self.write(move |conn| admin::save_cursor(conn, &name, seq))
            .await
    }

    async fn insert_api_key(
        &self,
        key: &super::ApiKeyRecord,
        audit: &super::AuditEntry,
    ) -> StoreResult<()> {
        let (key, audit) = (key.clone(), audit.clone());
        self.write(move |conn| admin::insert_key(conn, &key, &audit))
            .await
    }

    async fn upsert_api_key(&self, key: &super::ApiKeyRecord) -> StoreResult<()> {
        let key = key.clone();
        self.write(move |conn| admin::upsert_key(conn, &key)).await
    }

    async fn find_api_key(&self, key_hash: &[u8]) -> StoreResult<Option<super::ApiKeyRecord>> {
        let hash = key_hash.to_vec();
        self.read(move |conn| admin::find_key(conn, &hash)).await
    }

    async fn list_api_keys(&self, org_id: Option<&str>) -> StoreResult<Vec<super::ApiKeyRecord>> {
        let org = org_id.map(str::to_owned);
        self.read(move |conn| admin::list_keys(conn, org.as_deref()))
            .await
    }

    async fn delete_api_key(
        &self,
        id: &str,
        org_id: Option<&str>,
        audit: &super::AuditEntry,
    ) -> StoreResult<()> {
        let (id, org, audit) = (id.to_owned(), org_id.map(str::to_owned), audit.clone());
        self.write(move |conn| admin::delete_key(conn, &id, org.as_deref(), &audit))
            .await
    }

    async fn any_admin_key(&self) -> StoreResult<bool> {
        self.read(admin::any_admin_key).await
    }

    async fn record_audit(&self, entries: Vec<super::AuditEntry>) -> StoreResult<()> {
        self.write(move |conn| admin::record_audit(conn, &entries))
            .await
    }

    async fn query_audit(&self, query: &super::AuditQuery) -> StoreResult<Vec<super::AuditEntry>> {
        let query = query.clone();
        self.read(move |conn| admin::query_audit(conn, &query))
            .await
    }

    async fn read_resource(
        &self,
        org_id: &str,
        resource_type: &str,
        id: &str,
    ) -> StoreResult<Option<super::StoredResource>> {
        let (org, kind, id) = (org_id.to_owned(), resource_type.to_owned(), id.to_owned());
        self.read(move |conn| fhir::read_current(conn, &org, &kind, &id))
            .await
    }

    async fn read_resource_version(
        &self,
        org_id: &str,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> StoreResult<Option<super::StoredResource>> {
        let (org, kind, id) = (org_id.to_owned(), resource_type.to_owned(), id.to_owned());
        self.read(move |conn| fhir::read_version(conn, &org, &kind, &id, version))
            .await
    }

    async fn search_resources(
        &self,
        org_id: &str,
        resource_type: &str,
        query: &crate::fhir::search::SearchQuery,
    ) -> StoreResult<super::ResourcePage> {
        let (org, kind, query) = (org_id.to_owned(), resource_type.to_owned(), query.clone());
        self.read(move |conn| fhir::search(conn, &org, &kind, &query))
            .await
    }

    async fn find_resource_ids(
        &self,
        org_id: &str,
        resource_type: &str,
        param: &str,
        values: &[String],
    ) -> StoreResult<std::collections::HashMap<String, String>> {
        let (org, kind, param) = (
            org_id.to_owned(),
            resource_type.to_owned(),
            param.to_owned(),
        );
        let values = values.to_vec();
        self.read(move |conn| fhir::find_ids(conn, &org, &kind, &param, values))
            .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }
}
