//! A borrowed view of one segment of a parsed [`Message`](super::Message).
//!
//! Field numbers follow HL7: fields start at 1, and in MSH field 1 is the
//! field separator itself and field 2 the encoding characters (so MSH-3 is
//! the first value after them). `raw_*` methods return text exactly as it
//! appears in the message (escape sequences intact); [`Segment::get`] and
//! [`Segment::value`] decode escape sequences.

use std::borrow::Cow;

use super::charset::Charset;
use super::delims::Delimiters;
use super::escape::unescape;
use super::path::Location;

/// One segment (one line) of a message.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    text: &'a str,
    delims: &'a Delimiters,
    charset: Charset,
}

impl<'a> Segment<'a> {
    pub(crate) fn new(text: &'a str, delims: &'a Delimiters, charset: Charset) -> Self {
        Self {
            text,
            delims,
            charset,
        }
    }

    /// The segment name, e.g. `PID`.
    pub fn name(&self) -> &'a str {
        self.text
            .split(self.delims.field)
            .next()
            .unwrap_or_default()
    }

    /// The whole segment text, without its terminator.
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    pub(crate) fn delimiters(&self) -> &'a Delimiters {
        self.delims
    }

    fn is_msh(&self) -> bool {
        self.name() == "MSH"
    }

    /// The MSH-1 field separator as a one-character slice of the text.
    fn msh1(&self) -> Option<&'a str> {
        self.text.get(3..3 + self.delims.field.len_utf8())
    }

    /// Number of the last field present (0 if the segment has no fields).
    pub fn field_count(&self) -> usize {
        let n = self.text.split(self.delims.field).count() - 1;
        if self.is_msh() && n > 0 {
            n + 1
        } else {
            n
        }
    }

    /// Raw text of field `n`, all repetitions included.
    pub fn raw_field(&self, n: usize) -> Option<&'a str> {
        match (self.is_msh(), n) {
            (_, 0) => None,
            (true, 1) => self.msh1(),
            (true, n) => self.text.split(self.delims.field).nth(n - 1),
            (false, n) => self.text.split(self.delims.field).nth(n),
        }
    }

    /// Raw text of every field in order, starting with field 1.
    pub fn raw_fields(&self) -> impl Iterator<Item = &'a str> + 'a {
        let msh1 = if self.is_msh() { self.msh1() } else { None };
        msh1.into_iter()
            .chain(self.text.split(self.delims.field).skip(1))
    }

    /// Raw text at `loc`, or `None` if that position does not exist.
    pub fn raw(&self, loc: &Location) -> Option<&'a str> {
        let field = self.raw_field(loc.field)?;
        within_field(field, loc, self.delims, self.is_msh() && loc.field <= 2)
    }

    /// Decoded value at `loc`; `None` when absent or empty.
    pub fn value(&self, loc: &Location) -> Option<Cow<'a, str>> {
        let raw = self.raw(loc).filter(|s| !s.is_empty())?;
        Some(self.unescape(raw))
    }

    /// Decoded value at a location written like `5.1` or `3[2].1`
    /// (see [`path`](super::path)); `None` when absent, empty or malformed.
    pub fn get(&self, location: &str) -> Option<Cow<'a, str>> {
        self.value(&location.parse().ok()?)
    }

    /// Decode escape sequences using this message's separators and charset.
    pub fn unescape<'t>(&self, text: &'t str) -> Cow<'t, str> {
        unescape(text, self.delims, self.charset)
    }
}

/// The part of `field` (raw text of field `loc.field`, all repetitions) that `loc` addresses. `separators` is set
/// for MSH-1 and MSH-2, which hold the separators and so have no inner structure.
pub(crate) fn within_field<'t>(
    field: &'t str,
    loc: &Location,
    delims: &Delimiters,
    separators: bool,
) -> Option<&'t str> {
    if separators {
        let whole = loc.repetition == 1
            && loc.component.unwrap_or(1) == 1
            && loc.subcomponent.unwrap_or(1) == 1;
        return whole.then_some(field);
    }
    let rep = field
        .split(delims.repetition)
        .nth(loc.repetition.checked_sub(1)?)?;
    let Some(c) = loc.component else {
        return Some(rep);
    };
    let comp = rep.split(delims.component).nth(c.checked_sub(1)?)?;
    match loc.subcomponent {
        None => Some(comp),
        Some(s) => comp.split(delims.subcomponent).nth(s.checked_sub(1)?),
    }
}
