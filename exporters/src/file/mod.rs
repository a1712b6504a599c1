//! The `file` exporter: OTLP JSON lines on disk, the OpenTelemetry file-exporter format.
//!
//! Each batch becomes one line: an `ExportTraceServiceRequest`, `ExportMetricsServiceRequest`
//! or `ExportLogsServiceRequest` in OTLP/JSON (lowerCamelCase keys, hex trace and span ids),
//! appended to `traces.jsonl`, `metrics.jsonl` or `logs.jsonl` in the configured directory
//! (created at start). A line that would take the active file past `max_file_size_mib` first
//! rotates it: `traces.jsonl` becomes `traces.1.jsonl`, `traces.1.jsonl` becomes
//! `traces.2.jsonl`, and so on; with `max_files: N` at most N files per signal exist (the
//! active one and `.1` to `.N-1`), the oldest being overwritten. Every export is flushed;
//! shutdown also syncs to disk. I/O errors are retryable.

mod config;
mod exporter;

#[cfg(test)]
mod tests;

pub use config::{Config, DEFAULT_MAX_FILE_SIZE_MIB, DEFAULT_MAX_FILES, DEFAULT_PATH};
pub use exporter::{Error, FileExporter, Result, active_file, encode_line, rotated_file};
