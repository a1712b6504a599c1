//! The export queue itself: a bounded channel, `num_consumers` workers, retry with backoff.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use hpcotel_core::channel::{self, Items, TryReserveError};
use hpcotel_core::{
    Acks, Batch, ComponentId, ComponentStats, Counter, EncodedRequest, ExportError, ExportOutcome,
    Exporter, Signal,
};
use tokio::sync::{Mutex, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::backoff::next_wait;
use super::config::{QueueConfig, RetryConfig, Sizer};

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

/// One request in the queue: a batch, or the request an encoding exporter made of it.
#[derive(Clone)]
enum Payload {
    /// For exporters that take batches.
    Batch(Arc<Batch>),
    /// For exporters that [encode](Exporter::encode): what will be sent, as bytes.
    Encoded(Arc<EncodedRequest>),
}

impl Payload {
    fn signal(&self) -> Signal {
        match self {
            Payload::Batch(b) => b.signal(),
            Payload::Encoded(r) => r.signal,
        }
    }

    fn is_empty(&self) -> bool {
        self.items() == 0
    }

    /// What the payload weighs in the queue: its items, or the bytes it holds (an encoded
    /// request's body; a batch's encoded length, for exporters that take batches).
    fn weight(&self, sizer: Sizer) -> usize {
        match sizer {
            Sizer::Items => self.items(),
            Sizer::Bytes => self.bytes(),
        }
    }

    /// Bytes of the request: an encoded request's body, a batch's encoded length.
    fn bytes(&self) -> usize {
        match self {
            Payload::Batch(b) => b.encoded_len(),
            Payload::Encoded(r) => r.body.len(),
        }
    }
}

impl Items for Payload {
    fn items(&self) -> usize {
        match self {
            Payload::Batch(b) => b.item_count(),
            Payload::Encoded(r) => r.items,
        }
    }
}

#[derive(Clone)]
enum Mode {
    /// Requests go through the bounded channel to the workers.
    Queued {
        tx: channel::Sender<Payload>,
        block_on_full: bool,
        sizer: Sizer,
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
                sizer: queue.sizer,
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
        let requests = prepare(shared, batch);
        let last = requests.len().saturating_sub(1);
        let mut acks = Some(acks);
        for (i, payload) in requests.into_iter().enumerate() {
            // Each request of a cut batch holds a claim; the batch's own is settled once
            // every piece holds one.
            let piece_acks = if i == last {
                acks.take().unwrap_or_default()
            } else {
                acks.clone().unwrap_or_default()
            };
            match &self.mode {
                Mode::Inline { .. } => deliver(shared, payload, piece_acks).await,
                Mode::Queued {
                    tx,
                    block_on_full,
                    sizer,
                } => {
                    self.enqueue(tx, *block_on_full, *sizer, payload, piece_acks)
                        .await
                }
            }
        }
        if let Some(acks) = acks {
            // Nothing left to send (every item dropped, counted).
            acks.settle();
        }
        if matches!(self.mode, Mode::Queued { .. }) {
            shared.stats.set_queue(self.len(), self.capacity());
        }
    }

    async fn enqueue(
        &self,
        tx: &channel::Sender<Payload>,
        block_on_full: bool,
        sizer: Sizer,
        payload: Payload,
        acks: Acks,
    ) {
        let shared = &self.shared;
        let weight = payload.weight(sizer);
        if block_on_full {
            let permit = tokio::select! {
                biased;
                _ = shared.abort.cancelled() => None,
                p = tx.reserve(weight) => p.ok(),
            };
            let sent = match permit {
                Some(p) => p.send_acked(payload, acks),
                None => Err((channel::Closed, payload)),
            };
            if let Err((_, payload)) = sent {
                drop_payload(shared, &payload, REASON_SHUTDOWN);
            }
        } else {
            match tx.try_reserve(weight) {
                Ok(p) => {
                    if let Err((_, payload)) = p.send_acked(payload, acks) {
                        drop_payload(shared, &payload, REASON_SHUTDOWN);
                    }
                }
                Err(TryReserveError::Full) => {
                    warn!(exporter = %shared.id, signal = %payload.signal(), items = payload.items(),
                        "export queue full; dropping the batch");
                    drop_payload(shared, &payload, REASON_QUEUE_FULL);
                    // Dropped by configuration (`block_on_full: false`), counted.
                    acks.settle();
                }
                Err(TryReserveError::Closed) => {
                    drop_payload(shared, &payload, REASON_SHUTDOWN);
                }
            }
        }
    }

    /// What waits in the queue, in the sizer's unit (items or bytes; 0 when the queue is
    /// disabled).
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

    /// The queue's capacity in the sizer's unit (0 when the queue is disabled).
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
    rx: Arc<Mutex<channel::Receiver<Payload>>>,
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
    while let Some(payload) = rx.try_recv() {
        left += payload.items();
        drop_payload(&shared, &payload, REASON_SHUTDOWN);
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
async fn worker(shared: Arc<Shared>, rx: Arc<Mutex<channel::Receiver<Payload>>>, capacity: usize) {
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
        let Some((payload, acks)) = next else { return };
        deliver(&shared, payload, acks).await;
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

fn drop_payload(shared: &Shared, payload: &Payload, reason: &str) {
    shared.stats.add_with_reason(
        payload.signal(),
        Counter::Dropped,
        reason,
        payload.items() as u64,
    );
}

/// The requests `batch` is sent as, in order: cut to the exporter's `max_request_size` first
/// (items too large alone dropped, counted `too_large`), then each piece encoded when the
/// exporter encodes (a piece it cannot encode is dropped, counted with the error's reason).
fn prepare(shared: &Shared, batch: Arc<Batch>) -> Vec<Payload> {
    if batch.is_empty() {
        return vec![Payload::Batch(batch)];
    }
    let mut pieces = match shared.exporter.max_request_size() {
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
    pieces.reverse();
    pieces
        .into_iter()
        .filter_map(|piece| encode(shared, piece))
        .collect()
}

/// `piece` as the exporter wants it queued; `None` when it could not be encoded (dropped,
/// counted).
fn encode(shared: &Shared, piece: Arc<Batch>) -> Option<Payload> {
    match shared.exporter.encode(&piece) {
        None => Some(Payload::Batch(piece)),
        Some(Ok(request)) => Some(Payload::Encoded(Arc::new(request))),
        Some(Err(e)) => {
            let (reason, why) = match &e {
                ExportError::TooLarge { reason } => (REASON_TOO_LARGE, reason),
                ExportError::Permanent { reason } | ExportError::Retryable { reason, .. } => {
                    (REASON_PERMANENT, reason)
                }
            };
            error!(exporter = %shared.id, signal = %piece.signal(), items = piece.item_count(),
                error = %why, "cannot encode the batch; dropping it");
            drop_batch(shared, &piece, reason);
            None
        }
    }
}

/// Exports one request ([`prepare`] cut it to the exporter's `max_request_size`); a request
/// the backend refuses as too large is sent again as two halves. Each request goes through
/// [`deliver_one`], in order. Then `acks` are settled, unless the shutdown deadline cut
/// delivery short (they are dropped then: lost, for their source to read again).
async fn deliver(shared: &Shared, payload: Payload, acks: Acks) {
    if payload.is_empty() {
        acks.settle();
        return;
    }
    // A stack: the next request to send is last.
    let mut work = vec![payload];
    while let Some(request) = work.pop() {
        if let Some(halves) = deliver_one(shared, request).await {
            work.extend(halves.into_iter().rev());
        }
    }
    if !shared.abort.is_cancelled() {
        acks.settle();
    }
}

/// `payload` in two halves of its items, front first, encoded again if it was; `None` when
/// the exporter cannot decode what it encoded.
fn halves(shared: &Shared, payload: &Payload) -> Option<Vec<Payload>> {
    let mut back = match payload {
        Payload::Batch(b) => (**b).clone(),
        Payload::Encoded(r) => shared.exporter.decode(r)?,
    };
    let front = back.take_items(back.item_count() / 2);
    let pieces = [Arc::new(front), Arc::new(back)];
    Some(match payload {
        Payload::Batch(_) => pieces.into_iter().map(Payload::Batch).collect(),
        Payload::Encoded(_) => pieces
            .into_iter()
            .filter_map(|p| encode(shared, p))
            .collect(),
    })
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
/// outcome. The same batch (or encoded request) is lent to every attempt: a retry copies
/// nothing. Returns the two halves to send instead when the backend refused a request of
/// several items as too large.
async fn deliver_one(shared: &Shared, payload: Payload) -> Option<Vec<Payload>> {
    if payload.is_empty() {
        return None;
    }
    let signal: Signal = payload.signal();
    let items = payload.items() as u64;
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
            r = AssertUnwindSafe(export(shared, &payload)).catch_unwind() => match r {
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
                let bytes = payload.bytes();
                if items > 1
                    && let Some(halves) = halves(shared, &payload)
                {
                    warn!(exporter = %shared.id, %signal, items, bytes, error = %reason,
                        "backend refused the request as too large; sending it again as two halves");
                    return Some(halves);
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

/// One attempt at sending `payload`.
async fn export(shared: &Shared, payload: &Payload) -> Result<ExportOutcome, ExportError> {
    match payload {
        Payload::Batch(b) => shared.exporter.export(b).await,
        Payload::Encoded(r) => shared.exporter.export_encoded(r).await,
    }
}
