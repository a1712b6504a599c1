//! hpcotel-exporters: one folder per exporter, plus the export queue.
//!
//! - [`queue`]: the bounded export queue every exporter sits behind, with retry
//!   (exponential backoff, jitter, RetryInfo / Retry-After) and drop counters.
//! - [`otlp`]: OTLP over gRPC (`otlp`) and HTTP/protobuf (`otlphttp`).
//! - [`file`]: OTLP JSON lines on disk, rotated by size.
//! - [`debug`]: a one-line summary per interval on stderr.
//! - [`prometheus`]: a Prometheus scrape endpoint, optionally with dcgm-exporter's names.

pub mod debug;
pub mod file;
pub mod http_server;
pub mod otlp;
pub mod prometheus;
pub mod queue;

/// An error and its sources on one line (`cannot open 'x': Permission denied`).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = c.source();
    }
    s
}
