//! Terse paths that address one value inside a message.
//!
//! Grammar (all indexes are 1-based):
//!
//! ```text
//! path     = segment [ "[" occurrence "]" ] "-" location
//! location = field [ "[" repetition "]" ] [ "." component [ "." subcomponent ] ]
//! ```
//!
//! | path           | meaning                                              |
//! |----------------|------------------------------------------------------|
//! | `PID-5`        | first repetition of PID-5, components included       |
//! | `PID-5.1`      | first component of PID-5                             |
//! | `PID-5.1.2`    | second subcomponent of PID-5.1                       |
//! | `PID-3[2].1`   | first component of the second repetition of PID-3    |
//! | `OBX[2]-5`     | OBX-5 of the second OBX segment in the message       |
//!
//! A path without a repetition index addresses the first repetition.

use std::str::FromStr;

/// Where a value sits inside one segment: field, repetition, component,
/// subcomponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Field number (HL7 numbering: for MSH, 1 is the field separator).
    pub field: usize,
    /// Repetition number, 1 when not given.
    pub repetition: usize,
    /// Component number, if addressed.
    pub component: Option<usize>,
    /// Subcomponent number, if addressed (only together with a component).
    pub subcomponent: Option<usize>,
}

/// A parsed path such as `OBX[2]-5.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    segment: [u8; 3],
    /// Which occurrence of the segment, 1 when not given.
    pub occurrence: usize,
    /// Position inside the segment.
    pub location: Location,
}

/// The text was not a valid path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid HL7 path {0:?}")]
pub struct PathError(pub String);

impl Path {
    /// The segment name, e.g. `PID`.
    pub fn segment(&self) -> &str {
        std::str::from_utf8(&self.segment).unwrap_or_default()
    }
}

impl FromStr for Path {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PathError(s.to_owned());
        let bytes = s.as_bytes();
        let name: [u8; 3] = bytes
            .get(..3)
            .and_then(|n| n.try_into().ok())
            .filter(|n: &[u8; 3]| n.iter().all(u8::is_ascii_alphanumeric))
            .ok_or_else(err)?;
        let mut cur = Cursor {
            rest: s.get(3..).ok_or_else(err)?,
        };
        let occurrence = cur.bracketed().ok_or_else(err)?.unwrap_or(1);
        if !cur.eat('-') {
            return Err(err());
        }
        let location = cur.location().ok_or_else(err)?;
        Ok(Path {
            segment: name,
            occurrence,
            location,
        })
    }
}

impl FromStr for Location {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cursor { rest: s }
            .location()
            .ok_or_else(|| PathError(s.to_owned()))
    }
}

struct Cursor<'a> {
    rest: &'a str,
}

impl Cursor<'_> {
    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(r) => {
                self.rest = r;
                true
            }
            None => false,
        }
    }

    /// A positive decimal number.
    fn number(&mut self) -> Option<usize> {
        let len = self.rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: usize = self.rest.get(..len)?.parse().ok()?;
        self.rest = self.rest.get(len..)?;
        (n > 0).then_some(n)
    }

    /// `Some(None)` when no bracket follows, `None` on a malformed bracket.
    fn bracketed(&mut self) -> Option<Option<usize>> {
        if !self.eat('[') {
            return Some(None);
        }
        let n = self.number()?;
        self.eat(']').then_some(Some(n))
    }

    fn location(&mut self) -> Option<Location> {
        let field = self.number()?;
        let repetition = self.bracketed()?.unwrap_or(1);
        let component = if self.eat('.') {
            Some(self.number()?)
        } else {
            None
        };
        let subcomponent = if component.is_some() && self.eat('.') {
            Some(self.number()?)
        } else {
            None
        };
        self.rest.is_empty().then_some(Location {
            field,
            repetition,
            component,
            subcomponent,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        s.parse().unwrap()
    }

    #[test]
    fn parses_all_forms() {
        let path = p("PID-5");
        assert_eq!(path.segment(), "PID");
        assert_eq!(path.occurrence, 1);
        assert_eq!(
            path.location,
            Location {
                field: 5,
                repetition: 1,
                component: None,
                subcomponent: None
            }
        );
        let path = p("OBX[2]-5.1.3");
        assert_eq!(path.occurrence, 2);
        assert_eq!(path.location.component, Some(1));
        assert_eq!(path.location.subcomponent, Some(3));
        let path = p("PID-3[2].1");
        assert_eq!(path.location.repetition, 2);
        assert_eq!(path.location.component, Some(1));
        assert_eq!(p("ZX1-10").location.field, 10);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "PID",
            "PID-",
            "PID-0",
            "PID-5.",
            "PID-5.1.2.3",
            "PID[0]-1",
            "PID[-1",
            "P-1",
            "PÍD-1",
            "PID-5x",
            "PID-3[]",
            "PID-99999999999999999999999",
        ] {
            assert!(bad.parse::<Path>().is_err(), "{bad}");
        }
        assert_eq!("5.1".parse::<Location>().unwrap().component, Some(1));
    }
}
