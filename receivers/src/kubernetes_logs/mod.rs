//! The `kubernetes_logs` receiver: tails the kubelet's container log files under
//! `<root>/<namespace>_<pod>_<uid>/<container>/<restart>.log` (default root `/var/log/pods`)
//! and emits each line as an OTLP log record.
//!
//! Emits, per file, one `ResourceLogs` with `k8s.namespace.name`, `k8s.pod.name`,
//! `k8s.pod.uid`, `k8s.container.name` and `k8s.container.restart_count`; per line a
//! `LogRecord` with the runtime's time, our observed time, `log.iostream`, `log.file.path`,
//! a map body for a JSON object line (severity from its `level`/`severity`/`lvl`/`log.level`)
//! or a string body (severity from a leading level word), and `hpcotel.log.truncated_bytes`
//! on a line cut at `max_record_size`. Records then go through `enrich` like every signal.
//!
//! - [`parse`]: the CRI and Docker json-file line formats (detected per file), partial lines
//!   joined per stream, severities.
//! - [`tail`]: following files through rotation (rename, copy-truncate, recreation), by
//!   device + inode + fingerprint.
//! - [`multiline`]: stack traces and error blocks (Python, JVM, Go, CUDA, NCCL, rules of
//!   your own) joined into one record per block, per stream.
//! - [`checkpoint`]: offsets on disk, written atomically (fsynced, then renamed); reading
//!   waits while the pipeline is full (the files are the buffer).
//! - `commit`: the checkpoint advances only over hand-overs the exporters settled
//!   (acknowledged end to end, [`hpcotel_core::ack`]), so a `kill -9` repeats at most what
//!   was in flight and loses nothing.
//! - [`select`]: which pods are read: path rules (namespaces, containers, the collector's
//!   UID), then what the Catalog knows of the pod (opt-out annotation `hpcotel.io/logs:
//!   "false"`, hpcotel's own pods, label selectors); a pod not known yet is waited for.
//! - [`rate`]: a token bucket per pod (records and bytes, on the records' own timestamps);
//!   records over it are dropped, counted as
//!   `hpcotel.receiver.refused{hpcotel.reason=rate_limited}`, and warned of once per pod per
//!   minute.

pub mod checkpoint;
mod commit;
mod config;
pub mod multiline;
pub mod parse;
pub mod rate;
mod receiver;
pub mod select;
pub mod tail;
#[cfg(test)]
mod tests;

pub use config::{
    Config, DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_FLUSH_TIMEOUT, DEFAULT_MAX_RECORD_SIZE,
    DEFAULT_POD_METADATA_WAIT, DEFAULT_POLL_INTERVAL, DEFAULT_RATE_LIMIT_BURST,
    DEFAULT_RATE_LIMIT_BYTES_PER_SECOND, DEFAULT_RATE_LIMIT_LINES_PER_SECOND, DEFAULT_READ_CHUNK,
    DEFAULT_ROOT, DEFAULT_STATE_DIR, RateLimitConfig, StartAt,
};
pub use receiver::KubernetesLogsReceiver;
