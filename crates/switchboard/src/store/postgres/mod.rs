//! The scale-out backend: PostgreSQL, shared by any number of Switchboard instances.
//!
//! A pool of connections serves every statement; each append batch is one transaction that commits durably
//! (`synchronous_commit = on`) and notifies the other instances once (`NOTIFY`), and one dedicated session
//! connection per instance listens for those notifications and holds its leases ([`session`]). Migrations run
//! under an advisory lock, so instances may start together.

mod admin;
mod connect;
mod events;
mod fhir;
mod migrations;
mod session;
mod webhooks;

use super::lease::Lease;
use super::{StoreError, StoreResult};
use deadpool_postgres::{Object, Pool};
use std::sync::Arc;
use tokio::sync::watch;

pub struct PgStore {
    pool: Pool,
    session: Arc<session::Session>,
    /// The NOTIFY channel appends signal on (one per schema).
    channel: String,
}

impl PgStore {
    /// Connects, creates the schema if the URL names one, and applies pending migrations.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let connector = connect::Connector::from_url(url)?;
        let pool = connector.pool()?;
        let mut client = pool.get().await?;
        if let Some(schema) = &connector.schema {
            client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .await?;
        }
        let namespace = connector
            .schema
            .clone()
            .unwrap_or_else(|| "public".to_string());
        apply_migrations(&mut client, &namespace).await?;
        drop(client);
        let channel = format!("switchboard_{namespace}");
        let session = session::Session::start(connector, channel.clone(), namespace);
        Ok(PgStore {
            pool,
            session,
            channel,
        })
    }

    async fn client(&self) -> StoreResult<Object> {
        Ok(self.pool.get().await?)
    }

    /// Tells every instance (this one included) that webhook subscriptions changed.
    async fn notify_subscriptions_changed(&self) -> StoreResult<()> {
        self.client()
            .await?
            .execute(
                "SELECT pg_notify($1, $2)",
                &[&self.channel, &connect::SUBSCRIPTIONS_CHANGED],
            )
            .await?;
        Ok(())
    }
}

/// Applies every migration not yet recorded, holding an advisory lock so concurrent starts take turns.
async fn apply_migrations(client: &mut Object, namespace: &str) -> StoreResult<()> {
    let lock_key = format!("{namespace}:migrations");
    client
        .query_one(
            "SELECT pg_advisory_lock(hashtextextended($1, 0))",
            &[&lock_key],
        )
        .await?;
    let result = apply_pending(client).await;
    let unlocked = client
        .query_one(
            "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
            &[&lock_key],
        )
        .await;
    result?;
    unlocked?;
    Ok(())
}

async fn apply_pending(client: &mut Object) -> StoreResult<()> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await?;
    let applied: Vec<i64> = client
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, sql) in migrations::MIGRATIONS
        .iter()
        .filter(|(v, _)| !applied.contains(v))
    {
        let tx = client.transaction().await?;
        tx.batch_execute(sql)
            .await
            .map_err(|e| StoreError::Migration(format!("migration {version}: {e}")))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[version, &crate::event::Timestamp::now().0],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}

#[async_trait::async_trait]
impl super::Store for PgStore {
    async fn commit(
        &self,
        batch: Vec<crate::event::Event>,
        router: Option<Arc<dyn crate::hub::OutboxRouter>>,
    ) -> StoreResult<super::Committed> {
        let mut client = self.client().await?;
        let mut outbox = Vec::new();
        match events::append(
            &mut client,
            &self.channel,
            batch,
            router.as_deref(),
            &mut outbox,
        )
        .await
        {
            Ok(appended) => Ok(super::Committed {
                appended,
                outbox,
                // The commit above is already durable.
                ticket: super::SyncTicket(0),
            }),
            Err(err) => {
                if let Some(router) = router {
                    router.abandoned(&outbox);
                }
                Err(err)
            }
        }
    }

    fn webhooks(&self) -> &dyn super::WebhookStore {
        self
    }

    /// Batches wait for each other on the log-head lock, but the next one's round trips overlap this one's
    /// commit and fsync.
    fn concurrent_commits(&self) -> usize {
        2
    }

