//! Wall-clock times in microseconds since the Unix epoch, and parsing of the events' RFC 3339 timestamps, so
//! that latencies can be taken between this process and the server (both on one machine, one clock).

use std::time::{SystemTime, UNIX_EPOCH};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Now, in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// An RFC 3339 timestamp (`2026-01-01T00:00:00.123456Z`) in microseconds since the epoch.
pub fn parse_rfc3339_micros(text: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

/// Microseconds since the epoch as RFC 3339 (UTC), for reports.
pub fn format_micros(micros: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_micro_and_milli_timestamps() {
        assert_eq!(
            parse_rfc3339_micros("1970-01-01T00:00:01.000002Z"),
            Some(1_000_002)
        );
        assert_eq!(
            parse_rfc3339_micros("1970-01-01T00:00:01.5Z"),
            Some(1_500_000)
        );
        assert_eq!(parse_rfc3339_micros("not a time"), None);
        assert_eq!(format_micros(1_500_000), "1970-01-01T00:00:01.5Z");
    }
}
