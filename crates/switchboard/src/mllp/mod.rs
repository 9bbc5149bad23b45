//! HL7 v2 over MLLP: the listener (a source of `hl7.*` and `connection.*` events) and the sender (a source of
//! `hl7.sent`).
//!
//! The listener is layered like mini-redis: bytes → frames (`switchboard_hl7::framing::MllpDecoder`) in
//! [`connection`], frame → events → ACK in [`handler`], and the accept loop in [`server`]. The ACK for a message is
//! written only after the hub has durably committed its events.
//!
//! - [`settings`]: `[mllp]` and `[hl7]` configuration.
//! - [`server`]: binding, accept loop, connection cap, drain on shutdown.
//! - [`connection`]: read loop, framing errors, idle timeout.
//! - [`handler`]: one frame → `hl7.received` + `hl7.parsed` + `hl7.validated` / `hl7.error` → ACK.
//! - [`payload`]: the `data` of those events.
//! - [`telemetry`]: log lines and metrics.
//! - [`tls`]: rustls server configuration.
//! - [`client`]: the MLLP sender (connection reuse, timeouts, ACK matching, retries) and `hl7.sent` events.

pub mod client;
mod connection;
mod handler;
mod payload;
pub mod server;
pub mod settings;
mod telemetry;
pub mod tls;

pub use client::{AckReply, MllpClient, SendError, SendOptions, Sender};
pub use handler::UNKNOWN_TYPE;
pub use server::{bind_all, BoundListener, MllpServers};
pub use settings::{Hl7Config, ListenerSettings, MllpConfig};

use std::net::SocketAddr;

/// Why an MLLP listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum MllpError {
    #[error("MLLP listener '{name}' cannot listen on {addr}: {source}")]
    Bind {
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("internal error: {0}")]
    Internal(String),
}
