//! The HL7 v2 → FHIR R4 transformer: [`mapping`] holds the pure mappings.

pub mod mapping;

#[cfg(test)]
mod tests;
