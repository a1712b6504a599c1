//! Loading TLS material for both servers, at bind time, so that a missing or bad file stops
//! start-up with a message naming it.

use std::path::Path;
use std::sync::Arc;

use hpcotel_core::TlsServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use super::receiver::{Error, Result};

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::TlsFile {
        path: path.to_owned(),
        source,
    })
}

fn certs(protocol: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls {
            protocol,
            reason: format!("'{}': {e}", path.display()),
        })?;
    if certs.is_empty() {
        return Err(Error::Tls {
            protocol,
            reason: format!("'{}' holds no PEM certificate", path.display()),
        });
    }
    Ok(certs)
}

/// The tonic TLS settings for the gRPC server. The files are checked here (certificates and
/// key parse) so that mistakes surface at start-up rather than at the first connection.
pub(super) fn grpc_server_config(cfg: &TlsServerConfig) -> Result<ServerTlsConfig> {
    // Parse with rustls first: tonic reports bad PEM only when the server starts.
    http_server_config("gRPC", cfg)?;
    let identity = Identity::from_pem(read(&cfg.cert_file)?, read(&cfg.key_file)?);
    let mut tls = ServerTlsConfig::new()
        .identity(identity)
        .timeout(HANDSHAKE_TIMEOUT);
    if let Some(ca) = &cfg.client_ca_file {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(tls)
}

/// The rustls acceptor for the HTTP server (ALPN h2 and http/1.1).
pub(super) fn http_acceptor(cfg: &TlsServerConfig) -> Result<tokio_rustls::TlsAcceptor> {
    let mut config = http_server_config("HTTP", cfg)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn http_server_config(
    protocol: &'static str,
    cfg: &TlsServerConfig,
) -> Result<rustls::ServerConfig> {
    let bad = |reason: String| Error::Tls { protocol, reason };
    let chain = certs(protocol, &cfg.cert_file)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&cfg.key_file)?)
        .map_err(|e| bad(format!("'{}': {e}", cfg.key_file.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?;
    let builder = match &cfg.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs(protocol, ca)? {
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("'{}': {e}", ca.display())))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| bad(format!("'{}': {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder.with_single_cert(chain, key).map_err(|e| {
        bad(format!(
            "certificate '{}' and key '{}' do not make a usable identity: {e}",
            cfg.cert_file.display(),
            cfg.key_file.display()
        ))
    })
}

/// The TLS handshake timeout, shared with the HTTP accept loop.
pub(super) const HTTP_HANDSHAKE_TIMEOUT: std::time::Duration = HANDSHAKE_TIMEOUT;
