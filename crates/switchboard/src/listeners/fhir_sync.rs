//! FHIR sync: a durable listener that forwards `fhir.created`, `fhir.updated` and `fhir.deleted` to an external
//! FHIR server (`PUT {base}/{type}/{id}` with the resource, `DELETE {base}/{type}/{id}`), with its own cursor so
//! it resumes after a restart. A network error or a 5xx / 429 fails the group and the runner retries it with
//! backoff (the writes are idempotent PUTs and DELETEs); any other 4xx is logged, counted and skipped, since
//! retrying cannot fix it.

use crate::event::{Event, Pattern};
use crate::hub::DurableHandler;
use crate::webhooks::client::DeliveryClient;
use crate::webhooks::network::NetworkPolicy;
use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// `[fhir_sync]`: where to forward FHIR writes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FhirSyncConfig {
    /// The external server's base URL (e.g. `https://fhir.example.org/r4`); empty disables the sync.
    pub base_url: String,
    /// Optional bearer token for the external server.
    pub token: String,
    /// Resource types to forward; empty forwards all.
    pub resource_types: Vec<String>,
    /// Orgs whose writes are forwarded; empty forwards all.
    pub orgs: Vec<String>,
    pub timeout_ms: u64,
}

pub struct FhirSync {
    config: FhirSyncConfig,
    client: DeliveryClient,
}

impl FhirSync {
    pub const NAME: &'static str = "fhir-sync";

    pub fn new(config: FhirSyncConfig) -> anyhow::Result<Self> {
        // The target is chosen by the operator, not by API users: no address is off limits.
        let policy = NetworkPolicy::parse(&["0.0.0.0/0".to_string(), "::/0".to_string()])
            .map_err(anyhow::Error::msg)?;
        let client = DeliveryClient::new(policy, Duration::from_millis(config.timeout_ms.max(1)))?;
        Ok(FhirSync { config, client })
    }

    fn wanted(&self, event: &Event) -> bool {
        let listed =
            |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
        listed(&self.config.orgs, &event.org_id)
            && event
                .resource_type
                .as_deref()
                .is_some_and(|t| listed(&self.config.resource_types, t))
            && event.resource_id.is_some()
    }

    async fn forward(&self, event: &Event) -> anyhow::Result<()> {
        let (Some(kind), Some(id)) = (&event.resource_type, &event.resource_id) else {
            return Ok(());
        };
        let uri: Uri =
            format!("{}/{kind}/{id}", self.config.base_url.trim_end_matches('/')).parse()?;
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/fhir+json"),
        );
        if !self.config.token.is_empty() {
            headers.insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {}", self.config.token))?,
            );
        }
        let (method, body) = if event.event_type.as_str() == "fhir.deleted" {
            (Method::DELETE, Bytes::new())
        } else {
            (
                Method::PUT,
                Bytes::copy_from_slice(event.data.get().as_bytes()),
            )
        };
        let answer = self
            .client
            .send(method.clone(), &uri, headers, body)
            .await?;
        let outcome = match answer.status {
            200..=299 | 404 | 410 if method == Method::DELETE => "ok",
            200..=299 => "ok",
            429 | 500..=599 => {
                anyhow::bail!("{method} {uri} answered {}; will retry", answer.status)
            }
            _ => {
                tracing::warn!(%uri, status = answer.status, body = %answer.body, "the FHIR server refused a synced write; skipping it");
                "refused"
            }
        };
        metrics::counter!("switchboard_fhir_sync_total", "outcome" => outcome).increment(1);
        Ok(())
    }
}

#[async_trait]
impl DurableHandler for FhirSync {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn patterns(&self) -> Vec<Pattern> {
        ["fhir.created", "fhir.updated", "fhir.deleted"]
            .iter()
            .filter_map(|p| Pattern::parse(p).ok())
            .collect()
    }

    async fn handle(&self, events: &[Arc<Event>], _through: i64) -> anyhow::Result<()> {
        // In order: a later version must not overtake an earlier one on the external server.
        for event in events.iter().filter(|e| self.wanted(e)) {
            self.forward(event).await?;
        }
        Ok(())
    }
}
