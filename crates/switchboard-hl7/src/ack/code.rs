//! Acknowledgement codes (HL7 table 0008) and error conditions (table 0357).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{ParseError, ValidationError};

/// MSA-1 acknowledgement code.
///
/// `AA`/`AE`/`AR` are original-mode (application) codes, `CA`/`CE`/`CR`
/// enhanced-mode commit codes.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AckCode {
    /// Application accept.
    AA,
    /// Application error.
    AE,
    /// Application reject.
    AR,
    /// Commit accept.
    CA,
    /// Commit error.
    CE,
    /// Commit reject.
    CR,
}

impl AckCode {
    /// The two-letter code.
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
            AckCode::CA => "CA",
            AckCode::CE => "CE",
            AckCode::CR => "CR",
        }
    }

    /// `AA` or `CA`.
    pub fn is_accept(self) -> bool {
        matches!(self, AckCode::AA | AckCode::CA)
    }

    /// `AE` or `CE`.
    pub fn is_error(self) -> bool {
        matches!(self, AckCode::AE | AckCode::CE)
    }

    /// `AR` or `CR`.
    pub fn is_reject(self) -> bool {
        matches!(self, AckCode::AR | AckCode::CR)
    }

    /// `CA`, `CE` or `CR`.
    pub fn is_commit(self) -> bool {
        matches!(self, AckCode::CA | AckCode::CE | AckCode::CR)
    }

    /// The enhanced-mode (commit) code with the same meaning.
    pub fn to_commit(self) -> Self {
        match self {
            AckCode::AA | AckCode::CA => AckCode::CA,
            AckCode::AE | AckCode::CE => AckCode::CE,
            AckCode::AR | AckCode::CR => AckCode::CR,
        }
    }

    /// The original-mode (application) code with the same meaning.
    pub fn to_application(self) -> Self {
        match self {
            AckCode::AA | AckCode::CA => AckCode::AA,
            AckCode::AE | AckCode::CE => AckCode::AE,
            AckCode::AR | AckCode::CR => AckCode::AR,
        }
    }
}

impl fmt::Display for AckCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of the six acknowledgement codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown acknowledgement code {0:?}")]
pub struct UnknownAckCode(pub String);

impl FromStr for AckCode {
    type Err = UnknownAckCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "AA" => AckCode::AA,
            "AE" => AckCode::AE,
            "AR" => AckCode::AR,
            "CA" => AckCode::CA,
            "CE" => AckCode::CE,
            "CR" => AckCode::CR,
            _ => return Err(UnknownAckCode(s.to_owned())),
        })
    }
}

/// Error condition codes from HL7 table 0357, written to ERR-3 (or ERR-1
/// before v2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCondition {
    /// 0
    MessageAccepted,
    /// 100
    SegmentSequenceError,
    /// 101
    RequiredFieldMissing,
    /// 102
    DataTypeError,
    /// 103
    TableValueNotFound,
    /// 200
    UnsupportedMessageType,
    /// 201
    UnsupportedEventCode,
    /// 202
    UnsupportedProcessingId,
    /// 203
    UnsupportedVersionId,
    /// 204
    UnknownKeyIdentifier,
    /// 205
    DuplicateKeyIdentifier,
    /// 206
    ApplicationRecordLocked,
    /// 207
    ApplicationInternalError,
}

impl ErrorCondition {
    /// Numeric code, e.g. `207`.
    pub fn code(self) -> u16 {
        match self {
            ErrorCondition::MessageAccepted => 0,
            ErrorCondition::SegmentSequenceError => 100,
            ErrorCondition::RequiredFieldMissing => 101,
            ErrorCondition::DataTypeError => 102,
            ErrorCondition::TableValueNotFound => 103,
            ErrorCondition::UnsupportedMessageType => 200,
            ErrorCondition::UnsupportedEventCode => 201,
            ErrorCondition::UnsupportedProcessingId => 202,
            ErrorCondition::UnsupportedVersionId => 203,
            ErrorCondition::UnknownKeyIdentifier => 204,
            ErrorCondition::DuplicateKeyIdentifier => 205,
            ErrorCondition::ApplicationRecordLocked => 206,
            ErrorCondition::ApplicationInternalError => 207,
        }
    }

    /// Table text, e.g. `Application internal error`.
    pub fn text(self) -> &'static str {
        match self {
            ErrorCondition::MessageAccepted => "Message accepted",
            ErrorCondition::SegmentSequenceError => "Segment sequence error",
            ErrorCondition::RequiredFieldMissing => "Required field missing",
            ErrorCondition::DataTypeError => "Data type error",
            ErrorCondition::TableValueNotFound => "Table value not found",
            ErrorCondition::UnsupportedMessageType => "Unsupported message type",
            ErrorCondition::UnsupportedEventCode => "Unsupported event code",
            ErrorCondition::UnsupportedProcessingId => "Unsupported processing id",
            ErrorCondition::UnsupportedVersionId => "Unsupported version id",
            ErrorCondition::UnknownKeyIdentifier => "Unknown key identifier",
            ErrorCondition::DuplicateKeyIdentifier => "Duplicate key identifier",
            ErrorCondition::ApplicationRecordLocked => "Application record locked",
            ErrorCondition::ApplicationInternalError => "Application internal error",
        }
    }
}

impl From<&ValidationError> for ErrorCondition {
    fn from(e: &ValidationError) -> Self {
        match e {
            ValidationError::MissingMsh
            | ValidationError::MshNotFirst
            | ValidationError::MultipleMsh { .. } => ErrorCondition::SegmentSequenceError,
            ValidationError::MissingField(_) => ErrorCondition::RequiredFieldMissing,
            ValidationError::InvalidProcessingId(_) => ErrorCondition::UnsupportedProcessingId,
            ValidationError::UnsupportedVersion(_) => ErrorCondition::UnsupportedVersionId,
        }
    }
}

impl From<&ParseError> for ErrorCondition {
    fn from(e: &ParseError) -> Self {
        match e {
            ParseError::Empty
            | ParseError::MissingMsh
            | ParseError::MshNotFirst { .. }
            | ParseError::MshTooShort
            | ParseError::InvalidSegmentName { .. } => ErrorCondition::SegmentSequenceError,
            ParseError::BadFieldSeparator(_)
            | ParseError::BadEncodingCharacters(_)
            | ParseError::InvalidUtf8 { .. } => ErrorCondition::DataTypeError,
            ParseError::UnsupportedCharset(_) => ErrorCondition::TableValueNotFound,
        }
    }
}

/// An error to report in an ACK: the table 0357 condition and free text for
/// ERR-8 (user message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckError<'a> {
    /// Condition code written to ERR-3.
    pub condition: ErrorCondition,
    /// Human-readable text (escaped when written).
    pub text: &'a str,
}

impl<'a> AckError<'a> {
    /// Pair a condition with a message.
    pub fn new(condition: ErrorCondition, text: &'a str) -> Self {
        Self { condition, text }
    }
}
