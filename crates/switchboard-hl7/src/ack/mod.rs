//! Acknowledgements: building ACK/NAK replies and reading received ACKs.
//!
//! * [`build_ack`] / [`build_ack_with`] answer a parsed message.
//! * [`build_nak_from_raw`] / [`build_nak_from_raw_with`] answer input that
//!   could not even be parsed, salvaging what they can from its MSH.
//! * [`parse_ack`] reads MSA-1/MSA-2 from a received ACK so an MLLP sender
//!   can match it to the message it sent (MSA-2 = that message's MSH-10).
//!
//! # Shape of a built ACK
//!
//! ```text
//! MSH|^~\&|<MSH-5>|<MSH-6>|<MSH-3>|<MSH-4>|<now>||ACK^<trigger>^ACK|<control_id>|<MSH-11>|<MSH-12>|||||||<MSH-18>
//! MSA|<code>|<original MSH-10>
//! ERR|||<condition>^<text>^HL70357|E||||<error text>        (v2.5 and later)
//! ERR|^^^<condition>&<text>&HL70357                        (before v2.5)
//! ```
//!
//! * The original's separators are reused; sending and receiving
//!   application/facility are swapped; processing id, version and charset
//!   are echoed as written.
//! * MSH-9 is `ACK^<trigger>^ACK` (v2.3.1 and later), `ACK^<trigger>` for
//!   older versions, and `ACK` when the original had no trigger event.
//! * **Mode.** If the original sets MSH-15 or MSH-16 (enhanced mode) the
//!   code is sent as a commit code (`CA`/`CE`/`CR`), otherwise as an original
//!   mode code (`AA`/`AE`/`AR`), whichever of the two the caller passed.
//! * **Errors.** When error text is given an ERR segment is added (severity
//!   `E`, or `W` when the code is an accept). Before v2.5 the text also goes
//!   into MSA-3. The text is escaped, so separators and line breaks in it
//!   are safe.
//! * Every segment ends with CR. Encode the result for the wire with
//!   [`encode_message`](crate::message::encode_message), which honours the
//!   echoed MSH-18.

mod build;
mod code;
mod salvage;

pub use build::{build_ack, build_ack_with};
pub use code::{AckCode, AckError, ErrorCondition};
pub use salvage::{build_nak_from_raw, build_nak_from_raw_with};

use crate::message::Message;

/// Read MSA-1 (the acknowledgement code) and MSA-2 (the control id of the
/// acknowledged message) from a received ACK. `None` if there is no MSA
/// segment or MSA-1 is not a known code; MSA-2 is `""` when empty.
pub fn parse_ack(msg: &Message) -> Option<(AckCode, String)> {
    let msa = msg.segment("MSA", 1)?;
    let code: AckCode = msa.get("1")?.trim().parse().ok()?;
    let control_id = msa.get("2").map(|s| s.into_owned()).unwrap_or_default();
    Some((code, control_id))
}

#[cfg(test)]
mod tests;
