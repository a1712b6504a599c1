//! hpcotel-exporters: one folder per exporter, plus the export queue.
//!
//! - [`queue`]: the bounded export queue every exporter sits behind, with retry
//!   (exponential backoff, jitter, RetryInfo / Retry-After) and drop counters.
//! - [`otlp`]: OTLP over gRPC (`otlp`) and HTTP/protobuf (`otlphttp`).
//! - [`file`]: OTLP JSON lines on disk, rotated by size.
//! - [`debug`]: a one-line summary per interval on stderr.

pub mod debug;
pub mod file;
pub mod otlp;
pub mod queue;
