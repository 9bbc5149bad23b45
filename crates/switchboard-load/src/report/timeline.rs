//! Samples taken every few seconds during the load, so a long run shows whether the server's memory and queues
//! stay flat: its RSS and thread count, the webhook deliveries still open (pending, awaiting a retry, in flight),
//! the durable listeners' total lag, and the driver's own RSS.

use crate::target::procstat;
use crate::target::Target;
use serde::Serialize;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct TimelineSample {
    pub at_secs: f64,
    pub server_rss_mib: Option<f64>,
    pub server_threads: Option<u64>,
    pub webhook_open: f64,
    pub listener_lag: f64,
    pub driver_rss_mib: Option<f64>,
}

/// Samples every `every` until `stop` turns true; returns the samples.
pub async fn record(
    target: Target,
    server_pid: Option<u32>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> Vec<TimelineSample> {
    let start = Instant::now();
    let mut samples = Vec::new();
    if every.is_zero() {
        return samples;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return samples,
        }
        let server = server_pid.and_then(procstat::sample);
        let sample = TimelineSample {
            at_secs: start.elapsed().as_secs_f64(),
            server_rss_mib: server.map(|s| s.rss_mib),
            server_threads: server_pid.and_then(procstat::threads),
            webhook_open: target.metric_sum("switchboard_webhook_pending").await
                + target.metric_sum("switchboard_webhook_in_flight").await,
            listener_lag: target.metric_sum("switchboard_listener_lag_events").await,
            driver_rss_mib: procstat::sample(std::process::id()).map(|s| s.rss_mib),
        };
        eprintln!(
            "load: t={:.0}s server RSS {} MiB, {} threads; webhook deliveries open {:.0}; listener lag {:.0}; driver RSS {} MiB",
            sample.at_secs,
            sample.server_rss_mib.map_or("?".into(), |m| format!("{m:.0}")),
            sample.server_threads.map_or("?".into(), |t| t.to_string()),
            sample.webhook_open,
            sample.listener_lag,
            sample.driver_rss_mib.map_or("?".into(), |m| format!("{m:.0}")),
        );
        samples.push(sample);
    }
}
