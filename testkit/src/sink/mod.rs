//! An OTLP sink: a test double that speaks real OTLP and records what it receives.
//!
//! [`OtlpSink::start`] binds two listeners on `127.0.0.1:0`:
//! - gRPC: the `opentelemetry-proto` tonic `TraceService`, `MetricsService` and `LogsService`
//!   (gzip- and zstd-compressed requests accepted);
//! - HTTP: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with `application/x-protobuf` or
//!   `application/json` bodies, optionally `Content-Encoding: gzip` or `zstd`.
//!
//! Every answered request is kept as a [`RequestRecord`] (protocol, signal, arrival time,
//! headers, item count, answer) and the data of accepted requests as a [`Received`]
//! snapshot. What the sink answers is scripted with [`Behaviour`]: accept, stall (hold the
//! request open until the behaviour changes), fail (gRPC status with `google.rpc.RetryInfo`,
//! HTTP status with `Retry-After` and a `google.rpc.Status` body) or partial success; a
//! one-shot queue ([`OtlpSink::push_behaviour`]) scripts sequences such as "fail twice, then
//! accept". Like a real collector it can have a size limit
//! ([`SinkOptions::max_message_bytes`]): longer requests are refused as grpc-go refuses them
//! (RESOURCE_EXHAUSTED) or with HTTP 413, and every record carries the request's length.

mod grpc;
mod http;
mod received;
mod state;

#[cfg(test)]
mod tests;

pub use received::{Received, any_value_string};
pub use state::{
    Answer, Behaviour, COLLECTOR_MAX_RECV_MSG_SIZE, OtlpSink, Protocol, RequestRecord, SinkError,
    SinkOptions, Totals,
};
