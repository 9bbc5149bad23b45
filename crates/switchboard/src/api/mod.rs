//! The HTTP API (axum): one file per resource, each with its `router()`, merged here with the shared layers
//! (body limit, timeout, tracing) and the OpenAPI document.

pub mod audit;
pub mod error;
pub mod events;
pub mod extract;
pub mod fhir;
pub mod health;
pub mod hl7;
pub mod keys;
pub mod openapi;
pub mod webhooks;

use crate::auth::{Caller, Scope};
use crate::config::Config;
use crate::hub::Hub;
use crate::store::DynStore;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use error::ApiError;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub hub: Hub,
    pub store: DynStore,
    pub config: Arc<Config>,
    pub metrics: PrometheusHandle,
    pub webhooks: crate::webhooks::Webhooks,
    /// Recently authenticated API keys ([`crate::auth::KeyCache`]).
    pub keys: Arc<crate::auth::KeyCache>,
}

/// The org a query may see: an admin sees the org it names (or all), an org key only its own.
pub fn scope_org(caller: &Caller, requested: Option<String>) -> Result<Option<String>, ApiError> {
    match (&caller.scope, requested) {
        (Scope::Admin, requested) => Ok(requested),
        (Scope::Org(own), None) => Ok(Some(own.clone())),
        (Scope::Org(own), Some(requested)) if requested == *own => Ok(Some(requested)),
        (Scope::Org(_), Some(_)) => Err(ApiError::forbidden("an org key can only see its own org")),
    }
}

pub fn router(state: AppState) -> Router {
    let max_body = state.config.http.max_body_bytes;
    let timeout = Duration::from_millis(state.config.http.request_timeout_ms);
    let hl7_routes = hl7::router(&state.config.hl7);
    Router::new()
        .merge(events::router())
        .merge(hl7_routes)
        .merge(keys::router())
        .merge(fhir::router())
        .merge(audit::router())
        .merge(health::router())
        .merge(webhooks::router())
        .merge(openapi::router())
        .fallback(|| async { ApiError::not_found("route") })
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(TraceLayer::new_for_http())
}
