//! The server under test, over its HTTP API: an org key made with the admin token, the webhook subscription,
//! redrive of dead deliveries, and the history export the loss check reads. [`procstat`] samples the server's
//! CPU and memory from `/proc`.

pub mod procstat;

use crate::id::EventId;
use anyhow::{anyhow, bail, Context};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// A subscription's retry settings, as in the API's `retryConfig`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct RetryConfig {
    /// Retries after the first attempt.
    pub max_attempts: u32,
    pub exponential: bool,
    pub initial_delay_ms: u64,
}

impl RetryConfig {
    /// The wait before retry `n` (1-based).
    pub fn delay_ms(&self, n: u32) -> u64 {
        if self.exponential {
            self.initial_delay_ms
                .saturating_mul(1u64 << n.saturating_sub(1).min(40))
        } else {
            self.initial_delay_ms.saturating_mul(u64::from(n))
        }
    }

    pub fn to_json(self) -> Value {
        json!({"maxAttempts": self.max_attempts,
            "backoffType": if self.exponential { "exponential" } else { "linear" },
            "initialDelay": self.initial_delay_ms})
    }
}

/// A client of the server under test.
#[derive(Clone)]
pub struct Target {
    pub base: String,
    pub client: reqwest::Client,
}

/// An event as the history export shows it (only what the loss check needs).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEvent {
    pub id: EventId,
    pub seq: i64,
    #[serde(deserialize_with = "crate::id::interned")]
    pub event_type: Arc<str>,
    /// Microseconds since the epoch (`0` when the text was not a time).
    #[serde(deserialize_with = "micros")]
    pub timestamp: i64,
    #[serde(default, deserialize_with = "crate::id::interned")]
    pub source: Arc<str>,
    #[serde(default)]
    pub message_control_id: Option<Box<str>>,
    #[serde(default)]
    pub resource_id: Option<Box<str>>,
}

fn micros<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    Ok(crate::clock::parse_rfc3339_micros(&text).unwrap_or(0))
}

impl Target {
    pub fn new(base: &str, client: reqwest::Client) -> Self {
        Target {
            base: base.trim_end_matches('/').to_string(),
            client,
        }
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("POST {path} answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Waits until `GET /health/ready` (or the baseline's) answers 200.
    pub async fn wait_ready(&self, secs: u64) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let ok = self
                .client
                .get(format!("{}/health/ready", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} not ready after {secs} s", self.base);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Makes an org key with the admin token.
    pub async fn create_key(&self, admin: &str, org: &str) -> anyhow::Result<String> {
        let v = self
            .post(
                admin,
                "/api/keys",
                json!({"orgId": org, "name": "load suite"}),
            )
            .await?;
        v.get("key")
            .and_then(|k| k.as_str())
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no key in the answer: {v}"))
    }

    /// Subscribes `url` to `events`; returns the subscription id.
    pub async fn create_subscription(
        &self,
        key: &str,
        url: &str,
        events: &[String],
        retry: RetryConfig,
        secret: &str,
    ) -> anyhow::Result<String> {
        let body = json!({"name": "load suite receiver", "url": url, "events": events,
            "retryConfig": retry.to_json(), "secret": secret});
        let v = self.post(key, "/api/webhooks", body).await?;
        v.get("id")
            .and_then(|k| k.as_str())
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no id in the answer: {v}"))
    }

    /// Sends every dead delivery of the subscription again.
    pub async fn redrive(&self, key: &str, subscription: &str) -> anyhow::Result<Value> {
        self.post(
            key,
            &format!("/api/webhooks/{subscription}/redrive"),
            json!({}),
        )
        .await
    }

    /// Every event of the key's org, oldest first, from the streaming export.
    pub async fn export_history(&self, key: &str) -> anyhow::Result<Vec<HistoryEvent>> {
        let mut response = self
            .client
            .get(format!("{}/api/events/export?order=asc", self.base))
            .bearer_auth(key)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("export answered {}", response.status());
        }
        let mut events = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            buf.extend_from_slice(&chunk);
            let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            for line in buf[..last_nl].split(|&b| b == b'\n') {
                if !line.is_empty() {
                    events.push(serde_json::from_slice::<HistoryEvent>(line)?);
                }
            }
            buf.drain(..=last_nl);
        }
        if !buf.iter().all(u8::is_ascii_whitespace) {
            events.push(serde_json::from_slice::<HistoryEvent>(&buf)?);
        }
        Ok(events)
    }

    /// The sum of a Prometheus metric's samples on `/metrics` (0 when absent).
    pub async fn metric_sum(&self, name: &str) -> f64 {
        let Ok(r) = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
        else {
            return 0.0;
        };
        let text = r.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays() {
        let seed = RetryConfig {
            max_attempts: 5,
            exponential: true,
            initial_delay_ms: 2000,
        };
        let d: Vec<u64> = (1..=5).map(|n| seed.delay_ms(n)).collect();
        assert_eq!(d, vec![2000, 4000, 8000, 16000, 32000]);
        let linear = RetryConfig {
            exponential: false,
            ..seed
        };
        assert_eq!(linear.delay_ms(3), 6000);
    }
}
