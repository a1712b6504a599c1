//! The OTLP exporters: `otlp` (OTLP/gRPC) and `otlphttp` (OTLP/HTTP with protobuf bodies),
//! as in the OpenTelemetry Collector.
//!
//! [`OtlpExporter::new`] builds either from one [`Config`] and a [`Protocol`]; it implements
//! [`Exporter`](hpcotel_core::Exporter) and sits behind an
//! [`ExportQueue`](crate::queue::ExportQueue) (`sending_queue`, `retry_on_failure` in the
//! same config). It [encodes](hpcotel_core::Exporter::encode) each
//! [`Batch`](hpcotel_core::Batch) once, as the queue takes it, into one
//! `Export{Trace,Metrics,Logs}ServiceRequest` compressed as configured (gzip by default,
//! zstd, none), which the queue holds and every retry sends as is, with the configured
//! headers (gRPC messages are framed here and sent over tonic's channel without a copy). It
//! classifies failures per the OTLP specification ([`classify_status`], [`classify_http`]): retryable ones carry the backend's
//! `google.rpc.RetryInfo` / `Retry-After` delay. A partial success becomes an
//! [`ExportOutcome`](hpcotel_core::ExportOutcome) with the rejected count and message.
//!
//! Requests fit the backend: `max_request_size` (4 MiB by default) is the exporter's
//! [`max_request_size`](hpcotel_core::Exporter::max_request_size), so its queue cuts longer
//! batches and drops an item too large alone (`too_large`); a backend answering "too large"
//! (HTTP 413, or gRPC RESOURCE_EXHAUSTED without RetryInfo whose message says so, as grpc-go
//! and tonic word it) is an [`ExportError::TooLarge`](hpcotel_core::ExportError::TooLarge),
//! which the queue answers by sending halves.
//!
//! TLS is rustls (ring): `ca_file` or the bundled web roots, optional client certificate,
//! `insecure_skip_verify` for tests. gRPC over TLS dials through hpcotel's own connector
//! (so the HTTP/2 `:scheme` it sends is `http`); `tls.server_name` applies to gRPC only.

mod compress;
mod config;
mod exporter;
mod grpc;
mod http;
mod tls;

#[cfg(test)]
mod tests;

pub use config::{
    Compression, CompressionParams, Config, DEFAULT_COMPRESSION, DEFAULT_GZIP_LEVEL,
    DEFAULT_MAX_REQUEST_SIZE, DEFAULT_TIMEOUT, DEFAULT_ZSTD_LEVEL, Endpoint, Scheme,
};
pub use exporter::{Error, OtlpExporter, Protocol, Result};
pub use grpc::classify_status;
pub use http::{classify_http, parse_retry_after};
