//! Configuration of the `otlp` (gRPC) and `otlphttp` (HTTP/protobuf) exporters.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hpcotel_core::{HostPort, Secret, TlsClientConfig};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::queue::{QueueConfig, RetryConfig};

/// Default for [`Config::compression`].
pub const DEFAULT_COMPRESSION: Compression = Compression::Gzip;
/// Default for [`Config::timeout`]: 10 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`Config::max_request_size`]: 4 MiB, grpc-go's default receive limit, which
/// the OpenTelemetry Collector's OTLP gRPC receiver keeps (`max_recv_msg_size_mib: 4`).
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 4 * 1024 * 1024;

/// Settings shared by the `otlp` and `otlphttp` exporters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where to send. gRPC (`otlp`): `host:port` (TLS unless `tls.insecure`) or
    /// `http://host:port` (plaintext) / `https://host:port` (TLS). HTTP (`otlphttp`): a base
    /// URL `http(s)://host:port[/path]` to which `/v1/traces`, `/v1/metrics` and `/v1/logs`
    /// are appended. Required (for `otlphttp`, unless every signal used has its own
    /// `*_endpoint`). Default: unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
    /// `otlphttp` only: full URL for traces, used as is instead of `<endpoint>/v1/traces`.
    /// Default: unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traces_endpoint: Option<Endpoint>,
    /// `otlphttp` only: full URL for metrics, used as is instead of `<endpoint>/v1/metrics`.
    /// Default: unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_endpoint: Option<Endpoint>,
    /// `otlphttp` only: full URL for logs, used as is instead of `<endpoint>/v1/logs`.
    /// Default: unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs_endpoint: Option<Endpoint>,
    /// Request body compression: `none`, `gzip` or `zstd` (the Collector's names).
    /// Default: `gzip`.
    pub compression: Compression,
    /// Compression settings, as the Collector's `compression_params`. Default: see
    /// [`CompressionParams`].
    #[serde(skip_serializing_if = "CompressionParams::is_unset")]
    pub compression_params: CompressionParams,
    /// Extra request headers (gRPC metadata), e.g. `authorization: "Bearer ${env:TOKEN}"`.
    /// Values are secrets: never printed or logged. Default: none.
    pub headers: BTreeMap<String, Secret>,
    /// Deadline of one export request (connecting included), e.g. "10s". Default: 10s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest request sent, in bytes of the encoded OTLP request before compression (what
    /// gRPC's and the Collector's receive limits are checked against). A batch whose request
    /// is longer is split by resource, scope and item into requests that fit, sent in order;
    /// an item (one span, data point or log record, with its resource and scope) that alone
    /// is longer is dropped, counted in `hpcotel.exporter.dropped` with reason `too_large`.
    /// 0 = no limit. Default: 4194304 (4 MiB, grpc-go's and the Collector's gRPC default).
    pub max_request_size: usize,
    /// TLS settings. `http://` endpoints are plaintext; `https://` endpoints use TLS; a bare
    /// gRPC `host:port` uses TLS unless `tls.insecure: true`. Default: TLS with the bundled
    /// web roots.
    pub tls: TlsClientConfig,
    /// The export queue in front of the exporter. Default: see [`QueueConfig`].
    pub sending_queue: QueueConfig,
    /// Retry of retryable failures. Default: see [`RetryConfig`].
    pub retry_on_failure: RetryConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            endpoint: None,
            traces_endpoint: None,
            metrics_endpoint: None,
            logs_endpoint: None,
            compression: DEFAULT_COMPRESSION,
            compression_params: CompressionParams::default(),
            headers: BTreeMap::new(),
            timeout: DEFAULT_TIMEOUT,
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            tls: TlsClientConfig::default(),
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
        }
    }
}

