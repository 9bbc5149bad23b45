//! One run of the suite against one server: set up (key, receiver, subscription, live clients), run the paths on
//! their schedules, wait for webhook deliveries to drain (redriving dead ones), then check for loss and build the
//! report. The fault suite can call [`run`] with its own settings, or use the parts directly.

use crate::clock::now_micros;
use crate::id::EventId;
use crate::live::{socketio::SocketIo, sse, LiveStats};
use crate::loss::{self, Acked};
use crate::receiver::Receiver;
use crate::report::{Report, Resources, Targets};
use crate::target::{HistoryEvent, RetryConfig, Target};
use crate::workload::{self, http, mllp, pacer::Schedule, PathReport, PathStats};
use anyhow::Context;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What kind of server is under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// `switchboard serve`: every path, history export, metrics.
    Switchboard,
    /// The seed's Node design: `POST /api/events` and webhooks only.
    Baseline,
}

/// Settings of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunConfig {
    pub kind: TargetKind,
    pub base_url: String,
    pub mllp_addr: Option<String>,
    #[serde(skip)]
    pub admin_token: String,
    pub org: String,
    pub duration: Duration,
    /// Total offered events per second, split between the paths by the weights below (shares of events).
    pub rate: f64,
    /// Events one MLLP message makes (hl7.received, hl7.parsed, hl7.validated and the transformer's output), to
    /// turn the MLLP share of events into messages per second. API and FHIR operations make one event each.
    pub mllp_events_per_message: f64,
    pub weight_api: f64,
    pub weight_fhir: f64,
    pub weight_mllp: f64,
    pub mllp_connections: usize,
    pub max_in_flight: usize,
    pub sse_clients: usize,
    pub sio_clients: usize,
    /// Events per second of the type the Socket.IO clients follow (part of the API path).
    pub sio_rate: f64,
    pub sio_script: String,
    pub fail_ratio: f64,
    pub retry: RetryConfig,
    pub subscription_events: Vec<String>,
    pub drain_timeout: Duration,
    pub server_pid: Option<u32>,
    /// Between timeline samples during the load (zero: none).
    pub timeline_every: Duration,
    /// Other processes to account CPU for: (name, pid).
    pub watch: Vec<(String, u32)>,
}

impl RunConfig {
    /// Operations per second of a path whose share of the offered events is `weight`, each operation making
    /// `events_per_op` events.
    fn ops_rate(&self, weight: f64, events_per_op: f64) -> f64 {
        let total = self.weight_api + self.weight_fhir + self.weight_mllp;
        if total <= 0.0 || events_per_op <= 0.0 {
            0.0
        } else {
            self.rate * weight / total / events_per_op
        }
    }
}

