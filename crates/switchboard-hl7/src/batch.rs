//! Splitting a file (or any text) that holds many messages.
//!
//! Every message starts with a line beginning `MSH`; it runs until the next
//! `MSH` line or batch envelope line. Lines may end in CR, LF or CRLF. Batch
//! envelope segments (`FHS`, `BHS`, `BTS`, `FTS`) are dropped, as are blank
//! lines and anything before the first `MSH`. Each returned message is a
//! slice of the input, from its `MSH` to the end of its last segment (line
//! terminators inside it kept, the final one dropped).

use std::ops::Range;

const ENVELOPE: [&[u8]; 4] = [b"FHS", b"BHS", b"BTS", b"FTS"];

/// Split `text` into messages; see the [module docs](self).
pub fn split_batch(text: &str) -> Vec<&str> {
    // Ranges start and end next to ASCII line breaks, so they always fall on
    // character boundaries.
    message_ranges(text.as_bytes())
        .into_iter()
        .filter_map(|r| text.get(r))
        .collect()
}

/// Byte version of [`split_batch`], for files not yet decoded (for example
/// ISO-8859-1 messages).
pub fn split_batch_bytes(data: &[u8]) -> Vec<&[u8]> {
    message_ranges(data)
        .into_iter()
        .filter_map(|r| data.get(r))
        .collect()
}

fn message_ranges(data: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut current: Option<Range<usize>> = None;
    let mut start = 0;
    for line in data.split(|&b| b == b'\r' || b == b'\n') {
        let end = start + line.len();
        let name = line.get(..3).unwrap_or(line);
        let named_line = line.len() == 3 || line.get(3).is_some_and(|b| !b.is_ascii_alphanumeric());
        let is_msh = name == b"MSH" && named_line && line.len() > 3;
        let is_envelope = named_line && ENVELOPE.contains(&name);
        if is_msh || is_envelope {
            out.extend(current.take());
            if is_msh {
                current = Some(start..end);
            }
        } else if let Some(range) = current.as_mut() {
            if !line.iter().all(u8::is_ascii_whitespace) {
                range.end = end;
            }
        }
        start = end + 1;
    }
    out.extend(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_plain_file() {
        let text = "MSH|^~\\&|A\rPID|1\rMSH|^~\\&|B\nPID|2\n\nMSH|^~\\&|C\r\nPID|3\r\n";
        assert_eq!(
            split_batch(text),
            vec![
                "MSH|^~\\&|A\rPID|1",
                "MSH|^~\\&|B\nPID|2",
                "MSH|^~\\&|C\r\nPID|3"
            ]
        );
    }

    #[test]
    fn drops_envelopes_and_leading_noise() {
        let text = "junk\nFHS|^~\\&\nBHS|^~\\&\nMSH|^~\\&|A\nPID|1\nMSH|^~\\&|B\nBTS|2\nFTS|1\n";
        assert_eq!(split_batch(text), vec!["MSH|^~\\&|A\nPID|1", "MSH|^~\\&|B"]);
    }

    #[test]
    fn empty_and_msh_less_input() {
        assert!(split_batch("").is_empty());
        assert!(split_batch("PID|1\rOBX|1\r").is_empty());
        assert!(split_batch("MSHX|1\r").is_empty());
    }

    #[test]
    fn bytes_version_keeps_latin1() {
        let data = b"MSH|^~\\&|||||||ADT^A01|1|P|2.5|||||||8859/1\rPID|1||||Ren\xE9\r";
        assert_eq!(split_batch_bytes(data), vec![&data[..data.len() - 1]]);
    }
}
