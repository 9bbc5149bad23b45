//! Server-Sent Events: `GET /api/events/stream`, the history API's filters as a live, resumable stream.
//!
//! Each message's `id:` is the event's `seq`. A client that reconnects with `Last-Event-ID` (browsers do this by
//! themselves) or `?since=<seq>` gets every matching event after that `seq` from the log, then continues live,
//! without gaps or repeats: the stream subscribes to the hub's committed batches *before* it reads the log, and
//! skips what it already sent by `seq`. A stream that falls behind the broadcast (a slow client) goes back to
//! the log the same way, so it never misses events and never slows the hub. Without a resume point the stream
//! starts at the current head.
//!
//! `?view=summary` (the default) sends the PHI-free payload of the Socket.IO push; `?view=full` sends the whole
//! event, `data` included. Any key may ask for `full`: an org key sees only its own org's events, exactly as the
//! history API (`GET /api/events`) already returns them with `data`.

use super::limit::{ConnectionSlots, Slot};
use super::payload::render;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::events::HistoryParams;
use crate::api::extract::{authenticate_key, ApiQuery};
use crate::api::AppState;
use crate::event::{any_matches, Event};
use crate::hub::CommittedBatch;
use crate::store::{DynStore, EventQuery, Order};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::stream::{self, Stream};
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Events read from the log per query while catching up.
const PAGE: usize = 500;

/// What the stream handler can reach.
#[derive(Clone)]
pub struct SseState {
    pub app: AppState,
    pub slots: Arc<ConnectionSlots>,
    pub shutdown: CancellationToken,
}

pub fn router(state: SseState) -> Router {
    Router::new()
        .route("/api/events/stream", get(stream))
        .with_state(state)
}

/// The query string of the stream: the history filters, plus how to authenticate, resume and render.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Comma-separated types or patterns (`hl7.*`, `*.error`, `**`).
    pub event_type: Option<String>,
    /// Admin keys only; an org key always streams its own org.
    pub org_id: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub message_type: Option<String>,
    pub source: Option<String>,
    /// `summary` (default: the PHI-free payload) or `full` (the whole event with `data`).
    pub view: Option<String>,
    /// Resume after this `seq` (a `Last-Event-ID` header takes precedence).
    pub since: Option<String>,
    /// The API key, for clients that cannot send headers (`EventSource`). Prefer the header where possible.
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Summary,
    Full,
}

/// Streams matching events as they are committed; resumes from the log with `Last-Event-ID` or `since`.
#[utoipa::path(get, path = "/api/events/stream", tag = "events", params(StreamParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this seq (sent by EventSource on reconnect)")),
    responses(
        (status = 200, description = "text/event-stream of events; `id:` is the event's seq", content_type = "text/event-stream"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 503, description = "Too many live connections", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn stream(
    State(state): State<SseState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<StreamParams>,
) -> Result<Response, ApiError> {
    let key = bearer(&headers)?
        .or(params.token.as_deref())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing API key: send Authorization: Bearer <api key>, or ?token=<api key> from an EventSource",
            )
        })?;
    let caller = authenticate_key(&state.app, key).await?;
    let view = match params.view.as_deref() {
        None | Some("summary") => View::Summary,
        Some("full") => View::Full,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_query",
                format!("view must be summary or full, got '{other}'"),
            ))
        }
    };
    let filters = HistoryParams {
        event_type: params.event_type,
        org_id: params.org_id,
        resource_type: params.resource_type,
        resource_id: params.resource_id,
        message_type: params.message_type,
        source: params.source,
        ..Default::default()
    };
    let mut query = filters.to_query(&caller)?;
    query.limit = PAGE;
    query.order = Order::Asc;
    let resume = resume_point(&headers, params.since.as_deref())?;
    let slot = state.slots.try_acquire().ok_or_else(|| {
        metrics::counter!("switchboard_realtime_refused_total", "transport" => "sse", "reason" => "too_many_connections")
            .increment(1);
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            format!(
                "too many live connections (limit {}); try again later",
                state.slots.max()
            ),
        )
    })?;
    // Subscribe before reading the head or the log: whatever commits from here on is in `batches`.
    let batches = state.app.hub.batches();
    let (cursor, catching_up) = match resume {
        Some(seq) => (seq, true),
        None => (state.app.store.head().await?.0, false),
    };
    let realtime = &state.app.config.realtime;
    let feed = Feed {
        store: Arc::clone(&state.app.store),
        query,
        view,
        cursor,
        catching_up,
        pending: VecDeque::new(),
        batches,
        shutdown: state.shutdown.clone(),
        hello: Some(Duration::from_millis(realtime.sse_retry_ms)),
        _slot: slot,
    };
    metrics::gauge!("switchboard_realtime_connections", "transport" => "sse").increment(1.0);
    let keep_alive = KeepAlive::new().interval(Duration::from_secs(realtime.sse_keepalive_secs));
    let mut response = Sse::new(feed.into_stream())
        .keep_alive(keep_alive)
        .into_response();
    // Tell nginx-style proxies not to buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    Ok(response)
}

