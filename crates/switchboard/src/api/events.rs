//! The event API: publish (`POST /api/events`), history (`GET /api/events`), one event, and streaming export.

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery};
use super::{scope_org, AppState};
use crate::auth::{Caller, Scope};
use crate::event::{Event, EventType, NewEvent, Pattern, PublishRequest, Source, Timestamp};
use crate::store::{EventCursor, EventQuery, Order};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::stream::{self, Stream};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
const EXPORT_PAGE: usize = 1000;
const IDEMPOTENCY_KEY_MAX: usize = 256;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/events", post(publish).get(list))
        .route("/api/events/export", get(export))
        .route("/api/events/{id}", get(get_one))
}

/// Publishes an event (source `api`). Answers after the event is durably committed.
#[utoipa::path(post, path = "/api/events", tag = "events", request_body = PublishRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "A repeat with the same key returns the first event")),
    responses(
        (status = 201, description = "Committed", body = Event),
        (status = 200, description = "Idempotent repeat: the event first stored with this key", body = Event),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PublishRequest>,
) -> Result<Response, ApiError> {
    let event_type = EventType::parse(&body.event_type)
        .map_err(|e| ApiError::bad_request("invalid_event_type", e.to_string()))?;
    let org_id = match (&caller.scope, body.org_id) {
        (Scope::Admin, Some(org)) => org,
        (Scope::Admin, None) => {
            return Err(ApiError::bad_request(
                "invalid_event",
                "orgId is required with an admin key",
            ))
        }
        (Scope::Org(own), None) => own.clone(),
        (Scope::Org(own), Some(org)) if org == *own => org,
        (Scope::Org(_), Some(_)) => {
            return Err(ApiError::forbidden(
                "an org key can only publish for its own org",
            ))
        }
    };
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => {
            let key = value
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= IDEMPOTENCY_KEY_MAX);
            Some(
                key.ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_idempotency_key",
                        "Idempotency-Key must be 1-256 visible ASCII characters",
                    )
                })?
                .to_string(),
            )
        }
    };
    let event = NewEvent {
        event_type,
        org_id,
        source: Source::Api,
        message_type: body.message_type,
        message_control_id: body.message_control_id,
        resource_type: body.resource_type,
        resource_id: body.resource_id,
        data: body.data,
        metadata: body.metadata,
        actor: Some(caller.key_id),
        idempotency_key,
        write: None,
    };
    let emitted = state.hub.publish(event).await?;
    let status = if emitted.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut response = (status, Json(&*emitted.event)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/events/{}", emitted.event.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if emitted.duplicate {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Filters shared by the history, export and stream endpoints.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Comma-separated types or patterns (`hl7.*`, `*.error`, `**`).
    pub event_type: Option<String>,
    /// Admin keys only; an org key always sees its own org.
    pub org_id: Option<String>,
    /// RFC 3339, inclusive.
    pub from: Option<String>,
    /// RFC 3339, exclusive.
    pub to: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub message_type: Option<String>,
    pub source: Option<String>,
    /// Page size, default 100, at most 1000.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// `desc` (newest first, the default) or `asc`.
    #[param(pattern = "^(asc|desc)$")]
    pub order: Option<String>,
    /// Export only: `ndjson` (default) or `csv`.
    pub format: Option<String>,
}

