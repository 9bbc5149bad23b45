//! The driver's own logic: the backoff check, the webhook loss check and the subscription pattern matching.

use std::collections::HashMap;
use switchboard_load::id::EventId;
use switchboard_load::loss::{check_backoff, check_webhooks, matches};
use switchboard_load::receiver::{Attempt, Delivery};
use switchboard_load::target::RetryConfig;

const SEED: RetryConfig = RetryConfig {
    max_attempts: 5,
    exponential: true,
    initial_delay_ms: 2000,
};

fn delivery(event_micros: i64, attempts: &[(i64, u16)]) -> Delivery {
    Delivery {
        event_micros: Some(event_micros),
        event_type: Some("custom.load.api".into()),
        attempts: attempts
            .iter()
            .map(|&(at_micros, status)| Attempt { at_micros, status })
            .collect(),
    }
}

#[test]
fn exact_backoff_is_measured_per_retry() {
    let ms = 1000;
    let mut d = HashMap::new();
    // Fails twice, then succeeds: gaps 2.010 s and 4.020 s.
    d.insert(
        EventId::parse("a"),
        delivery(0, &[(10 * ms, 500), (2020 * ms, 500), (6040 * ms, 204)]),
    );
    // A retry 100 ms early.
    d.insert(
        EventId::parse("b"),
        delivery(0, &[(0, 500), (1900 * ms, 204)]),
    );
    let check = check_backoff(&d, SEED, None);
    assert_eq!(check.gaps_checked, 3);
    assert_eq!(check.early, 1);
    assert_eq!(check.by_retry.len(), 2);
    assert_eq!(check.by_retry[1].retry, 2);
    assert_eq!(check.by_retry[1].expected_ms, 4000);
    assert_eq!(check.by_retry[1].lateness.max_ms, 20.0);
    assert_eq!(check.late_over_1s, 0);
}

#[test]
fn gaps_after_a_redrive_are_not_backoff() {
    let mut d = HashMap::new();
    d.insert(
        EventId::parse("a"),
        delivery(0, &[(0, 500), (2_000_000, 500), (90_000_000, 204)]),
    );
    let check = check_backoff(&d, SEED, Some(80_000_000));
    assert_eq!(check.gaps_checked, 1);
    assert_eq!(check.early, 0);
}

#[test]
fn loss_latency_and_duplicates() {
    let mut d = HashMap::new();
    d.insert(
        EventId::parse("a"),
        delivery(0, &[(1_000, 500), (2_002_000, 204), (2_500_000, 204)]),
    );
    d.insert(EventId::parse("b"), delivery(0, &[(5_000, 204)]));
    d.insert(EventId::parse("c"), delivery(0, &[(5_000, 500)]));
    let expected: Vec<EventId> = ["a", "b", "c", "d"]
        .iter()
        .map(|s| EventId::parse(s))
        .collect();
    let check = check_webhooks(&expected, &d, SEED, None);
    assert_eq!(check.delivered, 2);
    assert_eq!(check.undelivered, 2);
    assert_eq!(check.duplicates, 1);
    assert_eq!(check.requests, 5);
    assert_eq!(check.failed_requests, 2);
    assert_eq!(check.latency.count, 2);
    assert_eq!(check.latency.max_ms, 2002.0);
}

#[test]
fn subscription_patterns() {
    let p: Vec<String> = ["hl7.received", "custom.**"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(matches(&p, "hl7.received"));
    assert!(matches(&p, "custom.load.api"));
    assert!(!matches(&p, "customer.x"));
    assert!(!matches(&p, "hl7.parsed"));
    assert!(matches(&["**".to_string()], "anything.at.all"));
}
