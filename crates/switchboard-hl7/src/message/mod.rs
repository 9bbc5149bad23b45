//! Parsed HL7 v2 messages and access to their values.
//!
//! [`Message::parse`] takes the bytes of one message (segments separated by
//! CR, LF or CRLF), reads the separators from MSH-1/MSH-2 and the character
//! set from MSH-18 (see [`charset`]), decodes the text once and indexes the
//! segments. Values are then read by [path](mod@path) with [`Message::get`]:
//!
//! ```
//! use switchboard_hl7::Message;
//!
//! let msg = Message::parse(
//!     b"MSH|^~\\&|LAB|HOSP|EHR|HOSP|20240102||ORU^R01^ORU_R01|42|P|2.5.1\r\
//!       PID|1||12345^^^HOSP^MR~998^^^SSA^SS||DOE^JOHN\r\
//!       OBX|1|NM|2345-7^Glucose^LN||105|mg/dL\r\
//!       OBX|2|ST|8251-1^Note^LN||see \\T\\ sign\r",
//! )
//! .unwrap();
//! assert_eq!(msg.message_type().as_deref(), Some("ORU^R01"));
//! assert_eq!(msg.get("PID-5.1").as_deref(), Some("DOE"));
//! assert_eq!(msg.get("PID-3[2].4").as_deref(), Some("SSA"));
//! assert_eq!(msg.get("OBX[2]-5").as_deref(), Some("see & sign"));
//! assert_eq!(msg.get("MSH-1").as_deref(), Some("|"));
//! ```
//!
//! [`Message::get`] returns `None` both for positions that do not exist and
//! for empty values, and decodes escape sequences (see [`escape`](mod@escape)). When the
//! addressed value still has structure (e.g. `PID-5` without a component),
//! the text is returned with its separators. [`Message::get_raw`] returns the
//! text undecoded. [`Message::to_json`] gives a structured view (see
//! [`json`] for its exact shape).

mod accessors;
pub mod charset;
pub mod delims;
pub mod escape;
mod header;
pub mod json;
mod parse;
pub mod path;
mod peek;
pub mod segment;

use std::borrow::Cow;
use std::str::FromStr;

pub use charset::{encode_message, Charset};
pub use delims::Delimiters;
pub use escape::{escape, unescape};
pub(crate) use header::{find_msh, skip_leading, RawMsh};
pub use path::{Location, Path, PathError};
pub use peek::{peek_header, HeaderPeek, MAX_PEEK_CHARS};
pub use segment::Segment;

use crate::error::ParseError;

/// Byte range of one segment inside the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

/// How many MSH fields a [`Message`] indexes when it is parsed: MSH-1 … MSH-21, every header field up to 2.8.
const MSH_INDEXED: usize = 21;

/// Byte ranges (in the message text) of the first [`MSH_INDEXED`] MSH fields. Every message's header is read
/// many times (type, control id, sender and receiver, version, ACK modes, the ACK itself); splitting the MSH line
/// again for each read cost more than parsing the message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MshIndex {
    fields: [(u32, u32); MSH_INDEXED],
    /// How many of `fields` are present.
    count: usize,
}

impl MshIndex {
    /// Indexes the MSH line `span` of `text` (MSH-1 is the field separator itself).
    fn new(text: &str, span: Span, field_sep: char) -> Self {
        let mut index = MshIndex {
            fields: [(0, 0); MSH_INDEXED],
            count: 0,
        };
        let Some(line) = text.get(span.start..span.end) else {
            return index;
        };
        let mut push = |start: usize, end: usize| {
            if let (Some(slot), Ok(start), Ok(end)) = (
                index.fields.get_mut(index.count),
                u32::try_from(start),
                u32::try_from(end),
            ) {
                *slot = (start, end);
                index.count += 1;
            }
        };
        let after_name = span.start + 3;
        push(after_name, after_name + field_sep.len_utf8());
        let mut offset = span.start;
        for (i, field) in line.split(field_sep).enumerate() {
            if i > 0 {
                push(offset, offset + field.len());
            }
            offset += field.len() + field_sep.len_utf8();
        }
        index
    }
}

/// A parsed HL7 v2 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    text: String,
    delims: Delimiters,
    charset: Charset,
    spans: Vec<Span>,
    msh: MshIndex,
}

