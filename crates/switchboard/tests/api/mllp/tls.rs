//! MLLP over TLS: a listener with a self-signed certificate generated in the test (rcgen), a rustls client.

use super::{adt, mllp_app, msa, Peer};
use rustls_pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

#[tokio::test]
async fn tls_listener_acknowledges_over_tls_and_refuses_plain_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let (cert_path, key_path) = (dir.path().join("mllp.crt"), dir.path().join("mllp.key"));
    std::fs::write(&cert_path, certified.cert.pem()).expect("write cert");
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).expect("write key");
    let app = mllp_app(|c| {
        c.mllp.tls_cert = cert_path.display().to_string();
        c.mllp.tls_key = key_path.display().to_string();
    })
    .await;

    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(certified.cert.der().to_vec()))
        .expect("root");
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(app.mllp())
        .await
        .expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let stream = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let mut peer = Peer::over(stream);
    for id in ["TLS-1", "TLS-2"] {
        peer.send(&adt(id)).await;
        assert_eq!(msa(&peer.ack().await), ("AA".into(), id.into()));
    }

    // Plain MLLP on the TLS port gets no ACK: the handshake fails and the connection closes.
    let mut plain = Peer::connect(app.mllp()).await;
    plain.send(&adt("PLAIN-1")).await;
    assert!(plain.closed_within(std::time::Duration::from_secs(5)).await);
}
