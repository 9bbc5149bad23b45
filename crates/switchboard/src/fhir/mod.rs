//! FHIR R4: resource types, OperationOutcome errors, search parameters and search index extraction.

pub mod index;
pub mod outcome;
pub mod resource;
pub mod search;
pub mod service;
pub mod types;
