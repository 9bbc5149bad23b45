//! The audit log API: admins see every org, an org key its own org.

use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use super::{scope_org, AppState};
use crate::auth::Caller;
use crate::event::Timestamp;
use crate::store::{AuditEntry, AuditQuery};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/audit", get(list))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Admin keys only.
    pub org_id: Option<String>,
    /// e.g. `event.emit`, `key.create`.
    pub action: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Default 100, at most 1000.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// Audit rows, newest first.
#[utoipa::path(get, path = "/api/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = Vec<AuditEntry>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let time = |name: &str, v: &Option<String>| -> Result<Option<Timestamp>, ApiError> {
        v.as_deref()
            .map(|t| {
                Timestamp::parse_rfc3339(t).ok_or_else(|| {
                    ApiError::bad_request("bad_query", format!("{name} must be RFC 3339"))
                })
            })
            .transpose()
    };
    let limit = params.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::bad_request(
            "bad_query",
            "limit must be between 1 and 1000",
        ));
    }
    let query = AuditQuery {
        org_id: scope_org(&caller, params.org_id)?,
        action: params.action,
        from: time("from", &params.from)?,
        to: time("to", &params.to)?,
        limit,
    };
    Ok(Json(state.store.query_audit(&query).await?))
}
