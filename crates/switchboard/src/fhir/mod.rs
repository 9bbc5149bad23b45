//! FHIR R4: resource types, OperationOutcome errors, search parameters and search index extraction.

pub mod index;
pub mod outcome;
pub mod search;
pub mod types;
