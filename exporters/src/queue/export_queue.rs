//! The export queue itself: a bounded channel, `num_consumers` workers, retry with backoff.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use hpcotel_core::channel::{self, TryReserveError};
use hpcotel_core::{
    Acks, Batch, ComponentId, ComponentStats, Counter, ExportError, Exporter, Signal,
};
use tokio::sync::{Mutex, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::backoff::next_wait;
use super::config::{QueueConfig, RetryConfig};

/// Drop reason: the backend refused the batch for good.
pub const REASON_PERMANENT: &str = "permanent";
/// Drop reason: retrying would have exceeded `max_elapsed_time`.
pub const REASON_RETRIES_EXHAUSTED: &str = "retries_exhausted";
/// Drop reason: a retryable failure with `retry_on_failure.enabled: false`.
pub const REASON_RETRY_DISABLED: &str = "retry_disabled";
/// Drop reason: the queue was full and `block_on_full` is false.
pub const REASON_QUEUE_FULL: &str = "queue_full";
/// Drop reason: items the backend rejected in an OTLP partial success.
pub const REASON_REJECTED: &str = "rejected";
/// Drop reason: the shutdown deadline passed (or the queue was closed) before delivery.
pub const REASON_SHUTDOWN: &str = "shutdown";
/// `send_failed` reason of an attempt that failed with a retryable error.
pub const REASON_RETRYABLE: &str = "retryable";
/// Drop reason: the exporter panicked while exporting the batch (a bug, in hpcotel or in a
/// library it uses, e.g. on a malformed answer); the batch is given up on, the exporter and
/// the queue go on.
pub const REASON_PANIC: &str = "panic";
/// Drop reason: an item whose request alone is longer than the exporter's
/// `max_request_size`, or that the backend refused as too large when sent alone. Also the
/// `send_failed` reason of an attempt the backend refused as too large.
pub const REASON_TOO_LARGE: &str = "too_large";

/// Starts export queues; see the [module docs](super).
#[derive(Debug)]
pub struct ExportQueue;

/// What every worker and inline sender shares.
struct Shared {
    id: ComponentId,
    exporter: Arc<dyn Exporter>,
    retry: RetryConfig,
    stats: Arc<ComponentStats>,
    abort: CancellationToken,
}

#[derive(Clone)]
enum Mode {
    /// Batches go through the bounded channel to the workers.
    Queued {
        tx: channel::Sender<Arc<Batch>>,
        block_on_full: bool,
    },
    /// `sending_queue.enabled: false`: export in the sender's task. The channel carries
    /// nothing; it only tells the supervisor when the last sender is gone.
    Inline { _alive: mpsc::Sender<()> },
}

/// The handle pipelines send batches to an exporter with. Cheap to clone; the queue drains
/// and the exporter shuts down once every clone is dropped.
#[derive(Clone)]
pub struct QueueSender {
    shared: Arc<Shared>,
    mode: Mode,
}

impl std::fmt::Debug for QueueSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSender")
            .field("exporter", &self.shared.id.to_string())
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl ExportQueue {
    /// Starts the queue (or, with `queue.enabled: false`, the inline sender) for `exporter`.
    ///
    /// Must be called inside a Tokio runtime. Returns the sender and the queue's task, which
    /// completes once every [`QueueSender`] clone is dropped, everything queued has been
    /// delivered or given up on (retries go on while draining), and
    /// [`Exporter::shutdown`] has been awaited. Cancelling `abort` (the shutdown deadline)
    /// stops waiting and retrying: what is left is counted dropped with reason `shutdown`.
    pub fn start(
        id: ComponentId,
        exporter: Arc<dyn Exporter>,
        queue: QueueConfig,
        retry: RetryConfig,
        stats: Arc<ComponentStats>,
        abort: CancellationToken,
    ) -> (QueueSender, JoinHandle<()>) {
        let shared = Arc::new(Shared {
            id,
            exporter,
            retry,
            stats,
            abort,
        });
        if !queue.enabled {
            let (alive, mut gone) = mpsc::channel::<()>(1);
            let sup = shared.clone();
            let handle = tokio::spawn(async move {
                tokio::select! {
                    _ = gone.recv() => {}
                    _ = sup.abort.cancelled() => {}
                }
                shutdown_exporter(&sup).await;
            });
            let sender = QueueSender {
                shared,
                mode: Mode::Inline { _alive: alive },
            };
            return (sender, handle);
        }
        let (tx, rx) = channel::channel(queue.queue_size);
        let capacity = tx.capacity();
        shared.stats.set_queue(0, capacity);
        let rx = Arc::new(Mutex::new(rx));
        let handle = tokio::spawn(supervise(
            shared.clone(),
            rx,
            queue.num_consumers.max(1),
            capacity,
        ));
        let sender = QueueSender {
            shared,
            mode: Mode::Queued {
                tx,
                block_on_full: queue.block_on_full,
            },
        };
        (sender, handle)
    }
}

impl QueueSender {
    /// Hands `batch` to the exporter. Never fails: when the queue is full it waits
    /// (`block_on_full: true`) or drops the batch counting reason `queue_full`; once the queue
    /// is closed or the shutdown deadline passed, it counts the batch dropped with reason
    /// `shutdown`. With the queue disabled it exports inline, retrying as configured.
    ///
    /// Takes a `Batch` or an `Arc<Batch>`: a pipeline feeding several exporters hands each
    /// the same `Arc` instead of a copy.
    pub async fn send(&self, batch: impl Into<Arc<Batch>>) {
        self.send_acked(batch, Acks::none()).await
    }

    /// [`QueueSender::send`] with the batch's acknowledgements ([`hpcotel_core::ack`]): they
    /// are settled once the batch is delivered, or dropped for a counted reason other than
    /// the shutdown deadline (rejected, permanent, too large, retries exhausted, queue full);
    /// a batch dropped at the deadline leaves them unsettled, reported lost to their source.
    pub async fn send_acked(&self, batch: impl Into<Arc<Batch>>, acks: Acks) {
        let batch: Arc<Batch> = batch.into();
        let shared = &self.shared;
        if shared.abort.is_cancelled() {
            drop_batch(shared, &batch, REASON_SHUTDOWN);
            return;
        }
        match &self.mode {
            Mode::Inline { .. } => deliver(shared, batch, acks).await,
            Mode::Queued { tx, block_on_full } => {
                let items = batch.item_count();
                if *block_on_full {
                    let permit = tokio::select! {
                        biased;
                        _ = shared.abort.cancelled() => None,
                        p = tx.reserve(items) => p.ok(),
                    };
                    let sent = match permit {
                        Some(p) => p.send_acked(batch, acks),
                        None => Err((channel::Closed, batch)),
                    };
                    if let Err((_, batch)) = sent {
                        drop_batch(shared, &batch, REASON_SHUTDOWN);
                    }
                } else {
                    match tx.try_reserve(items) {
                        Ok(p) => {
                            if let Err((_, batch)) = p.send_acked(batch, acks) {
                                drop_batch(shared, &batch, REASON_SHUTDOWN);
                            }
                        }
                        Err(TryReserveError::Full) => {
                            warn!(exporter = %shared.id, signal = %batch.signal(), items,
                                "export queue full; dropping the batch");
                            drop_batch(shared, &batch, REASON_QUEUE_FULL);
                            // Dropped by configuration (`block_on_full: false`), counted.
                            acks.settle();
                        }
                        Err(TryReserveError::Closed) => {
                            drop_batch(shared, &batch, REASON_SHUTDOWN);
                        }
                    }
                }
                shared.stats.set_queue(self.len(), self.capacity());
            }
        }
    }

    /// Items waiting in the queue (0 when the queue is disabled).
    pub fn len(&self) -> usize {
        match &self.mode {
            Mode::Queued { tx, .. } => tx.len(),
            Mode::Inline { .. } => 0,
        }
    }

    /// True when nothing is waiting in the queue.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The queue's capacity in items (0 when the queue is disabled).
    pub fn capacity(&self) -> usize {
        match &self.mode {
            Mode::Queued { tx, .. } => tx.capacity(),
            Mode::Inline { .. } => 0,
        }
    }
}

/// Runs the workers, then drains what the deadline left behind and shuts the exporter down.
async fn supervise(
    shared: Arc<Shared>,
    rx: Arc<Mutex<channel::Receiver<Arc<Batch>>>>,
    workers: usize,
    capacity: usize,
) {
    let mut set = JoinSet::new();
    for _ in 0..workers {
        set.spawn(worker(shared.clone(), rx.clone(), capacity));
    }
    while let Some(joined) = set.join_next().await {
        if let Err(e) = joined {
            error!(exporter = %shared.id, error = %e, "export queue worker failed");
        }
    }
    let mut rx = rx.lock().await;
    rx.close();
    let mut left = 0usize;
    while let Some(batch) = rx.try_recv() {
        left += batch.item_count();
        drop_batch(&shared, &batch, REASON_SHUTDOWN);
    }
    shared.stats.set_queue(0, capacity);
    if left > 0 {
        error!(exporter = %shared.id, items = left,
            "shutdown deadline passed; dropping what was still queued");
    }
    drop(rx);
    shutdown_exporter(&shared).await;
}

/// One consumer: pulls batches until the queue is closed and empty, or the deadline passes.
async fn worker(
    shared: Arc<Shared>,
    rx: Arc<Mutex<channel::Receiver<Arc<Batch>>>>,
    capacity: usize,
) {
    loop {
        let next = tokio::select! {
            biased;
            _ = shared.abort.cancelled() => return,
            b = async {
                let mut rx = rx.lock().await;
                let b = rx.recv_acked().await;
                shared.stats.set_queue(rx.len(), capacity);
                b
            } => b,
        };
        let Some((batch, acks)) = next else { return };
        deliver(&shared, batch, acks).await;
    }
}

async fn shutdown_exporter(shared: &Shared) {
    if let Err(e) = shared.exporter.shutdown().await {
        error!(exporter = %shared.id, error = %e, "exporter shutdown failed");
    } else {
        debug!(exporter = %shared.id, "exporter shut down");
    }
}

fn drop_batch(shared: &Shared, batch: &Batch, reason: &str) {
    let items = batch.item_count() as u64;
    shared
        .stats
        .add_with_reason(batch.signal(), Counter::Dropped, reason, items);
}

/// Exports one batch as requests the exporter may send: cut to its `max_request_size` first
/// (an item too large alone is dropped, counted `too_large`), and any request the backend
/// refuses as too large sent again as two halves. Each request goes through
/// [`deliver_one`], in order. Then `acks` are settled, unless the shutdown deadline cut
/// delivery short (they are dropped then: lost, for their source to read again).
async fn deliver(shared: &Shared, batch: Arc<Batch>, acks: Acks) {
    if batch.is_empty() {
        acks.settle();
        return;
    }
    // A stack: the next request to send is last.
    let mut work = match shared.exporter.max_request_size() {
        Some(limit) => {
            let len = batch.encoded_len();
            if len > limit {
                fitting_requests(shared, &batch, len, limit)
            } else {
                vec![batch]
            }
        }
        None => vec![batch],
    };
    while let Some(request) = work.pop() {
        if let Some(halves) = deliver_one(shared, request).await {
            work.extend(halves.into_iter().rev());
        }
    }
    if !shared.abort.is_cancelled() {
        acks.settle();
    }
}

/// `batch` (whose request is `len` bytes, more than `limit`) cut into requests of at most
/// `limit` bytes, last first. Items too large alone are dropped here, counted `too_large`.
fn fitting_requests(shared: &Shared, batch: &Batch, len: usize, limit: usize) -> Vec<Arc<Batch>> {
    let signal = batch.signal();
    let pieces = (*batch).clone().split_to_fit(limit);
    debug!(exporter = %shared.id, %signal, items = batch.item_count(), bytes = len,
        max_request_size = limit, requests = pieces.len(),
        "request longer than max_request_size; split");
    let mut out = Vec::with_capacity(pieces.len());
    for (piece, bytes) in pieces {
        let items = piece.item_count();
        if bytes > limit && items > 0 {
            shared
                .stats
                .add_with_reason(signal, Counter::Dropped, REASON_TOO_LARGE, items as u64);
            warn!(exporter = %shared.id, %signal, items, bytes, max_request_size = limit,
                "an item alone is larger than max_request_size; dropping it");
        } else {
            out.push(Arc::new(piece));
        }
    }
    out.reverse();
    out
}

/// Exports one request, retrying retryable failures per the retry policy, and counts the
/// outcome. The same batch is lent to every attempt: a retry copies nothing. Returns the two
/// halves to send instead when the backend refused a request of several items as too large.
async fn deliver_one(shared: &Shared, batch: Arc<Batch>) -> Option<Vec<Arc<Batch>>> {
    if batch.is_empty() {
        return None;
    }
    let signal: Signal = batch.signal();
    let items = batch.item_count() as u64;
    let stats = &shared.stats;
    let retry = &shared.retry;
    let started = Instant::now();
    let mut attempt: u32 = 0;
    loop {
        let result = tokio::select! {
            biased;
            _ = shared.abort.cancelled() => {
                stats.add_with_reason(signal, Counter::Dropped, REASON_SHUTDOWN, items);
                warn!(exporter = %shared.id, %signal, items,
                    "shutdown deadline passed during export; dropping the batch");
                return None;
            }
            r = AssertUnwindSafe(shared.exporter.export(&batch)).catch_unwind() => match r {
                Ok(r) => r,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    stats.add_with_reason(signal, Counter::SendFailed, REASON_PANIC, items);
                    stats.add_with_reason(signal, Counter::Dropped, REASON_PANIC, items);
                    stats.export_failed(REASON_PANIC, &format!("the exporter panicked: {what}"));
                    error!(exporter = %shared.id, %signal, items, panic = %what,
                        "exporter panicked; dropping the batch");
                    return None;
                }
            },
        };
        match result {
            Ok(outcome) => {
                stats.export_succeeded();
                let rejected = outcome.rejected.min(items);
                stats.add(signal, Counter::Sent, items - rejected);
                if rejected > 0 {
                    stats.add_with_reason(signal, Counter::Dropped, REASON_REJECTED, rejected);
                    warn!(exporter = %shared.id, %signal, rejected, message = %outcome.message,
                        "backend rejected part of the batch (partial success)");
                } else if !outcome.message.is_empty() {
                    warn!(exporter = %shared.id, %signal, message = %outcome.message,
                        "backend answered a partial success with a message");
                }
                return None;
            }
            Err(ExportError::TooLarge { reason }) => {
                stats.add_with_reason(signal, Counter::SendFailed, REASON_TOO_LARGE, items);
                let bytes = batch.encoded_len();
                if items > 1 {
                    warn!(exporter = %shared.id, %signal, items, bytes, error = %reason,
                        "backend refused the request as too large; sending it again as two halves");
                    let mut back = (*batch).clone();
                    let front = back.take_items(batch.item_count() / 2);
                    return Some(vec![Arc::new(front), Arc::new(back)]);
                }
                stats.add_with_reason(signal, Counter::Dropped, REASON_TOO_LARGE, items);
                warn!(exporter = %shared.id, %signal, items, bytes, error = %reason,
                    "backend refused a single item as too large; dropping it");
                return None;
            }
            Err(ExportError::Permanent { reason }) => {
                stats.add_with_reason(signal, Counter::SendFailed, REASON_PERMANENT, items);
                stats.add_with_reason(signal, Counter::Dropped, REASON_PERMANENT, items);
                stats.export_failed(REASON_PERMANENT, &reason);
                error!(exporter = %shared.id, %signal, items, error = %reason,
                    "export failed permanently; dropping the batch");
                return None;
            }
            Err(ExportError::Retryable {
                reason,
                retry_after,
            }) => {
                stats.add_with_reason(signal, Counter::SendFailed, REASON_RETRYABLE, items);
                if !retry.enabled {
                    stats.add_with_reason(signal, Counter::Dropped, REASON_RETRY_DISABLED, items);
                    stats.export_failed(REASON_RETRY_DISABLED, &reason);
                    error!(exporter = %shared.id, %signal, items, error = %reason,
                        "export failed and retry is disabled; dropping the batch");
                    return None;
                }
                let wait = next_wait(retry, attempt, rand::random::<f64>(), retry_after);
                let limit = retry.max_elapsed_time;
                if limit > Duration::ZERO && started.elapsed() + wait > limit {
                    stats.add_with_reason(
                        signal,
                        Counter::Dropped,
                        REASON_RETRIES_EXHAUSTED,
                        items,
                    );
                    stats.export_failed(REASON_RETRIES_EXHAUSTED, &reason);
                    error!(exporter = %shared.id, %signal, items, error = %reason,
                        attempts = attempt + 1, max_elapsed_time = ?limit,
                        "export failed; retries exhausted, dropping the batch");
                    return None;
                }
                warn!(exporter = %shared.id, %signal, items, error = %reason,
                    retry_in = ?wait, attempt = attempt + 1, "export failed; will retry");
                tokio::select! {
                    biased;
                    _ = shared.abort.cancelled() => {
                        stats.add_with_reason(signal, Counter::Dropped, REASON_SHUTDOWN, items);
                        warn!(exporter = %shared.id, %signal, items,
                            "shutdown deadline passed while waiting to retry; dropping the batch");
                        return None;
                    }
                    _ = tokio::time::sleep(wait) => {}
                }
                attempt = attempt.saturating_add(1);
            }
        }
    }
}
