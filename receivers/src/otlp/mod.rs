//! The `otlp` receiver: accepts OTLP traces, metrics and logs over gRPC (port 4317) and
//! HTTP (port 4318, protobuf and JSON, optionally gzip- or zstd-compressed), optionally over TLS and
//! behind a bearer token, and hands each request's `resource_spans` / `resource_metrics` /
//! `resource_logs` to its pipelines as one [`hpcotel_core::Batch`], after the ids are
//! checked (`validate`: items with malformed ids are refused and never forwarded).
//!
//! It answers per the OTLP specification: success with an empty partial success, or with one
//! counting the refused items (INVALID_ARGUMENT / 400 when nothing was good); when a
//! pipeline stays full for `pipeline_wait`, gRPC `RESOURCE_EXHAUSTED` carrying a
//! `google.rpc.RetryInfo` (so clients retry) or HTTP 429 with `Retry-After`; when shutting
//! down, `UNAVAILABLE` / 503 with `Retry-After`; when no pipeline of the request's signal
//! uses this receiver, `UNIMPLEMENTED` / 501. Malformed requests are answered 400 (HTTP) or
//! by tonic's own statuses (gRPC), each with a message saying what was wrong. HTTP error
//! bodies are a `google.rpc.Status`, encoded like the request (protobuf or JSON).
//!
//! Construction ([`OtlpReceiver::bind`]) binds the listeners and loads TLS material, so a
//! port in use or a missing certificate stops start-up; [`hpcotel_core::Receiver::run`]
//! serves until shutdown, then lets in-flight requests finish and hand over their data.

mod budget;
mod config;
mod grpc;
mod http;
mod identity;
mod json;
mod receiver;
mod tls;
mod validate;

pub use config::{
    Config, DEFAULT_GRPC_HOST, DEFAULT_GRPC_PORT, DEFAULT_HTTP_HOST, DEFAULT_HTTP_PORT,
    DEFAULT_MAX_RECV_MSG_SIZE_MIB, DEFAULT_MAX_REQUEST_BODY_SIZE, DEFAULT_PIPELINE_WAIT,
    DEFAULT_RETRY_AFTER, GrpcConfig, HttpConfig, Identity, IdentitySource, Limits, OnConflict,
    Protocols,
};
pub use receiver::{Error, OtlpReceiver, Result, SHUTDOWN_GRACE};

#[cfg(test)]
mod tests;
