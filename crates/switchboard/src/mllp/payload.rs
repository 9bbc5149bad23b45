//! The `data` of the events the MLLP listener emits, serialized straight from borrowed values.
//!
//! * `hl7.received`: the raw message, the header fields most often filtered on, the peer and the listener. Its
//!   structured view (`message`, see `switchboard_hl7::message::json`) is not stored: it is derived from `raw`
//!   whenever the event is served (`crate::event::derived`); `message: null` is stored when there is no view.
//! * `hl7.parsed` / `hl7.validated`: small markers (the raw message is in `hl7.received`).
//! * `hl7.error`: the stage that failed (`frame`, `parse`, `validate`, `store`), the error, its HL7 table 0357
//!   condition and the ACK code sent; for frame errors the first bytes of the dropped frame.
//! * `connection.opened` / `connection.closed`: peer, listener, and at close the counts and the reason.

use base64::Engine;
use serde::Serialize;
use std::borrow::Cow;
use switchboard_hl7::Message;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Received<'a> {
    pub listener: &'a str,
    pub peer: &'a str,
    /// The message as text (decoded with its MSH-18 charset; lossy UTF-8 when it could not be parsed).
    pub raw: Cow<'a, str>,
    /// The exact bytes, base64, only when `raw` could not represent them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
    /// Left out (derived when served) for a parsed message; `null` when the message could not be parsed or its
    /// view would not fit in an event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<NoView>,
    pub sending_application: Option<Cow<'a, str>>,
    pub sending_facility: Option<Cow<'a, str>>,
    pub receiving_application: Option<Cow<'a, str>>,
    pub receiving_facility: Option<Cow<'a, str>>,
    pub version: Option<Cow<'a, str>>,
    pub charset: Option<&'static str>,
    pub ack_mode: Option<&'static str>,
    pub bytes: usize,
}

impl<'a> Received<'a> {
    pub fn parsed(listener: &'a str, peer: &'a str, msg: &'a Message, bytes: usize) -> Self {
        let enhanced = msg.accept_ack_type().is_some() || msg.application_ack_type().is_some();
        Received {
            listener,
            peer,
            raw: Cow::Borrowed(msg.raw()),
            raw_base64: None,
            message: None,
            sending_application: msg.sending_application(),
            sending_facility: msg.sending_facility(),
            receiving_application: msg.receiving_application(),
            receiving_facility: msg.receiving_facility(),
            version: msg.version(),
            charset: Some(msg.encoding().hl7_name()),
            ack_mode: Some(if enhanced { "enhanced" } else { "original" }),
            bytes,
        }
    }

    pub fn unparsed(
        listener: &'a str,
        peer: &'a str,
        frame: &'a [u8],
        peek: &'a switchboard_hl7::message::HeaderPeek,
    ) -> Self {
        let raw = String::from_utf8_lossy(frame);
        let raw_base64 = matches!(raw, Cow::Owned(_))
            .then(|| base64::engine::general_purpose::STANDARD.encode(frame));
        Received {
            listener,
            peer,
            raw,
            raw_base64,
            message: Some(NoView),
            sending_application: peek.sending_application.as_deref().map(Cow::Borrowed),
            sending_facility: peek.sending_facility.as_deref().map(Cow::Borrowed),
            receiving_application: None,
            receiving_facility: None,
            version: peek.version.as_deref().map(Cow::Borrowed),
            charset: None,
            ack_mode: None,
            bytes: frame.len(),
        }
    }
}

/// `message: null`: the event has no structured view.
#[derive(Serialize)]
pub(crate) struct NoView;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Stage<'a> {
    pub listener: &'a str,
    pub peer: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segments: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Failure<'a> {
    pub listener: &'a str,
    pub peer: &'a str,
    /// `frame`, `parse`, `validate` or `store`.
    pub stage: &'static str,
    pub error: &'a str,
    /// HL7 table 0357 condition code.
    pub condition: u16,
    /// The ACK code sent back, if any.
    pub ack: Option<&'static str>,
    /// Frame errors only: the first bytes of the dropped frame (lossy UTF-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_head: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConnectionData<'a> {
    pub listener: &'a str,
    pub peer: &'a str,
    pub tls: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_received: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}
