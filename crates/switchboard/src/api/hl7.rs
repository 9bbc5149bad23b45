//! HL7 over the API: `POST /api/hl7/send` sends a message over MLLP from the server and answers with the ACK.
//!
//! Only destinations on the `hl7.destinations` allow list can be reached (anything else is 403, before any
//! connection is made). The outcome is recorded as `hl7.sent` (with the ACK code) or `hl7.error` in the caller's
//! org; an admin key must name the org.

use super::error::{ApiError, ErrorBody};
use super::extract::ApiJson;
use super::AppState;
use crate::auth::{Caller, Scope};
use crate::mllp::client::Prepared;
use crate::mllp::{Hl7Config, SendError, Sender};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub fn router(config: &Hl7Config) -> Router<AppState> {
    Router::new()
        .route("/api/hl7/send", post(send))
        .layer(Extension(Arc::new(Sender::new(config.sender_options()))))
}

/// The body of `POST /api/hl7/send`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendRequest {
    /// `host:port`, one of the configured `hl7.destinations`.
    pub destination: String,
    /// The HL7 v2 message; segments may end in CR, LF or CRLF.
    pub message: String,
    /// Required with an admin key; an org key may omit it or must name its own org.
    pub org_id: Option<String>,
}

/// The answer of the destination.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendResponse {
    /// MSA-1: `AA`, `AE`, `AR`, `CA`, `CE` or `CR`.
    pub ack_code: String,
    /// MSA-2, equal to the message's MSH-10.
    pub control_id: String,
    /// The ACK message, segments separated by CR.
    pub ack: String,
    /// How many attempts it took.
    pub attempts: u32,
}

/// Sends an HL7 v2 message over MLLP and returns the destination's ACK (whatever its code).
#[utoipa::path(post, path = "/api/hl7/send", tag = "hl7", request_body = SendRequest,
    responses(
        (status = 200, description = "The destination answered; see ackCode", body = SendResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "Destination not allowed, or another org", body = ErrorBody),
        (status = 502, description = "No valid ACK from the destination", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn send(
    State(state): State<AppState>,
    Extension(sender): Extension<Arc<Sender>>,
    caller: Caller,
    ApiJson(body): ApiJson<SendRequest>,
) -> Result<Json<SendResponse>, ApiError> {
    let org = match (&caller.scope, body.org_id) {
        (Scope::Admin, Some(org)) => org,
        (Scope::Admin, None) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "orgId is required with an admin key",
            ))
        }
        (Scope::Org(own), None) => own.clone(),
        (Scope::Org(own), Some(org)) if org == *own => org,
        (Scope::Org(_), Some(_)) => {
            return Err(ApiError::forbidden(
                "an org key can only send for its own org",
            ))
        }
    };
    crate::event::validate_org_id(&org)
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    if !state.config.hl7.allows(&body.destination) {
        return Err(ApiError::forbidden(format!(
            "destination '{}' is not in hl7.destinations",
            body.destination
        )));
    }
    let prepared = Prepared::new(body.message.as_bytes())
        .map_err(|e| ApiError::bad_request("invalid_message", e.to_string()))?;
    let actor = caller.key_id.clone();
    match sender
        .send_and_record(&state.hub, &org, &actor, body.destination.trim(), &prepared)
        .await
    {
        Ok(reply) => Ok(Json(SendResponse {
            ack_code: reply.code.to_string(),
            control_id: reply.control_id,
            ack: reply.ack,
            attempts: reply.attempts,
        })),
        Err(SendError::Invalid(reason)) => Err(ApiError::bad_request("invalid_message", reason)),
        Err(err) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "destination_failed",
            err.to_string(),
        )),
    }
}
