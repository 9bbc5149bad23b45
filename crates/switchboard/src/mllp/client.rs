//! The MLLP sender: send a message, wait for its ACK, match it, retry what can be retried.
//!
//! * **Matching.** The ACK's MSA-2 must equal the message's MSH-10. Anything else (an ACK for another message,
//!   a reply that is not an ACK) is an error and the connection is dropped, so a late ACK can never be taken as
//!   the answer to the next message.
//! * **Timeouts.** Each attempt (connect, write, ACK back) must finish within `timeout`; a timed-out connection
//!   is dropped for the same reason.
//! * **Retries.** Connection, I/O, timeout and matching failures are retried `retries` times with a backoff that
//!   doubles. A NAK (`AE`/`AR`/`CE`/`CR`) is an answer, not a failure, and is returned as is.
//! * **Reuse.** [`MllpClient`] keeps its connection between messages; [`Sender`] keeps idle connections per
//!   destination for the server, and [`Sender::send_and_record`] emits `hl7.sent` or `hl7.error`.

use crate::event::{EventType, NewEvent, Source};
use crate::hub::Hub;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use switchboard_hl7::framing::{encode_frame, MllpDecoder};
use switchboard_hl7::{parse_ack, AckCode, FrameError, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Idle connections kept per destination by [`Sender`].
const POOL_PER_DESTINATION: usize = 8;

#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Per attempt: connect, write and receive the ACK.
    pub timeout: Duration,
    /// Further attempts after a failed one.
    pub retries: u32,
    /// Pause before the first retry; doubles after each.
    pub backoff: Duration,
    /// Largest ACK frame accepted.
    pub max_frame_bytes: usize,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            timeout: Duration::from_secs(10),
            retries: 2,
            backoff: Duration::from_millis(200),
            max_frame_bytes: 1 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the message cannot be sent: {0}")]
    Invalid(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection to {addr} failed: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("no ACK from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("{addr} closed the connection before acknowledging")]
    Closed { addr: String },
    #[error("bad MLLP framing from {addr}: {source}")]
    Frame { addr: String, source: FrameError },
    #[error("the reply from {addr} is not an HL7 ACK: {reason}")]
    BadAck { addr: String, reason: String },
    #[error("the ACK from {addr} is for control id '{got}', not '{expected}'")]
    Mismatch {
        addr: String,
        expected: String,
        got: String,
    },
}

impl SendError {
    /// False only for messages that can never be sent.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, SendError::Invalid(_))
    }
}

/// The ACK that answered a message.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AckReply {
    pub code: AckCode,
    /// MSA-2 (equal to the message's MSH-10).
    pub control_id: String,
    /// The ACK message as text, segments separated by CR.
    pub ack: String,
    pub attempts: u32,
}

/// A message made ready for the wire: segments end in CR, framed, its MSH read.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub framed: Vec<u8>,
    pub control_id: String,
    pub message_type: String,
    /// The message as text (for events).
    pub text: String,
}

impl Prepared {
    /// Normalises line ends (CRLF or LF → CR), parses the MSH and frames the message.
    pub fn new(message: &[u8]) -> Result<Self, SendError> {
        let normalized = normalize_segments(message);
        let msg = Message::parse(&normalized).map_err(|e| SendError::Invalid(e.to_string()))?;
        let control_id = msg.control_id().map(|c| c.into_owned()).ok_or_else(|| {
            SendError::Invalid(
                "MSH-10 (message control id) is empty, so no ACK could be matched to it".into(),
            )
        })?;
        let message_type = msg
            .message_type()
            .map_or_else(|| super::UNKNOWN_TYPE.to_string(), |t| t.into_owned());
        let mut framed = Vec::with_capacity(normalized.len() + 3);
        encode_frame(&normalized, &mut framed);
        Ok(Prepared {
            framed,
            control_id,
            message_type,
            text: msg.raw().to_string(),
        })
    }
}

