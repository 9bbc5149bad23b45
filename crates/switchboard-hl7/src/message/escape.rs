//! HL7 escape sequences: decoding on read, encoding when building messages.
//!
//! Decoded by [`unescape`] (shown with the default `\` escape character):
//!
//! | sequence    | result                                                   |
//! |-------------|----------------------------------------------------------|
//! | `\F\`       | field separator                                          |
//! | `\S\`       | component separator                                      |
//! | `\T\`       | subcomponent separator                                   |
//! | `\R\`       | repetition separator                                     |
//! | `\E\`       | escape character                                         |
//! | `\P\`       | truncation character (only if MSH-2 defines one)         |
//! | `\Xhh..\`   | the hex bytes, decoded with the message's character set  |
//! | `\.br\`     | line feed                                                |
//! | `\H\` `\N\` | removed (highlighting on/off has no plain-text meaning)  |
//!
//! Anything else between two escape characters (including `\X` with bad hex
//! or bytes that are not valid in the character set) is kept literally,
//! escape characters included. An escape character with no closing partner is
//! kept literally too.
//!
//! [`escape`] is the inverse used when writing text into a message: it
//! replaces the separators and escape character with the sequences above and
//! also encodes CR as `\X0D\` and LF as `\.br\`, so that
//! `unescape(escape(s)) == s` for every string.

use std::borrow::Cow;

use super::charset::Charset;
use super::delims::Delimiters;

/// Decode the escape sequences in `text`. Borrows when there is nothing to
/// decode.
pub fn unescape<'a>(text: &'a str, d: &Delimiters, charset: Charset) -> Cow<'a, str> {
    let esc = d.escape;
    if !text.contains(esc) {
        return Cow::Borrowed(text);
    }
    let esc_len = esc.len_utf8();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(esc) {
        out.push_str(rest.get(..i).unwrap_or_default());
        let after = rest.get(i + esc_len..).unwrap_or_default();
        let Some(j) = after.find(esc) else {
            // Unterminated: keep the remainder as it is.
            out.push(esc);
            rest = after;
            break;
        };
        let seq = after.get(..j).unwrap_or_default();
        if !decode_sequence(seq, d, charset, &mut out) {
            out.push(esc);
            out.push_str(seq);
            out.push(esc);
        }
        rest = after.get(j + esc_len..).unwrap_or_default();
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Append the meaning of one known sequence to `out`; `false` if unknown.
fn decode_sequence(seq: &str, d: &Delimiters, charset: Charset, out: &mut String) -> bool {
    let single = match seq {
        "F" => Some(d.field),
        "S" => Some(d.component),
        "T" => Some(d.subcomponent),
        "R" => Some(d.repetition),
        "E" => Some(d.escape),
        "P" => d.truncation,
        ".br" => Some('\n'),
        "H" | "N" => return true,
        _ => None,
    };
    if let Some(c) = single {
        out.push(c);
        return true;
    }
    match seq.strip_prefix('X').and_then(hex_bytes) {
        Some(bytes) => match charset.decode_fragment(&bytes) {
            Some(s) => {
                out.push_str(&s);
                true
            }
            None => false,
        },
        None => false,
    }
}

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    hex.as_bytes()
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

/// Replace separators, the escape character, CR and LF in `text` with escape
/// sequences so it can be placed inside a field. Borrows when nothing needs
/// escaping.
pub fn escape<'a>(text: &'a str, d: &Delimiters) -> Cow<'a, str> {
    let needs = |c: char| d.is_special(c) || c == '\r' || c == '\n';
    if !text.chars().any(needs) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        let code = if c == d.escape {
            "E"
        } else if c == d.field {
            "F"
        } else if c == d.component {
            "S"
        } else if c == d.subcomponent {
            "T"
        } else if c == d.repetition {
            "R"
        } else if Some(c) == d.truncation {
            "P"
        } else if c == '\r' {
            "X0D"
        } else if c == '\n' {
            ".br"
        } else {
            out.push(c);
            continue;
        };
        out.push(d.escape);
        out.push_str(code);
        out.push(d.escape);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn un(s: &str) -> String {
        unescape(s, &Delimiters::default(), Charset::Utf8).into_owned()
    }

    #[test]
    fn decodes_separators() {
        assert_eq!(un(r"a\F\b\S\c\T\d\R\e\E\f"), r"a|b^c&d~e\f");
        assert!(matches!(
            unescape("plain", &Delimiters::default(), Charset::Utf8),
            Cow::Borrowed("plain")
        ));
    }

    #[test]
    fn decodes_hex_and_formatting() {
        assert_eq!(un(r"caf\XC3A9\"), "café");
        assert_eq!(un(r"line1\.br\line2"), "line1\nline2");
        assert_eq!(un(r"\H\bold\N\"), "bold");
        let latin1 = unescape(r"caf\XE9\", &Delimiters::default(), Charset::Latin1);
        assert_eq!(latin1, "café");
    }

    #[test]
    fn keeps_unknown_and_broken_sequences() {
        assert_eq!(un(r"\Zlocal\x"), r"\Zlocal\x");
        assert_eq!(un(r"\XZZ\"), r"\XZZ\");
        assert_eq!(un(r"\XE9\"), r"\XE9\"); // not UTF-8 on its own
        assert_eq!(un(r"C:\temp"), r"C:\temp");
        assert_eq!(un(r"\P\"), r"\P\"); // no truncation char defined
    }

    #[test]
    fn custom_delimiters() {
        let d = Delimiters {
            field: '!',
            component: '@',
            repetition: '*',
            escape: '$',
            subcomponent: '%',
            truncation: Some('#'),
        };
        assert_eq!(unescape("$F$$S$$P$|^", &d, Charset::Utf8), "!@#|^");
        assert_eq!(escape("!@#|^$", &d), "$F$$S$$P$|^$E$");
    }

    #[test]
    fn escape_round_trips() {
        let d = Delimiters::default();
        let text = "Dose 5|10 mg ^ q6h & prn ~ see \\notes\\\r\nend";
        let escaped = escape(text, &d);
        assert!(!escaped.contains(['|', '^', '&', '~', '\r', '\n']));
        assert_eq!(unescape(&escaped, &d, Charset::Utf8), text);
        assert!(matches!(escape("ok", &d), Cow::Borrowed("ok")));
    }
}
