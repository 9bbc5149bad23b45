//! The HTTP paths: `POST /api/events` (custom.* events, a share of them of the type the Socket.IO clients follow)
//! and FHIR creates (`POST /fhir/Patient`). An operation is acknowledged by a `201` and yields the event id or
//! the resource id.

use super::{OpResult, Operation};
use serde_json::json;
use std::sync::Arc;

/// Time limit of one request (the latency still counts from the due time).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The event type the API path publishes for ordinary events.
pub const API_EVENT_TYPE: &str = "custom.load.api";
/// The event type the Socket.IO clients follow (a low rate, under the server's per-socket limit).
pub const SIO_EVENT_TYPE: &str = "custom.load.sio";

/// `POST /api/events`; every `sio_every`-th event (0: none) is of [`SIO_EVENT_TYPE`].
pub fn api_events(client: reqwest::Client, base: &str, key: &str, sio_every: u64) -> Operation {
    let url: Arc<str> = format!("{base}/api/events").into();
    let auth: Arc<str> = format!("Bearer {key}").into();
    Arc::new(move |i| {
        let (client, url, auth) = (client.clone(), url.clone(), auth.clone());
        Box::pin(async move {
            let event_type = if sio_every > 0 && i % sio_every == 0 {
                SIO_EVENT_TYPE
            } else {
                API_EVENT_TYPE
            };
            let body = json!({
                "eventType": event_type,
                "data": {"n": i, "ward": "3B", "note": "load suite event with a payload of a realistic size"},
                "metadata": {"driver": "switchboard-load"}
            });
            let response = client
                .post(&*url)
                .timeout(REQUEST_TIMEOUT)
                .header("authorization", &*auth)
                .json(&body)
                .send()
                .await;
            id_of_created(response, "id").await
        })
    })
}

/// `POST /fhir/Patient` with a small Patient resource.
pub fn fhir_creates(client: reqwest::Client, base: &str, key: &str) -> Operation {
    let url: Arc<str> = format!("{base}/fhir/Patient").into();
    let auth: Arc<str> = format!("Bearer {key}").into();
    Arc::new(move |i| {
        let (client, url, auth) = (client.clone(), url.clone(), auth.clone());
        Box::pin(async move {
            let body = json!({
                "resourceType": "Patient",
                "identifier": [{"system": "urn:load", "value": format!("P{i}")}],
                "name": [{"family": "Load", "given": [format!("Test{i}")]}],
                "gender": if i % 2 == 0 { "female" } else { "male" },
                "birthDate": "1980-01-01"
            });
            let response = client
                .post(&*url)
                .header("authorization", &*auth)
                .timeout(REQUEST_TIMEOUT)
                .header("content-type", "application/fhir+json")
                .body(body.to_string())
                .send()
                .await;
            id_of_created(response, "id").await
        })
    })
}

/// A `201` answer's `field` (a string), or the failure as a short label for the report.
async fn id_of_created(
    response: Result<reqwest::Response, reqwest::Error>,
    field: &str,
) -> OpResult {
    let response = response.map_err(|e| {
        let kind = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connect"
        } else {
            "request"
        };
        // The innermost cause says what happened (reset, closed, …); it becomes the label.
        let mut cause: &dyn std::error::Error = &e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        let cause: String = cause.to_string().chars().take(60).collect();
        format!("{kind}: {cause}")
    })?;
    let status = response.status();
    if status.as_u16() != 201 {
        return Err(format!("http {}", status.as_u16()));
    }
    let body: serde_json::Value = response.json().await.map_err(|_| "bad body".to_string())?;
    body.get(field)
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("no {field} in answer"))
}