/// The key from `Authorization: Bearer`, if that header is present.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(Some)
        .ok_or_else(|| ApiError::unauthorized("Authorization must be 'Bearer <api key>'"))
}

/// `Last-Event-ID` (what a reconnecting EventSource sends) wins over `since` (from the original URL).
fn resume_point(headers: &HeaderMap, since: Option<&str>) -> Result<Option<i64>, ApiError> {
    let parse = |name: &str, text: &str| {
        text.trim()
            .parse::<i64>()
            .ok()
            .filter(|seq| *seq >= 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "bad_resume_point",
                    format!(
                        "{name} must be an event seq (a non-negative integer), got '{}'",
                        text.chars().take(40).collect::<String>()
                    ),
                )
            })
    };
    match headers.get("last-event-id") {
        Some(value) => {
            let text = value.to_str().map_err(|_| {
                ApiError::bad_request("bad_resume_point", "Last-Event-ID must be an event seq")
            })?;
            if text.trim().is_empty() {
                since.map_or(Ok(None), |s| parse("since", s))
            } else {
                parse("Last-Event-ID", text)
            }
        }
        None => since.map_or(Ok(None), |s| parse("since", s)),
    }
}

/// True when `event` passes the filters of a stream query, as the store applies them.
fn matches(query: &EventQuery, event: &Event) -> bool {
    let same = |filter: &Option<String>, value: &Option<String>| {
        filter.as_ref().is_none_or(|f| value.as_ref() == Some(f))
    };
    query.org_id.as_ref().is_none_or(|org| *org == event.org_id)
        && any_matches(&query.event_types, event.event_type.as_str())
        && same(&query.resource_type, &event.resource_type)
        && same(&query.resource_id, &event.resource_id)
        && same(&query.message_type, &event.message_type)
        && query.source.is_none_or(|s| s == event.source)
}

/// One client's stream: catches up from the log, then follows the committed batches.
struct Feed {
    store: DynStore,
    query: EventQuery,
    view: View,
    /// The last `seq` sent, or the point the stream started from.
    cursor: i64,
    catching_up: bool,
    pending: VecDeque<Arc<Event>>,
    batches: broadcast::Receiver<Arc<CommittedBatch>>,
    shutdown: CancellationToken,
    /// The first message: the reconnection delay the client should use.
    hello: Option<Duration>,
    _slot: Slot,
}

impl Feed {
    fn into_stream(self) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send {
        stream::unfold(self, |mut feed| async move {
            let next = feed.next().await?;
            Some((Ok(next), feed))
        })
    }

