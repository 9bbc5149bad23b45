//! Built-in durable listeners (sinks that live in the process): the audit logger and the metrics collector.

pub mod audit;
pub mod metrics;

pub use audit::AuditLogger;
pub use metrics::MetricsCollector;
