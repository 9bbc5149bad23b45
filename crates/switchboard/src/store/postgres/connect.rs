//! Connecting to PostgreSQL: the URL (with Switchboard's own `schema` and `pool_size` parameters), TLS, the pool,
//! and the dedicated session connection.
//!
//! `sslmode=require` connects over TLS (rustls, verified against the Mozilla roots plus the PEM bundle named by
//! `sslrootcert`, when given); anything else connects in plain TCP.

use crate::store::{StoreError, StoreResult};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::StreamExt;
use rustls_pki_types::pem::PemObject;
use std::str::FromStr;
use tokio::sync::{oneshot, watch};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

const DEFAULT_POOL_SIZE: usize = 16;

/// What a `postgres://` URL asks for.
#[derive(Clone)]
pub(super) struct Connector {
    pub config: Config,
    tls: Option<MakeRustlsConnect>,
    /// The schema every table lives in (created when missing), or the server's default search path.
    pub schema: Option<String>,
    pub pool_size: usize,
}

impl Connector {
    pub fn from_url(url: &str) -> StoreResult<Self> {
        let bad = |why: String| {
            StoreError::UnsupportedUrl(format!("{}: {why}", crate::config::redact_url(url)))
        };
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(|e| bad(e.to_string()))?;
        let mut schema = None;
        let mut pool_size = DEFAULT_POOL_SIZE;
        let mut root_cert = None;
        let mut passed = Vec::new();
        for (key, value) in pairs {
            match key.as_str() {
                "schema" => {
                    let valid = !value.is_empty()
                        && value.len() <= 48
                        && value
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                        && !value.as_bytes()[0].is_ascii_digit();
                    if !valid {
                        return Err(bad("schema must be 1-48 of a-z, 0-9, '_'".into()));
                    }
                    schema = Some(value);
                }
                "pool_size" => {
                    pool_size = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| bad("pool_size must be 1-1000".into()))?;
                }
                "sslrootcert" => root_cert = Some(value),
                _ => passed.push((key, value)),
            }
        }
        let rest = serde_urlencoded::to_string(&passed).map_err(|e| bad(e.to_string()))?;
        let url = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{rest}")
        };
        let mut config = Config::from_str(&url).map_err(|e| bad(e.to_string()))?;
        if let Some(schema) = &schema {
            let options = match config.get_options() {
                Some(existing) => format!("{existing} -c search_path={schema}"),
                None => format!("-c search_path={schema}"),
            };
            config.options(&options);
        }
        if config.get_application_name().is_none() {
            config.application_name("switchboard");
        }
        let tls = match config.get_ssl_mode() {
            SslMode::Require => Some(tls_connector(root_cert.as_deref()).map_err(bad)?),
            _ => None,
        };
        Ok(Connector {
            config,
            tls,
            schema,
            pool_size,
        })
    }

    pub fn pool(&self) -> StoreResult<Pool> {
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &self.tls {
            Some(tls) => Manager::from_config(self.config.clone(), tls.clone(), manager_config),
            None => Manager::from_config(self.config.clone(), NoTls, manager_config),
        };
        Pool::builder(manager)
            .max_size(self.pool_size)
            .build()
            .map_err(|e| StoreError::Database(format!("cannot build the connection pool: {e}")))
    }

    /// A connection outside the pool whose notifications bump the watches; `ended` fires when it closes.
    pub async fn connect_listening(
        &self,
        changes: Watches,
    ) -> StoreResult<(Client, oneshot::Receiver<()>)> {
        match &self.tls {
            Some(tls) => connect_with(&self.config, tls.clone(), changes).await,
            None => connect_with(&self.config, NoTls, changes).await,
        }
    }
}

/// What notifications move: the log watch (a batch was committed) or the subscriptions watch (payload
/// [`SUBSCRIPTIONS_CHANGED`]).
#[derive(Clone)]
pub(super) struct Watches {
    pub log: watch::Sender<u64>,
    pub subscriptions: watch::Sender<u64>,
}

impl Watches {
    pub fn bump_all(&self) {
        self.log.send_modify(|n| *n = n.wrapping_add(1));
        self.subscriptions.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The payload of a notification about webhook subscriptions (appends notify with the new head).
pub(super) const SUBSCRIPTIONS_CHANGED: &str = "subscriptions";

async fn connect_with<T>(
    config: &Config,
    tls: T,
    changes: Watches,
) -> StoreResult<(Client, oneshot::Receiver<()>)>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut connection) = config.connect(tls).await?;
    let (ended_tx, ended) = oneshot::channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(note)) => {
                    let watch = if note.payload() == SUBSCRIPTIONS_CHANGED {
                        &changes.subscriptions
                    } else {
                        &changes.log
                    };
                    watch.send_modify(|n| *n = n.wrapping_add(1));
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "database session connection failed");
                    break;
                }
            }
        }
        let _ = ended_tx.send(());
    });
    Ok((client, ended))
}

fn tls_connector(root_cert: Option<&str>) -> Result<MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = root_cert {
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read sslrootcert {path}: {e}"))?;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("bad certificate in {path}: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("bad certificate in {path}: {e}"))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let io_failure =
            std::error::Error::source(&err).is_some_and(|source| source.is::<std::io::Error>());
        let unavailable = err.is_closed()
            || io_failure
            || err.code().is_some_and(|code| {
                code.code().starts_with("08")
                    || [
                        SqlState::ADMIN_SHUTDOWN,
                        SqlState::CRASH_SHUTDOWN,
                        SqlState::CANNOT_CONNECT_NOW,
                    ]
                    .contains(code)
            });
        if unavailable {
            return StoreError::Unavailable(err.to_string());
        }
        match err.code() {
            Some(code) if *code == SqlState::DISK_FULL => StoreError::Full(err.to_string()),
            Some(code) if *code == SqlState::UNIQUE_VIOLATION => {
                StoreError::Conflict(err.to_string())
            }
            _ => StoreError::Database(match err.as_db_error() {
                Some(db) => format!("{}: {}", db.code().code(), db.message()),
                None => err.to_string(),
            }),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(err) => err.into(),
            other => StoreError::Unavailable(format!("connection pool: {other}")),
        }
    }
}