    async fn next(&mut self) -> Option<SseEvent> {
        if let Some(retry) = self.hello.take() {
            return Some(SseEvent::default().retry(retry).comment("connected"));
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.cursor = event.seq;
                return Some(self.render(&event));
            }
            if self.catching_up {
                let page = tokio::select! {
                    page = self.store.events_matching_after(&self.query, self.cursor) => page,
                    _ = self.shutdown.cancelled() => return None,
                };
                match page {
                    Ok(page) => {
                        self.catching_up = page.len() >= self.query.limit;
                        self.pending.extend(page.into_iter().map(Arc::new));
                    }
                    Err(err) => {
                        // Ending the stream makes the client reconnect with its Last-Event-ID: nothing is lost.
                        tracing::error!(error = %err, "cannot read the log for an event stream; closing it");
                        return None;
                    }
                }
                continue;
            }
            let received = tokio::select! {
                received = self.batches.recv() => received,
                _ = self.shutdown.cancelled() => return None,
            };
            match received {
                Ok(batch) => {
                    let (cursor, query) = (self.cursor, &self.query);
                    self.pending.extend(
                        batch
                            .events
                            .iter()
                            .filter(|e| e.seq > cursor && matches(query, e))
                            .cloned(),
                    );
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    metrics::counter!("switchboard_realtime_sse_catch_ups_total").increment(1);
                    self.catching_up = true;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    fn render(&self, event: &Event) -> SseEvent {
        let id = SseEvent::default().id(event.seq.to_string());
        match self.view {
            View::Summary => id.data(render(event).get()),
            View::Full => match serde_json::to_string(event) {
                Ok(json) => id.data(json),
                Err(err) => {
                    tracing::error!(error = %err, "cannot serialise an event for a stream");
                    id.comment("event could not be rendered")
                }
            },
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        metrics::gauge!("switchboard_realtime_connections", "transport" => "sse").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventType, NewEvent, Source};
    use crate::hub::{Hub, HubConfig};
    use axum::http::HeaderValue;
    use serde_json::value::RawValue;

    #[tokio::test]
    async fn a_stream_that_falls_behind_catches_up_from_the_log_without_gaps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let store = crate::store::open(&url).await.expect("store");
        let hub = Hub::start(
            Arc::clone(&store),
            HubConfig {
                broadcast_capacity: 16,
                ..HubConfig::default()
            },
        )
        .await
        .expect("hub");
        let mut feed = Feed {
            store: Arc::clone(&store),
            query: EventQuery {
                org_id: Some("org-a".into()),
                limit: 7,
                ..EventQuery::default()
            },
            view: View::Summary,
            cursor: 0,
            catching_up: false,
            pending: VecDeque::new(),
            batches: hub.batches(),
            shutdown: CancellationToken::new(),
            hello: None,
            _slot: ConnectionSlots::new(1).try_acquire().expect("slot"),
        };
        let mut expected = Vec::new();
        for i in 0..100 {
            let org = if i % 4 == 0 { "org-b" } else { "org-a" };
            let data = RawValue::from_string(format!("{{\"i\":{i}}}")).expect("raw");
            let event = NewEvent::new(
                EventType::parse("custom.x").expect("type"),
                org,
                Source::Api,
                data,
            );
            let stored = hub.emit(event).await.expect("emit");
            if org == "org-a" {
                expected.push(stored.seq);
            }
        }
        // One event per batch, 100 batches: far more than the broadcast keeps, so the feed lagged.
        let mut sent = Vec::new();
        while sent.len() < expected.len() {
            let next = tokio::time::timeout(Duration::from_secs(5), feed.next())
                .await
                .expect("in time")
                .expect("an event");
            assert!(!format!("{next:?}").contains("org-b"));
            sent.push(feed.cursor);
        }
        assert_eq!(sent, expected);
        hub.shutdown().await;
    }

    #[test]
    fn last_event_id_wins_over_since() {
        let mut headers = HeaderMap::new();
        assert_eq!(resume_point(&headers, None).expect("none"), None);
        assert_eq!(resume_point(&headers, Some("5")).expect("since"), Some(5));
        headers.insert("last-event-id", HeaderValue::from_static("9"));
        assert_eq!(resume_point(&headers, Some("5")).expect("header"), Some(9));
        headers.insert("last-event-id", HeaderValue::from_static("x"));
        assert!(resume_point(&headers, None).is_err());
        assert!(resume_point(&HeaderMap::new(), Some("-1")).is_err());
    }
}
