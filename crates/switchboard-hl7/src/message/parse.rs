//! Turning bytes (or text) into a [`Message`].
//!
//! Steps: skip leading whitespace/control bytes and a BOM; require `MSH` at
//! the start; read the separators (MSH-1, MSH-2) and the character set
//! (MSH-18) from the raw bytes; decode the whole message to one `String`
//! once; then record the byte range of each segment. Fields are not split
//! here: accessors split segment text lazily, so parsing allocates only the
//! text and the segment index.
//!
//! Segments end at CR, LF or CRLF. Blank lines (only whitespace or control
//! characters) are ignored. Every other line must start with a three
//! character ASCII alphanumeric segment name.

use super::charset::Charset;
use super::header::{find_msh, skip_leading, RawMsh};
use super::{Message, MshIndex, Span};
use crate::error::ParseError;

/// Whether the input still has to be decoded from the MSH-18 charset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// Raw bytes from the wire or a file.
    Bytes,
    /// Text that is already Unicode (MSH-18 is checked but not applied).
    Text,
}

pub(crate) fn parse(input: &[u8], kind: Input) -> Result<Message, ParseError> {
    let body = skip_leading(input);
    if body.is_empty() {
        return Err(ParseError::Empty);
    }
    if !body.starts_with(b"MSH") {
        return Err(match find_msh(body) {
            Some(_) => ParseError::MshNotFirst {
                found: String::from_utf8_lossy(body)
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .take(8)
                    .collect(),
            },
            None => ParseError::MissingMsh,
        });
    }
    let raw = RawMsh::new(body)?;
    let delims = raw.delimiters()?;
    let charset = raw.charset(&delims)?;
    let text = match kind {
        Input::Bytes => charset.decode(body)?,
        Input::Text => Charset::Utf8.decode(body)?,
    };
    let spans = index_segments(&text, delims.field)?;
    let msh = spans
        .first()
        .map(|first| MshIndex::new(&text, *first, delims.field))
        .ok_or(ParseError::MissingMsh)?;
    Ok(Message {
        text,
        delims,
        charset,
        spans,
        msh,
    })
}

fn is_blank(line: &str) -> bool {
    line.chars().all(|c| c.is_whitespace() || c.is_control())
}

fn index_segments(text: &str, field_sep: char) -> Result<Vec<Span>, ParseError> {
    let mut spans = Vec::new();
    let mut start = 0;
    for line in text.split(['\r', '\n']) {
        let end = start + line.len();
        if !is_blank(line) {
            let name = line.split(field_sep).next().unwrap_or_default();
            if name.len() != 3 || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(ParseError::InvalidSegmentName {
                    index: spans.len() + 1,
                    name: name.chars().take(8).collect(),
                });
            }
            spans.push(Span { start, end });
        }
        start = end + 1;
    }
    Ok(spans)
}
