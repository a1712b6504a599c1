//! hpcotel-receivers: one folder per receiver.
//!
//! - [`otlp`]: OTLP over gRPC and HTTP (protobuf and JSON), spans, metrics and logs.
//! - [`host`]: host metrics (CPU, memory, load, network, filesystem, paging) named per the
//!   OpenTelemetry `system.*` semantic conventions.

pub mod gpu;
pub mod host;
pub mod kubernetes;
pub mod otlp;
