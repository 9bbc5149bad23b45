//! The instance's own long-lived connection, outside the pool: it `LISTEN`s for the commit notifications of every
//! instance and holds the advisory locks that are this instance's leases.
//!
//! When the connection drops, PostgreSQL releases its advisory locks, so every lease taken on it is lost (and its
//! job may move to another instance); a supervisor reconnects with backoff. Each connection has a generation
//! number: a lease is held only while the generation it was taken on is the live one.

use super::connect::{Connector, Watches};
use crate::store::lease::Lease;
use crate::store::StoreResult;
use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{watch, Mutex};

pub(super) struct Session {
    connector: Connector,
    channel: String,
    /// Namespaces lease keys, so deployments sharing a database (one schema each) do not share leases.
    namespace: String,
    client: Mutex<Option<Arc<tokio_postgres::Client>>>,
    generation: AtomicU64,
    watches: Watches,
}

impl Session {
    /// Starts the supervisor; it stops when the returned session is dropped.
    pub(super) fn start(connector: Connector, channel: String, namespace: String) -> Arc<Session> {
        let watches = Watches {
            log: watch::channel(0).0,
            subscriptions: watch::channel(0).0,
        };
        let session = Arc::new(Session {
            connector,
            channel,
            namespace,
            client: Mutex::new(None),
            generation: AtomicU64::new(0),
            watches,
        });
        tokio::spawn(supervise(Arc::downgrade(&session)));
        session
    }

    /// Changes once per notification received, and on every reconnection (anything may have been missed).
    pub(super) fn changes(&self) -> watch::Receiver<u64> {
        self.watches.log.subscribe()
    }

    /// Changes when any instance changed webhook subscriptions (and on every reconnection).
    pub(super) fn subscription_changes(&self) -> watch::Receiver<u64> {
        self.watches.subscriptions.subscribe()
    }

    pub(super) async fn try_lease(
        self: &Arc<Self>,
        name: &str,
    ) -> StoreResult<Option<Box<dyn Lease>>> {
        let Some(client) = self.client.lock().await.clone() else {
            return Ok(None);
        };
        let generation = self.generation.load(Ordering::Acquire);
        let key = format!("{}:{name}", self.namespace);
        let row = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&key],
            )
            .await?;
        if !row.get::<_, bool>(0) {
            return Ok(None);
        }
        Ok(Some(Box::new(PgLease {
            session: Arc::clone(self),
            generation,
            key,
        })))
    }
}

/// Keeps a connection up: connect, LISTEN, forward notifications, and on loss bump the generation and retry.
async fn supervise(session: Weak<Session>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(live) = session.upgrade() else {
            return;
        };
        match live.connector.connect_listening(live.watches.clone()).await {
            Ok((client, ended)) => {
                backoff = Duration::from_millis(100);
                let client = Arc::new(client);
                let listen = format!("LISTEN \"{}\"", live.channel);
                if let Err(err) = client.batch_execute(&listen).await {
                    tracing::warn!(error = %err, "LISTEN failed; reconnecting");
                    continue;
                }
                *live.client.lock().await = Some(Arc::clone(&client));
                // Whatever was committed while no one listened must be read now.
                live.watches.bump_all();
                drop(live);
                let _ = ended.await;
                let Some(live) = session.upgrade() else {
                    return;
                };
                live.generation.fetch_add(1, Ordering::AcqRel);
                *live.client.lock().await = None;
                live.watches.bump_all();
                tracing::warn!("database session lost: leases released; reconnecting");
            }
            Err(err) => {
                drop(live);
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "cannot open the database session");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

struct PgLease {
    session: Arc<Session>,
    generation: u64,
    key: String,
}

#[async_trait]
impl Lease for PgLease {
    async fn held(&self) -> bool {
        if self.session.generation.load(Ordering::Acquire) != self.generation {
            return false;
        }
        let Some(client) = self.session.client.lock().await.clone() else {
            return false;
        };
        // A round trip proves the session (and with it the lock) is still alive.
        client.simple_query("").await.is_ok()
            && self.session.generation.load(Ordering::Acquire) == self.generation
    }

    async fn release(self: Box<Self>) {
        if self.session.generation.load(Ordering::Acquire) != self.generation {
            return;
        }
        let client = self.session.client.lock().await.clone();
        if let Some(client) = client {
            let unlocked = client
                .query_one(
                    "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                    &[&self.key],
                )
                .await;
            if let Err(err) = unlocked {
                tracing::warn!(error = %err, "cannot release a lease; it ends with the session");
            }
        }
    }
}
