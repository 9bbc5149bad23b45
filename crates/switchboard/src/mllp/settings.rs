//! Configuration of the MLLP listeners (`[mllp]`) and of the HL7 sender (`[hl7]`).
//!
//! `[mllp]` describes the default listener and the limits every listener shares; `[[mllp.listeners]]` adds more
//! listeners, each with its own name, address, org, facility table and TLS files. [`MllpConfig::listeners`]
//! resolves both into one [`ListenerSettings`] per socket to bind.

use crate::event::validate_org_id;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `[mllp]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MllpConfig {
    /// Run the default listener (extra `listeners` run regardless).
    pub enabled: bool,
    pub name: String,
    pub addr: SocketAddr,
    pub org: String,
    /// MSH-4 (sending facility, first component) → org.
    pub facility_orgs: BTreeMap<String, String>,
    /// PEM files; both set turns TLS on.
    pub tls_cert: String,
    pub tls_key: String,
    pub max_frame_bytes: usize,
    pub idle_timeout_secs: u64,
    pub max_connections: usize,
    /// Emit `hl7.parsed` and `hl7.validated` beside `hl7.received` (errors are always emitted).
    pub stage_events: bool,
    pub listeners: Vec<ExtraListener>,
}

/// One `[[mllp.listeners]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraListener {
    pub name: String,
    pub addr: SocketAddr,
    pub org: String,
    #[serde(default)]
    pub facility_orgs: BTreeMap<String, String>,
    #[serde(default)]
    pub tls_cert: String,
    #[serde(default)]
    pub tls_key: String,
}

/// `[hl7]`: the MLLP sender.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hl7Config {
    /// `host:port` entries that `POST /api/hl7/send` may reach; nothing else can be.
    pub destinations: Vec<String>,
    pub send_timeout_ms: u64,
    pub send_retries: u32,
    pub retry_backoff_ms: u64,
}

/// Everything one listener needs, resolved from the configuration.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    pub name: Arc<str>,
    pub addr: SocketAddr,
    pub org: Arc<str>,
    pub facility_orgs: BTreeMap<String, Arc<str>>,
    pub tls: Option<TlsFiles>,
    pub max_frame_bytes: usize,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub stage_events: bool,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ListenerSettings {
    /// The org of a message: the facility table's entry for MSH-4, else the listener's org.
    pub fn org_for(&self, facility: Option<&str>) -> &Arc<str> {
        facility
            .map(str::trim)
            .and_then(|f| self.facility_orgs.get(f))
            .unwrap_or(&self.org)
    }
}

impl MllpConfig {
    /// One entry per socket to bind: the default listener (when enabled), then the extra ones.
    pub fn listeners(&self) -> Vec<ListenerSettings> {
        let make = |name: &str,
                    addr,
                    org: &str,
                    facilities: &BTreeMap<String, String>,
                    cert: &str,
                    key: &str| {
            ListenerSettings {
                name: name.into(),
                addr,
                org: org.into(),
                facility_orgs: facilities
                    .iter()
                    .map(|(f, o)| (f.trim().to_string(), Arc::from(o.as_str())))
                    .collect(),
                tls: (!cert.is_empty() && !key.is_empty()).then(|| TlsFiles {
                    cert: cert.into(),
                    key: key.into(),
                }),
                max_frame_bytes: self.max_frame_bytes,
                idle_timeout: Duration::from_secs(self.idle_timeout_secs),
                max_connections: self.max_connections,
                stage_events: self.stage_events,
            }
        };
        let default = self.enabled.then(|| {
            make(
                &self.name,
                self.addr,
                &self.org,
                &self.facility_orgs,
                &self.tls_cert,
                &self.tls_key,
            )
        });
        default
            .into_iter()
            .chain(self.listeners.iter().map(|l| {
                make(
                    &l.name,
                    l.addr,
                    &l.org,
                    &l.facility_orgs,
                    &l.tls_cert,
                    &l.tls_key,
                )
            }))
            .collect()
    }

    /// Checks names, orgs, limits and TLS pairs; the message names the setting at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_frame_bytes < 1024 {
            return Err("mllp.max_frame_bytes must be at least 1024".into());
        }
        if self.max_connections == 0 || self.idle_timeout_secs == 0 {
            return Err("mllp.max_connections and mllp.idle_timeout_secs must be positive".into());
        }
        let mut names = std::collections::HashSet::new();
        let entries = std::iter::once((
            "mllp",
            &self.name,
            &self.org,
            &self.facility_orgs,
            &self.tls_cert,
            &self.tls_key,
        ))
        .filter(|_| self.enabled)
        .chain(self.listeners.iter().map(|l| {
            (
                "mllp.listeners",
                &l.name,
                &l.org,
                &l.facility_orgs,
                &l.tls_cert,
                &l.tls_key,
            )
        }));
        for (section, name, org, facilities, cert, key) in entries {
            if name.is_empty() || !names.insert(name.clone()) {
                return Err(format!(
                    "{section}: listener name '{name}' is empty or used twice"
                ));
            }
            validate_org_id(org).map_err(|e| format!("{section} '{name}': org '{org}': {e}"))?;
            for (facility, org) in facilities {
                validate_org_id(org).map_err(|e| {
                    format!("{section} '{name}': facility_orgs '{facility}' = '{org}': {e}")
                })?;
            }
            if cert.is_empty() != key.is_empty() {
                return Err(format!(
                    "{section} '{name}': set both tls_cert and tls_key, or neither"
                ));
            }
        }
        Ok(())
    }
}

