//! A best-effort look at the MSH of bytes that may not parse.
//!
//! [`peek_header`] is what a receiver uses to route and label input it could
//! not parse: the sending facility (to pick the tenant), the message type and
//! the control id (to label the error). Values are read with the declared
//! separators when MSH-1/MSH-2 are valid (defaults otherwise), decoded with
//! the MSH-18 charset when it is supported (lossy UTF-8 otherwise), stripped of
//! control characters and cut to [`MAX_PEEK_CHARS`]. Escape sequences are
//! decoded.

use super::charset::Charset;
use super::delims::Delimiters;
use super::escape::unescape;
use super::header::{find_msh, skip_leading, RawMsh};

/// Longest value returned by [`peek_header`].
pub const MAX_PEEK_CHARS: usize = 200;

/// What could be read from an MSH segment; fields are `None` when absent,
/// empty or unreadable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderPeek {
    /// MSH-3, first component.
    pub sending_application: Option<String>,
    /// MSH-4, first component.
    pub sending_facility: Option<String>,
    /// MSH-9 as `CODE^TRIGGER` (or just `CODE`).
    pub message_type: Option<String>,
    /// MSH-10.
    pub control_id: Option<String>,
    /// MSH-12, first component.
    pub version: Option<String>,
}

/// Read what can be read from the first `MSH` line of `raw`.
pub fn peek_header(raw: &[u8]) -> HeaderPeek {
    let body = skip_leading(raw);
    let Some(msh) = find_msh(body)
        .and_then(|at| body.get(at..))
        .and_then(|b| RawMsh::new(b).ok())
    else {
        return HeaderPeek::default();
    };
    let d = msh.delimiters().unwrap_or_default();
    let charset = msh.charset(&d).ok();
    let text = |bytes: &[u8]| -> Option<String> {
        let decoded = match charset {
            Some(cs) => cs
                .decode(bytes)
                .unwrap_or_else(|_| String::from_utf8_lossy(bytes).into_owned()),
            None => String::from_utf8_lossy(bytes).into_owned(),
        };
        let value: String = unescape(&decoded, &d, charset.unwrap_or(Charset::Utf8))
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_PEEK_CHARS)
            .collect();
        let value = value.trim().to_owned();
        (!value.is_empty()).then_some(value)
    };
    let first = |n: usize| msh.first_value(n, &d).and_then(text);
    let message_type = msh.field(9).and_then(|f| {
        let mut parts = split_on(f, &d).map(text);
        let code = parts.next().flatten()?;
        Some(match parts.next().flatten() {
            Some(trigger) => format!("{code}^{trigger}"),
            None => code,
        })
    });
    HeaderPeek {
        sending_application: first(3),
        sending_facility: first(4),
        message_type,
        control_id: msh.field(10).and_then(text),
        version: first(12),
    }
}

fn split_on<'a>(field: &'a [u8], d: &Delimiters) -> impl Iterator<Item = &'a [u8]> + 'a {
    let comp = u8::try_from(d.component).ok();
    field.split(move |&b| Some(b) == comp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_broken_message() {
        let raw =
            b"\r\nMSH|^~\\&|APP^X|FAC^Y|||20240101||ADT^A01^ADT_A01|C\\F\\1|P|2.5.1\rPID|\xff\xfe";
        let peek = peek_header(raw);
        assert_eq!(peek.sending_application.as_deref(), Some("APP"));
        assert_eq!(peek.sending_facility.as_deref(), Some("FAC"));
        assert_eq!(peek.message_type.as_deref(), Some("ADT^A01"));
        assert_eq!(peek.control_id.as_deref(), Some("C|1"));
        assert_eq!(peek.version.as_deref(), Some("2.5.1"));
    }

    #[test]
    fn nothing_to_read() {
        assert_eq!(peek_header(b"garbage"), HeaderPeek::default());
        assert_eq!(peek_header(b""), HeaderPeek::default());
        let peek = peek_header(b"MSH|^~\\&||||||||");
        assert_eq!(peek, HeaderPeek::default());
    }

    #[test]
    fn latin1_values_are_decoded() {
        let raw = b"MSH|^~\\&|A|H\xD4PITAL|||||ADT^A04|1|P|2.5||||||8859/1\r";
        assert_eq!(
            peek_header(raw).sending_facility.as_deref(),
            Some("H\u{d4}PITAL")
        );
    }
}
