//! NAKs for input that could not be parsed as a message.
//!
//! [`build_nak_from_raw`] looks for an `MSH` line in the raw bytes and takes
//! what it can from it:
//!
//! * separators: MSH-1 and MSH-2 when valid; otherwise the defaults
//!   `|^~\&` (MSH-1 alone is still used to find fields if it is printable
//!   punctuation, and the values found are then escaped as plain text);
//! * MSH-3 to MSH-6 (swapped as in any ACK), the trigger event (MSH-9.2),
//!   MSH-10 (echoed in MSA-2), MSH-15/16 (enhanced mode);
//! * MSH-11.1 only if it is `P`, `D` or `T`, else `P`;
//! * MSH-12 only if it names a supported version, else `2.5`;
//! * MSH-18 only if it names a supported charset (values are then decoded
//!   with it); otherwise MSH-18 is left empty and non-ASCII text is dropped,
//!   so the NAK is plain ASCII.
//!
//! Control characters are removed and each salvaged value is cut to
//! [`MAX_SALVAGED_CHARS`] characters.

use super::build::{parse_version, AckHeader, DEFAULT_VERSION};
use super::code::{AckCode, AckError, ErrorCondition};
use crate::message::delims::is_separator_byte;
use crate::message::{escape, find_msh, skip_leading, RawMsh};
use crate::validate::is_supported_version;

/// Longest value copied from the broken message.
pub const MAX_SALVAGED_CHARS: usize = 200;

/// NAK for unparseable bytes with condition
/// [`ErrorCondition::SegmentSequenceError`] (100) and `reason` as text.
pub fn build_nak_from_raw(
    raw: &[u8],
    code: AckCode,
    reason: &str,
    now: &str,
    control_id: &str,
) -> String {
    let error = AckError::new(ErrorCondition::SegmentSequenceError, reason);
    build_nak_from_raw_with(raw, code, error, now, control_id)
}

/// NAK for unparseable bytes with an explicit error condition (e.g.
/// `ErrorCondition::from(&parse_error)`).
pub fn build_nak_from_raw_with(
    raw: &[u8],
    code: AckCode,
    error: AckError<'_>,
    now: &str,
    control_id: &str,
) -> String {
    salvage_header(raw).render(code, Some(error), now, control_id)
}

fn salvage_header(raw: &[u8]) -> AckHeader {
    let mut header = AckHeader {
        version: DEFAULT_VERSION.to_owned(),
        ..AckHeader::default()
    };
    let body = skip_leading(raw);
    let Some(msh) = find_msh(body)
        .and_then(|at| body.get(at..))
        .and_then(|b| RawMsh::new(b).ok())
        .filter(|m| is_separator_byte(m.sep))
    else {
        return header;
    };

    let declared = msh.delimiters().ok();
    let d = declared.unwrap_or_default();
    let charset = msh.charset(&d).ok();
    let text = |bytes: &[u8]| -> String {
        let decoded = match charset {
            Some(cs) => cs.decode(bytes).unwrap_or_else(|_| lossy_ascii(bytes)),
            None => lossy_ascii(bytes),
        };
        let clean: String = decoded
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_SALVAGED_CHARS)
            .collect();
        match declared {
            // Already escaped for the separators we reuse.
            Some(_) => clean,
            // Separators unknown: treat the value as plain text.
            None => escape(&clean, &d).into_owned(),
        }
    };
    let field = |n: usize| msh.field(n).map(text).unwrap_or_default();

    header.delims = d;
    header.sending_application = field(3);
    header.sending_facility = field(4);
    header.receiving_application = field(5);
    header.receiving_facility = field(6);
    header.original_control_id = field(10);
    let processing = msh.first_value(11, &d).map(text).unwrap_or_default();
    if matches!(processing.as_str(), "P" | "D" | "T") {
        header.processing_id = processing;
    }
    header.enhanced = !field(15).is_empty() || !field(16).is_empty();
    if declared.is_some() {
        header.trigger = msh
            .field(9)
            .and_then(|f| {
                f.split(|&b| Some(b) == u8::try_from(d.component).ok())
                    .nth(1)
            })
            .map(text)
            .unwrap_or_default();
    }
    let version_id = msh.first_value(12, &d).map(text).unwrap_or_default();
    if is_supported_version(&version_id) && parse_version(&version_id).is_some() {
        header.version = version_id;
    }
    if charset.is_some() {
        header.charset = msh.first_value(18, &d).map(text).unwrap_or_default();
    }
    header
}

/// Decode as UTF-8 where valid, dropping everything that is not ASCII.
fn lossy_ascii(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(char::is_ascii)
        .collect()
}
