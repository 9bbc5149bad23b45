//! The separator characters of a message, read from MSH-1 and MSH-2.
//!
//! MSH-1 is the field separator (normally `|`). MSH-2 lists, in order, the
//! component (`^`), repetition (`~`), escape (`\`) and subcomponent (`&`)
//! characters, optionally followed by the v2.7 truncation character (`#`).
//! MSH-2 may list only the first few; missing ones take their default, as
//! long as the default does not clash with a character already in use.
//! Every separator must be printable ASCII punctuation other than `.`, and
//! all must differ. (`.` is refused because HL7 needs it unescaped: in version
//! ids such as `2.5` — including the one written into an ACK — in decimal
//! numbers and in the `\.br\` escape sequence.)

use crate::error::ParseError;

/// Separator characters used by one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    /// Field separator (MSH-1), default `|`.
    pub field: char,
    /// Component separator, default `^`.
    pub component: char,
    /// Repetition separator, default `~`.
    pub repetition: char,
    /// Escape character, default `\`.
    pub escape: char,
    /// Subcomponent separator, default `&`.
    pub subcomponent: char,
    /// Truncation character (v2.7+), only when MSH-2 lists a fifth character.
    pub truncation: Option<char>,
}

impl Default for Delimiters {
    fn default() -> Self {
        Self {
            field: '|',
            component: '^',
            repetition: '~',
            escape: '\\',
            subcomponent: '&',
            truncation: None,
        }
    }
}

/// Can `b` serve as a separator? Printable ASCII punctuation except `.`
/// (see the [module docs](self)).
pub(crate) fn is_separator_byte(b: u8) -> bool {
    b.is_ascii_punctuation() && b != b'.'
}

impl Delimiters {
    /// Build the delimiters from the MSH-1 byte and the raw MSH-2 bytes.
    pub fn from_msh(field: u8, encoding: &[u8]) -> Result<Self, ParseError> {
        if !is_separator_byte(field) {
            return Err(ParseError::BadFieldSeparator(field));
        }
        let bad = || ParseError::BadEncodingCharacters(String::from_utf8_lossy(encoding).into());
        if encoding.len() > 5 || !encoding.iter().all(|&b| is_separator_byte(b)) {
            return Err(bad());
        }
        let mut used: Vec<u8> = vec![field];
        for &b in encoding {
            if used.contains(&b) {
                return Err(bad());
            }
            used.push(b);
        }
        let defaults = [b'^', b'~', b'\\', b'&'];
        let mut chosen = [0u8; 4];
        for (slot, (value, default)) in chosen.iter_mut().zip(defaults).enumerate() {
            *value = match encoding.get(slot) {
                Some(&b) => b,
                None if used.contains(&default) => return Err(bad()),
                None => {
                    used.push(default);
                    default
                }
            };
        }
        Ok(Self {
            field: char::from(field),
            component: char::from(chosen[0]),
            repetition: char::from(chosen[1]),
            escape: char::from(chosen[2]),
            subcomponent: char::from(chosen[3]),
            truncation: encoding.get(4).map(|&b| char::from(b)),
        })
    }

    /// MSH-2 as it should be written when building a message with these
    /// delimiters (e.g. `^~\&`).
    pub fn encoding_characters(&self) -> String {
        let mut s = String::with_capacity(5);
        s.push(self.component);
        s.push(self.repetition);
        s.push(self.escape);
        s.push(self.subcomponent);
        if let Some(t) = self.truncation {
            s.push(t);
        }
        s
    }

    /// `true` if `c` is any of the separator or escape characters.
    pub fn is_special(&self, c: char) -> bool {
        c == self.field
            || c == self.component
            || c == self.repetition
            || c == self.escape
            || c == self.subcomponent
            || Some(c) == self.truncation
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn standard_set() {
        let d = Delimiters::from_msh(b'|', b"^~\\&").unwrap();
        assert_eq!(d, Delimiters::default());
        assert_eq!(d.encoding_characters(), "^~\\&");
    }

    #[test]
    fn partial_set_takes_defaults() {
        let d = Delimiters::from_msh(b'|', b"^~").unwrap();
        assert_eq!(d.escape, '\\');
        assert_eq!(d.subcomponent, '&');
        let d = Delimiters::from_msh(b'|', b"").unwrap();
        assert_eq!(d, Delimiters::default());
    }

    #[test]
    fn custom_and_truncation() {
        let d = Delimiters::from_msh(b'!', b"@*$%#").unwrap();
        assert_eq!(
            (d.field, d.component, d.repetition, d.escape, d.subcomponent),
            ('!', '@', '*', '$', '%')
        );
        assert_eq!(d.truncation, Some('#'));
        assert_eq!(d.encoding_characters(), "@*$%#");
    }

    #[test]
    fn rejects_bad_sets() {
        assert!(matches!(
            Delimiters::from_msh(b'A', b"^~\\&"),
            Err(ParseError::BadFieldSeparator(b'A'))
        ));
        assert!(matches!(
            Delimiters::from_msh(b'.', b"^~\\&"),
            Err(ParseError::BadFieldSeparator(b'.'))
        ));
        for bad in [
            &b"^^"[..],
            b"^~\\&#!",
            b"^a",
            b"^|",
            b"&^",
            b".~\\&",
            b"^~\\&.",
        ] {
            assert!(
                matches!(
                    Delimiters::from_msh(b'|', bad),
                    Err(ParseError::BadEncodingCharacters(_))
                ),
                "{bad:?}"
            );
        }
    }
}