/// Segment separators to CR; trailing line breaks and blanks dropped, one CR kept at the end.
pub fn normalize_segments(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 1);
    let mut bytes = message.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        match b {
            b'\r' => {
                if bytes.peek() == Some(&b'\n') {
                    bytes.next();
                }
                out.push(b'\r');
            }
            b'\n' => out.push(b'\r'),
            other => out.push(other),
        }
    }
    while out.last().is_some_and(|b| b.is_ascii_whitespace()) {
        out.pop();
    }
    out.push(b'\r');
    out
}

/// One open connection to a destination.
pub(crate) struct Connection {
    stream: TcpStream,
    decoder: MllpDecoder,
}

impl Connection {
    async fn open(addr: &str, max_frame: usize) -> Result<Self, SendError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| SendError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            stream,
            decoder: MllpDecoder::new(max_frame),
        })
    }

    async fn exchange(&mut self, addr: &str, prepared: &Prepared) -> Result<AckReply, SendError> {
        let io = |source| SendError::Io {
            addr: addr.to_string(),
            source,
        };
        self.stream.write_all(&prepared.framed).await.map_err(io)?;
        let mut buf = [0u8; 4096];
        let frame = loop {
            let decoded = self.decoder.decode().map_err(|source| SendError::Frame {
                addr: addr.to_string(),
                source,
            })?;
            if let Some(frame) = decoded.frame {
                break frame;
            }
            let n = self.stream.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                return Err(SendError::Closed {
                    addr: addr.to_string(),
                });
            }
            self.decoder.feed(buf.get(..n).unwrap_or_default());
        };
        let bad = |reason: String| SendError::BadAck {
            addr: addr.to_string(),
            reason,
        };
        let ack = Message::parse(&frame).map_err(|e| bad(e.to_string()))?;
        let (code, control_id) =
            parse_ack(&ack).ok_or_else(|| bad("no MSA segment with a known code".into()))?;
        if control_id != prepared.control_id {
            return Err(SendError::Mismatch {
                addr: addr.to_string(),
                expected: prepared.control_id.clone(),
                got: control_id,
            });
        }
        Ok(AckReply {
            code,
            control_id,
            ack: ack.raw().to_string(),
            attempts: 1,
        })
    }
}

/// Sends messages to one destination over one reused connection.
pub struct MllpClient {
    addr: String,
    options: SendOptions,
    conn: Option<Connection>,
}

impl MllpClient {
    pub fn new(addr: impl Into<String>, options: SendOptions) -> Self {
        MllpClient {
            addr: addr.into(),
            options,
            conn: None,
        }
    }

    /// Sends one message (CR, LF or CRLF segment ends) and returns its ACK.
    pub async fn send(&mut self, message: &[u8]) -> Result<AckReply, SendError> {
        let prepared = Prepared::new(message)?;
        self.send_prepared(&prepared).await
    }

