//! Startup and shutdown: wires sources, the hub, sinks and the API together.
//!
//! `Application::build` binds the listeners (port 0 in tests) and `run` serves until the shutdown token is
//! cancelled, then drains in order: stop accepting requests and finish those in flight, commit whatever the hub
//! has queued, then stop the listeners and background jobs.

use crate::api::{self, AppState};
use crate::config::Config;
use crate::hub::{spawn_durable, Hub};
use crate::listeners::{MetricsCollector, TaskCreator, Transformer};
use crate::{auth, mllp, realtime, retention, store};
use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long an authenticated API key is trusted without reading it again: also how long a key deleted through
/// another instance may still be accepted here.
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// The sockets the application serves on, bound before `run` so callers (and tests) know the ports.
pub struct Listeners {
    pub http: TcpListener,
    pub mllp: Vec<mllp::BoundListener>,
}

impl Listeners {
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let http = TcpListener::bind(config.http.addr)
            .await
            .with_context(|| format!("cannot listen on {}", config.http.addr))?;
        let mllp = mllp::bind_all(config.mllp.listeners()).await?;
        Ok(Listeners { http, mllp })
    }

    /// The bound MLLP listeners by name, in configuration order.
    pub fn mllp_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.mllp
            .iter()
            .filter_map(|l| Some((l.settings.name.to_string(), l.local_addr().ok()?)))
            .collect()
    }

    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }
}

/// The process-wide Prometheus recorder (installed once, shared by every app in the process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
            let sizes = [1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("switchboard_append_batch_size".into()), &sizes));
            match builder {
                Ok(builder) => match builder.install_recorder() {
                    Ok(handle) => handle,
                    Err(err) => {
                        tracing::warn!(error = %err, "a metrics recorder is already installed; /metrics will be empty");
                        PrometheusBuilder::new().build_recorder().handle()
                    }
                },
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// Runs Switchboard on already-bound listeners until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = metrics_handle();
    let store = store::open(&config.database.url).await.with_context(|| {
        format!(
            "cannot open database {}",
            crate::config::redact_url(&config.database.url)
        )
    })?;
    if let Some(token) = auth::bootstrap_admin(&store, &config.auth.admin_token).await? {
        // Shown once, on first start only: the hash is all that is kept.
        println!("Created the admin API token (shown only this once): {token}");
    }
    let webhooks = crate::webhooks::Webhooks::new(Arc::clone(&store), config.webhooks.clone())
        .await
        .context("cannot start webhooks")?;
    let hub = Hub::start_with_outbox(
        Arc::clone(&store),
        config.hub_config(),
        Some(webhooks.outbox_router()),
    )
    .await?;

    let background = CancellationToken::new();
    let mut tasks = vec![
        spawn_durable(&hub, Arc::new(MetricsCollector), background.clone()),
        tokio::spawn(retention::run(
            Arc::clone(&store),
            config.retention.days,
            Duration::from_secs(config.retention.interval_secs),
            config.retention.batch_size,
            background.clone(),
        )),
    ];
    if config.listeners.transformer {
        tasks.push(spawn_durable(
            &hub,
            Arc::new(Transformer::new(hub.clone())),
            background.clone(),
        ));
    }
    if config.listeners.task_creator {
        tasks.push(spawn_durable(
            &hub,
            Arc::new(TaskCreator::new(hub.clone())),
            background.clone(),
        ));
    }
    if !config.fhir_sync.base_url.is_empty() {
        let sync = crate::listeners::FhirSync::new(config.fhir_sync.clone())?;
        tasks.push(spawn_durable(&hub, Arc::new(sync), background.clone()));
    }
    tasks.extend(webhooks.spawn(background.clone()));

    let state = AppState {
        hub: hub.clone(),
        store: Arc::clone(&store),
        config: Arc::new(config),
        metrics,
        webhooks,
        keys: Arc::new(auth::KeyCache::new(KEY_CACHE_TTL)),
    };
    let mllp_servers = mllp::MllpServers::start(listeners.mllp, &hub, &shutdown)?;
    // Socket.IO and SSE stop on `shutdown` itself (not `background`): their connections must close for the
    // server to drain.
    let live = realtime::start(&state, shutdown.clone());
    tasks.push(live.fanout);
    let router = api::router(state).merge(live.router).layer(live.layer);
    let http_addr = listeners.http.local_addr()?;
    tracing::info!(http = %http_addr, "switchboard is serving");
    let server = axum::serve(listeners.http, router)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let served = server.await;
    // In-flight HL7 messages are committed and acknowledged before the hub stops (the token is cancelled here
    // too in case the HTTP server ended on its own).
    shutdown.cancel();
    mllp_servers.wait().await;

    tracing::info!("shutting down: committing queued events");
    hub.shutdown().await;
    background.cancel();
    for task in tasks.drain(..) {
        if let Err(err) = task.await {
            tracing::error!(error = %err, "background task failed during shutdown");
        }
    }
    tracing::info!("shutdown complete");
    served.context("http server failed")
}

/// A built application: listeners bound, ready to run.
pub struct Application {
    config: Config,
    listeners: Listeners,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listeners = Listeners::bind(&config).await?;
        Ok(Application { config, listeners })
    }

    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.listeners.http_addr()
    }

    /// The address of the first MLLP listener (the default one when enabled).
    pub fn mllp_addr(&self) -> Option<SocketAddr> {
        self.listeners.mllp_addrs().first().map(|(_, addr)| *addr)
    }

    pub fn mllp_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners.mllp_addrs()
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        run(self.config, self.listeners, shutdown).await
    }
}
