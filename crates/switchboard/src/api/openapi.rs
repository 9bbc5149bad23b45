//! The OpenAPI document, generated from the handlers' annotations and served at `/api/openapi.json`.
//! `docs/openapi.json` is a checked-in copy; a test fails when it is stale (`switchboard openapi` rewrites it).

use super::AppState;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard", description = "Durable event hub for HL7 v2 and FHIR R4"),
    paths(
        super::events::publish, super::events::list, super::events::get_one, super::events::export,
        crate::realtime::sse::stream,
        super::keys::create, super::keys::list, super::keys::remove,
        super::audit::list,
        super::fhir::create, super::fhir::update, super::fhir::remove, super::fhir::read, super::fhir::vread,
        super::fhir::search, super::fhir::metadata,
        super::hl7::send,
        super::health::live, super::health::ready, super::health::metrics,
        super::webhooks::create, super::webhooks::list, super::webhooks::get_one, super::webhooks::update,
        super::webhooks::remove, super::webhooks::test, super::webhooks::secret, super::webhooks::rotate_secret,
        super::webhooks::deliveries, super::webhooks::redrive_subscription, super::webhooks::replay,
        super::webhooks::dlq, super::webhooks::redrive_delivery,
    ),
    modifiers(&BearerAuth),
    tags((name = "events"), (name = "keys"), (name = "audit"), (name = "health"), (name = "fhir"), (name = "webhooks"), (name = "hl7"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as pretty JSON with a trailing newline (the form checked in).
pub fn document() -> String {
    let mut text = ApiDoc::openapi().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/openapi.json",
        get(|| async { Json(ApiDoc::openapi()) }),
    )
}
