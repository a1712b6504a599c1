//! The export queue every exporter sits behind: the Collector's `sending_queue` plus
//! `retry_on_failure`.
//!
//! [`ExportQueue::start`] takes an [`Exporter`](hpcotel_core::Exporter) and returns a
//! [`QueueSender`] (what pipelines send [`Batch`](hpcotel_core::Batch)es to) and the queue's
//! task. An exporter that [encodes](hpcotel_core::Exporter::encode) (the OTLP ones) has each
//! batch cut to its `max_request_size` and encoded once, in the sender's task, and the queue
//! holds the encoded requests; others get the batches. `num_consumers` workers pull requests
//! from a bounded channel of `queue_size` items (spans, metric points, log records) or bytes
//! (`sizer: bytes`; see [`hpcotel_core::channel`]) and export them. Retryable failures are
//! retried with exponential backoff and
//! jitter ([`backoff_delay`]); a delay asked for by the backend (gRPC `RetryInfo`, HTTP
//! `Retry-After`) is waited out when it is longer than the backoff, even past
//! `max_interval`, as long as the total stays within `max_elapsed_time`.
//!
//! Counted in the exporter's [`ComponentStats`](hpcotel_core::ComponentStats), in items:
//! `sent`; `send_failed` per failed attempt (reason `retryable`, `permanent` or
//! `too_large`); `dropped` with reason `permanent`, `retries_exhausted`, `retry_disabled`,
//! `queue_full`, `rejected` (partial success), `too_large` (see below), `panic` (the exporter
//! panicked on the batch) or `shutdown` (deadline passed, or sent after the queue closed);
//! and the queue's size and capacity in items. Empty batches are skipped.
//!
//! Requests fit the next hop: a batch whose request is longer than the exporter's
//! [`max_request_size`](hpcotel_core::Exporter::max_request_size) is cut with
//! [`Batch::split_to_fit`](hpcotel_core::Batch::split_to_fit) into requests that fit, sent in
//! order, each retried on its own; an item whose request alone is longer is dropped (reason
//! `too_large`, a WARN naming exporter, signal, size and limit). A request the backend
//! refuses as too large ([`ExportError::TooLarge`](hpcotel_core::ExportError::TooLarge)) is
//! sent again as two halves, down to single items, which are then dropped `too_large`.
//!
//! The exporter's health is recorded there too, for the `health_check` extension's
//! `/readyz`: a batch given up on with reason `permanent`, `retries_exhausted`,
//! `retry_disabled` or `panic` marks the exporter failing
//! ([`ComponentStats::export_failed`](hpcotel_core::ComponentStats::export_failed)), and the
//! next delivery the backend accepts (a partial success included) clears it. Batches still
//! being retried, `queue_full`, `too_large` and `shutdown` drops leave it as it was (every
//! drop is on record with its time, see
//! [`ComponentStats::reason_counts`](hpcotel_core::ComponentStats::reason_counts)).

mod backoff;
mod config;
mod export_queue;

#[cfg(test)]
mod tests;

pub use backoff::{backoff_bounds, backoff_delay, base_interval, next_wait};
pub use config::{
    DEFAULT_BLOCK_ON_FULL, DEFAULT_INITIAL_INTERVAL, DEFAULT_MAX_ELAPSED_TIME,
    DEFAULT_MAX_INTERVAL, DEFAULT_MULTIPLIER, DEFAULT_NUM_CONSUMERS, DEFAULT_QUEUE_ENABLED,
    DEFAULT_QUEUE_SIZE, DEFAULT_QUEUE_SIZE_BYTES, DEFAULT_RANDOMIZATION_FACTOR,
    DEFAULT_RETRY_ENABLED, QueueConfig, RetryConfig, Sizer,
};
pub use export_queue::{
    ExportQueue, QueueSender, REASON_PANIC, REASON_PERMANENT, REASON_QUEUE_FULL, REASON_REJECTED,
    REASON_RETRIES_EXHAUSTED, REASON_RETRY_DISABLED, REASON_RETRYABLE, REASON_SHUTDOWN,
    REASON_TOO_LARGE,
};
