//! The delivery HTTP client: pooled keep-alive HTTP/1.1 (TLS by rustls with the ring provider and the Mozilla
//! roots), a time limit per attempt, no redirects followed, and the address policy applied at connect time.
//!
//! The connector resolves the host itself and checks every resulting address with the [`NetworkPolicy`]
//! before connecting, so a name that resolves to a private address (DNS rebinding included) is refused just
//! like an IP-literal URL. Pooled connections were checked when they were opened.

use super::network::NetworkPolicy;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpStream;

/// Response bodies are kept up to this many bytes in the attempt log.
pub const MAX_LOGGED_BODY: usize = 4096;
/// Bodies up to this size are read to the end so the connection can be reused.
const MAX_DRAINED_BODY: usize = 64 * 1024;
const USER_AGENT_VALUE: &str = concat!("Switchboard-Webhooks/", env!("CARGO_PKG_VERSION"));

/// Why a connection was not made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the URL has no host")]
    NoHost,
    #[error("cannot resolve {host}: {reason}")]
    Dns { host: String, reason: String },
    #[error("refused to connect to {ip}: {reason} (not in webhooks.allowed_networks)")]
    Blocked { ip: IpAddr, reason: &'static str },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Why an attempt got no HTTP response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Connect(ConnectError),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Http(String),
}

impl SendError {
    pub fn is_blocked(&self) -> bool {
        matches!(self, SendError::Connect(ConnectError::Blocked { .. }))
    }
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The start of the body, at most [`MAX_LOGGED_BODY`] bytes, lossy UTF-8.
    pub body: String,
    pub elapsed: Duration,
}

/// Resolves, checks and connects; the inner layer of the HTTPS connector.
#[derive(Clone)]
pub struct GuardedConnector {
    policy: Arc<NetworkPolicy>,
}

impl tower::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move { connect(&policy, &uri).await })
    }
}

/// The addresses `uri` names: the literal one, or every address its host resolves to.
pub async fn resolve(uri: &Uri) -> Result<Vec<SocketAddr>, ConnectError> {
    let host = uri.host().ok_or(ConnectError::NoHost)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let default_port = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let port = uri.port_u16().unwrap_or(default_port);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let dns = |reason: String| ConnectError::Dns {
        host: host.to_string(),
        reason,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| dns(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(dns("no addresses".into()));
    }
    Ok(addrs)
}

async fn connect(policy: &NetworkPolicy, uri: &Uri) -> Result<TokioIo<TcpStream>, ConnectError> {
    let mut refused = None;
    let mut failed = None;
    for addr in resolve(uri).await? {
        if let Err(reason) = policy.check(addr.ip()) {
            refused.get_or_insert(ConnectError::Blocked {
                ip: addr.ip(),
                reason,
            });
            continue;
        }
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(TokioIo::new(stream));
            }
            Err(source) => failed = Some(ConnectError::Connect { addr, source }),
        }
    }
    Err(failed.or(refused).unwrap_or(ConnectError::NoHost))
}

/// The pooled client every delivery goes through.
#[derive(Clone)]
pub struct DeliveryClient {
    http: Client<HttpsConnector<GuardedConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl DeliveryClient {
    pub fn new(policy: NetworkPolicy, timeout: Duration) -> Result<Self, rustls::Error> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .wrap_connector(GuardedConnector {
                policy: Arc::new(policy),
            });
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .build(https);
        Ok(DeliveryClient { http, timeout })
    }

    /// How long one attempt may take at most.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// POSTs `body` with `headers` (plus `Content-Type` and `User-Agent`) and reads the start of the answer.
    pub async fn post(
        &self,
        uri: &Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Answer, SendError> {
        self.send(Method::POST, uri, headers, body).await
    }

    /// Sends a request with any method (the FHIR sync uses PUT and DELETE) under the same rules as `post`.
    pub async fn send(
        &self,
        method: Method,
        uri: &Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Answer, SendError> {
        let started = Instant::now();
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = headers;
        let h = request.headers_mut();
        if !h.contains_key(CONTENT_TYPE) {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        h.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        let exchange = async {
            let response = self.http.request(request).await.map_err(classify)?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| super::schedule::parse_retry_after(v, SystemTime::now()));
            let mut body = response.into_body();
            let mut kept = Vec::new();
            let mut total = 0usize;
            while total <= MAX_DRAINED_BODY {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            total += data.len();
                            let room = MAX_LOGGED_BODY.saturating_sub(kept.len());
                            kept.extend_from_slice(&data[..data.len().min(room)]);
                        }
                    }
                    // A broken body after the status line: the status still counts.
                    Some(Err(_)) | None => break,
                }
            }
            Ok(Answer {
                status,
                retry_after,
                body: String::from_utf8_lossy(&kept).into_owned(),
                elapsed: started.elapsed(),
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout(self.timeout)),
        }
    }
}

/// Turns the client's error into ours, finding our connector's error in the chain when it is there.
fn classify(err: hyper_util::client::legacy::Error) -> SendError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&err);
    while let Some(inner) = source {
        if let Some(connect) = inner.downcast_ref::<ConnectError>() {
            return SendError::Connect(match connect {
                ConnectError::NoHost => ConnectError::NoHost,
                ConnectError::Dns { host, reason } => ConnectError::Dns {
                    host: host.clone(),
                    reason: reason.clone(),
                },
                ConnectError::Blocked { ip, reason } => ConnectError::Blocked { ip: *ip, reason },
                ConnectError::Connect { addr, source } => ConnectError::Connect {
                    addr: *addr,
                    source: std::io::Error::new(source.kind(), source.to_string()),
                },
            });
        }
        source = inner.source();
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    SendError::Http(text)
}