    pub async fn send_prepared(&mut self, prepared: &Prepared) -> Result<AckReply, SendError> {
        let mut attempt: u32 = 0;
        let mut backoff = self.options.backoff;
        loop {
            attempt += 1;
            match tokio::time::timeout(self.options.timeout, self.attempt(prepared)).await {
                Ok(Ok(mut reply)) => {
                    reply.attempts = attempt;
                    return Ok(reply);
                }
                Ok(Err(err)) => {
                    self.conn = None;
                    if !err.is_retryable() || attempt > self.options.retries {
                        return Err(err);
                    }
                    tracing::warn!(destination = %self.addr, attempt, error = %err, "MLLP send failed; retrying");
                }
                Err(_) => {
                    // The ACK may still come: drop the connection so it can never answer the next message.
                    self.conn = None;
                    let err = SendError::Timeout {
                        addr: self.addr.clone(),
                        timeout: self.options.timeout,
                    };
                    if attempt > self.options.retries {
                        return Err(err);
                    }
                    tracing::warn!(destination = %self.addr, attempt, error = %err, "MLLP send timed out; retrying");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
    }

    async fn attempt(&mut self, prepared: &Prepared) -> Result<AckReply, SendError> {
        if self.conn.is_none() {
            self.conn = Some(Connection::open(&self.addr, self.options.max_frame_bytes).await?);
        }
        match self.conn.as_mut() {
            Some(conn) => conn.exchange(&self.addr, prepared).await,
            None => Err(SendError::Closed {
                addr: self.addr.clone(),
            }),
        }
    }
}

/// The server's sender: idle connections pooled per destination; records what it sends as events.
#[derive(Default)]
pub struct Sender {
    options: SendOptions,
    idle: Mutex<HashMap<String, Vec<Connection>>>,
}

impl Sender {
    pub fn new(options: SendOptions) -> Self {
        Sender {
            options,
            idle: Mutex::default(),
        }
    }

    /// Sends on a pooled connection (or a new one) and returns the connection to the pool on success.
    pub async fn send(
        &self,
        destination: &str,
        prepared: &Prepared,
    ) -> Result<AckReply, SendError> {
        let pooled = self
            .idle
            .lock()
            .ok()
            .and_then(|mut idle| idle.get_mut(destination).and_then(Vec::pop));
        let mut client = MllpClient {
            addr: destination.to_string(),
            options: self.options.clone(),
            conn: pooled,
        };
        let result = client.send_prepared(prepared).await;
        if let (Ok(_), Some(conn)) = (&result, client.conn) {
            if let Ok(mut idle) = self.idle.lock() {
                let conns = idle.entry(destination.to_string()).or_default();
                if conns.len() < POOL_PER_DESTINATION {
                    conns.push(conn);
                }
            }
        }
        result
    }

    /// Sends and records the outcome for `org`: `hl7.sent` (with the ACK code) or `hl7.error`. Returns once
    /// the event is committed; an error storing it is logged and does not change the result.
    pub async fn send_and_record(
        &self,
        hub: &Hub,
        org: &str,
        actor: &str,
        destination: &str,
        prepared: &Prepared,
    ) -> Result<AckReply, SendError> {
        let result = self.send(destination, prepared).await;
        let (ty, data) = match &result {
            Ok(reply) => (
                "hl7.sent",
                serde_json::value::to_raw_value(&SentData {
                    destination,
                    raw: &prepared.text,
                    ack_code: Some(reply.code.as_str()),
                    ack: Some(&reply.ack),
                    attempts: Some(reply.attempts),
                    stage: None,
                    error: None,
                }),
            ),
            Err(err) => (
                "hl7.error",
                serde_json::value::to_raw_value(&SentData {
                    destination,
                    raw: &prepared.text,
                    ack_code: None,
                    ack: None,
                    attempts: None,
                    stage: Some("send"),
                    error: Some(&err.to_string()),
                }),
            ),
        };
        let event = match (EventType::parse(ty), data) {
            (Ok(ty), Ok(data)) => NewEvent::new(ty, org, Source::MllpClient, data)
                .message(&prepared.message_type, Some(prepared.control_id.clone()))
                .actor(actor),
            _ => return result,
        };
        if let Err(err) = hub.emit(event).await {
            tracing::error!(%destination, error = %err, "the hl7.sent/hl7.error event could not be stored");
        }
        result
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SentData<'a> {
    destination: &'a str,
    raw: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ack_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ack: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_normalised() {
        assert_eq!(
            normalize_segments(b"MSH|a\nPID|1\r\nPV1|\n\n"),
            b"MSH|a\rPID|1\rPV1|\r"
        );
        assert_eq!(normalize_segments(b"MSH|a\rPID|1"), b"MSH|a\rPID|1\r");
    }

    #[test]
    fn messages_without_control_id_are_refused() {
        let err = Prepared::new(b"MSH|^~\\&|A|B|C|D|1||ADT^A01||P|2.5").expect_err("no MSH-10");
        assert!(!err.is_retryable());
        let ok = Prepared::new(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|X1|P|2.5\nPID|1").expect("valid");
        assert_eq!(ok.control_id, "X1");
        assert_eq!(ok.message_type, "ADT^A01");
        assert!(ok.framed.starts_with(b"\x0bMSH") && ok.framed.ends_with(b"PID|1\r\x1c\x0d"));
    }
}
