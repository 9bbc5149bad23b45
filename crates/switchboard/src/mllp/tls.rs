//! MLLP over TLS: the server configuration built from a PEM certificate chain and private key (rustls with the
//! `ring` provider). The handshake runs in the connection task, under the idle timeout.

use super::settings::TlsFiles;
use super::MllpError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio_rustls::rustls::{self, ServerConfig};

pub use tokio_rustls::TlsAcceptor;

/// Loads the files and builds an acceptor; errors name the file at fault.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, MllpError> {
    let tls_err = |what: String| MllpError::Tls(what);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            tls_err(format!(
                "cannot read certificates from {}: {e}",
                files.cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(tls_err(format!(
            "no certificate in {}",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        tls_err(format!(
            "cannot read the private key from {}: {e}",
            files.key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| {
            tls_err(format!(
                "bad TLS certificate or key ({}): {e}",
                files.cert.display()
            ))
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
