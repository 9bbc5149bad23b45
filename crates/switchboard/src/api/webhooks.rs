//! The webhook API: subscriptions (org-scoped), their secrets, a signed test ping, delivery logs, the
//! dead-letter queue, redrive and replay.
//!
//! An org key sees and manages only its own org's subscriptions and deliveries; anything else is a 404, so the
//! existence of other orgs' subscriptions does not leak. Admin keys see every org.

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery};
use super::AppState;
use crate::auth::{Caller, Scope};
use crate::event::{validate_org_id, Pattern, Timestamp};
use crate::store::webhooks::{
    DeliveryQuery, DeliveryRecord, DeliveryStatus, Filters, RetryConfig, SubscriptionRecord,
};
use crate::store::{AuditEntry, StoreError};
use crate::webhooks::engine::delivery_headers;
use crate::webhooks::subscription::{self, Compiled, ROTATION_GRACE_MICROS};
use crate::webhooks::{signature, ReplayReport, WebhookError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;
const TEST_BODY_SHOWN: usize = 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/webhooks", post(create).get(list))
        .route(
            "/api/webhooks/{id}",
            get(get_one).put(update).delete(remove),
        )
        .route("/api/webhooks/{id}/test", post(test))
        .route("/api/webhooks/{id}/secret", get(secret))
        .route("/api/webhooks/{id}/secret/rotate", post(rotate_secret))
        .route("/api/webhooks/{id}/deliveries", get(deliveries))
        .route("/api/webhooks/{id}/redrive", post(redrive_subscription))
        .route("/api/webhooks/{id}/replay", post(replay))
        .route("/api/dlq", get(dlq))
        .route("/api/dlq/{delivery_id}/redrive", post(redrive_delivery))
}

impl From<WebhookError> for ApiError {
    fn from(err: WebhookError) -> Self {
        match err {
            WebhookError::Invalid(msg) => ApiError::bad_request("invalid_webhook", msg),
            WebhookError::Store(e) => e.into(),
            WebhookError::Client(e) => ApiError::internal(e),
        }
    }
}

fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The body of `POST /api/webhooks` (name, url and events required) and `PUT /api/webhooks/{id}` (every field
/// optional: those given replace the stored ones).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionInput {
    /// Required with an admin key on create; an org key may omit it or must name its own org.
    pub org_id: Option<String>,
    pub name: Option<String>,
    /// `https://` (or `http://` when `webhooks.allow_insecure` is set).
    pub url: Option<String>,
    /// Event types and patterns: `hl7.received`, `hl7.*`, `**`.
    pub events: Option<Vec<String>>,
    pub filters: Option<Filters>,
    /// A `whsec_` secret or 16-256 characters; generated when left out on create.
    pub secret: Option<String>,
    pub active: Option<bool>,
    pub retry_config: Option<RetryConfig>,
    /// Extra request headers; they cannot replace the signature and event headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// Deliveries per second, at most; `null` on update removes the limit.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f64>)]
    pub rate_limit: Option<Option<f64>>,
}

/// A subscription as shown. The secret appears only in the answer to a create (and on the secret endpoints).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionView {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub filters: Filters,
    pub active: bool,
    pub retry_config: RetryConfig,
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<f64>,
    /// Set when the server switched the subscription off (e.g. 410 Gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    #[serde(serialize_with = "crate::util::serialize_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(serialize_with = "crate::util::serialize_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl SubscriptionView {
    fn of(sub: &SubscriptionRecord) -> Self {
        SubscriptionView {
            id: sub.id.clone(),
            org_id: sub.org_id.clone(),
            name: sub.name.clone(),
            url: sub.url.clone(),
            events: sub.events.clone(),
            filters: sub.filters.clone(),
            active: sub.active,
            retry_config: sub.retry,
            headers: sub.headers.clone(),
            rate_limit: sub.rate_limit,
            disabled_reason: sub.disabled_reason.clone(),
            created_at: sub.created_at,
            updated_at: sub.updated_at,
            secret: None,
        }
    }
}

