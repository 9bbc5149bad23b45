//! The OpenAPI document, generated from the handlers' annotations and served at `/api/openapi.json`.
//! `docs/openapi.json` is a checked-in copy; a test fails when it is stale (`switchboard openapi` rewrites it).

use super::AppState;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Schema};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
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
    modifiers(&BearerAuth, &CommonResponses),
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

/// Answers that every operation of a kind can give, added here instead of being repeated on each handler (each
/// comes from a shared extractor or layer, so it holds for all of them):
///
/// * `401` for every operation that takes a bearer key (missing, malformed, unknown or revoked key);
/// * for every JSON request body: `400` (not JSON, or the wrong shape), `413` (over `http.max_body_bytes`) and
///   `415` (no JSON content type).
///
/// `/fhir` operations answer with an OperationOutcome, the others with [`ErrorBody`](super::error::ErrorBody).
/// A handler that documents one of these codes itself keeps its own description.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let fhir = path.starts_with("/fhir");
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let mut add = |status: &str, description: &str| {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error_response(description, fhir).into());
                };
                if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    add("401", "Missing, malformed, unknown or revoked API key");
                }
                if operation.request_body.is_some() {
                    add("400", "The body is not valid JSON or has the wrong shape");
                    add("413", "The body is larger than http.max_body_bytes");
                    add("415", "The body is not sent as JSON");
                }
            }
        }
    }
}

fn error_response(description: &str, fhir: bool) -> Response {
    let (content_type, schema) = if fhir {
        ("application/fhir+json", ObjectBuilder::new().into())
    } else {
        (
            "application/json",
            Ref::from_schema_name("ErrorBody").into(),
        )
    };
    let schema: RefOr<Schema> = schema;
    ResponseBuilder::new()
        .description(description)
        .content(
            content_type,
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .build()
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
