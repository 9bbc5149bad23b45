//! Configuration: commented defaults embedded in the binary (`config.default.toml`), then an optional TOML file,
//! then `SWITCHBOARD_*` environment variables; validated once at start.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub const DEFAULTS: &str = include_str!("../config.default.toml");
const ENV_PREFIX: &str = "SWITCHBOARD_";
/// Environment names that do not follow `<SECTION>_<KEY>`.
const ENV_ALIASES: &[(&str, &str)] = &[("ADMIN_TOKEN", "auth.admin_token")];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("environment variable {name}: {reason}")]
    Env { name: String, reason: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub hub: HubSettings,
    pub retention: RetentionConfig,
    pub listeners: ListenersConfig,
    pub auth: AuthConfig,
    pub webhooks: crate::webhooks::WebhooksConfig,
    pub mllp: crate::mllp::MllpConfig,
    pub hl7: crate::mllp::Hl7Config,
    pub realtime: RealtimeConfig,
    pub fhir_sync: crate::listeners::FhirSyncConfig,
}

/// Which built-in durable listeners run.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenersConfig {
    pub transformer: bool,
    pub task_creator: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    pub max_body_bytes: usize,
    pub request_timeout_ms: u64,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HubSettings {
    pub batch_max_events: usize,
    pub batch_linger_ms: u64,
    pub queue_capacity: usize,
    pub max_event_bytes: usize,
    pub listener_queue_capacity: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    pub days: u32,
    pub interval_secs: u64,
    pub batch_size: usize,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub admin_token: String,
}

/// Live push to browsers: Socket.IO and Server-Sent Events (see `crate::realtime`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RealtimeConfig {
    pub socketio_path: String,
    pub max_events_per_sec: u32,
    pub max_inbound_per_sec: u32,
    pub max_connections: usize,
    pub max_subscriptions: usize,
    pub send_buffer: usize,
    pub sse_keepalive_secs: u64,
    pub sse_retry_ms: u64,
}

impl RealtimeConfig {
    fn validate(&self) -> Result<(), String> {
        let path = self.socketio_path.trim_end_matches('/');
        if !path.starts_with('/')
            || path.len() < 2
            || path.starts_with("/api")
            || path.starts_with("/health")
        {
            return Err("realtime.socketio_path must be a path such as /socket.io, outside /api and /health".into());
        }
        if self.max_events_per_sec == 0
            || self.max_inbound_per_sec == 0
            || self.max_connections == 0
            || self.send_buffer == 0
            || self.sse_keepalive_secs == 0
        {
            return Err("realtime.max_events_per_sec, max_inbound_per_sec, max_connections, send_buffer and sse_keepalive_secs must be positive".into());
        }
        Ok(())
    }
}

impl Config {
    /// Defaults, then `file`, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::load_from(file, &vars)
    }

    /// As [`Config::load`], with the environment given explicitly (for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let mut merged: toml::Table = DEFAULTS.parse().map_err(|source| ConfigError::Parse {
            path: "<defaults>".into(),
            source,
        })?;
        if let Some(path) = file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: shown.clone(),
                source,
            })?;
            let overlay: toml::Table = text.parse().map_err(|source| ConfigError::Parse {
                path: shown,
                source,
            })?;
            merge(&mut merged, overlay);
        }
        apply_env(&mut merged, env)?;
        let config: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Defaults only, for tests and tools.
    pub fn defaults() -> Result<Config, ConfigError> {
        Self::load_from(None, &HashMap::new())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: &str| Err(ConfigError::Invalid(msg.to_string()));
        let url = &self.database.url;
        if !["sqlite://", "postgres://", "postgresql://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            return invalid("database.url must start with sqlite:// or postgres://");
        }
        if self.hub.batch_max_events == 0
            || self.hub.queue_capacity == 0
            || self.hub.listener_queue_capacity == 0
        {
            return invalid("hub.batch_max_events, hub.queue_capacity and hub.listener_queue_capacity must be positive");
        }
        if self.hub.max_event_bytes < 1024 {
            return invalid("hub.max_event_bytes must be at least 1024");
        }
        if self.http.max_body_bytes < self.hub.max_event_bytes {
            return invalid("http.max_body_bytes must be at least hub.max_event_bytes");
        }
        if self.retention.batch_size == 0 || self.retention.interval_secs == 0 {
            return invalid("retention.batch_size and retention.interval_secs must be positive");
        }
        self.webhooks.validate().map_err(ConfigError::Invalid)?;
        self.mllp.validate().map_err(ConfigError::Invalid)?;
        self.hl7.validate().map_err(ConfigError::Invalid)?;
        self.realtime.validate().map_err(ConfigError::Invalid)?;
        Ok(())
    }

    pub fn hub_config(&self) -> crate::hub::HubConfig {
        crate::hub::HubConfig {
            batch_max_events: self.hub.batch_max_events,
            batch_linger: Duration::from_millis(self.hub.batch_linger_ms),
            queue_capacity: self.hub.queue_capacity,
            max_event_bytes: self.hub.max_event_bytes,
            listener_queue_capacity: self.hub.listener_queue_capacity,
            ..Default::default()
        }
    }

    /// The effective configuration as TOML, secrets replaced by `<hidden>`.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        if !shown.fhir_sync.token.is_empty() {
            shown.fhir_sync.token = "<hidden>".into();
        }
        if !shown.auth.admin_token.is_empty() {
            shown.auth.admin_token = "<hidden>".into();
        }
        shown.database.url = redact_url(&shown.database.url);
        toml::to_string_pretty(&shown).unwrap_or_default()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_redacted_toml())
    }
}