/// Default gzip level: 1 (fastest). On OTLP requests it costs about half of level 6's CPU
/// for about 5 % more bytes (random trace and span ids do not compress at any level); a
/// node agent pays its CPU on every node.
pub const DEFAULT_GZIP_LEVEL: i32 = 1;
/// Default zstd level: 3, zstd's own default (already faster than gzip's fastest).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// `compression_params`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionParams {
    /// Compression level: gzip 1 (fastest) to 9 (smallest), zstd 1 to 22. Default: gzip 1
    /// ([`DEFAULT_GZIP_LEVEL`]), zstd 3 ([`DEFAULT_ZSTD_LEVEL`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<i32>,
}

impl CompressionParams {
    /// True when nothing is set (printed configs leave it out).
    pub fn is_unset(&self) -> bool {
        self.level.is_none()
    }

    /// The level to compress with for `compression`, or why `level` does not suit it.
    pub fn level_for(&self, compression: Compression) -> Result<i32, String> {
        let (range, default) = match compression {
            Compression::None => return Ok(0),
            Compression::Gzip => (1..=9, DEFAULT_GZIP_LEVEL),
            Compression::Zstd => (1..=22, DEFAULT_ZSTD_LEVEL),
        };
        match self.level {
            None => Ok(default),
            Some(l) if range.contains(&l) => Ok(l),
            Some(l) => Err(format!(
                "{l} is not a {} level; expected {} to {}",
                match compression {
                    Compression::Gzip => "gzip",
                    _ => "zstd",
                },
                range.start(),
                range.end()
            )),
        }
    }
}

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Uncompressed.
    None,
    /// gzip (gRPC `grpc-encoding: gzip`, HTTP `Content-Encoding: gzip`).
    Gzip,
    /// Zstandard (gRPC `grpc-encoding: zstd`, HTTP `Content-Encoding: zstd`).
    Zstd,
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            // The Collector reads an empty string as no compression too.
            "none" | "" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            other @ ("snappy" | "deflate" | "zlib" | "lz4" | "x-snappy-framed") => {
                Err(serde::de::Error::custom(format!(
                    "compression '{other}' is not supported by hpcotel; use gzip, zstd or none"
                )))
            }
            other => Err(serde::de::Error::custom(format!(
                "expected gzip, zstd or none, got '{other}'"
            ))),
        }
    }
}

/// The scheme an [`Endpoint`] was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`: plaintext.
    Http,
    /// `https://`: TLS.
    Https,
}

/// An exporter endpoint: `host:port` or `http(s)://host[:port][/path]`. Validated while
/// parsing; whether the form suits the protocol is checked when the exporter is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    raw: String,
    scheme: Option<Scheme>,
    host: String,
    port: Option<u16>,
    path: String,
}

impl Endpoint {
    /// Parses an endpoint; the error says what was expected and what was given.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("expected host:port or http(s)://host:port, got '{s}'");
        let scheme = if s.starts_with("http://") {
            Some(Scheme::Http)
        } else if s.starts_with("https://") {
            Some(Scheme::Https)
        } else {
            None
        };
        let Some(scheme) = scheme else {
            if s.contains("://") {
                return Err(bad());
            }
            let hp = HostPort::parse(s).map_err(|_| bad())?;
            return Ok(Self {
                raw: s.to_owned(),
                scheme: None,
                host: hp.host,
                port: Some(hp.port),
                path: String::new(),
            });
        };
        let uri: http::Uri = s.parse().map_err(|_| bad())?;
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(bad)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(format!(
                "expected http(s)://host:port without user info, got '{s}' (use headers for credentials)"
            ));
        }
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("")
            .trim_end_matches('/')
            .to_owned();
        Ok(Self {
            raw: s.to_owned(),
            scheme: Some(scheme),
            host,
            port: uri.port_u16(),
            path,
        })
    }

    /// The endpoint as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// `http`/`https`, or `None` for a bare `host:port`.
    pub fn scheme(&self) -> Option<Scheme> {
        self.scheme
    }

    /// The host name or IP address, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, if written.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The path (and query) after the authority, without a trailing `/`; empty for none.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `host:port` for an authority, with IPv6 hosts in brackets.
    pub(crate) fn authority(&self, default_port: u16) -> String {
        let port = self.port.unwrap_or(default_port);
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Endpoint::parse(&s).map_err(serde::de::Error::custom)
    }
}
