//! The metrics collector: counts committed events by type and source (`switchboard_events_total`) and reports
//! how far it trails the log. Durable, so events committed just before a crash are still counted after it.

use crate::event::Event;
use crate::hub::DurableHandler;
use async_trait::async_trait;
use std::sync::Arc;

#[derive(Default)]
pub struct MetricsCollector;

impl MetricsCollector {
    pub const NAME: &'static str = "metrics-collector";
}

#[async_trait]
impl DurableHandler for MetricsCollector {
    fn name(&self) -> &str {
        Self::NAME
    }

    /// Counters are scraped every few seconds; counting once a second keeps the cursor write (one transaction per
    /// call) off the writer's back under load.
    fn min_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }

    async fn handle(&self, events: &[Arc<Event>], _through: i64) -> anyhow::Result<()> {
        for event in events {
            metrics::counter!(
                "switchboard_events_total",
                "event_type" => event.event_type.to_string(),
                "source" => event.source.as_str()
            )
            .increment(1);
        }
        if let Some(last) = events.last() {
            let age = crate::event::Timestamp::now().0 - last.timestamp.0;
            metrics::histogram!("switchboard_listener_delay_seconds", "listener" => Self::NAME)
                .record(age as f64 / 1e6);
        }
        Ok(())
    }
}
