//! The accept loop of one MLLP listener, after mini-redis's `server.rs`: a semaphore caps the connections served
//! at once (more wait in the kernel's backlog), accept errors back off and retry, and one cancellation token tells
//! every connection to stop. [`MllpServers::wait`] returns once every connection has finished the message in hand
//! and sent its ACK.

use super::connection;
use super::settings::ListenerSettings;
use super::telemetry::ListenerMetrics;
use super::tls::{self, TlsAcceptor};
use super::MllpError;
use crate::event::EventType;
use crate::hub::Hub;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(8);

/// A listener socket bound at startup, with its settings.
pub struct BoundListener {
    pub settings: ListenerSettings,
    pub listener: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl BoundListener {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Binds every configured listener (and loads its TLS files), failing on the first that cannot be.
pub async fn bind_all(settings: Vec<ListenerSettings>) -> Result<Vec<BoundListener>, MllpError> {
    let mut bound = Vec::with_capacity(settings.len());
    for settings in settings {
        let listener =
            TcpListener::bind(settings.addr)
                .await
                .map_err(|source| MllpError::Bind {
                    name: settings.name.to_string(),
                    addr: settings.addr,
                    source,
                })?;
        let tls = match &settings.tls {
            Some(files) => Some(tls::acceptor(files)?),
            None => None,
        };
        bound.push(BoundListener {
            settings,
            listener,
            tls,
        });
    }
    Ok(bound)
}

/// The event types a listener emits, parsed once.
pub(crate) struct Types {
    pub received: EventType,
    pub parsed: EventType,
    pub validated: EventType,
    pub error: EventType,
    pub opened: EventType,
    pub closed: EventType,
}

impl Types {
    fn new() -> Result<Self, MllpError> {
        let t = |name: &str| EventType::parse(name).map_err(|e| MllpError::Internal(e.to_string()));
        Ok(Types {
            received: t("hl7.received")?,
            parsed: t("hl7.parsed")?,
            validated: t("hl7.validated")?,
            error: t("hl7.error")?,
            opened: t("connection.opened")?,
            closed: t("connection.closed")?,
        })
    }
}

/// What every connection of one listener shares.
pub(crate) struct ListenerCtx {
    pub settings: ListenerSettings,
    pub hub: Hub,
    pub metrics: ListenerMetrics,
    pub types: Types,
    pub tls: Option<TlsAcceptor>,
}

/// The running listeners.
pub struct MllpServers {
    tracker: TaskTracker,
}

impl MllpServers {
    /// Starts one accept loop per listener; they stop accepting when `shutdown` is cancelled.
    pub fn start(
        listeners: Vec<BoundListener>,
        hub: &Hub,
        shutdown: &CancellationToken,
    ) -> Result<Self, MllpError> {
        let tracker = TaskTracker::new();
        for bound in listeners {
            let ctx = Arc::new(ListenerCtx {
                metrics: ListenerMetrics::new(&bound.settings.name),
                types: Types::new()?,
                settings: bound.settings,
                hub: hub.clone(),
                tls: bound.tls,
            });
            tracing::info!(listener = %ctx.settings.name, addr = ?bound.listener.local_addr().ok(),
                org = %ctx.settings.org, tls = ctx.tls.is_some(), "MLLP listener is serving");
            tracker.spawn(run(bound.listener, ctx, shutdown.clone(), tracker.clone()));
        }
        tracker.close();
        Ok(MllpServers { tracker })
    }

    /// Waits until every accept loop and every connection has finished.
    pub async fn wait(self) {
        self.tracker.wait().await;
    }
}

/// Accepts connections until `shutdown`; each runs on `tracker` so the caller can wait for the drain.
async fn run(
    listener: TcpListener,
    ctx: Arc<ListenerCtx>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let limit = Arc::new(Semaphore::new(ctx.settings.max_connections));
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                let _ = stream.set_nodelay(true);
                let (ctx, shutdown) = (Arc::clone(&ctx), shutdown.clone());
                tracker.spawn(async move {
                    connection::serve(ctx, stream, peer, shutdown).await;
                    drop(permit);
                });
            }
            Err(err) => {
                // Out of file descriptors and the like: wait, then try again rather than spin or give up.
                tracing::error!(listener = %ctx.settings.name, error = %err, backoff_ms = backoff.as_millis() as u64,
                    "MLLP accept failed; retrying after a pause.");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
            }
        }
    }
    tracing::info!(listener = %ctx.settings.name, "MLLP listener stopped accepting");
}