impl Message {
    /// Parse one message from bytes, decoding them with the MSH-18 charset.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        parse::parse(bytes, parse::Input::Bytes)
    }

    /// Parse one message that is already text. MSH-18 must still name a
    /// supported charset but is not applied.
    pub fn parse_str(text: &str) -> Result<Self, ParseError> {
        parse::parse(text.as_bytes(), parse::Input::Text)
    }

    /// The decoded message text, starting at `MSH` (anything before it was
    /// whitespace and has been dropped).
    pub fn raw(&self) -> &str {
        &self.text
    }

    /// The separators of this message.
    pub fn delimiters(&self) -> &Delimiters {
        &self.delims
    }

    /// The character set the message was decoded with.
    pub fn encoding(&self) -> Charset {
        self.charset
    }

    /// All segments in order.
    pub fn segments(&self) -> impl ExactSizeIterator<Item = Segment<'_>> + '_ {
        self.spans.iter().map(move |span| self.segment_at(*span))
    }

    /// Segments with the given name, in order.
    pub fn segments_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Segment<'a>> + 'a {
        self.segments().filter(move |s| s.name() == name)
    }

    /// The `occurrence`-th (1-based) segment named `name`.
    pub fn segment(&self, name: &str, occurrence: usize) -> Option<Segment<'_>> {
        let index = occurrence.checked_sub(1)?;
        self.segments().filter(|s| s.name() == name).nth(index)
    }

    fn segment_at(&self, span: Span) -> Segment<'_> {
        let text = self.text.get(span.start..span.end).unwrap_or_default();
        Segment::new(text, &self.delims, self.charset)
    }

    /// Decoded value at `path` (e.g. `PID-5.1`, `OBX[2]-5`, `PID-3[2].1`).
    /// `None` if the path is malformed, the position is absent, or the value
    /// is empty.
    pub fn get(&self, path: &str) -> Option<Cow<'_, str>> {
        self.get_path(&path.parse().ok()?)
    }

    /// Like [`Message::get`] with an already parsed path.
    pub fn get_path(&self, path: &Path) -> Option<Cow<'_, str>> {
        let raw = self.raw_at(path).filter(|s| !s.is_empty())?;
        Some(self.unescape(raw))
    }

    /// Raw (still escaped) text at `path`; `Some("")` for a present but empty
    /// value.
    pub fn get_raw(&self, path: &str) -> Option<&str> {
        self.raw_at(&path.parse().ok()?)
    }

    fn raw_at(&self, path: &Path) -> Option<&str> {
        if path.segment() == "MSH" && path.occurrence == 1 {
            return self.header_raw(&path.location);
        }
        self.segment(path.segment(), path.occurrence)?
            .raw(&path.location)
    }

    /// Raw text of MSH field `n`, all repetitions included (from the index).
    pub(crate) fn header_field(&self, n: usize) -> Option<&str> {
        let slot = n.checked_sub(1)?;
        if slot < self.msh.count {
            let (start, end) = *self.msh.fields.get(slot)?;
            return self.text.get(start as usize..end as usize);
        }
        if self.msh.count < MSH_INDEXED {
            return None;
        }
        self.segment("MSH", 1)?.raw_field(n)
    }

    /// Raw text at `loc` in the MSH segment.
    pub(crate) fn header_raw(&self, loc: &Location) -> Option<&str> {
        let field = self.header_field(loc.field)?;
        segment::within_field(field, loc, &self.delims, loc.field <= 2)
    }

    /// Decoded value at `loc` in the MSH segment; `None` when absent or empty.
    fn header_value(&self, field: usize, component: Option<usize>) -> Option<Cow<'_, str>> {
        let loc = Location {
            field,
            repetition: 1,
            component,
            subcomponent: None,
        };
        let raw = self.header_raw(&loc).filter(|s| !s.is_empty())?;
        Some(self.unescape(raw))
    }

    /// Decode escape sequences in `text` using this message's separators.
    pub fn unescape<'a>(&self, text: &'a str) -> Cow<'a, str> {
        unescape(text, &self.delims, self.charset)
    }

    /// Escape `text` for use as a value in this message.
    pub fn escape<'a>(&self, text: &'a str) -> Cow<'a, str> {
        escape(text, &self.delims)
    }

    /// Structured JSON view; see [`json`] for the shape.
    pub fn to_json(&self) -> serde_json::Value {
        json::message_json(self)
    }

    /// The same JSON as [`Message::to_json`], written directly by any serde
    /// serializer (no intermediate `Value`).
    pub fn json_view(&self) -> json::JsonView<'_> {
        json::JsonView(self)
    }
}

impl FromStr for Message {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_str(s)
    }
}

#[cfg(test)]
mod tests;