/// Runs the whole suite once and returns its report.
pub async fn run(cfg: RunConfig) -> anyhow::Result<Report> {
    // No overall timeout: SSE streams and the export run long; the load's requests set their own.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(cfg.max_in_flight)
        .build()?;
    let target = Target::new(&cfg.base_url, client.clone());
    target.wait_ready(60).await?;
    let key = target
        .create_key(&cfg.admin_token, &cfg.org)
        .await
        .context("creating the org key")?;
    let secret = format!("load-suite-{}", now_micros());
    let receiver = Receiver::new(&secret, cfg.fail_ratio);
    let rx_addr = receiver
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    let subscription = target
        .create_subscription(
            &key,
            &format!("http://{rx_addr}/hook"),
            &cfg.subscription_events,
            cfg.retry,
            &secret,
        )
        .await
        .context("creating the webhook subscription")?;
    eprintln!("load: key made, subscription {subscription} → http://{rx_addr}/hook");

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sse_tasks = Vec::new();
    for c in 0..cfg.sse_clients {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        sse_tasks.push(tokio::spawn(sse::run(
            client.clone(),
            cfg.base_url.clone(),
            key.clone(),
            format!("sse{c}"),
            ready_tx,
            stop_rx.clone(),
        )));
        let _ = ready_rx.await;
    }
    let sio = if cfg.sio_clients > 0 {
        Some(
            SocketIo::start(
                &cfg.sio_script,
                &cfg.base_url,
                &key,
                cfg.sio_clients,
                http::SIO_EVENT_TYPE,
                stop_rx.clone(),
            )
            .await?,
        )
    } else {
        None
    };
    let mut watched: Vec<(String, u32)> = cfg.watch.clone();
    if let Some(pid) = cfg.server_pid {
        watched.insert(0, ("server".into(), pid));
    }
    watched.push(("driver".into(), std::process::id()));
    if let Some(pid) = sio.as_ref().and_then(SocketIo::pid) {
        watched.push(("socketio-clients".into(), pid));
    }
    let sampler = Resources::start(watched);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The load.
    eprintln!(
        "load: offering {} events/s for {:?}",
        cfg.rate, cfg.duration
    );
    let start = Instant::now() + Duration::from_millis(100);
    // The window the committed rate is measured over starts with the schedule, not before it.
    let load_start_micros = now_micros() + 100_000;
    let (timeline_stop, timeline_stopped) = watch::channel(false);
    let timeline = tokio::spawn(crate::report::timeline::record(
        target.clone(),
        cfg.server_pid
            .filter(|_| cfg.kind == TargetKind::Switchboard),
        if cfg.kind == TargetKind::Switchboard {
            cfg.timeline_every
        } else {
            Duration::ZERO
        },
        timeline_stopped,
    ));
    let schedule = |rate: f64| Schedule {
        start,
        rate,
        duration: cfg.duration,
    };
    let api_sched = schedule(cfg.ops_rate(cfg.weight_api, 1.0));
    let fhir_sched = schedule(cfg.ops_rate(cfg.weight_fhir, 1.0));
    let mllp_sched = schedule(cfg.ops_rate(cfg.weight_mllp, cfg.mllp_events_per_message));
    let sio_every = if cfg.sio_clients > 0 && cfg.sio_rate > 0.0 {
        (api_sched.rate / cfg.sio_rate).round().max(1.0) as u64
    } else {
        0
    };
    let api = tokio::spawn(workload::run_paced(
        api_sched,
        cfg.max_in_flight,
        http::api_events(client.clone(), &cfg.base_url, &key, sio_every),
    ));
    let fhir = tokio::spawn(workload::run_paced(
        fhir_sched,
        cfg.max_in_flight,
        http::fhir_creates(client.clone(), &cfg.base_url, &key),
    ));
    let mut mllp_tasks = Vec::new();
    if let (Some(addr), true) = (&cfg.mllp_addr, mllp_sched.rate > 0.0) {
        let n = cfg.mllp_connections.max(1);
        for k in 0..n {
            mllp_tasks.push(tokio::spawn(mllp::run_connection(
                addr.clone(),
                k,
                n,
                mllp_sched,
            )));
        }
    }
    let mut api = api.await.unwrap_or_default();
    let mut fhir = fhir.await.unwrap_or_default();
    let mut mllp_stats = PathStats::default();
    for t in mllp_tasks {
        mllp_stats.merge(t.await.unwrap_or_default());
    }
    let load_end_micros = now_micros();
    let at_load_end = sampler.mark();
    let _ = timeline_stop.send(true);
    let timeline = timeline.await.unwrap_or_default();
    eprintln!(
        "load: schedule done; api {} fhir {} mllp {} acked",
        api.acked.len(),
        fhir.acked.len(),
        mllp_stats.acked.len()
    );

    // Drain the webhooks, redriving dead deliveries.
    let drain_start = Instant::now();
    if cfg.kind == TargetKind::Switchboard {
        wait_outbox_empty(&target, drain_start + cfg.drain_timeout).await;
    }
    let history: Option<Vec<HistoryEvent>> = match cfg.kind {
        TargetKind::Switchboard => Some(
            target
                .export_history(&key)
                .await
                .context("exporting the history")?,
        ),
        TargetKind::Baseline => None,
    };
    let expected: Vec<EventId> = match &history {
        Some(h) => h
            .iter()
            .filter(|e| loss::matches(&cfg.subscription_events, &e.event_type))
            .map(|e| e.id)
            .collect(),
        None => api.acked.iter().map(|id| EventId::parse(id)).collect(),
    };
    let (redrives, redrive_at) = drain(
        &target,
        &key,
        &subscription,
        &receiver,
        &expected,
        cfg.retry,
        drain_start + cfg.drain_timeout,
    )
    .await;
    let drain_secs = drain_start.elapsed().as_secs_f64();
    let drain_timed_out = drain_start.elapsed() >= cfg.drain_timeout;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop_tx.send(true);
    let mut sse_stats: Vec<LiveStats> = Vec::new();
    for t in sse_tasks {
        sse_stats.push(t.await.unwrap_or_default());
    }
    let sio_stats = match sio {
        Some(s) => s.finish().await,
        None => Vec::new(),
    };
    let resources = sampler
        .finish(at_load_end, cfg.duration.as_secs_f64())
        .await;

    // Check.
    let webhook = loss::check_webhooks(&expected, &receiver.take(), cfg.retry, redrive_at);
    drop(expected);
    let all_ids: Vec<EventId> = history
        .as_ref()
        .map(|h| h.iter().map(|e| e.id).collect())
        .unwrap_or_default();
    let sio_ids: Vec<EventId> = history
        .as_ref()
        .map(|h| {
            h.iter()
                .filter(|e| &*e.event_type == http::SIO_EVENT_TYPE)
                .map(|e| e.id)
                .collect()
        })
        .unwrap_or_default();
    let committed_in_window = match &history {
        Some(h) => h
            .iter()
            .filter(|e| e.timestamp >= load_start_micros && e.timestamp <= load_end_micros)
            .count(),
        None => api.acked.len(),
    };
    let mut paths = Vec::new();
    if api_sched.rate > 0.0 {
        paths.push(PathReport::new("POST /api/events", &api_sched, &api));
    }
    if fhir_sched.rate > 0.0 {
        paths.push(PathReport::new("POST /fhir/Patient", &fhir_sched, &fhir));
    }
    if mllp_sched.rate > 0.0 && cfg.mllp_addr.is_some() {
        paths.push(PathReport::new(
            "MLLP ADT^A01 → AA",
            &mllp_sched,
            &mllp_stats,
        ));
    }
    let mllp_acked = mllp_stats.acked.len();
    let acked = Acked {
        api: std::mem::take(&mut api.acked),
        fhir: std::mem::take(&mut fhir.acked),
        mllp: std::mem::take(&mut mllp_stats.acked),
    };
    let history_check = history.as_ref().map(|h| loss::check_history(h, &acked));
    drop(acked);
    let report = Report {
        config: cfg.clone(),
        started: crate::clock::format_micros(load_start_micros),
        paths,
        committed_events: committed_in_window,
        committed_events_per_sec: committed_in_window as f64
            / ((load_end_micros - load_start_micros) as f64 / 1e6).max(1e-9),
        history_events: history.as_ref().map(Vec::len),
        events_by_type: history
            .iter()
            .flatten()
            .fold(Default::default(), |mut m, e| {
                *m.entry(e.event_type.to_string()).or_default() += 1;
                m
            }),
        mllp_events_per_message_measured: history.as_ref().filter(|_| mllp_acked > 0).map(|h| {
            let n = h
                .iter()
                .filter(|e| &*e.source == "mllp-server" || &*e.source == "transformer")
                .count();
            n as f64 / mllp_acked as f64
        }),
        history: history_check,
        webhook,
        bad_signatures: receiver.bad_signatures(),
        redrives,
        drain_secs,
        drain_timed_out,
        sse: sse_stats
            .iter()
            .map(|s| loss::check_live(s, &all_ids))
            .collect(),
        socketio: sio_stats
            .iter()
            .map(|s| loss::check_live(s, &sio_ids))
            .collect(),
        resources,
        timeline,
        targets: Targets::default(),
    };
    Ok(report.with_targets())
}

