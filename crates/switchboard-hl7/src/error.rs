//! Error types for every part of the crate.
//!
//! * [`ParseError`] — a byte sequence could not be turned into a [`Message`](crate::Message).
//! * [`FrameError`] — the MLLP byte stream violated the framing rules.
//! * [`ValidationError`] — a parsed message breaks a structural rule checked by
//!   [`validate`](crate::validate::validate).
//!
//! All variants carry enough detail to be logged or copied into an ACK's
//! error text as they are (their `Display` output is meant for humans).

use thiserror::Error;

/// Why a message could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The input was empty or contained only whitespace.
    #[error("message is empty")]
    Empty,
    /// No `MSH` segment exists anywhere in the input.
    #[error("message has no MSH segment")]
    MissingMsh,
    /// An `MSH` segment exists, but something else comes before it.
    #[error("MSH is not the first segment (found {found:?} first)")]
    MshNotFirst {
        /// Name (or first characters) of the segment that came first.
        found: String,
    },
    /// The MSH segment ends before its field separator (MSH-1).
    #[error("MSH segment is too short to contain a field separator")]
    MshTooShort,
    /// MSH-1 is not a usable separator (it must be printable ASCII
    /// punctuation other than `.`).
    #[error("invalid field separator (MSH-1) byte 0x{0:02X}")]
    BadFieldSeparator(u8),
    /// MSH-2 is malformed: too long, not punctuation, or characters repeated.
    #[error("invalid encoding characters (MSH-2) {0:?}")]
    BadEncodingCharacters(String),
    /// MSH-18 names a character set this crate cannot decode.
    #[error("unsupported character set (MSH-18) {0:?}")]
    UnsupportedCharset(String),
    /// The message claims UTF-8 (or ASCII) but is not valid UTF-8.
    #[error("message is not valid UTF-8 (first bad byte at offset {offset})")]
    InvalidUtf8 {
        /// Byte offset (from the start of the MSH segment) of the first bad byte.
        offset: usize,
    },
    /// A segment's name is not three ASCII letters/digits.
    #[error("segment {index} has an invalid name {name:?}")]
    InvalidSegmentName {
        /// 1-based index of the segment in the message.
        index: usize,
        /// The offending name (at most a few characters).
        name: String,
    },
}

/// Why the MLLP decoder rejected part of the byte stream.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A frame grew beyond the configured maximum before its end marker.
    /// The decoder dropped what it had buffered; the caller should NAK (if it
    /// can) and close the connection.
    #[error("MLLP frame exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The configured maximum frame size in bytes.
        limit: usize,
    },
    /// A start block (0x0B) arrived inside a frame: the previous frame was
    /// truncated. Its bytes were dropped and decoding resumes at the new
    /// start block, so the caller may simply call `decode` again.
    #[error("MLLP frame truncated by a new start block ({discarded} bytes dropped)")]
    Truncated {
        /// Bytes dropped by this call (the partial frame plus any garbage
        /// before it).
        discarded: usize,
    },
}

impl FrameError {
    /// `true` if decoding may continue on the same connection.
    pub fn is_recoverable(&self) -> bool {
        matches!(self, FrameError::Truncated { .. })
    }
}

/// Why a parsed message failed [`validate`](crate::validate::validate).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The message contains no MSH segment.
    #[error("message has no MSH segment")]
    MissingMsh,
    /// The first segment is not MSH.
    #[error("MSH is not the first segment")]
    MshNotFirst,
    /// More than one MSH segment: probably several messages in one frame.
    #[error("message contains {count} MSH segments")]
    MultipleMsh {
        /// How many MSH segments were found.
        count: usize,
    },
    /// A required field (or component) is absent or empty.
    #[error("required field {0} is missing")]
    MissingField(&'static str),
    /// MSH-11.1 is not one of `P`, `D`, `T`.
    #[error("invalid processing id (MSH-11) {0:?}")]
    InvalidProcessingId(String),
    /// MSH-12.1 names an HL7 version outside 2.1–2.8.2.
    #[error("unsupported HL7 version (MSH-12) {0:?}")]
    UnsupportedVersion(String),
}
