//! Subscriptions: validating what a client sends, and the compiled form the router matches events against and
//! the worker delivers with (parsed URL, patterns, JSONPath, prepared signing keys and headers).

use super::signature::{self, Signer};
use super::WebhookError;
use crate::event::{Event, EventType, Pattern, Timestamp};
use crate::store::webhooks::{Filters, RetryConfig, SubscriptionRecord};
use hyper::header::{HeaderName, HeaderValue};
use hyper::http::HeaderMap;
use hyper::Uri;
use serde_json_path::JsonPath;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicIsize;
use std::sync::Arc;

/// How long the previous secret keeps signing after a rotation.
pub const ROTATION_GRACE_MICROS: i64 = 24 * 3600 * 1_000_000;

const MAX_EVENTS: usize = 64;
const MAX_HEADERS: usize = 32;
const MAX_URL_LEN: usize = 2048;
const MAX_RETRIES: u32 = 20;
const MAX_INITIAL_DELAY_MS: u64 = 3_600_000;

/// Headers the server sets itself; a subscription's own headers may not replace them.
pub const RESERVED_HEADERS: [&str; 12] = [
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "user-agent",
    "x-ehrconnect-signature",
    "x-ehrconnect-event",
    "x-ehrconnect-delivery",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// The seed's priority map: lower is more urgent.
pub fn priority_of(event_type: &str) -> u8 {
    match event_type {
        "hl7.error" | "fhir.deleted" => 1,
        "hl7.received" | "fhir.created" => 2,
        "fhir.updated" => 3,
        _ => 5,
    }
}

/// Checks a URL against the scheme policy; returns it parsed.
pub fn validate_url(url: &str, allow_insecure: bool) -> Result<Uri, WebhookError> {
    let bad = |why: &str| WebhookError::Invalid(format!("url: {why}"));
    if url.len() > MAX_URL_LEN {
        return Err(bad("longer than 2048 characters"));
    }
    let uri: Uri = url.parse().map_err(|_| bad("not a valid absolute URL"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if allow_insecure => {}
        Some("http") => return Err(bad("only https:// URLs are accepted")),
        _ => return Err(bad("the scheme must be https://")),
    }
    let host = uri.host().unwrap_or("");
    if host.is_empty() {
        return Err(bad("a host is required"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(bad("user information in the URL is not allowed"));
    }
    Ok(uri)
}

/// Checks the event type list: exact built-in or custom types, or patterns with `*` / `**`.
pub fn validate_events(events: &[String]) -> Result<Vec<Pattern>, WebhookError> {
    if events.is_empty() || events.len() > MAX_EVENTS {
        return Err(WebhookError::Invalid(format!(
            "events: give 1 to {MAX_EVENTS} event types or patterns"
        )));
    }
    events
        .iter()
        .map(|e| {
            let pattern =
                Pattern::parse(e).map_err(|err| WebhookError::Invalid(format!("events: {err}")))?;
            if pattern.is_exact() {
                EventType::parse(e)
                    .map_err(|err| WebhookError::Invalid(format!("events: {err}")))?;
            }
            Ok(pattern)
        })
        .collect()
}

pub fn validate_expression(expression: &str) -> Result<JsonPath, WebhookError> {
    JsonPath::parse(expression).map_err(|e| {
        WebhookError::Invalid(format!("filters.expression is not valid JSONPath: {e}"))
    })
}

pub fn validate_retry(retry: &RetryConfig) -> Result<(), WebhookError> {
    if retry.max_attempts > MAX_RETRIES {
        return Err(WebhookError::Invalid(format!(
            "retryConfig.maxAttempts must be at most {MAX_RETRIES}"
        )));
    }
    if retry.initial_delay == 0 || retry.initial_delay > MAX_INITIAL_DELAY_MS {
        return Err(WebhookError::Invalid(
            "retryConfig.initialDelay must be 1 to 3600000 milliseconds".into(),
        ));
    }
    Ok(())
}

pub fn validate_headers(headers: &BTreeMap<String, String>) -> Result<HeaderMap, WebhookError> {
    if headers.len() > MAX_HEADERS {
        return Err(WebhookError::Invalid(format!(
            "headers: at most {MAX_HEADERS}"
        )));
    }
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(WebhookError::Invalid(format!(
                "headers: '{name}' is set by the server and cannot be overridden"
            )));
        }
        let name = HeaderName::from_bytes(lower.as_bytes()).map_err(|_| {
            WebhookError::Invalid(format!("headers: '{name}' is not a header name"))
        })?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| WebhookError::Invalid(format!("headers: bad value for '{name}'")))?;
        map.insert(name, value);
    }
    Ok(map)
}

pub fn validate_rate_limit(rate: Option<f64>) -> Result<(), WebhookError> {
    match rate {
        Some(r) if !(r.is_finite() && r > 0.0 && r <= 100_000.0) => Err(WebhookError::Invalid(
            "rateLimit must be a number of deliveries per second between 0 and 100000".into(),
        )),
        _ => Ok(()),
    }
}

/// Validates every field of a record that came from a client.
pub fn validate_record(sub: &SubscriptionRecord, allow_insecure: bool) -> Result<(), WebhookError> {
    let name = sub.name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(WebhookError::Invalid(
            "name must be 1-128 characters".into(),
        ));
    }
    validate_url(&sub.url, allow_insecure)?;
    validate_events(&sub.events)?;
    if let Some(expr) = &sub.filters.expression {
        validate_expression(expr)?;
    }
    for (field, list) in [
        ("messageTypes", &sub.filters.message_types),
        ("resourceTypes", &sub.filters.resource_types),
    ] {
        if list.as_ref().is_some_and(|l| l.len() > MAX_EVENTS) {
            return Err(WebhookError::Invalid(format!(
                "filters.{field}: at most {MAX_EVENTS} entries"
            )));
        }
    }
    signature::validate_secret(&sub.secret)
        .map_err(|e| WebhookError::Invalid(format!("secret: {e}")))?;
    validate_retry(&sub.retry)?;
    validate_headers(&sub.headers)?;
    validate_rate_limit(sub.rate_limit)
}

