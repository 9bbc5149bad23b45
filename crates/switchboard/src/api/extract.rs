//! Request extractors whose rejections speak our error format: JSON bodies, query strings, and the caller.

use super::error::ApiError;
use super::AppState;
use crate::auth::Caller;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// A JSON body; malformed JSON, wrong types, unknown fields and oversized bodies become precise 4xx errors.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    // axum answers a well-formed body of the wrong shape with 422; we keep 400 for every body the server
    // cannot use, and 413 / 415 where those say more.
    let (status, code) = match &rejection {
        JsonRejection::JsonDataError(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
        JsonRejection::JsonSyntaxError(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
        JsonRejection::MissingJsonContentType(_) => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
        }
        other => (other.status(), "bad_body"),
    };
    ApiError::new(status, code, rejection.body_text())
}

/// A query string; unknown parameters and bad values are 400s.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::bad_request("bad_query", e.body_text()))
            }
            Err(other) => Err(ApiError::bad_request("bad_query", other.body_text())),
        }
    }
}

/// The API key of a request, from `Authorization: Bearer <key>`.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <api key>"))?;
        let key = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ApiError::unauthorized("Authorization must be 'Bearer <api key>'"))?;
        authenticate_key(state, key).await
    }
}

/// Resolves a key (from a header or, for `EventSource`, a query parameter).
pub async fn authenticate_key(state: &AppState, key: &str) -> Result<Caller, ApiError> {
    match state.keys.authenticate(&state.store, key).await? {
        Some(caller) => Ok(caller),
        None => Err(ApiError::unauthorized("unknown or revoked API key")),
    }
}
