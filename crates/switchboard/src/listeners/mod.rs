//! Built-in durable listeners (sinks that live in the process): the metrics collector, the HL7 → FHIR
//! transformer, the task creator and the FHIR sync. (Emissions need no audit listener: each event in the log is its
//! own audit entry, see `store::EMIT_ACTION`.)

pub mod fhir_sync;
pub mod metrics;
pub mod task_creator;
pub mod transformer;

pub use fhir_sync::{FhirSync, FhirSyncConfig};
pub use metrics::MetricsCollector;
pub use task_creator::TaskCreator;
pub use transformer::Transformer;
