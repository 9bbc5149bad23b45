//! Event type patterns in the spirit of EventEmitter2: segments separated by dots, `*` matches exactly one
//! segment, `**` matches any number of segments (including none).
//!
//! `hl7.received`, `hl7.*`, `*.error`, `custom.**` and `**` are all patterns.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    One,
    Any,
}

/// A parsed event type pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: Box<str>,
    segments: Vec<Segment>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad event type pattern '{0}': use dot-separated segments of a-z, 0-9, '_', '-', or the wildcards '*' and '**'")]
pub struct PatternError(pub String);

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let bad = || PatternError(text.to_string());
        if text.is_empty() || text.len() > 128 {
            return Err(bad());
        }
        let segments = text
            .split('.')
            .map(|s| match s {
                "*" => Ok(Segment::One),
                "**" => Ok(Segment::Any),
                "" => Err(bad()),
                lit if lit.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                }) =>
                {
                    Ok(Segment::Literal(lit.into()))
                }
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pattern {
            text: text.into(),
            segments,
        })
    }

    /// A pattern that matches every event.
    pub fn all() -> Self {
        Pattern {
            text: "**".into(),
            segments: vec![Segment::Any],
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the pattern has no wildcard, so it names exactly one type.
    pub fn is_exact(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    /// A POSIX regular expression that matches `'.' || event_type` exactly when this pattern matches the type
    /// (how SQL backends without custom functions filter by pattern). Literals hold only `[a-z0-9_-]`.
    pub fn dotted_regex(&self) -> String {
        let mut regex = String::from("^");
        for segment in &self.segments {
            match segment {
                Segment::Literal(lit) => {
                    regex.push_str("\\.");
                    regex.push_str(lit);
                }
                Segment::One => regex.push_str("\\.[^.]+"),
                Segment::Any => regex.push_str("(\\.[^.]+)*"),
            }
        }
        regex.push('$');
        regex
    }

    /// Matches without allocating: this runs for every event and every listener.
    pub fn matches(&self, event_type: &str) -> bool {
        matches_from(&self.segments, Some(event_type))
    }
}

fn split(s: &str) -> (&str, Option<&str>) {
    match s.split_once('.') {
        Some((head, tail)) => (head, Some(tail)),
        None => (s, None),
    }
}

/// `rest` is what remains of the type name, `None` once every segment is consumed.
fn matches_from(pattern: &[Segment], rest: Option<&str>) -> bool {
    match pattern.split_first() {
        None => rest.is_none(),
        Some((Segment::Any, more_pattern)) => {
            let mut remaining = rest;
            loop {
                if matches_from(more_pattern, remaining) {
                    return true;
                }
                match remaining {
                    None => return false,
                    Some(s) => remaining = split(s).1,
                }
            }
        }
        Some((segment, more_pattern)) => match rest {
            None => false,
            Some(s) => {
                let (head, tail) = split(s);
                let here = match segment {
                    Segment::Literal(lit) => **lit == *head,
                    _ => true,
                };
                here && matches_from(more_pattern, tail)
            }
        },
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// True when any of `patterns` matches; an empty list matches everything.
pub fn any_matches(patterns: &[Pattern], event_type: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| p.matches(event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Pattern::parse(p).expect("pattern").matches(t)
    }

    #[test]
    fn wildcards_follow_eventemitter2() {
        assert!(m("hl7.received", "hl7.received"));
        assert!(!m("hl7.received", "hl7.sent"));
        assert!(m("hl7.*", "hl7.error"));
        assert!(!m("hl7.*", "fhir.created"));
        assert!(!m("custom.*", "custom.lab.critical"));
        assert!(m("custom.**", "custom.lab.critical"));
        assert!(m("*.error", "hl7.error"));
        assert!(!m("*.error", "hl7.received"));
        assert!(m("**", "anything.at.all"));
        assert!(m("**.failed", "transform.failed"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "hl7..x", "HL7.*", "hl7.re*", "a b"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_list_matches_everything() {
        assert!(any_matches(&[], "hl7.received"));
    }
}