    fn log_changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.session.changes())
    }

    fn subscription_changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.session.subscription_changes())
    }

    async fn try_lease(&self, name: &str) -> StoreResult<Option<Box<dyn Lease>>> {
        self.session.try_lease(name).await
    }

    async fn head(&self) -> StoreResult<(i64, crate::event::Timestamp)> {
        events::head(&self.client().await?).await
    }

    async fn events_after(
        &self,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<crate::event::Event>> {
        events::events_after(&self.client().await?, after, limit).await
    }

    async fn get_event(
        &self,
        org_id: Option<&str>,
        id: uuid::Uuid,
    ) -> StoreResult<Option<crate::event::Event>> {
        events::get(&self.client().await?, org_id, id).await
    }

    async fn query_events(
        &self,
        query: &super::EventQuery,
    ) -> StoreResult<Vec<crate::event::Event>> {
        events::query(&self.client().await?, query).await
    }

    async fn events_matching_after(
        &self,
        query: &super::EventQuery,
        after: i64,
    ) -> StoreResult<Vec<crate::event::Event>> {
        events::matching_after(&self.client().await?, query, after).await
    }

    async fn purge_events_before(
        &self,
        cutoff: crate::event::Timestamp,
        limit: usize,
    ) -> StoreResult<u64> {
        events::purge_before(&mut self.client().await?, cutoff, limit).await
    }

    async fn load_cursor(&self, listener: &str) -> StoreResult<Option<i64>> {
        admin::load_cursor(&self.client().await?, listener).await
    }

    async fn save_cursor(&self, listener: &str, seq: i64) -> StoreResult<()> {
        admin::save_cursor(&self.client().await?, listener, seq).await
    }

    async fn insert_api_key(
        &self,
        key: &super::ApiKeyRecord,
        audit: &super::AuditEntry,
    ) -> StoreResult<()> {
        admin::insert_key(&mut self.client().await?, key, audit).await
    }

    async fn upsert_api_key(&self, key: &super::ApiKeyRecord) -> StoreResult<()> {
        admin::upsert_key(&self.client().await?, key).await
    }

    async fn find_api_key(&self, key_hash: &[u8]) -> StoreResult<Option<super::ApiKeyRecord>> {
        admin::find_key(&self.client().await?, key_hash).await
    }

    async fn list_api_keys(&self, org_id: Option<&str>) -> StoreResult<Vec<super::ApiKeyRecord>> {
        admin::list_keys(&self.client().await?, org_id).await
    }

    async fn delete_api_key(
        &self,
        id: &str,
        org_id: Option<&str>,
        audit: &super::AuditEntry,
    ) -> StoreResult<()> {
        admin::delete_key(&mut self.client().await?, id, org_id, audit).await
    }

    async fn any_admin_key(&self) -> StoreResult<bool> {
        admin::any_admin_key(&self.client().await?).await
    }

    async fn record_audit(&self, entries: Vec<super::AuditEntry>) -> StoreResult<()> {
        admin::record_audit(&mut self.client().await?, &entries).await
    }

    async fn query_audit(&self, query: &super::AuditQuery) -> StoreResult<Vec<super::AuditEntry>> {
        admin::query_audit(&self.client().await?, query).await
    }

    async fn read_resource(
        &self,
        org_id: &str,
        resource_type: &str,
        id: &str,
    ) -> StoreResult<Option<super::StoredResource>> {
        fhir::read_current(&self.client().await?, org_id, resource_type, id).await
    }

    async fn read_resource_version(
        &self,
        org_id: &str,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> StoreResult<Option<super::StoredResource>> {
        fhir::read_version(&self.client().await?, org_id, resource_type, id, version).await
    }

    async fn search_resources(
        &self,
        org_id: &str,
        resource_type: &str,
        query: &crate::fhir::search::SearchQuery,
    ) -> StoreResult<super::ResourcePage> {
        fhir::search(&self.client().await?, org_id, resource_type, query).await
    }

    async fn find_resource_ids(
        &self,
        org_id: &str,
        resource_type: &str,
        param: &str,
        values: &[String],
    ) -> StoreResult<std::collections::HashMap<String, String>> {
        fhir::find_ids(&self.client().await?, org_id, resource_type, param, values).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }
}
