//! API key management: admins create and revoke keys; any key may list the keys of its own org.

use super::error::{ApiError, ErrorBody};
use super::extract::ApiJson;
use super::AppState;
use crate::auth::{self, Caller};
use crate::event::{validate_org_id, Timestamp};
use crate::store::{ApiKeyRecord, AuditEntry};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/keys", post(create).get(list))
        .route("/api/keys/{id}", delete(remove))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// 1-64 characters: letters, digits, `.`, `_`, `-`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub org_id: String,
    /// 1-128 characters (surrounding whitespace is trimmed).
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    pub id: String,
    /// The key itself: shown once, never again.
    pub key: String,
    pub org_id: String,
    pub name: String,
}

fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden("this needs an admin key"))
    }
}

/// Creates an org key (admin only). The key is in the response and nowhere else.
#[utoipa::path(post, path = "/api/keys", tag = "keys", request_body = CreateKeyRequest,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    require_admin(&caller)?;
    validate_org_id(&body.org_id)
        .map_err(|e| ApiError::bad_request("invalid_org", e.to_string()))?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(ApiError::bad_request(
            "invalid_name",
            "name must be 1-128 characters",
        ));
    }
    let created = auth::create_org_key(&state.store, &caller.key_id, &body.org_id, name).await?;
    let response = CreatedKey {
        id: created.id,
        key: created.key,
        org_id: body.org_id,
        name: name.to_string(),
    };
    Ok((StatusCode::CREATED, Json(response)))
}

/// Lists keys (hashes never leave the server): all of them for an admin, the org's own for an org key.
#[utoipa::path(get, path = "/api/keys", tag = "keys", responses((status = 200, body = Vec<ApiKeyRecord>)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ApiKeyRecord>>, ApiError> {
    Ok(Json(state.store.list_api_keys(caller.org()).await?))
}

/// Revokes an org key (admin only). The bootstrap admin key cannot be revoked here: that would lock every admin
/// out until a restart; replace it by changing `auth.admin_token` and restarting.
#[utoipa::path(delete, path = "/api/keys/{id}", tag = "keys", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The bootstrap admin key cannot be revoked over the API", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    if id == auth::BOOTSTRAP_ADMIN_ID {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "admin_key",
            "the bootstrap admin key cannot be revoked over the API (every admin would be locked out); \
             set a new auth.admin_token and restart to replace it",
        ));
    }
    let audit = AuditEntry {
        timestamp: Timestamp::now(),
        actor: Some(caller.key_id.clone()),
        org_id: None,
        action: "key.delete".into(),
        target: id.clone(),
        outcome: "ok".into(),
        detail: None,
    };
    match state.store.delete_api_key(&id, None, &audit).await {
        Ok(()) => {
            state.keys.forget(&id);
            Ok(StatusCode::NO_CONTENT)
        }
        Err(crate::store::StoreError::NotFound) => Err(ApiError::not_found("key")),
        Err(e) => Err(e.into()),
    }
}
