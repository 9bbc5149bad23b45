//! The retry schedule as data: what happens to a delivery after an attempt.
//!
//! With the default `retryConfig` the first attempt runs at once and the retries follow 2 s, 4 s, 8 s, 16 s and
//! 32 s after each failure; after the fifth retry fails the delivery is dead (dead-letter queue).

use crate::store::webhooks::{BackoffType, RetryConfig};
use std::time::{Duration, SystemTime};

/// The longest single delay the schedule produces, whatever the configuration.
const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

/// The delay before retry `n` (1-based), or `None` when the configuration allows no such retry.
pub fn retry_delay(retry: &RetryConfig, n: u32) -> Option<Duration> {
    if n == 0 || n > retry.max_attempts {
        return None;
    }
    let base = retry.initial_delay;
    let ms = match retry.backoff_type {
        BackoffType::Exponential => base.saturating_mul(1u64 << (n - 1).min(40)),
        BackoffType::Linear => base.saturating_mul(u64::from(n)),
    };
    Some(Duration::from_millis(ms).min(MAX_DELAY))
}

/// The whole schedule: the delays before each retry.
pub fn schedule(retry: &RetryConfig) -> Vec<Duration> {
    (1..=retry.max_attempts)
        .filter_map(|n| retry_delay(retry, n))
        .collect()
}

/// What to do with a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Succeeded,
    /// Try again after this long.
    RetryIn(Duration),
    /// No retries left: to the dead-letter queue.
    Dead,
    /// The receiver said 410 Gone: dead, and the subscription is switched off.
    Gone,
}

/// Decides after attempt number `attempts` (1 for the first) answered with `status` (`None`: no response —
/// timeout, refused connection, blocked address). `retry_after` is the receiver's `Retry-After`, honoured on
/// 429 and 503 but never beyond twice the scheduled delay.
pub fn next_step(
    retry: &RetryConfig,
    attempts: u32,
    status: Option<u16>,
    retry_after: Option<Duration>,
) -> Next {
    match status {
        Some(code) if (200..300).contains(&code) => return Next::Succeeded,
        Some(410) => return Next::Gone,
        _ => {}
    }
    let Some(scheduled) = retry_delay(retry, attempts) else {
        return Next::Dead;
    };
    match (status, retry_after) {
        (Some(429 | 503), Some(asked)) => Next::RetryIn(asked.min(scheduled.saturating_mul(2))),
        _ => Next::RetryIn(scheduled),
    }
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(list: &[u64]) -> Vec<Duration> {
        list.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    #[test]
    fn default_schedule_is_2_4_8_16_32_seconds() {
        assert_eq!(schedule(&RetryConfig::default()), secs(&[2, 4, 8, 16, 32]));
    }

    #[test]
    fn linear_schedule_grows_by_the_initial_delay() {
        let retry = RetryConfig {
            max_attempts: 4,
            backoff_type: BackoffType::Linear,
            initial_delay: 1500,
        };
        let expected: Vec<_> = [1500, 3000, 4500, 6000]
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect();
        assert_eq!(schedule(&retry), expected);
    }

    #[test]
    fn each_failure_moves_along_the_schedule_then_dies() {
        let retry = RetryConfig::default();
        let mut seen = Vec::new();
        for attempt in 1..=6 {
            match next_step(&retry, attempt, Some(500), None) {
                Next::RetryIn(d) => seen.push(d),
                Next::Dead => {
                    assert_eq!(attempt, 6, "dead after the fifth retry");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, secs(&[2, 4, 8, 16, 32]));
        assert_eq!(
            next_step(&retry, 1, None, None),
            Next::RetryIn(secs(&[2])[0])
        );
    }

    #[test]
    fn outcomes_by_status() {
        let retry = RetryConfig::default();
        assert_eq!(next_step(&retry, 1, Some(204), None), Next::Succeeded);
        assert_eq!(next_step(&retry, 3, Some(410), None), Next::Gone);
        assert_eq!(
            next_step(&retry, 1, Some(302), None),
            Next::RetryIn(Duration::from_secs(2)),
            "redirects are failures"
        );
        let none = RetryConfig {
            max_attempts: 0,
            ..retry
        };
        assert_eq!(next_step(&none, 1, Some(500), None), Next::Dead);
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_up_to_twice_the_schedule() {
        let retry = RetryConfig::default();
        let after = |s| Some(Duration::from_secs(s));
        assert_eq!(
            next_step(&retry, 1, Some(429), after(3)),
            Next::RetryIn(Duration::from_secs(3))
        );
        assert_eq!(
            next_step(&retry, 1, Some(503), after(60)),
            Next::RetryIn(Duration::from_secs(4)),
            "capped at 2 × 2 s"
        );
        assert_eq!(
            next_step(&retry, 1, Some(500), after(60)),
            Next::RetryIn(Duration::from_secs(2)),
            "only 429 and 503"
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
