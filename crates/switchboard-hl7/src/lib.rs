//! HL7 v2 messaging building blocks for Switchboard, without any I/O.
//!
//! * [`framing`] — MLLP framing: [`framing::encode_frame`] and the
//!   incremental [`framing::MllpDecoder`].
//! * [`message`] — parse a message into a [`Message`], read values by path
//!   (`PID-5.1`, `OBX[2]-5`), charsets, escape sequences, JSON view.
//! * [`validate`](mod@validate) — structural checks on MSH before a message is accepted.
//! * [`ack`] — build ACK/NAK replies (also for unparseable input) and read
//!   ACKs that come back.
//! * [`batch`] — split files holding many messages (with or without batch
//!   envelopes) into single messages.
//! * [`error`] — the error types.
//!
//! Nothing here panics on any input; all fallible operations return
//! `Result` or `Option`.

pub mod ack;
pub mod batch;
pub mod error;
pub mod framing;
pub mod message;
pub mod validate;

pub use ack::{build_ack, build_nak_from_raw, parse_ack, AckCode};
pub use batch::split_batch;
pub use error::{FrameError, ParseError, ValidationError};
pub use framing::{encode_frame, Decoded, MllpDecoder};
pub use message::{Charset, Delimiters, Message, Segment};
pub use validate::validate;
