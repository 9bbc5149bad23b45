//! Byte-level reading of the MSH segment, used before a message is decoded.
//!
//! The separators and the character set (MSH-18) have to be known before the
//! bytes can be turned into text. All separators are ASCII, so the MSH line
//! can be split on bytes safely whether the rest is UTF-8 or ISO-8859-1. The
//! same helpers serve [`crate::ack::build_nak_from_raw`], which salvages what
//! it can from a message that failed to parse.

use super::charset::Charset;
use super::delims::Delimiters;
use crate::error::ParseError;

/// Drop leading whitespace, control characters and a UTF-8 byte order mark.
pub(crate) fn skip_leading(input: &[u8]) -> &[u8] {
    let mut rest = input;
    loop {
        if let Some(r) = rest.strip_prefix(b"\xEF\xBB\xBF") {
            rest = r;
        } else if let Some((first, r)) = rest.split_first() {
            if first.is_ascii_whitespace() || first.is_ascii_control() {
                rest = r;
            } else {
                return rest;
            }
        } else {
            return rest;
        }
    }
}

/// Byte offset of the first `MSH` that starts a line, if any.
pub(crate) fn find_msh(input: &[u8]) -> Option<usize> {
    if input.starts_with(b"MSH") {
        return Some(0);
    }
    input
        .windows(4)
        .position(|w| matches!(w[0], b'\r' | b'\n') && &w[1..] == b"MSH")
        .map(|i| i + 1)
}

/// The first line of a message that starts with `MSH`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawMsh<'a> {
    line: &'a [u8],
    /// MSH-1.
    pub sep: u8,
}

impl<'a> RawMsh<'a> {
    /// Read the MSH line at the start of `body` (which must start with `MSH`).
    pub fn new(body: &'a [u8]) -> Result<Self, ParseError> {
        let end = body
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(body.len());
        let line = body.get(..end).unwrap_or_default();
        let sep = *line.get(3).ok_or(ParseError::MshTooShort)?;
        Ok(Self { line, sep })
    }

    /// Raw bytes of MSH-`n` for `n >= 2` (MSH-2 is the encoding characters).
    pub fn field(&self, n: usize) -> Option<&'a [u8]> {
        let index = n.checked_sub(1).filter(|&i| i >= 1)?;
        self.line.split(|&b| b == self.sep).nth(index)
    }

    /// The separators declared by MSH-1 and MSH-2.
    pub fn delimiters(&self) -> Result<Delimiters, ParseError> {
        Delimiters::from_msh(self.sep, self.field(2).unwrap_or_default())
    }

    /// The character set named by MSH-18 (its first repetition and component).
    pub fn charset(&self, d: &Delimiters) -> Result<Charset, ParseError> {
        let value = self.first_value(18, d).unwrap_or_default();
        Charset::from_msh18(&String::from_utf8_lossy(value))
    }

    /// First component of the first repetition of MSH-`n`, raw.
    pub fn first_value(&self, n: usize, d: &Delimiters) -> Option<&'a [u8]> {
        let field = self.field(n)?;
        let rep = u8::try_from(d.repetition).ok();
        let comp = u8::try_from(d.component).ok();
        let end = field
            .iter()
            .position(|&b| Some(b) == rep || Some(b) == comp)
            .unwrap_or(field.len());
        field.get(..end)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn skips_noise_and_bom() {
        assert_eq!(skip_leading(b"\xEF\xBB\xBF\r\n \x0bMSH|"), b"MSH|");
        assert_eq!(skip_leading(b" \r\n"), b"");
    }

    #[test]
    fn finds_msh_at_line_start_only() {
        assert_eq!(find_msh(b"MSH|"), Some(0));
        assert_eq!(find_msh(b"PID|XMSH\rMSH|"), Some(9));
        assert_eq!(find_msh(b"PID|MSH|"), None);
    }

    #[test]
    fn reads_fields() {
        let raw =
            RawMsh::new(b"MSH|^~\\&|APP|FAC|||20240101||ADT^A01|1|P|2.5||||||8859/1~UTF-8\rPID")
                .unwrap();
        assert_eq!(raw.sep, b'|');
        assert_eq!(raw.field(2), Some(&b"^~\\&"[..]));
        assert_eq!(raw.field(3), Some(&b"APP"[..]));
        assert_eq!(raw.field(1), None);
        let d = raw.delimiters().unwrap();
        assert_eq!(raw.first_value(9, &d), Some(&b"ADT"[..]));
        assert_eq!(raw.charset(&d).unwrap(), Charset::Latin1);
        assert_eq!(raw.field(40), None);
        assert!(matches!(RawMsh::new(b"MSH"), Err(ParseError::MshTooShort)));
    }
}
