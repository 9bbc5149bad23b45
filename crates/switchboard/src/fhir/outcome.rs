//! FHIR errors as `OperationOutcome` responses (`application/fhir+json`) with the right HTTP status.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub const FHIR_JSON: &str = "application/fhir+json";

/// A refused or failed FHIR interaction.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {diagnostics}")]
pub struct FhirError {
    pub status: StatusCode,
    /// The OperationOutcome issue code (`invalid`, `not-found`, `deleted`, `conflict`, `processing`, ...).
    pub code: &'static str,
    pub diagnostics: String,
}

impl FhirError {
    pub fn new(status: StatusCode, code: &'static str, diagnostics: impl Into<String>) -> Self {
        FhirError {
            status,
            code,
            diagnostics: diagnostics.into(),
        }
    }

    pub fn invalid(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", diagnostics)
    }

    pub fn unprocessable(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "processing", diagnostics)
    }

    pub fn not_found(resource_type: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{resource_type}/{id} is not known"),
        )
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error in the FHIR API");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "internal error",
        )
    }
}

/// An OperationOutcome with one issue.
pub fn operation_outcome(severity: &str, code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": severity, "code": code, "diagnostics": diagnostics }]
    })
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        if self.status.is_client_error() {
            tracing::info!(status = self.status.as_u16(), code = self.code, diagnostics = %self.diagnostics, "FHIR request refused");
        }
        let body = operation_outcome("error", self.code, &self.diagnostics);
        (
            self.status,
            [(header::CONTENT_TYPE, FHIR_JSON)],
            body.to_string(),
        )
            .into_response()
    }
}
