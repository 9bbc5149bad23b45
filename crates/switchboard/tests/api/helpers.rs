//! Test harness: `spawn_app` starts Switchboard in-process on port 0 with a fresh database, and gives a client
//! with the admin token. Logs are printed only when `TEST_LOG` is set.

use reqwest::{Client, Response};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Once;
use switchboard::{Application, Config};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub addr: SocketAddr,
    /// The first MLLP listener, when one is configured.
    pub mllp_addr: Option<SocketAddr>,
    pub admin_token: String,
    pub client: Client,
    pub config: Config,
    dir: Option<TempDir>,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            tracing_subscriber::fmt()
                .with_env_filter("info")
                .with_test_writer()
                .init();
        }
    });
}

/// A configuration for one test: its own database in a temp dir, port 0, a random admin token.
pub fn test_config(dir: &TempDir) -> Config {
    let mut config = Config::defaults().expect("defaults");
    config.http.addr = "127.0.0.1:0".parse().expect("addr");
    config.mllp.addr = "127.0.0.1:0".parse().expect("addr");
    config.database.url = test_database_url(dir);
    config.auth.admin_token = switchboard::auth::generate_key();
    config
}

/// The database a test uses: SQLite in the test's temp dir, or with `SWITCHBOARD_TEST_BACKEND=postgres` a fresh
/// schema of the PostgreSQL database at `SWITCHBOARD_TEST_PG_URL` (default: the local server's `test` database).
pub fn test_database_url(dir: &TempDir) -> String {
    if is_postgres() {
        // The same directory gives the same schema, so a restarted app finds its data again.
        return postgres_url_for(&dir.path().display().to_string());
    }
    format!("sqlite://{}", dir.path().join("switchboard.db").display())
}

/// The store of [`test_database_url`], opened (migrations applied).
pub async fn open_store(dir: &TempDir) -> switchboard::store::DynStore {
    switchboard::store::open(&test_database_url(dir))
        .await
        .expect("store")
}

pub fn is_postgres() -> bool {
    std::env::var("SWITCHBOARD_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// A URL naming a schema of its own (created by the store on first open), so tests never share tables.
pub fn postgres_url() -> String {
    postgres_url_for(&uuid::Uuid::now_v7().to_string())
}

/// The URL of the schema that belongs to `key`.
pub fn postgres_url_for(key: &str) -> String {
    // FNV-1a: a stable name for the key, unique enough among one run's temp dirs.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let base = std::env::var("SWITCHBOARD_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}schema=sbt_{hash:016x}&pool_size=6")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    init_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(&dir);
    adjust(&mut config);
    start(config, dir).await
}

/// Starts an app on an existing directory (to restart on the same database).
pub async fn start(config: Config, dir: TempDir) -> TestApp {
    let app = Application::build(config.clone()).await.expect("build app");
    let addr = app.http_addr().expect("addr");
    let mllp_addr = app.mllp_addr();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let test_app = TestApp {
        addr,
        mllp_addr,
        admin_token: config.auth.admin_token.clone(),
        client: Client::new(),
        config,
        dir: Some(dir),
        shutdown,
        handle: Some(handle),
    };
    test_app.wait_ready().await;
    test_app
}

impl TestApp {
    /// The MLLP listener's address (panics when the test disabled it).
    pub fn mllp(&self) -> SocketAddr {
        self.mllp_addr.expect("an MLLP listener")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(r) = self.client.get(self.url("/health/ready")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("app did not become ready");
    }

    /// Creates an org key with the admin token and returns the key.
    pub async fn org_key(&self, org: &str) -> String {
        let r = self
            .client
            .post(self.url("/api/keys"))
            .bearer_auth(&self.admin_token)
            .json(&json!({ "orgId": org, "name": format!("{org} test key") }))
            .send()
            .await
            .expect("create key");
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.expect("json");
        body["key"].as_str().expect("key").to_string()
    }

    pub async fn publish(&self, key: &str, body: &Value) -> Response {
        self.client
            .post(self.url("/api/events"))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("publish")
    }

    pub async fn get(&self, key: &str, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("get")
    }

    pub async fn get_json(&self, key: &str, path: &str) -> Value {
        let r = self.get(key, path).await;
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("json")
    }

    /// Stops the app gracefully and returns its directory, so it can be started again on the same database.
    pub async fn stop(mut self) -> (Config, TempDir) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("join").expect("app stopped cleanly");
        }
        (self.config.clone(), self.dir.take().expect("dir"))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls `check` until it returns true or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}
