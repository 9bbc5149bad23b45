//! One frame in, events committed, one ACK out.
//!
//! For every frame the handler emits, in this order and in one call to the hub (so they share a commit):
//!
//! | outcome | events | ACK |
//! |---|---|---|
//! | parses and validates | `hl7.received`, `hl7.parsed`, `hl7.validated` | `AA` (`CA` in enhanced mode) |
//! | parses, fails validation | `hl7.received`, `hl7.parsed`, `hl7.error` | `AR` for an unsupported version, processing id or message type, `AE` otherwise, with ERR |
//! | does not parse | `hl7.received`, `hl7.error` | `AE` with ERR, built from whatever the MSH showed |
//! | events not stored | none (the store failed) | `AR` with ERR 207: the sender keeps the message and retries |
//!
//! The ACK is built only after the hub confirms the commit, so an `AA` always means "durably stored". With
//! `stage_events = false` only `hl7.received` (and `hl7.error`) are emitted. The org of every event is the
//! listener's, or the one the facility table gives for MSH-4.

use super::payload::{Failure, NoView, Received, Stage};
use super::server::ListenerCtx;
use crate::event::NewEvent;
use serde::Serialize;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use switchboard_hl7::ack::{build_ack_with, build_nak_from_raw_with, AckError, ErrorCondition};
use switchboard_hl7::message::{peek_header, HeaderPeek};
use switchboard_hl7::{validate, AckCode, Message, ParseError};

/// `messageType` of events about input whose MSH-9 could not be read.
pub const UNKNOWN_TYPE: &str = "UNKNOWN";

/// What to send back for one frame.
pub(crate) struct Reply {
    /// The ACK text (`None` when MSH-15 asked for no ACK in this case).
    pub ack: Option<String>,
    pub code: AckCode,
    /// When the events were committed (`None` if they were not).
    pub committed: Option<Instant>,
}

pub(crate) async fn handle_frame(ctx: &ListenerCtx, peer: &str, frame: &[u8]) -> Reply {
    match Message::parse(frame) {
        Ok(msg) => handle_parsed(ctx, peer, frame.len(), &msg).await,
        Err(err) => handle_unparsed(ctx, peer, frame, &err).await,
    }
}

async fn handle_parsed(ctx: &ListenerCtx, peer: &str, bytes: usize, msg: &Message) -> Reply {
    let facility = msg.get("MSH-4.1");
    let org = ctx.settings.org_for(facility.as_deref());
    let message_type = msg
        .message_type()
        .map_or_else(|| UNKNOWN_TYPE.to_string(), Cow::into_owned);
    let control_id = msg.control_id().map(Cow::into_owned);
    let head = Head {
        ctx,
        org,
        message_type: &message_type,
        control_id: control_id.as_deref(),
    };
    let invalid = validate(msg).err();
    let (code, condition, error_text) = match &invalid {
        None => (AckCode::AA, None, None),
        Some(err) => {
            let condition = ErrorCondition::from(err);
            (code_for(condition), Some(condition), Some(err.to_string()))
        }
    };
    let listener = &*ctx.settings.name;

    let mut received = Received::parsed(listener, peer, msg, bytes);
    let max = ctx.hub.config().max_event_bytes;
    let mut events = Vec::with_capacity(3);
    match head.event(&ctx.types.received, &received) {
        Ok(e) if e.size() <= max && view_fits(msg, e.size(), max) => events.push(e),
        Ok(e) if e.size() <= max => {
            // Too big with its structured view (derived when served): keep the raw message only.
            received.message = Some(NoView);
            events.push(head.event(&ctx.types.received, &received).unwrap_or(e));
        }
        _ => {
            let text =
                format!("message of {bytes} bytes is larger than the event limit of {max} bytes");
            return reject_unstored(ctx, peer, &head, Source::Parsed(msg), &text).await;
        }
    }
    if ctx.settings.stage_events {
        let parsed = Stage {
            listener,
            peer,
            segments: Some(msg.segments().len()),
            version: None,
        };
        events.extend(head.event(&ctx.types.parsed, &parsed).ok());
    }
    match (&condition, &error_text) {
        (Some(condition), Some(text)) => {
            ctx.metrics
                .message_rejected(peer, control_id.as_deref(), "validate", text);
            let failure = Failure {
                listener,
                peer,
                stage: "validate",
                error: text,
                condition: condition.code(),
                ack: Some(wire_code(msg, code).as_str()),
                raw_head: None,
            };
            events.extend(head.event(&ctx.types.error, &failure).ok());
        }
        _ if ctx.settings.stage_events => {
            let validated = Stage {
                listener,
                peer,
                segments: None,
                version: msg.version(),
            };
            events.extend(head.event(&ctx.types.validated, &validated).ok());
        }
        _ => {}
    }

    match ctx.hub.emit_all(events).await {
        Ok(stored) => {
            let committed = Instant::now();
            let ack_id = stored
                .first()
                .map_or_else(fallback_id, |e| e.seq.to_string());
            let error = condition
                .zip(error_text.as_deref())
                .map(|(c, t)| AckError::new(c, t));
            let ack = ack_wanted(msg, code.is_accept())
                .then(|| build_ack_with(msg, code, error, &hl7_now(), &ack_id));
            Reply {
                ack,
                code: wire_code(msg, code),
                committed: Some(committed),
            }
        }
        Err(err) => {
            ctx.metrics
                .commit_failed(peer, control_id.as_deref(), &err.to_string());
            let text = format!("message not stored: {err}");
            let ack = ack_wanted(msg, false).then(|| {
                let error = AckError::new(ErrorCondition::ApplicationInternalError, &text);
                build_ack_with(msg, AckCode::AR, Some(error), &hl7_now(), &fallback_id())
            });
            Reply {
                ack,
                code: wire_code(msg, AckCode::AR),
                committed: None,
            }
        }
    }
}

