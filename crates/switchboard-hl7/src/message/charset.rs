//! Character sets named by MSH-18 and conversion between bytes and text.
//!
//! | MSH-18 (case-insensitive)                                 | [`Charset`] |
//! |-----------------------------------------------------------|-------------|
//! | empty, `ASCII`, `ISO IR6`, `UNICODE UTF-8`, `UTF-8`, `UTF8` | `Utf8`      |
//! | `8859/1`, `ISO-8859-1`, `ISO8859-1`, `ISO IR100`, `LATIN1`  | `Latin1`    |
//!
//! Anything else is [`ParseError::UnsupportedCharset`]. ASCII is decoded as
//! UTF-8 (a strict superset), so a mislabelled UTF-8 message still parses.

use serde::{Deserialize, Serialize};

use super::delims::Delimiters;
use super::header::{skip_leading, RawMsh};
use crate::error::ParseError;

/// How a message's bytes map to text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Charset {
    /// UTF-8 (also used for ASCII and an empty MSH-18).
    #[default]
    Utf8,
    /// ISO-8859-1: every byte is the Unicode code point of the same value.
    Latin1,
}

impl Charset {
    /// Interpret an MSH-18 value.
    pub fn from_msh18(name: &str) -> Result<Self, ParseError> {
        let norm = name.trim().to_ascii_uppercase();
        match norm.as_str() {
            "" | "ASCII" | "ISO IR6" | "UNICODE UTF-8" | "UTF-8" | "UTF8" => Ok(Charset::Utf8),
            "8859/1" | "ISO-8859-1" | "ISO8859-1" | "ISO_8859-1" | "ISO IR100" | "LATIN1" => {
                Ok(Charset::Latin1)
            }
            _ => Err(ParseError::UnsupportedCharset(name.trim().to_owned())),
        }
    }

    /// The HL7 table 0211 code for this character set.
    pub fn hl7_name(self) -> &'static str {
        match self {
            Charset::Utf8 => "UNICODE UTF-8",
            Charset::Latin1 => "8859/1",
        }
    }

    /// Decode a whole message body.
    pub fn decode(self, bytes: &[u8]) -> Result<String, ParseError> {
        match self {
            Charset::Utf8 => {
                String::from_utf8(bytes.to_vec()).map_err(|e| ParseError::InvalidUtf8 {
                    offset: e.utf8_error().valid_up_to(),
                })
            }
            Charset::Latin1 => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
        }
    }

    /// Decode bytes from a `\X..\` escape; `None` if they are not valid.
    pub(crate) fn decode_fragment(self, bytes: &[u8]) -> Option<String> {
        self.decode(bytes).ok()
    }

    /// Encode text for the wire. Characters that ISO-8859-1 cannot represent
    /// become `?`.
    pub fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Charset::Utf8 => text.as_bytes().to_vec(),
            Charset::Latin1 => text
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                .collect(),
        }
    }
}

/// Encode a message's text using the character set its own MSH-18 names
/// (UTF-8 if there is no MSH, MSH-18 is absent or not recognised). Use it to
/// turn a built ACK into bytes for the wire.
pub fn encode_message(text: &str) -> Vec<u8> {
    let body = skip_leading(text.as_bytes());
    let charset = if body.starts_with(b"MSH") {
        RawMsh::new(body)
            .ok()
            .and_then(|raw| {
                let d = raw.delimiters().unwrap_or_else(|_| Delimiters::default());
                raw.charset(&d).ok()
            })
            .unwrap_or_default()
    } else {
        Charset::Utf8
    };
    charset.encode(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for n in ["", " ", "ASCII", "unicode utf-8", "UTF-8"] {
            assert_eq!(Charset::from_msh18(n).unwrap(), Charset::Utf8, "{n}");
        }
        assert_eq!(Charset::from_msh18("8859/1").unwrap(), Charset::Latin1);
        assert_eq!(
            Charset::from_msh18("ISO IR87"),
            Err(ParseError::UnsupportedCharset("ISO IR87".into()))
        );
    }

    #[test]
    fn latin1_round_trip() {
        let text = Charset::Latin1.decode(b"Jos\xE9").unwrap();
        assert_eq!(text, "José");
        assert_eq!(Charset::Latin1.encode("José €"), b"Jos\xE9 ?");
    }

    #[test]
    fn invalid_utf8_reports_offset() {
        assert_eq!(
            Charset::Utf8.decode(b"ab\xE9cd"),
            Err(ParseError::InvalidUtf8 { offset: 2 })
        );
    }

    #[test]
    fn encode_message_follows_msh18() {
        let latin = "MSH|^~\\&|||||||ACK|1|P|2.5||||||8859/1\rMSA|AA|é\r";
        assert!(encode_message(latin).ends_with(b"MSA|AA|\xE9\r"));
        let utf = "MSH|^~\\&|||||||ACK|1|P|2.5\rMSA|AA|é\r";
        assert_eq!(encode_message(utf), utf.as_bytes());
    }
}
