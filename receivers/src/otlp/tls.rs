//! Loading TLS material for both servers, at bind time, so that a missing or bad file stops
//! start-up with a message naming it.

use std::path::Path;
use std::sync::Arc;

use hpcotel_core::TlsServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::receiver::{Error, Result};

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

/// The rustls acceptor for the gRPC server (ALPN h2 only: gRPC is HTTP/2).
pub(super) fn grpc_acceptor(cfg: &TlsServerConfig) -> Result<tokio_rustls::TlsAcceptor> {
    let mut config = server_config("gRPC", cfg)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The rustls acceptor for the HTTP server (ALPN h2 and http/1.1).
pub(super) fn http_acceptor(cfg: &TlsServerConfig) -> Result<tokio_rustls::TlsAcceptor> {
    let mut config = server_config("HTTP", cfg)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn server_config(protocol: &'static str, cfg: &TlsServerConfig) -> Result<rustls::ServerConfig> {
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
