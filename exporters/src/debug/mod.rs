//! The `debug` exporter: shows on stderr what a pipeline exports.
//!
//! With `verbosity: basic` it prints one line per `summary_interval`, counting the items
//! exported since the previous line — `exported 42 metric points, 1200 spans, 3 log
//! records` — and nothing for an interval in which nothing was exported; at shutdown it
//! prints the last such line. `verbosity: detailed` also prints each batch as one line of
//! OTLP JSON (the [`file`](crate::file) exporter's format). It never fails an export.

mod config;
mod exporter;

#[cfg(test)]
mod tests;

pub use config::{Config, DEFAULT_SUMMARY_INTERVAL, DEFAULT_VERBOSITY, Verbosity};
pub use exporter::{DebugExporter, summary_line};