impl HistoryParams {
    /// Turns the parameters into a store query scoped to what `caller` may see.
    pub fn to_query(&self, caller: &Caller) -> Result<EventQuery, ApiError> {
        let time = |name: &str, value: &Option<String>| -> Result<Option<Timestamp>, ApiError> {
            value
                .as_deref()
                .map(|v| {
                    Timestamp::parse_rfc3339(v).ok_or_else(|| {
                        ApiError::bad_request(
                            "bad_query",
                            format!("{name} must be an RFC 3339 date-time, got '{v}'"),
                        )
                    })
                })
                .transpose()
        };
        let event_types = match self.event_type.as_deref() {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|p| {
                    Pattern::parse(p).map_err(|e| ApiError::bad_request("bad_query", e.to_string()))
                })
                .collect::<Result<_, _>>()?,
        };
        let source = match self.source.as_deref() {
            None => None,
            Some(s) => Some(Source::parse(s).ok_or_else(|| {
                ApiError::bad_request("bad_query", format!("unknown source '{s}'; sources are mllp-server, mllp-client, fhir-api, transformer, queue-worker, api"))
            })?),
        };
        let order = match self.order.as_deref() {
            None | Some("desc") => Order::Desc,
            Some("asc") => Order::Asc,
            Some(other) => {
                return Err(ApiError::bad_request(
                    "bad_query",
                    format!("order must be asc or desc, got '{other}'"),
                ))
            }
        };
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::bad_request(
                "bad_query",
                format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let after = match self.cursor.as_deref() {
            None => None,
            Some(c) => Some(EventCursor::decode(c).ok_or_else(|| {
                ApiError::bad_request("bad_query", "cursor is not a cursor this server issued")
            })?),
        };
        Ok(EventQuery {
            org_id: scope_org(caller, self.org_id.clone())?,
            event_types,
            from: time("from", &self.from)?,
            to: time("to", &self.to)?,
            resource_type: self.resource_type.clone(),
            resource_id: self.resource_id.clone(),
            message_type: self.message_type.clone(),
            source,
            after,
            order,
            limit,
        })
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Queries the event history, newest first by default, with cursor pagination stable under appends.
#[utoipa::path(get, path = "/api/events", tag = "events", params(HistoryParams),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> Result<Json<EventPage>, ApiError> {
    if params.format.is_some() {
        return Err(ApiError::bad_request(
            "bad_query",
            "format applies to /api/events/export only",
        ));
    }
    let query = params.to_query(&caller)?;
    let events = state.store.query_events(&query).await?;
    let next_cursor = (events.len() == query.limit)
        .then(|| {
            events.last().map(|e| {
                EventCursor {
                    timestamp: e.timestamp,
                    seq: e.seq,
                }
                .encode()
            })
        })
        .flatten();
    Ok(Json(EventPage {
        events,
        next_cursor,
    }))
}

/// One event by id (only within the caller's org).
#[utoipa::path(get, path = "/api/events/{id}", tag = "events", params(("id" = String, Path, description = "Event id")),
    responses((status = 200, body = Event), (status = 400, description = "Not an event id", body = ErrorBody),
        (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Event>, ApiError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::bad_request("bad_id", format!("'{id}' is not an event id")))?;
    match state.store.get_event(caller.org(), id).await? {
        Some(event) => Ok(Json(event)),
        None => Err(ApiError::not_found("event")),
    }
}

#[derive(Clone, Copy)]
enum ExportFormat {
    Ndjson,
    Csv,
}

const CSV_HEADER: &str = "seq,id,timestamp,eventType,orgId,source,messageType,messageControlId,resourceType,resourceId,data,metadata\n";

/// Streams every matching event as NDJSON or CSV, in constant memory (keyset pages of 1000).
#[utoipa::path(get, path = "/api/events/export", tag = "events", params(HistoryParams),
    responses((status = 200, description = "NDJSON or CSV stream", content_type = "application/x-ndjson"), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> Result<Response, ApiError> {
    let format = match params.format.as_deref() {
        None | Some("ndjson") | Some("json") => ExportFormat::Ndjson,
        Some("csv") => ExportFormat::Csv,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_query",
                format!("format must be csv or ndjson, got '{other}'"),
            ))
        }
    };
    if params.limit.is_some() || params.cursor.is_some() {
        return Err(ApiError::bad_request(
            "bad_query",
            "export streams every matching event; limit and cursor do not apply",
        ));
    }
    let mut query = params.to_query(&caller)?;
    query.limit = EXPORT_PAGE;
    let content_type = match format {
        ExportFormat::Ndjson => "application/x-ndjson",
        ExportFormat::Csv => "text/csv; charset=utf-8",
    };
    let body = Body::from_stream(export_stream(state, query, format));
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

fn export_stream(
    state: AppState,
    query: EventQuery,
    format: ExportFormat,
) -> impl Stream<Item = Result<String, std::io::Error>> {
    let header = matches!(format, ExportFormat::Csv).then(|| CSV_HEADER.to_string());
    let pages = stream::try_unfold(Some(query), move |query| {
        let store = state.store.clone();
        async move {
            let Some(mut query) = query else {
                return Ok(None);
            };
            let events = store.query_events(&query).await.map_err(|e| {
                tracing::error!(error = %e, "export failed mid-stream");
                std::io::Error::other("export failed")
            })?;
            if events.is_empty() {
                return Ok(None);
            }
            let mut chunk = String::with_capacity(events.len() * 512);
            for event in &events {
                match format {
                    ExportFormat::Ndjson => {
                        chunk.push_str(
                            &serde_json::to_string(event).map_err(std::io::Error::other)?,
                        );
                        chunk.push('\n');
                    }
                    ExportFormat::Csv => push_csv_row(&mut chunk, event),
                }
            }
            let next = (events.len() == query.limit).then(|| {
                let last = &events[events.len() - 1];
                query.after = Some(EventCursor {
                    timestamp: last.timestamp,
                    seq: last.seq,
                });
                query
            });
            Ok(Some((chunk, next)))
        }
    });
    stream::iter(header.map(Ok)).chain(pages)
}

fn push_csv_row(out: &mut String, e: &Event) {
    use crate::util::push_csv_field;
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields = [
        e.seq.to_string(),
        e.id.to_string(),
        e.timestamp.to_rfc3339(),
        e.event_type.to_string(),
        e.org_id.clone(),
        e.source.as_str().to_string(),
        opt(&e.message_type),
        opt(&e.message_control_id),
        opt(&e.resource_type),
        opt(&e.resource_id),
        e.served_data().get().to_string(),
        e.metadata
            .as_ref()
            .map(|m| m.get().to_string())
            .unwrap_or_default(),
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_csv_field(out, field);
    }
    out.push('\n');
}

use futures::StreamExt as _;