impl Hl7Config {
    pub fn validate(&self) -> Result<(), String> {
        for d in &self.destinations {
            let ok = d.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                return Err(format!("hl7.destinations: '{d}' is not host:port"));
            }
        }
        if self.send_timeout_ms == 0 {
            return Err("hl7.send_timeout_ms must be positive".into());
        }
        Ok(())
    }

    /// True when `destination` is on the allow list (exact `host:port`, host compared case-insensitively).
    pub fn allows(&self, destination: &str) -> bool {
        self.destinations
            .iter()
            .any(|d| d.eq_ignore_ascii_case(destination.trim()))
    }

    pub fn sender_options(&self) -> super::client::SendOptions {
        super::client::SendOptions {
            timeout: Duration::from_millis(self.send_timeout_ms),
            retries: self.send_retries,
            backoff: Duration::from_millis(self.retry_backoff_ms),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn default_listener_and_env_overrides() {
        let config = Config::defaults().expect("defaults");
        let listeners = config.mllp.listeners();
        assert_eq!(listeners.len(), 1);
        assert_eq!(listeners[0].addr.to_string(), "127.0.0.1:2575");
        assert_eq!(&*listeners[0].org, "default");
        assert!(config.hl7.destinations.is_empty());

        let config = Config::load_from(
            None,
            &env(&[
                ("SWITCHBOARD_MLLP_ADDR", "0.0.0.0:6661"),
                ("SWITCHBOARD_MLLP_ORG", "lab"),
                (
                    "SWITCHBOARD_HL7_DESTINATIONS",
                    "lis.example:2575, 10.0.0.5:6661",
                ),
            ]),
        )
        .expect("config");
        let listener = &config.mllp.listeners()[0];
        assert_eq!(
            (listener.addr.to_string().as_str(), &*listener.org),
            ("0.0.0.0:6661", "lab")
        );
        assert!(config.hl7.allows("LIS.example:2575") && config.hl7.allows("10.0.0.5:6661"));
        assert!(!config.hl7.allows("10.0.0.5:6662"));

        let off = Config::load_from(None, &env(&[("SWITCHBOARD_MLLP_ENABLED", "false")]))
            .expect("config");
        assert!(off.mllp.listeners().is_empty());
    }

    #[test]
    fn extra_listeners_and_facility_tables_from_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[mllp]\norg = \"hosp\"\nfacility_orgs = { \"NORTH LAB\" = \"north\" }\n\n\
             [[mllp.listeners]]\nname = \"lab\"\naddr = \"127.0.0.1:2576\"\norg = \"lab\"\n",
        )
        .expect("write");
        let config = Config::load_from(Some(&path), &HashMap::new()).expect("config");
        let listeners = config.mllp.listeners();
        assert_eq!(listeners.len(), 2);
        assert_eq!(&**listeners[0].org_for(Some(" NORTH LAB ")), "north");
        assert_eq!(&**listeners[0].org_for(Some("ELSEWHERE")), "hosp");
        assert_eq!(&**listeners[0].org_for(None), "hosp");
        assert_eq!((&*listeners[1].name, &*listeners[1].org), ("lab", "lab"));
    }

    #[test]
    fn bad_settings_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            ("[mllp]\norg = \"a:b\"\n", "org 'a:b'"),
            ("[mllp]\ntls_cert = \"x.pem\"\n", "tls_cert and tls_key"),
            (
                "[[mllp.listeners]]\nname = \"default\"\naddr = \"127.0.0.1:1\"\norg = \"x\"\n",
                "used twice",
            ),
            ("[hl7]\ndestinations = [\"nohost\"]\n", "not host:port"),
            (
                "[mllp]\nfacility_orgs = { \"F\" = \"\" }\n",
                "facility_orgs 'F'",
            ),
        ];
        for (i, (text, expected)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("c{i}.toml"));
            std::fs::write(&path, text).expect("write");
            let err = Config::load_from(Some(&path), &HashMap::new()).expect_err(text);
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
    }
}