/// A subscription ready for matching and delivery.
pub struct Compiled {
    pub id: Arc<str>,
    pub org_id: String,
    pub record: SubscriptionRecord,
    pub uri: Uri,
    patterns: Vec<Pattern>,
    expression: Option<JsonPath>,
    pub signer: Signer,
    pub headers: HeaderMap,
    /// Deliveries this subscription may still take straight from the writer (claimed at birth); shared across
    /// snapshot reloads, given back as they are recorded.
    pub fresh_budget: Arc<AtomicIsize>,
}

impl Compiled {
    /// Compiles a stored record; `now` decides whether a rotated-out secret still signs.
    pub fn new(record: SubscriptionRecord, now: Timestamp) -> Result<Self, WebhookError> {
        // Stored records were validated on the way in; http:// is accepted here because the setting may have
        // changed since, and the delivery client applies the address policy on every connection anyway.
        let uri = validate_url(&record.url, true)?;
        let patterns = validate_events(&record.events)?;
        let expression = record
            .filters
            .expression
            .as_deref()
            .map(validate_expression)
            .transpose()?;
        let previous = record.previous_secret.as_deref().filter(|_| {
            record
                .previous_secret_until
                .is_some_and(|until| until > now)
        });
        let signer = Signer::new(&record.secret, previous)
            .map_err(|e| WebhookError::Invalid(e.to_string()))?;
        let headers = validate_headers(&record.headers)?;
        Ok(Compiled {
            id: Arc::from(record.id.as_str()),
            org_id: record.org_id.clone(),
            uri,
            patterns,
            expression,
            signer,
            headers,
            record,
            fresh_budget: Arc::new(AtomicIsize::new(0)),
        })
    }

    pub fn filters(&self) -> &Filters {
        &self.record.filters
    }

    pub fn has_expression(&self) -> bool {
        self.expression.is_some()
    }

    /// True when `event` is one this subscription wants. `json` is the event as a JSON value, needed only
    /// when the subscription has an expression (the caller builds it once per event, lazily).
    pub fn matches(&self, event: &Event, json: &mut LazyJson<'_>) -> bool {
        if event.org_id != self.org_id {
            return false;
        }
        if !self
            .patterns
            .iter()
            .any(|p| p.matches(event.event_type.as_str()))
        {
            return false;
        }
        let filters = &self.record.filters;
        if let (Some(allowed), Some(value)) = (&filters.message_types, &event.message_type) {
            if !allowed.iter().any(|a| a == value) {
                return false;
            }
        }
        if let (Some(allowed), Some(value)) = (&filters.resource_types, &event.resource_type) {
            if !allowed.iter().any(|a| a == value) {
                return false;
            }
        }
        match &self.expression {
            None => true,
            Some(path) => json
                .get()
                .is_some_and(|value| !path.query(value).is_empty()),
        }
    }
}

/// An event as a `serde_json::Value`, built on first use.
pub struct LazyJson<'a> {
    event: &'a Event,
    value: Option<Option<serde_json::Value>>,
}

