//! The Socket.IO endpoint (socketioxide on the axum server): authentication on connect, `subscribe` /
//! `unsubscribe`, and the inbound rate limit. Delivery itself is the fan-out task's ([`super::rooms`]).
//!
//! A client connects with `auth: { token, orgId?, events? }`. The token is an API key; an org key watches its own
//! org (naming another org is refused), an admin key must name the org. `events` is a list of event type patterns
//! (`["hl7.*"]`) that narrows the org-wide feed; `[]` turns it off, leaving only subscribed resources. Refusals
//! reach the client as `connect_error` with the reason as its message.
//!
//! `subscribe` / `unsubscribe` take `{ resourceType, resourceId }` (or `{ room: "org:<org>:<type>:<id>" }`) and
//! are acknowledged with `{ ok: true, room }` or `{ ok: false, error: { code, message } }`. A room of another org
//! is refused: the org always comes from the key, never from the client.

use super::limit::{ConnectionSlots, Slot, TokenBucket};
use super::payload::{org_room, ResourceKey};
use super::rooms::{Command, Conn};
use super::RealtimeError;
use crate::api::extract::authenticate_key;
use crate::api::AppState;
use crate::auth::Scope;
use crate::config::RealtimeConfig;
use crate::event::{validate_org_id, Pattern};
use axum::http::StatusCode;
use serde_json::{json, Value};
use socketioxide::extract::{AckSender, Event, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::SocketIo;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Largest message a client may send, in bytes (subscriptions are tiny).
const MAX_INBOUND_BYTES: usize = 16 * 1024;
/// A client refused this many times in a row (seconds' worth of its budget) is disconnected.
const ABUSE_FACTOR: u32 = 10;
/// How long a room change waits for its socket to be registered with the fan-out.
const REGISTRATION_WAIT: Duration = Duration::from_secs(5);

/// What every Socket.IO handler can reach.
#[derive(Clone)]
pub struct Ctx {
    app: AppState,
    commands: mpsc::Sender<Command>,
    slots: Arc<ConnectionSlots>,
    config: Arc<RealtimeConfig>,
}

/// Per-socket state kept from the connect middleware on: who the socket is, and its inbound budget. Stored in
/// the socket's extensions; the connection slot is freed when the socket is dropped.
pub struct Session {
    org: Arc<str>,
    filter: Option<Vec<Pattern>>,
    inbound: Mutex<TokenBucket>,
    refused: AtomicU32,
    /// Refusals in a row after which the socket is disconnected.
    abuse_limit: u32,
    /// Set once the fan-out has been told about the socket; room changes wait for it so they queue behind it.
    registered: watch::Sender<bool>,
    _slot: Slot,
}

impl Session {
    /// Takes one message from the inbound budget.
    fn admit(&self) -> bool {
        let admitted = self
            .inbound
            .lock()
            .map(|mut bucket| bucket.try_take(Instant::now()))
            .unwrap_or(false);
        if admitted {
            self.refused.store(0, Ordering::Relaxed);
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("switchboard_realtime_inbound_refused_total").increment(1);
        }
        admitted
    }
}

/// Builds the socket.io layer and registers the default namespace.
pub fn layer(
    app: AppState,
    commands: mpsc::Sender<Command>,
    slots: Arc<ConnectionSlots>,
) -> (SocketIoLayer, SocketIo) {
    let config = Arc::new(app.config.realtime.clone());
    let path = config.socketio_path.trim_end_matches('/').to_string();
    let ctx = Ctx {
        app,
        commands,
        slots,
        config: Arc::clone(&config),
    };
    let (layer, io) = SocketIo::builder()
        .req_path(path)
        .max_buffer_size(config.send_buffer)
        .max_payload(MAX_INBOUND_BYTES as u64)
        .ws_max_message_size(MAX_INBOUND_BYTES)
        .ws_max_frame_size(MAX_INBOUND_BYTES)
        .connect_timeout(Duration::from_secs(10))
        .with_state(ctx)
        .build_layer();
    io.ns("/", on_connect.with(authenticate));
    (layer, io)
}

/// What the client sent as `auth`, checked.
struct ConnectRequest {
    token: String,
    org_id: Option<String>,
    filter: Option<Vec<Pattern>>,
}

fn parse_auth(auth: &Value) -> Result<ConnectRequest, RealtimeError> {
    let bad = |msg: &str| RealtimeError::BadRequest(msg.to_string());
    let object = match auth {
        Value::Object(object) => object,
        Value::Null => return Err(RealtimeError::MissingToken),
        _ => return Err(bad("auth must be an object: { token, orgId?, events? }")),
    };
    let token = match object.get("token") {
        None | Some(Value::Null) => return Err(RealtimeError::MissingToken),
        Some(Value::String(token)) if token.trim().is_empty() => {
            return Err(RealtimeError::MissingToken)
        }
        Some(Value::String(token)) => token.trim().to_string(),
        Some(_) => return Err(bad("auth.token must be a string")),
    };
    let org_id = match object.get("orgId") {
        None | Some(Value::Null) => None,
        Some(Value::String(org)) => Some(org.clone()),
        Some(_) => return Err(bad("auth.orgId must be a string")),
    };
    let filter = match object.get("events") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|item| match item {
                    Value::String(p) => {
                        Pattern::parse(p).map_err(|e| RealtimeError::BadRequest(e.to_string()))
                    }
                    _ => Err(bad("auth.events must be a list of event type patterns")),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(bad("auth.events must be a list of event type patterns")),
    };
    Ok(ConnectRequest {
        token,
        org_id,
        filter,
    })
}

/// The connect middleware: a refusal here becomes the client's `connect_error`.
async fn authenticate(
    socket: SocketRef,
    TryData(auth): TryData<Value>,
    State(ctx): State<Ctx>,
) -> Result<(), RealtimeError> {
    let result = admit_socket(&socket, auth.ok(), &ctx).await;
    if let Err(err) = &result {
        metrics::counter!("switchboard_realtime_refused_total", "transport" => "socketio", "reason" => err.code())
            .increment(1);
        tracing::info!(reason = %err, "socket.io connection refused");
    }
    result
}

async fn admit_socket(
    socket: &SocketRef,
    auth: Option<Value>,
    ctx: &Ctx,
) -> Result<(), RealtimeError> {
    if ctx.slots.live() >= ctx.slots.max() {
        return Err(RealtimeError::TooManyConnections(ctx.slots.max()));
    }
    let request = parse_auth(&auth.unwrap_or(Value::Null))?;
    let caller = authenticate_key(&ctx.app, &request.token)
        .await
        .map_err(|err| {
            if err.status == StatusCode::UNAUTHORIZED {
                RealtimeError::BadToken
            } else {
                RealtimeError::Unavailable
            }
        })?;
    let org = match (&caller.scope, request.org_id) {
        (Scope::Admin, Some(org)) => {
            validate_org_id(&org).map_err(|e| RealtimeError::BadRequest(e.to_string()))?;
            org
        }
        (Scope::Admin, None) => return Err(RealtimeError::AdminNeedsOrg),
        (Scope::Org(own), None) => own.clone(),
        (Scope::Org(own), Some(org)) if org == *own => org,
        (Scope::Org(own), Some(org)) => {
            return Err(RealtimeError::ForeignOrg {
                own: own.clone(),
                requested: org,
            })
        }
    };
    let slot = ctx
        .slots
        .try_acquire()
        .ok_or_else(|| RealtimeError::TooManyConnections(ctx.slots.max()))?;
    socket.extensions.insert(Arc::new(Session {
        org: org.into(),
        filter: request.filter,
        inbound: Mutex::new(TokenBucket::new(
            ctx.config.max_inbound_per_sec,
            Instant::now(),
        )),
        refused: AtomicU32::new(0),
        abuse_limit: ctx.config.max_inbound_per_sec.saturating_mul(ABUSE_FACTOR),
        registered: watch::Sender::new(false),
        _slot: slot,
    }));
    // Handlers are registered here, before the client learns it is connected: a message it sends right away
    // must find them (the connect handler runs in a task of its own, possibly later).
    socket.on("subscribe", on_subscribe);
    socket.on("unsubscribe", on_unsubscribe);
    socket.on_fallback(on_unknown);
    socket.on_disconnect(on_disconnect);
    Ok(())
}

async fn on_connect(socket: SocketRef, State(ctx): State<Ctx>) {
    let Some(session) = socket.extensions.get::<Arc<Session>>() else {
        let _ = socket.disconnect();
        return;
    };
    tracing::debug!(org = %session.org, sid = %socket.id, "socket.io client connected");
    let conn = Conn::new(
        socket.clone(),
        Arc::clone(&session.org),
        session.filter.clone(),
        ctx.config.max_events_per_sec,
    );
    if ctx
        .commands
        .send(Command::Connect(Box::new(conn)))
        .await
        .is_err()
    {
        let _ = socket.disconnect();
        return;
    }
    session.registered.send_replace(true);
}

async fn on_disconnect(socket: SocketRef, State(ctx): State<Ctx>) {
    let _ = ctx.commands.send(Command::Disconnect(socket.id)).await;
}

async fn on_subscribe(
    socket: SocketRef,
    TryData(body): TryData<Value>,
    ack: AckSender,
    State(ctx): State<Ctx>,
) {
    let result = change_room(&socket, body.ok(), &ctx, true).await;
    answer(ack, result);
}

async fn on_unsubscribe(
    socket: SocketRef,
    TryData(body): TryData<Value>,
    ack: AckSender,
    State(ctx): State<Ctx>,
) {
    let result = change_room(&socket, body.ok(), &ctx, false).await;
    answer(ack, result);
}

/// Any other event from a client: refused (and counted against its budget).
async fn on_unknown(socket: SocketRef, Event(name): Event, ack: AckSender) {
    let result = session_of(&socket).and_then(|session| {
        if session.admit() {
            Err(RealtimeError::BadRequest(format!(
                "unknown event '{}': clients may send subscribe and unsubscribe",
                name.chars().take(40).collect::<String>()
            )))
        } else {
            Err(RealtimeError::RateLimited)
        }
    });
    disconnect_if_abusive(&socket);
    answer(ack, result);
}

fn session_of(socket: &SocketRef) -> Result<Arc<Session>, RealtimeError> {
    socket
        .extensions
        .get::<Arc<Session>>()
        .ok_or(RealtimeError::NotConnected)
}

async fn change_room(
    socket: &SocketRef,
    body: Option<Value>,
    ctx: &Ctx,
    join: bool,
) -> Result<String, RealtimeError> {
    let session = session_of(socket)?;
    if !session.admit() {
        disconnect_if_abusive(socket);
        return Err(RealtimeError::RateLimited);
    }
    // A client may subscribe the moment it is connected; its Join must queue behind its Connect.
    let mut registered = session.registered.subscribe();
    tokio::time::timeout(REGISTRATION_WAIT, registered.wait_for(|done| *done))
        .await
        .map_err(|_| RealtimeError::NotConnected)?
        .map_err(|_| RealtimeError::NotConnected)?;
    let Some(key) = parse_room(&session.org, &body.unwrap_or(Value::Null))? else {
        // The org room itself: every socket is in it already and cannot leave it.
        return if join {
            Ok(org_room(&session.org))
        } else {
            Err(RealtimeError::BadRequest(
                "the org room cannot be left; connect with auth.events: [] to receive only subscribed resources"
                    .into(),
            ))
        };
    };
    let (reply, answer) = oneshot::channel();
    let command = if join {
        Command::Join {
            sid: socket.id,
            key,
            reply,
        }
    } else {
        Command::Leave {
            sid: socket.id,
            key,
            reply,
        }
    };
    ctx.commands
        .send(command)
        .await
        .map_err(|_| RealtimeError::ShuttingDown)?;
    answer.await.map_err(|_| RealtimeError::ShuttingDown)?
}

/// Reads the room a client names. `None` is the socket's own org room.
fn parse_room(own: &str, body: &Value) -> Result<Option<ResourceKey>, RealtimeError> {
    let bad = |msg: &str| RealtimeError::BadRequest(msg.to_string());
    let usage = "send { resourceType, resourceId } or { room: \"org:<orgId>:<resourceType>:<resourceId>\" }";
    let Value::Object(object) = body else {
        return Err(bad(usage));
    };
    let foreign = |org: &str| RealtimeError::ForeignOrg {
        own: own.to_string(),
        requested: org.chars().take(64).collect(),
    };
    if let Some(room) = object.get("room") {
        let Some(room) = room.as_str() else {
            return Err(bad(usage));
        };
        let rest = room.strip_prefix("org:").ok_or_else(|| bad(usage))?;
        let (org, resource) = match rest.split_once(':') {
            Some((org, resource)) => (org, Some(resource)),
            None => (rest, None),
        };
        if org != own {
            return Err(foreign(org));
        }
        return match resource {
            None => Ok(None),
            Some(resource) => {
                let (kind, id) = resource.split_once(':').ok_or_else(|| bad(usage))?;
                ResourceKey::parse(kind, id).map(Some)
            }
        };
    }
    match object.get("orgId") {
        None | Some(Value::Null) => {}
        Some(Value::String(org)) if org == own => {}
        Some(Value::String(org)) => return Err(foreign(org)),
        Some(_) => return Err(bad("orgId must be a string")),
    }
    match (object.get("resourceType"), object.get("resourceId")) {
        (Some(Value::String(kind)), Some(Value::String(id))) => {
            ResourceKey::parse(kind, id).map(Some)
        }
        _ => Err(bad(usage)),
    }
}

fn disconnect_if_abusive(socket: &SocketRef) {
    let Ok(session) = session_of(socket) else {
        return;
    };
    if session.refused.load(Ordering::Relaxed) >= session.abuse_limit {
        tracing::warn!(org = %session.org, "disconnecting a socket.io client that keeps flooding");
        metrics::counter!("switchboard_realtime_flood_disconnects_total").increment(1);
        let _ = socket.clone().disconnect();
    }
}

fn answer(ack: AckSender, result: Result<String, RealtimeError>) {
    let body = match result {
        Ok(room) => json!({ "ok": true, "room": room }),
        Err(err) => {
            json!({ "ok": false, "error": { "code": err.code(), "message": err.to_string() } })
        }
    };
    let _ = ack.send(&body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_is_checked_precisely() {
        assert!(matches!(
            parse_auth(&Value::Null),
            Err(RealtimeError::MissingToken)
        ));
        assert!(matches!(
            parse_auth(&json!({})),
            Err(RealtimeError::MissingToken)
        ));
        assert!(matches!(
            parse_auth(&json!({"token": 5})),
            Err(RealtimeError::BadRequest(_))
        ));
        assert!(matches!(
            parse_auth(&json!({"token": "k", "events": ["HL7"]})),
            Err(RealtimeError::BadRequest(_))
        ));
        let ok = parse_auth(&json!({"token": "k", "events": ["hl7.*"], "orgId": "a"})).expect("ok");
        assert_eq!(ok.filter.map(|f| f.len()), Some(1));
        assert_eq!(ok.org_id.as_deref(), Some("a"));
    }

    #[test]
    fn rooms_of_other_orgs_are_refused() {
        let own = "org-a";
        assert!(parse_room(own, &json!({"room": "org:org-a"}))
            .expect("own")
            .is_none());
        let key = parse_room(own, &json!({"room": "org:org-a:Patient:1"}))
            .expect("own resource")
            .expect("key");
        assert_eq!(&*key.resource_id, "1");
        assert!(matches!(
            parse_room(own, &json!({"room": "org:org-b:Patient:1"})),
            Err(RealtimeError::ForeignOrg { .. })
        ));
        assert!(matches!(
            parse_room(
                own,
                &json!({"orgId": "org-b", "resourceType": "Patient", "resourceId": "1"})
            ),
            Err(RealtimeError::ForeignOrg { .. })
        ));
        assert!(matches!(
            parse_room(own, &json!("Patient:1")),
            Err(RealtimeError::BadRequest(_))
        ));
    }
}