/// Hides the password of a URL such as `postgres://user:secret@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:<hidden>@{host}")
        }
        None => url.to_string(),
    }
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Applies `SWITCHBOARD_<SECTION>_<KEY>` variables, typed after the default value of the setting they name.
fn apply_env(config: &mut toml::Table, env: &HashMap<String, String>) -> Result<(), ConfigError> {
    let mut names: Vec<&String> = env.keys().filter(|k| k.starts_with(ENV_PREFIX)).collect();
    names.sort();
    for name in names {
        let raw = &env[name];
        let rest = name[ENV_PREFIX.len()..].to_ascii_lowercase();
        let env_err = |reason: String| ConfigError::Env {
            name: name.clone(),
            reason,
        };
        let target = ENV_ALIASES
            .iter()
            .find(|(alias, _)| alias.eq_ignore_ascii_case(&rest))
            .map(|(_, path)| {
                path.split_once('.')
                    .map(|(s, k)| (s.to_string(), k.to_string()))
            })
            .unwrap_or_else(|| locate(config, &rest));
        let Some((section, key)) = target else {
            // Variables the binary does not know (SWITCHBOARD_TEST_*, say) are ignored, not fatal.
            tracing::debug!(variable = %name, "ignoring unknown SWITCHBOARD_ variable");
            continue;
        };
        let Some(toml::Value::Table(table)) = config.get_mut(&section) else {
            continue;
        };
        let typed = match table.get(&key) {
            Some(toml::Value::Boolean(_)) => match raw.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => toml::Value::Boolean(true),
                "0" | "false" | "no" | "off" | "" => toml::Value::Boolean(false),
                _ => return Err(env_err(format!("'{raw}' is not a boolean"))),
            },
            Some(toml::Value::Integer(_)) => toml::Value::Integer(
                raw.trim()
                    .parse()
                    .map_err(|_| env_err(format!("'{raw}' is not an integer")))?,
            ),
            Some(toml::Value::Float(_)) => toml::Value::Float(
                raw.trim()
                    .parse()
                    .map_err(|_| env_err(format!("'{raw}' is not a number")))?,
            ),
            Some(toml::Value::Array(_)) => toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_string()))
                    .collect(),
            ),
            _ => toml::Value::String(raw.clone()),
        };
        table.insert(key, typed);
    }
    Ok(())
}

/// Finds the section and key that `rest` (e.g. `fhir_sync_base_url`) names; the longest section name wins.
fn locate(config: &toml::Table, rest: &str) -> Option<(String, String)> {
    config
        .iter()
        .filter_map(|(section, value)| {
            let table = value.as_table()?;
            let key = rest.strip_prefix(section.as_str())?.strip_prefix('_')?;
            table
                .contains_key(key)
                .then(|| (section.clone(), key.to_string()))
        })
        .max_by_key(|(section, _)| section.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::defaults().expect("defaults");
        assert_eq!(config.http.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(
            config.database.url,
            "sqlite://./switchboard-data/switchboard.db"
        );
        assert_eq!(config.retention.days, 90);
    }

    #[test]
    fn env_overrides_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[hub]\nbatch_max_events = 10\nqueue_capacity = 20\n")
            .expect("write");
        let config = Config::load_from(
            Some(&path),
            &env(&[
                ("SWITCHBOARD_HUB_BATCH_MAX_EVENTS", "30"),
                ("SWITCHBOARD_HTTP_ADDR", "0.0.0.0:9000"),
                ("SWITCHBOARD_ADMIN_TOKEN", "s3cret"),
                ("SWITCHBOARD_TEST_SOMETHING", "ignored"),
            ]),
        )
        .expect("config");
        assert_eq!(config.hub.batch_max_events, 30);
        assert_eq!(config.hub.queue_capacity, 20);
        assert_eq!(config.http.addr.to_string(), "0.0.0.0:9000");
        assert_eq!(config.auth.admin_token, "s3cret");
        assert!(!config.to_redacted_toml().contains("s3cret"));
    }

    #[test]
    fn bad_values_are_reported_clearly() {
        let err = Config::load_from(None, &env(&[("SWITCHBOARD_HUB_BATCH_MAX_EVENTS", "many")]))
            .expect_err("must fail");
        assert!(
            err.to_string().contains("SWITCHBOARD_HUB_BATCH_MAX_EVENTS"),
            "{err}"
        );
        let err = Config::load_from(None, &env(&[("SWITCHBOARD_DATABASE_URL", "mysql://x")]))
            .expect_err("must fail");
        assert!(err.to_string().contains("database.url"), "{err}");
    }

    #[test]
    fn realtime_settings_have_defaults_and_are_checked() {
        let config = Config::defaults().expect("defaults");
        assert_eq!(config.realtime.socketio_path, "/socket.io");
        assert_eq!(config.realtime.max_events_per_sec, 100);
        let err = Config::load_from(
            None,
            &env(&[("SWITCHBOARD_REALTIME_SOCKETIO_PATH", "/api/live")]),
        )
        .expect_err("must fail");
        assert!(err.to_string().contains("realtime.socketio_path"), "{err}");
        let err = Config::load_from(
            None,
            &env(&[("SWITCHBOARD_REALTIME_MAX_EVENTS_PER_SEC", "0")]),
        )
        .expect_err("must fail");
        assert!(err.to_string().contains("max_events_per_sec"), "{err}");
    }

    #[test]
    fn unknown_file_settings_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[hub]\nbatch_maxx = 10\n").expect("write");
        let err = Config::load_from(Some(&path), &HashMap::new()).expect_err("must fail");
        assert!(err.to_string().contains("batch_maxx"), "{err}");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:pw@h/db"),
            "postgres://u:<hidden>@h/db"
        );
        assert_eq!(redact_url("sqlite://./x.db"), "sqlite://./x.db");
    }
}
