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
//!     limits:                      # what hostile or careless clients may hold
//!       memory_mib: 64             # default: a quarter of the cgroup memory limit
//!       read_timeout: 10s
//!       idle_timeout: 30s
//!       max_connections: 1024      # per protocol
//!     identity:
//!       source: connection         # k8s.pod.* from the peer address when it is a pod
//!       on_conflict: replace
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
/// Default largest HTTP request body accepted, in bytes, both as sent and after gzip or zstd
/// decompression: 4 MiB, the same as the gRPC default.
pub const DEFAULT_MAX_REQUEST_BODY_SIZE: usize = 4 * 1024 * 1024;
/// Default time a request waits for room in a full pipeline before the client is told to
/// retry later.
pub const DEFAULT_PIPELINE_WAIT: Duration = Duration::from_millis(50);
/// Default delay suggested to refused clients (gRPC `RetryInfo`, HTTP `Retry-After`).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Memory budget used when the process has no cgroup memory limit, in MiB.
pub const DEFAULT_MEMORY_MIB_UNLIMITED: usize = 64;
/// Share of the process's cgroup memory limit given to the budget by default, percent.
pub const DEFAULT_MEMORY_LIMIT_PERCENT: usize = 25;
/// Default largest share of the memory budget one client address may hold, percent.
pub const DEFAULT_PER_CLIENT_PERCENT: u8 = 50;
/// Default time a request body may take to arrive, from the end of its headers.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default slowest average rate a request body may arrive at, bytes per second, once
/// [`MIN_READ_RATE_GRACE`] has passed.
pub const DEFAULT_MIN_READ_RATE: u64 = 64 * 1024;
/// How long a body may arrive slower than `min_read_rate` before the rate is enforced.
pub const MIN_READ_RATE_GRACE: Duration = Duration::from_secs(1);
/// Default time a connection may stay open with no request in progress.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default most connections open at once, per protocol.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default most HTTP/2 streams (requests) in progress at once on one connection.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 32;

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
    /// What clients may hold: memory, time, connections. Applies to both protocols.
    #[serde(deserialize_with = "null_means_default")]
    pub limits: Limits,
    /// Where the `k8s.pod.*` identity of received data comes from.
    #[serde(deserialize_with = "null_means_default")]
    pub identity: Identity,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            protocols: Protocols::default(),
            auth: None,
            pipeline_wait: DEFAULT_PIPELINE_WAIT,
            retry_after: DEFAULT_RETRY_AFTER,
            limits: Limits::default(),
            identity: Identity::default(),
        }
    }
}