fn org_for_create(caller: &Caller, requested: Option<String>) -> Result<String, ApiError> {
    match (&caller.scope, requested) {
        (Scope::Admin, Some(org)) => {
            validate_org_id(&org)
                .map_err(|e| ApiError::bad_request("invalid_org", e.to_string()))?;
            Ok(org)
        }
        (Scope::Admin, None) => Err(ApiError::bad_request(
            "invalid_webhook",
            "orgId is required with an admin key",
        )),
        (Scope::Org(own), None) => Ok(own.clone()),
        (Scope::Org(own), Some(org)) if org == *own => Ok(org),
        (Scope::Org(_), Some(_)) => Err(ApiError::forbidden(
            "an org key can only manage its own org's webhooks",
        )),
    }
}

async fn audit(state: &AppState, caller: &Caller, org: &str, action: &str, target: &str) {
    let entry = AuditEntry {
        timestamp: Timestamp::now(),
        actor: Some(caller.key_id.clone()),
        org_id: Some(org.to_string()),
        action: action.into(),
        target: target.into(),
        outcome: "ok".into(),
        detail: None,
    };
    if let Err(err) = state.store.record_audit(vec![entry]).await {
        tracing::error!(error = %err, action, "cannot write the audit row of a webhook change");
    }
}

/// The subscription `id` if the caller may see it; 404 otherwise.
async fn visible(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<SubscriptionRecord, ApiError> {
    state
        .store
        .webhooks()
        .get_subscription(caller.org(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook subscription"))
}

/// Creates a subscription. The answer holds the signing secret (generated unless given).
#[utoipa::path(post, path = "/api/webhooks", tag = "webhooks", request_body = SubscriptionInput,
    responses((status = 201, body = SubscriptionView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SubscriptionInput>,
) -> Result<(StatusCode, Json<SubscriptionView>), ApiError> {
    let org_id = org_for_create(&caller, body.org_id)?;
    let missing =
        |field: &str| ApiError::bad_request("invalid_webhook", format!("{field} is required"));
    let now = Timestamp::now();
    let record = SubscriptionRecord {
        id: uuid::Uuid::now_v7().to_string(),
        org_id,
        name: body.name.ok_or_else(|| missing("name"))?.trim().to_string(),
        url: body.url.ok_or_else(|| missing("url"))?,
        events: body.events.ok_or_else(|| missing("events"))?,
        filters: body.filters.unwrap_or_default(),
        secret: body.secret.unwrap_or_else(signature::generate_secret),
        previous_secret: None,
        previous_secret_until: None,
        active: body.active.unwrap_or(true),
        retry: body.retry_config.unwrap_or_default(),
        headers: body.headers.unwrap_or_default(),
        rate_limit: body.rate_limit.flatten(),
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    };
    subscription::validate_record(&record, state.webhooks.config().allow_insecure)?;
    state.store.webhooks().insert_subscription(&record).await?;
    state.webhooks.reload().await?;
    audit(
        &state,
        &caller,
        &record.org_id,
        "webhook.create",
        &record.id,
    )
    .await;
    let mut view = SubscriptionView::of(&record);
    view.secret = Some(record.secret);
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Admin keys only: one org.
    pub org_id: Option<String>,
}

/// Lists subscriptions (without secrets): the org's own, or every org's for an admin.
#[utoipa::path(get, path = "/api/webhooks", tag = "webhooks", params(ListParams),
    responses((status = 200, body = Vec<SubscriptionView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Vec<SubscriptionView>>, ApiError> {
    let org = super::scope_org(&caller, params.org_id)?;
    let subs = state
        .store
        .webhooks()
        .list_subscriptions(org.as_deref())
        .await?;
    Ok(Json(subs.iter().map(SubscriptionView::of).collect()))
}

/// One subscription (without its secret).
#[utoipa::path(get, path = "/api/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = SubscriptionView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SubscriptionView>, ApiError> {
    Ok(Json(SubscriptionView::of(
        &visible(&state, &caller, &id).await?,
    )))
}

/// Updates the fields given. Setting `active: true` also clears a server-set `disabledReason`.
#[utoipa::path(put, path = "/api/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)), request_body = SubscriptionInput,
    responses((status = 200, body = SubscriptionView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SubscriptionInput>,
) -> Result<Json<SubscriptionView>, ApiError> {
    let mut record = visible(&state, &caller, &id).await?;
    if body.org_id.is_some_and(|org| org != record.org_id) {
        return Err(ApiError::bad_request(
            "invalid_webhook",
            "a subscription cannot move to another org",
        ));
    }
    if let Some(name) = body.name {
        record.name = name.trim().to_string();
    }
    if let Some(url) = body.url {
        record.url = url;
    }
    if let Some(events) = body.events {
        record.events = events;
    }
    if let Some(filters) = body.filters {
        record.filters = filters;
    }
    if let Some(secret) = body.secret {
        record.secret = secret;
        record.previous_secret = None;
        record.previous_secret_until = None;
    }
    if let Some(active) = body.active {
        if active {
            record.disabled_reason = None;
        }
        record.active = active;
    }
    if let Some(retry) = body.retry_config {
        record.retry = retry;
    }
    if let Some(headers) = body.headers {
        record.headers = headers;
    }
    if let Some(rate) = body.rate_limit {
        record.rate_limit = rate;
    }
    record.updated_at = Timestamp::now();
    subscription::validate_record(&record, state.webhooks.config().allow_insecure)?;
    state.store.webhooks().update_subscription(&record).await?;
    state.webhooks.reload().await?;
    audit(
        &state,
        &caller,
        &record.org_id,
        "webhook.update",
        &record.id,
    )
    .await;
    Ok(Json(SubscriptionView::of(&record)))
}

/// Deletes a subscription with its delivery log (pending deliveries are dropped).
#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let record = visible(&state, &caller, &id).await?;
    match state
        .store
        .webhooks()
        .delete_subscription(caller.org(), &id)
        .await
    {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(ApiError::not_found("webhook subscription")),
        Err(e) => return Err(e.into()),
    }
    state.webhooks.reload().await?;
    audit(&state, &caller, &record.org_id, "webhook.delete", &id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// What the receiver made of a test ping.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    /// True for a 2xx answer.
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    pub latency_ms: f64,
    /// The start of the answer's body (at most 1 KiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Why no answer came (timeout, refused address, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Sends a signed `webhook.test` ping now (not stored, not retried) and reports the answer.
#[utoipa::path(post, path = "/api/webhooks/{id}/test", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = TestResult), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TestResult>, ApiError> {
    let record = visible(&state, &caller, &id).await?;
    let now = Timestamp::now();
    let compiled = Compiled::new(record, now)?;
    let message_id = uuid::Uuid::now_v7().to_string();
    let body = serde_json::json!({
        "id": message_id,
        "specVersion": crate::event::SPEC_VERSION,
        "eventType": "webhook.test",
        "timestamp": now.to_rfc3339(),
        "orgId": compiled.org_id,
        "source": "api",
        "data": { "subscriptionId": compiled.record.id, "message": "Switchboard test ping" },
    });
    let body = Bytes::from(serde_json::to_vec(&body).map_err(ApiError::internal)?);
    let headers = delivery_headers(
        &compiled,
        "webhook.test",
        &message_id,
        now.0.div_euclid(1_000_000),
        &body,
    );
    let started = std::time::Instant::now();
    let result = state
        .webhooks
        .engine()
        .client()
        .post(&compiled.uri, headers, body)
        .await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(Json(match result {
        Ok(answer) => TestResult {
            success: (200..300).contains(&answer.status),
            status_code: Some(answer.status),
            latency_ms,
            body: Some(answer.body.chars().take(TEST_BODY_SHOWN).collect()),
            error: None,
        },
        Err(err) => TestResult {
            success: false,
            status_code: None,
            latency_ms,
            body: None,
            error: Some(err.to_string()),
        },
    }))
}

/// The signing secret(s) of a subscription.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretView {
    pub secret: String,
    /// Still signing (second signature) until `previousSecretExpiresAt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::util::serialize_opt_ts"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub previous_secret_expires_at: Option<Timestamp>,
}

fn secret_view(record: &SubscriptionRecord, now: Timestamp) -> SecretView {
    let live = record.previous_secret_until.filter(|until| *until > now);
    SecretView {
        secret: record.secret.clone(),
        previous_secret: live.and(record.previous_secret.clone()),
        previous_secret_expires_at: live,
    }
}

/// The current signing secret (and the previous one while it still signs).
#[utoipa::path(get, path = "/api/webhooks/{id}/secret", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = SecretView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SecretView>, ApiError> {
    let record = visible(&state, &caller, &id).await?;
    Ok(Json(secret_view(&record, Timestamp::now())))
}

/// Makes a new secret; the old one keeps signing (a second signature) for 24 hours.
#[utoipa::path(post, path = "/api/webhooks/{id}/secret/rotate", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = SecretView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SecretView>, ApiError> {
    let mut record = visible(&state, &caller, &id).await?;
    let now = Timestamp::now();
    record.previous_secret = Some(std::mem::replace(
        &mut record.secret,
        signature::generate_secret(),
    ));
    record.previous_secret_until = Some(Timestamp(now.0 + ROTATION_GRACE_MICROS));
    record.updated_at = now;
    state.store.webhooks().update_subscription(&record).await?;
    state.webhooks.reload().await?;
    audit(
        &state,
        &caller,
        &record.org_id,
        "webhook.secret.rotate",
        &record.id,
    )
    .await;
    Ok(Json(secret_view(&record, now)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// `pending`, `failed` (retry scheduled), `succeeded` or `dead`.
    pub status: Option<String>,
    /// Default 50, at most 500 (larger values are capped).
    #[param(minimum = 1)]
    pub limit: Option<usize>,
    /// Only deliveries with a smaller id (the next page: the last id of this one).
    pub before: Option<i64>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DlqParams {
    pub subscription_id: Option<String>,
    /// Admin keys only: one org.
    pub org_id: Option<String>,
    /// Page size, default 50; values above 500 are capped to 500.
    #[param(minimum = 1)]
    pub limit: Option<usize>,
    pub before: Option<i64>,
}

fn limit(requested: Option<usize>) -> Result<usize, ApiError> {
    match requested.unwrap_or(DEFAULT_LIMIT) {
        0 => Err(ApiError::bad_request(
            "bad_query",
            "limit must be at least 1",
        )),
        n => Ok(n.min(MAX_LIMIT)),
    }
}

/// The deliveries of a subscription, newest first, each with its attempts.
#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = String, Path), DeliveryParams),
    responses((status = 200, body = Vec<DeliveryRecord>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<DeliveryParams>,
) -> Result<Json<Vec<DeliveryRecord>>, ApiError> {
    let record = visible(&state, &caller, &id).await?;
    let status = params
        .status
        .map(|s| {
            DeliveryStatus::parse(&s).ok_or_else(|| {
                ApiError::bad_request(
                    "bad_query",
                    format!("status '{s}' is not one of pending, failed, succeeded, dead"),
                )
            })
        })
        .transpose()?;
    let query = DeliveryQuery {
        org_id: Some(record.org_id),
        subscription_id: Some(record.id),
        status,
        before_id: params.before,
        limit: limit(params.limit)?,
    };
    Ok(Json(state.store.webhooks().list_deliveries(&query).await?))
}

/// The dead-letter queue: dead deliveries, newest first.
#[utoipa::path(get, path = "/api/dlq", tag = "webhooks", params(DlqParams),
    responses((status = 200, body = Vec<DeliveryRecord>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn dlq(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<DlqParams>,
) -> Result<Json<Vec<DeliveryRecord>>, ApiError> {
    let org = super::scope_org(&caller, params.org_id)?;
    let query = DeliveryQuery {
        org_id: org,
        subscription_id: params.subscription_id,
        status: Some(DeliveryStatus::Dead),
        before_id: params.before,
        limit: limit(params.limit)?,
    };
    Ok(Json(state.store.webhooks().list_deliveries(&query).await?))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Redriven {
    /// Dead deliveries moved back to pending (due now, attempts reset).
    pub redriven: u64,
}

/// Sends one dead delivery again (fresh schedule).
#[utoipa::path(post, path = "/api/dlq/{delivery_id}/redrive", tag = "webhooks", params(("delivery_id" = i64, Path)),
    responses((status = 202, body = Redriven), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn redrive_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path(delivery_id): Path<String>,
) -> Result<(StatusCode, Json<Redriven>), ApiError> {
    let id: i64 = delivery_id
        .parse()
        .map_err(|_| ApiError::not_found("dead delivery"))?;
    match state
        .store
        .webhooks()
        .redrive_delivery(caller.org(), id, Timestamp::now())
        .await
    {
        Ok(sub) => {
            state.webhooks.wake(&sub);
            Ok((StatusCode::ACCEPTED, Json(Redriven { redriven: 1 })))
        }
        Err(StoreError::NotFound) => Err(ApiError::not_found("dead delivery")),
        Err(e) => Err(e.into()),
    }
}

/// Sends every dead delivery of a subscription again.
#[utoipa::path(post, path = "/api/webhooks/{id}/redrive", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 202, body = Redriven), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn redrive_subscription(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Redriven>), ApiError> {
    let record = visible(&state, &caller, &id).await?;
    let redriven = state
        .store
        .webhooks()
        .redrive_subscription(Some(&record.org_id), &record.id, Timestamp::now())
        .await?;
    state.webhooks.wake(&record.id);
    Ok((StatusCode::ACCEPTED, Json(Redriven { redriven })))
}

/// The body of `POST /api/webhooks/{id}/replay`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplayRequest {
    /// RFC 3339; events committed at or after this time.
    pub from: String,
    /// RFC 3339; events committed before this time.
    pub to: String,
    /// Only this type or pattern (the subscription's own types and filters apply as well).
    pub event_type: Option<String>,
}

/// Re-delivers the subscription's matching events from the history. Deliveries already pending are left as
/// they are; finished ones are reopened.
#[utoipa::path(post, path = "/api/webhooks/{id}/replay", tag = "webhooks", params(("id" = String, Path)), request_body = ReplayRequest,
    responses((status = 202, body = ReplayReport), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReplayRequest>,
) -> Result<(StatusCode, Json<ReplayReport>), ApiError> {
    let record = visible(&state, &caller, &id).await?;
    let time = |field: &str, text: &str| {
        Timestamp::parse_rfc3339(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_replay",
                format!("{field} must be an RFC 3339 date-time"),
            )
        })
    };
    let from = time("from", &body.from)?;
    let to = time("to", &body.to)?;
    if from >= to {
        return Err(ApiError::bad_request(
            "invalid_replay",
            "from must be before to",
        ));
    }
    let pattern = body
        .event_type
        .as_deref()
        .map(Pattern::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_replay", e.to_string()))?;
    let report = state.webhooks.replay(&record, from, to, pattern).await?;
    audit(
        &state,
        &caller,
        &record.org_id,
        "webhook.replay",
        &record.id,
    )
    .await;
    Ok((StatusCode::ACCEPTED, Json(report)))
}