/// Waits until the server reports no open deliveries (pending, failed awaiting retry, or in flight).
async fn wait_outbox_empty(target: &Target, deadline: Instant) {
    let mut quiet = 0;
    while Instant::now() < deadline {
        let open = target.metric_sum("switchboard_webhook_pending").await
            + target.metric_sum("switchboard_webhook_in_flight").await;
        quiet = if open == 0.0 { quiet + 1 } else { 0 };
        if quiet >= 3 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits until every expected event reached the receiver; when the only ones missing have used every attempt
/// (dead), redrives the subscription. Returns the number of redrives and the time of the first.
async fn drain(
    target: &Target,
    key: &str,
    subscription: &str,
    receiver: &Receiver,
    expected: &[EventId],
    retry: RetryConfig,
    deadline: Instant,
) -> (u32, Option<i64>) {
    let mut redrives = 0;
    let mut first_redrive = None;
    let mut last_redrive: Option<Instant> = None;
    let mut last_redrive_micros: Option<i64> = None;
    // Only what is still missing is looked at again: the expected list may hold millions of ids.
    let mut missing = receiver.undelivered(expected);
    loop {
        missing = receiver.undelivered(&missing);
        if missing.is_empty() || Instant::now() > deadline {
            return (redrives, first_redrive);
        }
        // Dead: every attempt of its current cycle (since the last redrive) failed.
        let since = last_redrive_micros.unwrap_or(i64::MIN);
        let all_dead = receiver.all_exhausted(&missing, since, retry.max_attempts as usize);
        let waited = last_redrive.is_none_or(|t| t.elapsed() > Duration::from_secs(15));
        if all_dead && waited {
            eprintln!(
                "load: {} deliveries dead after every attempt; redriving",
                missing.len()
            );
            if target.redrive(key, subscription).await.is_ok() {
                redrives += 1;
                let now = now_micros();
                first_redrive.get_or_insert(now);
                last_redrive_micros = Some(now);
                last_redrive = Some(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
