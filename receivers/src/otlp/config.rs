//! Configuration of the `otlp` receiver, shaped like the OpenTelemetry Collector's:
//!
//! ```yaml
//! receivers:
//!   otlp:
//!     protocols:
//!       grpc:                      # present (even empty) = enabled with defaults
//!         endpoint: 0.0.0.0:4317
//!         max_recv_msg_size_mib: 16
//!       http:
//!         endpoint: 0.0.0.0:4318
//!         tls: { cert_file: /tls/tls.crt, key_file: /tls/tls.key }
//!     auth:
//!       token: ${env:OTLP_TOKEN}
//!     pipeline_wait: 50ms
//!     retry_after: 1s
//! ```
//!
//! Leaving `protocols` out enables both protocols with their defaults; listing it enables
//! only the protocols it names. Defaults bind loopback only: exposing the receiver to the
//! network is an explicit choice.

use std::time::Duration;

use hpcotel_core::config::present_means_enabled;
use hpcotel_core::{BearerAuthConfig, HostPort, TlsServerConfig};
use serde::{Deserialize, Deserializer, Serialize};

/// Default gRPC listen address (loopback only).
pub const DEFAULT_GRPC_HOST: &str = "127.0.0.1";
/// Default gRPC port, the OTLP/gRPC well-known port.
pub const DEFAULT_GRPC_PORT: u16 = 4317;
/// Default largest gRPC message accepted, in MiB (after decompression).
pub const DEFAULT_MAX_RECV_MSG_SIZE_MIB: usize = 4;
/// Default HTTP listen address (loopback only).
pub const DEFAULT_HTTP_HOST: &str = "127.0.0.1";
/// Default HTTP port, the OTLP/HTTP well-known port.
pub const DEFAULT_HTTP_PORT: u16 = 4318;
/// Default largest HTTP request body accepted, in bytes, both as sent and after gzip
/// decompression: 4 MiB, the same as the gRPC default.
pub const DEFAULT_MAX_REQUEST_BODY_SIZE: usize = 4 * 1024 * 1024;
/// Default time a request waits for room in a full pipeline before the client is told to
/// retry later.
pub const DEFAULT_PIPELINE_WAIT: Duration = Duration::from_millis(50);
/// Default delay suggested to refused clients (gRPC `RetryInfo`, HTTP `Retry-After`).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The `otlp` receiver's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Which protocols to serve and how. Default: both gRPC and HTTP with their defaults.
    #[serde(deserialize_with = "null_means_default")]
    pub protocols: Protocols,
    /// Bearer-token authentication demanded of every client, on both protocols.
    /// Default: unset, no authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<BearerAuthConfig>,
    /// How long a request may wait for room in a full pipeline before the client is
    /// answered "retry later" (gRPC RESOURCE_EXHAUSTED, HTTP 429). `0s` refuses at once.
    /// Duration, default `50ms`.
    #[serde(with = "humantime_serde")]
    pub pipeline_wait: Duration,
    /// The delay suggested to clients refused because the pipeline is full or shutting down
    /// (gRPC `RetryInfo.retry_delay`; HTTP `Retry-After`, rounded up to whole seconds,
    /// at least 1). Duration, default `1s`.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            protocols: Protocols::default(),
            auth: None,
            pipeline_wait: DEFAULT_PIPELINE_WAIT,
            retry_after: DEFAULT_RETRY_AFTER,
        }
    }
}

/// The protocols served. At least one must be enabled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawProtocols")]
pub struct Protocols {
    /// OTLP/gRPC. Enabled when the key is present, even empty (`grpc:`).
    /// Default (when `protocols` itself is left out): enabled with its defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcConfig>,
    /// OTLP/HTTP (protobuf and JSON). Enabled when the key is present, even empty (`http:`).
    /// Default (when `protocols` itself is left out): enabled with its defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpConfig>,
}

impl Default for Protocols {
    fn default() -> Self {
        Self {
            grpc: Some(GrpcConfig::default()),
            http: Some(HttpConfig::default()),
        }
    }
}

/// `protocols` as written, before checking that it enables something.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProtocols {
    #[serde(default, deserialize_with = "present_means_enabled")]
    grpc: Option<GrpcConfig>,
    #[serde(default, deserialize_with = "present_means_enabled")]
    http: Option<HttpConfig>,
}

impl TryFrom<RawProtocols> for Protocols {
    type Error = String;

    fn try_from(raw: RawProtocols) -> Result<Self, String> {
        if raw.grpc.is_none() && raw.http.is_none() {
            return Err("no protocol enabled: list `grpc:`, `http:` or both \
                        (leave `protocols` out to enable both)"
                .into());
        }
        Ok(Self {
            grpc: raw.grpc,
            http: raw.http,
        })
    }
}

/// OTLP/gRPC server settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Listen address, `host:port`. Default `127.0.0.1:4317` (loopback only); use
    /// `0.0.0.0:4317` to accept from the network.
    pub endpoint: HostPort,
    /// Largest message accepted, in MiB after decompression; larger ones are answered
    /// RESOURCE_EXHAUSTED without RetryInfo (permanent, as grpc-go). At least 1. Default 4.
    #[serde(deserialize_with = "hpcotel_core::config::at_least_one")]
    pub max_recv_msg_size_mib: usize,
    /// Serve TLS with this certificate (and demand client certificates when
    /// `client_ca_file` is set). Default: unset, plaintext.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsServerConfig>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            endpoint: HostPort::new(DEFAULT_GRPC_HOST, DEFAULT_GRPC_PORT),
            max_recv_msg_size_mib: DEFAULT_MAX_RECV_MSG_SIZE_MIB,
            tls: None,
        }
    }
}

impl GrpcConfig {
    /// The message size limit in bytes.
    pub fn max_recv_msg_size_bytes(&self) -> usize {
        self.max_recv_msg_size_mib.saturating_mul(1024 * 1024)
    }
}

/// OTLP/HTTP server settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address, `host:port`. Default `127.0.0.1:4318` (loopback only); use
    /// `0.0.0.0:4318` to accept from the network.
    pub endpoint: HostPort,
    /// Largest request body accepted, in bytes, both as received and after gzip
    /// decompression; larger ones are answered 413. At least 1. Default 4194304 (4 MiB).
    #[serde(deserialize_with = "hpcotel_core::config::at_least_one")]
    pub max_request_body_size: usize,
    /// Serve HTTPS with this certificate (and demand client certificates when
    /// `client_ca_file` is set). Default: unset, plaintext.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsServerConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            endpoint: HostPort::new(DEFAULT_HTTP_HOST, DEFAULT_HTTP_PORT),
            max_request_body_size: DEFAULT_MAX_REQUEST_BODY_SIZE,
            tls: None,
        }
    }
}

fn null_means_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
