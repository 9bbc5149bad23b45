//! Real-time push to screens: Socket.IO rooms and Server-Sent Events, both sinks of the hub's committed batches.
//!
//! - [`socketio`]: the Socket.IO endpoint (authentication, `subscribe` / `unsubscribe`, inbound limits).
//! - [`rooms`]: the fan-out task that owns room memberships and pushes each event to the sockets that want it.
//! - [`sse`]: `GET /api/events/stream`, resumable from the log with `Last-Event-ID`.
//! - [`payload`]: the PHI-free payload live screens receive, and room names.
//! - [`limit`]: per-connection token buckets and the cap on live connections.
//!
//! Neither transport can hold the hub up: they read the broadcast of committed batches (a consumer that falls
//! behind is told so and catches up from the log), and they never wait on a client. Socket.IO is a live view:
//! a socket over its rate or with a full send buffer misses events (counted, and the socket is told). SSE is the
//! gap-free one: a stream resumes from the log after any disconnect.

pub mod limit;
pub mod payload;
pub mod rooms;
pub mod socketio;
pub mod sse;

use crate::api::AppState;
use axum::Router;
use limit::ConnectionSlots;
use socketioxide::layer::SocketIoLayer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Commands queued for the fan-out task before socket handlers wait.
const COMMAND_QUEUE: usize = 1024;

/// Why a live connection or a client message was refused. The message is what the client sees (as the
/// `connect_error` message, or in a `{ ok: false, error }` acknowledgement).
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    #[error("missing API key: connect with auth: {{ token: \"<api key>\" }}")]
    MissingToken,
    #[error("unknown or revoked API key")]
    BadToken,
    #[error("an admin key must name the org to watch: auth: {{ token, orgId }}")]
    AdminNeedsOrg,
    #[error("this key belongs to org '{own}' and cannot see org '{requested}'")]
    ForeignOrg { own: String, requested: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("too many live connections (limit {0}); try again later")]
    TooManyConnections(usize),
    #[error("rate limited: too many messages from this client")]
    RateLimited,
    #[error("at most {0} resource subscriptions per connection")]
    TooManySubscriptions(usize),
    #[error("this socket is not connected")]
    NotConnected,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("cannot check the API key right now; try again")]
    Unavailable,
}

impl RealtimeError {
    /// A stable machine-readable code, as in the HTTP API's errors.
    pub fn code(&self) -> &'static str {
        match self {
            RealtimeError::MissingToken | RealtimeError::BadToken => "unauthorized",
            RealtimeError::AdminNeedsOrg | RealtimeError::BadRequest(_) => "bad_request",
            RealtimeError::ForeignOrg { .. } => "forbidden",
            RealtimeError::TooManyConnections(_) => "too_many_connections",
            RealtimeError::RateLimited => "rate_limited",
            RealtimeError::TooManySubscriptions(_) => "too_many_subscriptions",
            RealtimeError::NotConnected => "not_connected",
            RealtimeError::ShuttingDown => "shutting_down",
            RealtimeError::Unavailable => "unavailable",
        }
    }
}

/// The running real-time sinks: a layer and routes to add to the HTTP router, and the fan-out task.
pub struct Realtime {
    pub layer: SocketIoLayer,
    pub router: Router,
    pub fanout: JoinHandle<()>,
}

/// Starts the Socket.IO fan-out and builds the SSE routes. Everything stops when `shutdown` is cancelled:
/// sockets are disconnected and streams end, so the HTTP server can drain.
pub fn start(state: &AppState, shutdown: CancellationToken) -> Realtime {
    let config = &state.config.realtime;
    let slots = ConnectionSlots::new(config.max_connections);
    let (commands, queue) = tokio::sync::mpsc::channel(COMMAND_QUEUE);
    let (layer, io) = socketio::layer(state.clone(), commands, slots.clone());
    let fanout = rooms::Fanout::new(state.store.clone(), config.max_subscriptions);
    let fanout = tokio::spawn(fanout.run(state.hub.batches(), queue, io, shutdown.clone()));
    let router = sse::router(sse::SseState {
        app: state.clone(),
        slots,
        shutdown,
    });
    Realtime {
        layer,
        router,
        fanout,
    }
}