/// Bounds on what clients can make the receiver hold. The defaults keep a node agent under
/// its memory limit against any number of slow or idle clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Memory budget for requests in flight, in MiB: the bytes of bodies being read, their
    /// decompressed form and their decoded form, across both protocols. A request that
    /// would go over it is refused with the retryable status (gRPC RESOURCE_EXHAUSTED with
    /// RetryInfo, HTTP 429 with `Retry-After`). Default: 25 % of the process's cgroup
    /// memory limit (the chart's `resources.limits.memory`), 64 MiB without one; never
    /// less than twice the larger request size limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<usize>,
    /// Largest share of the budget requests from one client address may hold at once,
    /// percent (1–100): one pod's stalled uploads cannot starve the others. Default 50.
    #[serde(deserialize_with = "percent")]
    pub per_client_percent: u8,
    /// Longest a request body may take to arrive, from the end of its headers; slower
    /// requests are answered 408 / DEADLINE_EXCEEDED and their memory released. Duration,
    /// default `10s`.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Slowest average rate a request body may arrive at, bytes per second, enforced one
    /// second after its headers (a client that stalls mid-body is cut off once its average
    /// drops below it). `0` turns the check off. Default 65536 (64 KiB/s).
    pub min_read_rate: u64,
    /// Longest a connection may stay open with no request in progress (a silent
    /// connection, one that sent only the HTTP/2 preface, a keep-alive connection between
    /// requests); it is then closed (HTTP/2: GOAWAY). Duration, default `30s`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Longest a connection may live; it is then closed gracefully once its requests are
    /// answered, so that clients reconnect (and rebalance). Duration, default: unset, no
    /// limit.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_connection_age: Option<Duration>,
    /// Most connections open at once, per protocol. A connection beyond it makes room by
    /// closing the connection idle the longest (no request in progress), so that idle
    /// connections cannot lock clients out; when every connection has a request in
    /// progress, the new one is closed as soon as it is accepted. At least 1. Default 1024.
    #[serde(deserialize_with = "hpcotel_core::config::at_least_one")]
    pub max_connections: usize,
    /// Most HTTP/2 streams (requests) in progress at once on one connection (HTTP/2
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`), on both the gRPC and the HTTP port. At least 1.
    /// Default 32.
    #[serde(deserialize_with = "hpcotel_core::config::at_least_one")]
    pub max_concurrent_streams: u32,
}

impl Limits {
    /// The memory budget in bytes: `memory_mib`, or the default share of
    /// `cgroup_limit` (the process's memory limit, if any); at least `2 × largest_request`.
    pub fn memory_budget_bytes(&self, cgroup_limit: Option<u64>, largest_request: usize) -> usize {
        let bytes = match (self.memory_mib, cgroup_limit) {
            (Some(mib), _) => mib.saturating_mul(1024 * 1024),
            (None, Some(limit)) => {
                usize::try_from(u128::from(limit) * DEFAULT_MEMORY_LIMIT_PERCENT as u128 / 100)
                    .unwrap_or(usize::MAX)
            }
            (None, None) => DEFAULT_MEMORY_MIB_UNLIMITED * 1024 * 1024,
        };
        bytes.max(largest_request.saturating_mul(2))
    }
}

impl Limits {
    /// The bounds the shared connection layer enforces.
    pub fn connections(&self) -> hpcotel_core::server::Limits {
        hpcotel_core::server::Limits {
            idle_timeout: self.idle_timeout,
            max_connection_age: self.max_connection_age,
            max_connections: self.max_connections,
            max_concurrent_streams: self.max_concurrent_streams,
            request_timeout: self.read_timeout,
        }
    }
}

fn percent<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let n = u8::deserialize(d)?;
    if !(1..=100).contains(&n) {
        return Err(serde::de::Error::custom(format!(
            "expected a percentage from 1 to 100, got {n}"
        )));
    }
    Ok(n)
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mib: None,
            per_client_percent: DEFAULT_PER_CLIENT_PERCENT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            min_read_rate: DEFAULT_MIN_READ_RATE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connection_age: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
        }
    }
}

/// Where the `k8s.pod.*` identity of received data comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Identity {
    /// `connection` (default): when the connection's peer address is a pod of this node
    /// (the Catalog's pod IPs: running, not host-network), `k8s.pod.uid`, `k8s.pod.name`
    /// and `k8s.namespace.name` are that pod's, whatever the data claims;
    /// `attributes`: the data's own claims stand (the OpenTelemetry Collector's
    /// behaviour). Either way `hpcotel.identity.source` on each resource says which held.
    pub source: IdentitySource,
    /// What becomes of a resource whose claimed pod differs from the connection's:
    /// `replace` (default) sets the connection's pod; `refuse` refuses its items (counted
    /// as refused, reason `identity`). Either way the conflict is counted
    /// (`hpcotel_receiver_identity_conflicts`).
    pub on_conflict: OnConflict,
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            source: IdentitySource::Connection,
            on_conflict: OnConflict::Replace,
        }
    }
}

/// See [`Identity::source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    /// From the connection's peer address when it is a pod of this node.
    Connection,
    /// From the data's own attributes.
    Attributes,
}

/// See [`Identity::on_conflict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// Set the connection's pod.
    Replace,
    /// Refuse the resource's items.
    Refuse,
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
    /// Largest request body accepted, in bytes, both as received and after gzip or zstd
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
