//! Built-in durable listeners (sinks that live in the process): the audit logger, the metrics collector, the
//! HL7 → FHIR transformer and the task creator.

pub mod audit;
pub mod fhir_sync;
pub mod metrics;
pub mod task_creator;
pub mod transformer;

pub use audit::AuditLogger;
pub use fhir_sync::{FhirSync, FhirSyncConfig};
pub use metrics::MetricsCollector;
pub use task_creator::TaskCreator;
pub use transformer::Transformer;