async fn handle_unparsed(ctx: &ListenerCtx, peer: &str, frame: &[u8], err: &ParseError) -> Reply {
    let peek = peek_header(frame);
    let head = Head::peeked(ctx, &peek);
    let condition = ErrorCondition::from(err);
    let code = code_for(condition);
    let text = err.to_string();
    let listener = &*ctx.settings.name;
    ctx.metrics
        .message_rejected(peer, peek.control_id.as_deref(), "parse", &text);

    let received = Received::unparsed(listener, peer, frame, &peek);
    let failure = Failure {
        listener,
        peer,
        stage: "parse",
        error: &text,
        condition: condition.code(),
        ack: Some(code.as_str()),
        raw_head: None,
    };
    let mut events = Vec::with_capacity(2);
    let max = ctx.hub.config().max_event_bytes;
    match head.event(&ctx.types.received, &received) {
        Ok(e) if e.size() <= max => events.push(e),
        _ => {
            let text = format!("{text}; the message is too large to be stored");
            return reject_unstored(ctx, peer, &head, Source::Raw(frame), &text).await;
        }
    }
    events.extend(head.event(&ctx.types.error, &failure).ok());

    let (code, error, committed, ack_id) = match ctx.hub.emit_all(events).await {
        Ok(stored) => {
            let id = stored
                .first()
                .map_or_else(fallback_id, |e| e.seq.to_string());
            (
                code,
                AckError::new(condition, &text),
                Some(Instant::now()),
                id,
            )
        }
        Err(err) => {
            ctx.metrics
                .commit_failed(peer, peek.control_id.as_deref(), &err.to_string());
            let error = AckError::new(
                ErrorCondition::ApplicationInternalError,
                "message not stored",
            );
            (AckCode::AR, error, None, fallback_id())
        }
    };
    let ack = build_nak_from_raw_with(frame, code, error, &hl7_now(), &ack_id);
    Reply {
        code: ack_code_of(&ack).unwrap_or(code),
        ack: Some(ack),
        committed,
    }
}

/// A frame the decoder dropped (too large, cut short, or left unfinished by the peer): emits `hl7.error` with
/// what the frame's first bytes show and returns the NAK to send if the caller answers it.
pub(crate) async fn frame_error(
    ctx: &ListenerCtx,
    peer: &str,
    head_bytes: &[u8],
    error: &str,
) -> Reply {
    let peek = peek_header(head_bytes);
    let head = Head::peeked(ctx, &peek);
    let condition = ErrorCondition::ApplicationInternalError;
    let failure = Failure {
        listener: &ctx.settings.name,
        peer,
        stage: "frame",
        error,
        condition: condition.code(),
        ack: Some(AckCode::AR.as_str()),
        raw_head: Some(String::from_utf8_lossy(head_bytes)),
    };
    let committed = match head.event(&ctx.types.error, &failure) {
        Ok(event) => match ctx.hub.emit(event).await {
            Ok(_) => Some(Instant::now()),
            Err(err) => {
                ctx.metrics
                    .commit_failed(peer, peek.control_id.as_deref(), &err.to_string());
                None
            }
        },
        Err(_) => None,
    };
    let ack = build_nak_from_raw_with(
        head_bytes,
        AckCode::AR,
        AckError::new(condition, error),
        &hl7_now(),
        &fallback_id(),
    );
    Reply {
        code: ack_code_of(&ack).unwrap_or(AckCode::AR),
        ack: Some(ack),
        committed,
    }
}

/// Whether the event of `stored` bytes, served with the structured view of `msg`, stays within `max`. The view
/// is at most 12 times the message (a field of empty repetitions, `~|`, is 24 bytes of JSON), so only messages
/// over a sixteenth of the limit are measured.
fn view_fits(msg: &Message, stored: usize, max: usize) -> bool {
    stored.saturating_mul(16) <= max
        || stored.saturating_add(crate::event::structured_view_len(msg)) <= max
}