impl<'a> LazyJson<'a> {
    pub fn new(event: &'a Event) -> Self {
        LazyJson { event, value: None }
    }

    pub fn get(&mut self) -> Option<&serde_json::Value> {
        let event = self.event;
        self.value
            .get_or_insert_with(|| {
                serde_json::to_string(event)
                    .ok()
                    .and_then(|text| serde_json::from_str(&text).ok())
            })
            .as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{NewEvent, Source};
    use serde_json::json;

    fn record(events: &[&str], filters: Filters) -> SubscriptionRecord {
        SubscriptionRecord {
            id: "sub-1".into(),
            org_id: "org-a".into(),
            name: "test".into(),
            url: "https://example.com/hook".into(),
            events: events.iter().map(|s| s.to_string()).collect(),
            filters,
            secret: signature::generate_secret(),
            previous_secret: None,
            previous_secret_until: None,
            active: true,
            retry: RetryConfig::default(),
            headers: BTreeMap::new(),
            rate_limit: None,
            disabled_reason: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    fn event(kind: &str, org: &str, data: serde_json::Value) -> Event {
        let new = NewEvent::with_json(
            EventType::parse(kind).expect("type"),
            org,
            Source::Api,
            &data,
        )
        .expect("json");
        Event::from_new(new, uuid::Uuid::now_v7(), Timestamp(1))
    }

    fn matches(sub: &SubscriptionRecord, e: &Event) -> bool {
        let compiled = Compiled::new(sub.clone(), Timestamp(0)).expect("compile");
        compiled.matches(e, &mut LazyJson::new(e))
    }

    #[test]
    fn types_wildcards_and_orgs() {
        let sub = record(&["hl7.*"], Filters::default());
        let mut e = event("hl7.received", "org-a", json!({}));
        e.message_type = Some("ADT^A01".into());
        assert!(matches(&sub, &e));
        assert!(!matches(&sub, &event("fhir.created", "org-a", json!({}))));
        let mut other_org = e.clone();
        other_org.org_id = "org-b".into();
        assert!(!matches(&sub, &other_org), "never another org's events");
        assert!(matches(&record(&["**"], Filters::default()), &e));
    }

    #[test]
    fn message_and_resource_filters_follow_the_seed() {
        let sub = record(
            &["**"],
            Filters {
                message_types: Some(vec!["ADT^A01".into()]),
                resource_types: Some(vec!["Patient".into()]),
                expression: None,
            },
        );
        let mut adt = event("hl7.received", "org-a", json!({}));
        adt.message_type = Some("ADT^A01".into());
        let mut orm = adt.clone();
        orm.message_type = Some("ORM^O01".into());
        assert!(matches(&sub, &adt));
        assert!(!matches(&sub, &orm));
        let mut obs = event("fhir.created", "org-a", json!({}));
        obs.resource_type = Some("Observation".into());
        assert!(!matches(&sub, &obs));
        assert!(
            matches(&sub, &event("custom.x", "org-a", json!({}))),
            "no type to filter on"
        );
    }

    #[test]
    fn jsonpath_expressions_select_events() {
        let sub = record(
            &["**"],
            Filters {
                expression: Some("$.data.pid[?@.sex == 'F']".into()),
                ..Default::default()
            },
        );
        assert!(matches(
            &sub,
            &event("custom.x", "org-a", json!({"pid": [{"sex": "F"}]}))
        ));
        assert!(!matches(
            &sub,
            &event("custom.x", "org-a", json!({"pid": [{"sex": "M"}]}))
        ));
        assert!(!matches(&sub, &event("custom.x", "org-a", json!({}))));
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        assert!(validate_url("ftp://x", false).is_err());
        assert!(validate_url("http://example.com", false).is_err());
        assert!(validate_url("http://example.com", true).is_ok());
        assert!(validate_url("https://user:pw@example.com", false).is_err());
        assert!(validate_url("not a url", false).is_err());
        assert!(validate_events(&["hl7.nope".into()]).is_err());
        assert!(validate_events(&["hl7.*".into(), "custom.lab".into()]).is_ok());
        assert!(validate_events(&[]).is_err());
        assert!(validate_expression("$.data[").is_err());
        let mut headers = BTreeMap::new();
        headers.insert("Webhook-Signature".to_string(), "x".to_string());
        assert!(validate_headers(&headers).is_err());
        assert!(validate_rate_limit(Some(-1.0)).is_err());
        assert_eq!(priority_of("hl7.error"), 1);
        assert_eq!(priority_of("fhir.updated"), 3);
        assert_eq!(priority_of("custom.x"), 5);
    }
}
