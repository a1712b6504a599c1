//! [`OtlpExporter`]: construction (validation, TLS, clients) and the [`Exporter`] impl.

use std::path::PathBuf;

use async_trait::async_trait;
use hpcotel_core::{Batch, EncodedRequest, ExportError, ExportOutcome, Exporter};

use bytes::Bytes;
use hpcotel_core::Signal;

use super::compress::{decompress_request, encode_request};
use super::config::{Compression, Config};
use super::grpc::GrpcExporter;
use super::http::HttpExporter;

/// Why an OTLP exporter could not be built. Messages name the config field at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No endpoint to send to.
    #[error("endpoint: required ({hint})")]
    MissingEndpoint {
        /// What would satisfy it.
        hint: &'static str,
    },
    /// The endpoint's form does not suit the protocol.
    #[error("{field}: {message}")]
    InvalidEndpoint {
        /// `endpoint`, `traces_endpoint`, ...
        field: &'static str,
        /// What was expected and what was given.
        message: String,
    },
    /// A header name is not a valid HTTP header / gRPC metadata name.
    #[error("headers: '{name}' is not a valid header name")]
    HeaderName {
        /// The name as configured.
        name: String,
    },
    /// A header value is not a valid HTTP header value (the value itself is not shown).
    #[error("headers.{name}: the value is not a valid header value (visible ASCII only)")]
    HeaderValue {
        /// The header's name.
        name: String,
    },
    /// A TLS file could not be read.
    #[error("tls.{field}: cannot read '{}'", path.display())]
    TlsFile {
        /// `ca_file`, `cert_file` or `key_file`.
        field: &'static str,
        /// The path as configured.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A TLS file holds no usable PEM data.
    #[error("tls.{field}: invalid PEM in '{}': {why}", path.display())]
    TlsPem {
        /// `ca_file`, `cert_file` or `key_file`.
        field: &'static str,
        /// The path as configured.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// `cert_file` without `key_file` or the reverse.
    #[error("tls: cert_file and key_file must be set together")]
    TlsIdentityPair,
    /// `tls.server_name` is not a valid DNS name or IP address.
    #[error("tls.server_name: '{0}' is not a valid DNS name or IP address")]
    ServerName(String),
    /// rustls refused the configuration.
    #[error("tls: invalid {what}")]
    Tls {
        /// Which part.
        what: &'static str,
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
    /// `compression_params.level` does not suit `compression`.
    #[error("compression_params.level: {0}")]
    CompressionLevel(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (the `otlp` exporter).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (the `otlphttp` exporter).
    HttpProtobuf,
}

/// An OTLP exporter over gRPC or HTTP/protobuf. See the [module docs](super).
#[derive(Debug)]
pub struct OtlpExporter {
    inner: Inner,
    /// `max_request_size`; `None` for 0 (no limit).
    max_request_size: Option<usize>,
    compression: Compression,
    /// `compression_params.level`, resolved for `compression`.
    level: i32,
}

#[derive(Debug)]
enum Inner {
    Grpc(Box<GrpcExporter>),
    Http(HttpExporter),
}

impl OtlpExporter {
    /// Validates `config` for `protocol` and builds the exporter: loads TLS files, builds the
    /// clients. Touches no network (the gRPC channel connects on first export). Errors name
    /// the config field (and file) at fault.
    pub fn new(config: &Config, protocol: Protocol) -> Result<OtlpExporter> {
        let level = config
            .compression_params
            .level_for(config.compression)
            .map_err(Error::CompressionLevel)?;
        let inner = match protocol {
            Protocol::Grpc => Inner::Grpc(Box::new(GrpcExporter::new(config)?)),
            Protocol::HttpProtobuf => Inner::Http(HttpExporter::new(config)?),
        };
        Ok(OtlpExporter {
            inner,
            max_request_size: (config.max_request_size > 0).then_some(config.max_request_size),
            compression: config.compression,
            level,
        })
    }

    /// Sends one request body, encoded and compressed as configured.
    async fn send(&self, signal: Signal, body: Bytes) -> Result<ExportOutcome, ExportError> {
        match &self.inner {
            Inner::Grpc(g) => g.send(signal, body).await,
            Inner::Http(h) => h.send(signal, body).await,
        }
    }

    /// The protocol this exporter speaks.
    pub fn protocol(&self) -> Protocol {
        match self.inner {
            Inner::Grpc(_) => Protocol::Grpc,
            Inner::Http(_) => Protocol::HttpProtobuf,
        }
    }
}

#[async_trait]
impl Exporter for OtlpExporter {
    async fn export(&self, batch: &Batch) -> Result<ExportOutcome, ExportError> {
        let body = encode_request(self.compression, self.level, batch)?;
        self.send(batch.signal(), body).await
    }

    fn max_request_size(&self) -> Option<usize> {
        self.max_request_size
    }

    fn encode(&self, batch: &Batch) -> Option<Result<EncodedRequest, ExportError>> {
        Some(
            encode_request(self.compression, self.level, batch).map(|body| EncodedRequest {
                signal: batch.signal(),
                items: batch.item_count(),
                body,
            }),
        )
    }

    async fn export_encoded(&self, request: &EncodedRequest) -> Result<ExportOutcome, ExportError> {
        self.send(request.signal, request.body.clone()).await
    }

    fn decode(&self, request: &EncodedRequest) -> Option<Batch> {
        let raw = decompress_request(self.compression, &request.body).ok()?;
        Batch::decode_request(request.signal, &raw).ok()
    }
}

/// The outcome of a (possibly partial) success.
pub(super) fn outcome(rejected: i64, message: String) -> ExportOutcome {
    ExportOutcome {
        rejected: u64::try_from(rejected).unwrap_or(0),
        message,
    }
}