enum Source<'a> {
    Parsed(&'a Message),
    Raw(&'a [u8]),
}

/// The message cannot be stored at all (over the event size limit): record a small `hl7.error` and reject.
async fn reject_unstored(
    ctx: &ListenerCtx,
    peer: &str,
    head: &Head<'_>,
    source: Source<'_>,
    text: &str,
) -> Reply {
    ctx.metrics
        .message_rejected(peer, head.control_id, "store", text);
    let condition = ErrorCondition::ApplicationInternalError;
    let failure = Failure {
        listener: &ctx.settings.name,
        peer,
        stage: "store",
        error: text,
        condition: condition.code(),
        ack: Some(AckCode::AR.as_str()),
        raw_head: None,
    };
    let committed = match head.event(&ctx.types.error, &failure) {
        Ok(e) => ctx.hub.emit(e).await.ok().map(|_| Instant::now()),
        Err(_) => None,
    };
    let error = AckError::new(condition, text);
    let ack = match source {
        Source::Parsed(msg) => {
            build_ack_with(msg, AckCode::AR, Some(error), &hl7_now(), &fallback_id())
        }
        Source::Raw(raw) => {
            build_nak_from_raw_with(raw, AckCode::AR, error, &hl7_now(), &fallback_id())
        }
    };
    Reply {
        code: ack_code_of(&ack).unwrap_or(AckCode::AR),
        ack: Some(ack),
        committed,
    }
}

/// The header fields every event about one message shares.
struct Head<'a> {
    ctx: &'a ListenerCtx,
    org: &'a str,
    message_type: &'a str,
    control_id: Option<&'a str>,
}

impl<'a> Head<'a> {
    fn peeked(ctx: &'a ListenerCtx, peek: &'a HeaderPeek) -> Self {
        Head {
            ctx,
            org: ctx.settings.org_for(peek.sending_facility.as_deref()),
            message_type: peek.message_type.as_deref().unwrap_or(UNKNOWN_TYPE),
            control_id: peek.control_id.as_deref(),
        }
    }

    fn event(
        &self,
        ty: &crate::event::EventType,
        data: &impl Serialize,
    ) -> Result<NewEvent, serde_json::Error> {
        let data = serde_json::value::to_raw_value(data)?;
        Ok(
            NewEvent::new(ty.clone(), self.org, crate::event::Source::MllpServer, data)
                .message(self.message_type, self.control_id.map(str::to_string))
                .actor(format!("mllp:{}", self.ctx.settings.name)),
        )
    }
}

/// `AR` for what HL7 says to reject (MSH-9, MSH-11, MSH-12 not supported), `AE` for any other error.
fn code_for(condition: ErrorCondition) -> AckCode {
    match condition {
        ErrorCondition::UnsupportedMessageType
        | ErrorCondition::UnsupportedEventCode
        | ErrorCondition::UnsupportedProcessingId
        | ErrorCondition::UnsupportedVersionId => AckCode::AR,
        _ => AckCode::AE,
    }
}

/// The code as it goes on the wire: commit codes in enhanced mode (MSH-15 or MSH-16 valued).
fn wire_code(msg: &Message, code: AckCode) -> AckCode {
    if msg.accept_ack_type().is_some() || msg.application_ack_type().is_some() {
        code.to_commit()
    } else {
        code.to_application()
    }
}

/// MSH-15 in enhanced mode: `NE` never, `ER` only on error, `SU` only on success, `AL` (or empty) always.
fn ack_wanted(msg: &Message, accepted: bool) -> bool {
    match msg.accept_ack_type().as_deref().map(str::trim) {
        Some(t) if t.eq_ignore_ascii_case("NE") => false,
        Some(t) if t.eq_ignore_ascii_case("ER") => !accepted,
        Some(t) if t.eq_ignore_ascii_case("SU") => accepted,
        _ => true,
    }
}

/// MSA-1 of an ACK we built (the builder may have turned AE into CE).
fn ack_code_of(ack: &str) -> Option<AckCode> {
    let msa = ack.split('\r').find(|s| s.starts_with("MSA"))?;
    msa.get(4..6)?.parse().ok()
}

/// ACK control id when no event was stored to number it: unique within the process.
fn fallback_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("SBE{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The current time as an HL7 DTM in UTC, e.g. `20240315083012+0000`.
pub(crate) fn hl7_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}+0000",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_codes_follow_hl7() {
        assert_eq!(code_for(ErrorCondition::UnsupportedVersionId), AckCode::AR);
        assert_eq!(code_for(ErrorCondition::RequiredFieldMissing), AckCode::AE);
    }

    #[test]
    fn accept_ack_type_is_honoured() {
        let with = |msh15: &str| {
            Message::parse(format!("MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5|||{msh15}\r").as_bytes())
                .expect("parse")
        };
        assert!(ack_wanted(&with("AL"), true));
        assert!(!ack_wanted(&with("NE"), true));
        assert!(ack_wanted(&with("ER"), false) && !ack_wanted(&with("ER"), true));
        assert!(ack_wanted(&with("SU"), true) && !ack_wanted(&with("SU"), false));
        assert!(ack_wanted(&with(""), true));
    }

    #[test]
    fn ack_codes_are_read_back() {
        assert_eq!(ack_code_of("MSH|^~\\&\rMSA|CE|1\r"), Some(AckCode::CE));
        assert_eq!(ack_code_of("MSH|^~\\&\r"), None);
        assert_eq!(hl7_now().len(), 19);
    }
}
