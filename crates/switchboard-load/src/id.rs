//! Compact forms of what the driver keeps per event: a soak at 10,000 events/s for 30 minutes tracks 18 million
//! events in the history, the webhook receiver and every SSE client, so an id is 16 bytes instead of a 36-character
//! string and a repeated name (event type, source) is one shared allocation.

use serde::{Deserialize, Deserializer};
use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

/// An event id: a UUID as its 128 bits. Text that is not a UUID maps to a stable hash of it, so a malformed id is
/// still counted (as missing) rather than dropped.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(u128);

impl EventId {
    pub fn parse(text: &str) -> EventId {
        // Called for every event the receiver and the SSE clients see: no allocation.
        let mut bits: u128 = 0;
        let mut digits = 0;
        for b in text.bytes().filter(|b| *b != b'-') {
            let Some(nibble) = (b as char).to_digit(16) else {
                return EventId(fnv1a(text.as_bytes()));
            };
            digits += 1;
            if digits > 32 {
                return EventId(fnv1a(text.as_bytes()));
            }
            bits = bits << 4 | u128::from(nibble);
        }
        if digits == 32 {
            EventId(bits)
        } else {
            EventId(fnv1a(text.as_bytes()))
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u128 {
    let mut hash: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in bytes {
        hash ^= u128::from(*b);
        hash = hash.wrapping_mul(0x0000000001000000000000000000013B);
    }
    hash
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = format!("{:032x}", self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(EventId::parse(&text))
    }
}

/// One shared copy of `name` (event types, sources: a handful of distinct values repeated millions of times).
pub fn intern(name: &str) -> Arc<str> {
    static NAMES: OnceLock<Mutex<HashSet<Arc<str>>>> = OnceLock::new();
    let names = NAMES.get_or_init(Default::default);
    let Ok(mut names) = names.lock() else {
        return Arc::from(name);
    };
    if let Some(existing) = names.get(name) {
        return Arc::clone(existing);
    }
    let shared: Arc<str> = Arc::from(name);
    names.insert(Arc::clone(&shared));
    shared
}

/// `serde(deserialize_with)` for an interned string.
pub fn interned<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    Ok(intern(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_round_trip_and_other_text_does_not_collide_with_them() {
        let text = "0192f3a4-5b6c-7d8e-9fa0-b1c2d3e4f5a6";
        let id = EventId::parse(text);
        assert_eq!(id.to_string(), text);
        assert_eq!(EventId::parse(&text.to_uppercase()), id);
        assert_ne!(EventId::parse("not-a-uuid"), EventId::parse("not-a-uuid2"));
        assert_eq!(EventId::parse("not-a-uuid"), EventId::parse("not-a-uuid"));
    }

    #[test]
    fn interned_names_share_one_allocation() {
        let a = intern("fhir.created");
        let b = intern(&String::from("fhir.created"));
        assert!(Arc::ptr_eq(&a, &b));
    }
}
