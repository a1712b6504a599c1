use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hpcotel_core::{
    Batch, ComponentError, ComponentKind, ComponentStats, Counter, EncodedRequest, ExportError,
    ExportOutcome, Exporter, Signal, Telemetry,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;

fn spans(n: usize) -> Batch {
    Batch::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: (0..n)
                .map(|i| Span {
                    name: format!("span-{i}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

/// A scripted exporter: answers from `script` (then `Ok`), records every attempt, and, when
/// gated, holds each export until a permit is added.
#[derive(Default)]
struct Mock {
    script: Mutex<VecDeque<Result<ExportOutcome, ExportError>>>,
    always: Mutex<Option<ExportError>>,
    attempts: Mutex<Vec<(Instant, usize)>>,
    delivered: AtomicUsize,
    in_flight: AtomicUsize,
    gate: Option<Arc<Semaphore>>,
    shut_down: AtomicBool,
    /// What `max_request_size` says.
    max_request_size: Option<usize>,
    /// Requests longer than this are answered `TooLarge`, as a backend with a size limit.
    backend_limit: Option<usize>,
    /// The span names of each attempt.
    names: Mutex<Vec<Vec<String>>>,
    /// Encode batches (as an OTLP exporter does) and take them back as encoded requests.
    encodes: bool,
    /// Batches encoded.
    encoded: AtomicUsize,
}

impl Mock {
    fn gated() -> (Arc<Mock>, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        let mock = Mock {
            gate: Some(gate.clone()),
            ..Default::default()
        };
        (Arc::new(mock), gate)
    }

    fn push(&self, answer: Result<ExportOutcome, ExportError>) {
        self.script.lock().unwrap().push_back(answer);
    }

    fn attempts(&self) -> Vec<(Instant, usize)> {
        self.attempts.lock().unwrap().clone()
    }
}

#[async_trait]
impl Exporter for Mock {
    async fn export(&self, batch: &Batch) -> Result<ExportOutcome, ExportError> {
        assert!(
            !self.encodes,
            "an encoding exporter is handed encoded requests"
        );
        self.attempt(batch).await
    }

    fn encode(&self, batch: &Batch) -> Option<Result<EncodedRequest, ExportError>> {
        if !self.encodes {
            return None;
        }
        self.encoded.fetch_add(1, Ordering::SeqCst);
        Some(Ok(EncodedRequest {
            signal: batch.signal(),
            items: batch.item_count(),
            body: batch.encode_request().into(),
        }))
    }

    async fn export_encoded(&self, request: &EncodedRequest) -> Result<ExportOutcome, ExportError> {
        let batch = self
            .decode(request)
            .expect("a request this exporter encoded");
        assert_eq!(batch.item_count(), request.items);
        self.attempt(&batch).await
    }

    fn decode(&self, request: &EncodedRequest) -> Option<Batch> {
        Batch::decode_request(request.signal, &request.body).ok()
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        self.shut_down.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn max_request_size(&self) -> Option<usize> {
        self.max_request_size
    }
}

impl Mock {
    async fn attempt(&self, batch: &Batch) -> Result<ExportOutcome, ExportError> {
        self.attempts
            .lock()
            .unwrap()
            .push((Instant::now(), batch.item_count()));
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate open").forget();
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.names.lock().unwrap().push(span_names(batch));
        if let Some(limit) = self.backend_limit
            && batch.encoded_len() > limit
        {
            return Err(ExportError::TooLarge {
                reason: format!("larger than max ({} vs. {limit})", batch.encoded_len()),
            });
        }
        let scripted = self.script.lock().unwrap().pop_front();
        let always = self.always.lock().unwrap().clone();
        let answer = match (scripted, always) {
            (Some(a), _) => a,
            (None, Some(e)) => Err(e),
            (None, None) => Ok(ExportOutcome::default()),
        };
        if let Ok(o) = &answer {
            self.delivered
                .fetch_add(batch.item_count() - o.rejected as usize, Ordering::SeqCst);
        }
        answer
    }
}

fn span_names(batch: &Batch) -> Vec<String> {
    match batch {
        Batch::Traces(rs) => rs
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.clone())
            .collect(),
        _ => Vec::new(),
    }
}

/// One resource, one scope, a span per entry of `sizes`: named `s<i>`, with a payload
/// attribute of that many bytes.
fn sized_spans(sizes: &[usize]) -> Batch {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    Batch::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: sizes
                .iter()
                .enumerate()
                .map(|(i, n)| Span {
                    name: format!("s{i}"),
                    attributes: vec![KeyValue {
                        key: "payload".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("x".repeat(*n))),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

/// The request length of `sized_spans(sizes)`.
fn len_of(sizes: &[usize]) -> usize {
    sized_spans(sizes).encoded_len()
}

fn stats() -> Arc<ComponentStats> {
    Telemetry::default().register(ComponentKind::Exporter, "otlp/test".parse().unwrap())
}

fn fast_retry() -> RetryConfig {
    RetryConfig {
        initial_interval: Duration::from_millis(10),
        randomization_factor: 0.0,
        max_interval: Duration::from_millis(50),
        max_elapsed_time: Duration::from_secs(30),
        ..RetryConfig::default()
    }
}

fn start(
    mock: &Arc<Mock>,
    queue: QueueConfig,
    retry: RetryConfig,
) -> (
    QueueSender,
    tokio::task::JoinHandle<()>,
    Arc<ComponentStats>,
    CancellationToken,
) {
    let stats = stats();
    let abort = CancellationToken::new();
    let (tx, handle) = ExportQueue::start(
        "otlp/test".parse().unwrap(),
        mock.clone(),
        queue,
        retry,
        stats.clone(),
        abort.clone(),
    );
    (tx, handle, stats, abort)
}

/// Polls `cond` until it holds, failing the test after `within`.
async fn wait_until(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn finish(handle: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("queue task finishes")
        .expect("queue task does not panic");
}

#[test]
fn backoff_grows_stays_within_jitter_bounds_and_caps() {
    let retry = RetryConfig {
        initial_interval: Duration::from_secs(1),
        randomization_factor: 0.5,
        multiplier: 2.0,
        max_interval: Duration::from_secs(8),
        ..RetryConfig::default()
    };
    let secs = |d: Duration| d.as_secs_f64();
    assert_eq!(base_interval(&retry, 0), Duration::from_secs(1));
    assert_eq!(base_interval(&retry, 2), Duration::from_secs(4));
    assert_eq!(base_interval(&retry, 3), Duration::from_secs(8));
    assert_eq!(base_interval(&retry, 60), Duration::from_secs(8));
    let (lo, hi) = backoff_bounds(&retry, 0);
    assert!((secs(lo) - 0.5).abs() < 1e-9 && (secs(hi) - 1.5).abs() < 1e-9);
    let (lo, hi) = backoff_bounds(&retry, 1000);
    assert!((secs(lo) - 4.0).abs() < 1e-9 && (secs(hi) - 12.0).abs() < 1e-9);
    for attempt in 0..12 {
        let (lo, hi) = backoff_bounds(&retry, attempt);
        for _ in 0..200 {
            let d = backoff_delay(&retry, attempt, rand::random::<f64>());
            assert!(
                d >= lo && d <= hi,
                "attempt {attempt}: {d:?} not in {lo:?}..{hi:?}"
            );
        }
    }
    // The backend's delay wins when longer, even beyond max_interval; else the backoff.
    let long = Duration::from_secs(60);
    assert_eq!(next_wait(&retry, 0, 0.5, Some(long)), long);
    assert_eq!(
        next_wait(&retry, 0, 0.5, Some(Duration::from_millis(10))),
        Duration::from_secs(1)
    );
    // The defaults are the Collector's.
    let d = RetryConfig::default();
    assert_eq!(
        backoff_bounds(&d, 0),
        (Duration::from_millis(2500), Duration::from_millis(7500))
    );
}

#[test]
fn configs_parse_with_defaults_and_reject_bad_values() {
    let q: QueueConfig = serde_yaml::from_str("queue_size: 10\nblock_on_full: false").unwrap();
    assert_eq!(
        q,
        QueueConfig {
            queue_size: 10,
            block_on_full: false,
            ..QueueConfig::default()
        }
    );
    assert_eq!(QueueConfig::default().num_consumers, 4);
    let r: RetryConfig =
        serde_yaml::from_str("initial_interval: 1s\nmax_elapsed_time: 0s").unwrap();
    assert_eq!(r.initial_interval, Duration::from_secs(1));
    assert_eq!(r.max_elapsed_time, Duration::ZERO);
    assert_eq!(r.max_interval, Duration::from_secs(30));
    assert!(!RetryConfig::disabled().enabled);
    let e = serde_yaml::from_str::<QueueConfig>("queue_size: 0").unwrap_err();
    assert!(e.to_string().contains("expected at least 1, got 0"), "{e}");
    let q: QueueConfig = serde_yaml::from_str("sizer: items").unwrap();
    assert_eq!(q.sizer, Sizer::Items);
    let q: QueueConfig = serde_yaml::from_str("sizer: bytes\nqueue_size: 8388608").unwrap();
    assert_eq!((q.sizer, q.queue_size), (Sizer::Bytes, 8 << 20));
    // Without a size, each sizer has its own default: 50000 bytes would hold a few requests.
    let q: QueueConfig = serde_yaml::from_str("sizer: bytes").unwrap();
    assert_eq!(q.queue_size, super::config::DEFAULT_QUEUE_SIZE_BYTES);
    let q: QueueConfig = serde_yaml::from_str("sizer: items").unwrap();
    assert_eq!(q.queue_size, super::config::DEFAULT_QUEUE_SIZE);
    let e = serde_yaml::from_str::<QueueConfig>("sizer: bytes\nnum_consumers: 0").unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
    let e = serde_yaml::from_str::<QueueConfig>("sizr: bytes").unwrap_err();
    assert!(e.to_string().contains("unknown field `sizr`"), "{e}");
    let e = serde_yaml::from_str::<QueueConfig>("sizer: requests").unwrap_err();
    assert!(
        e.to_string()
            .contains("hpcotel does not size queues in requests"),
        "{e}"
    );
    let e = serde_yaml::from_str::<QueueConfig>("sizer: megabytes").unwrap_err();
    assert!(
        e.to_string()
            .contains("expected 'items' or 'bytes', got 'megabytes'"),
        "{e}"
    );
    let e = serde_yaml::from_str::<QueueConfig>("size: 3").unwrap_err();
    assert!(e.to_string().contains("unknown field `size`"), "{e}");
    let e = serde_yaml::from_str::<RetryConfig>("randomization_factor: 2").unwrap_err();
    assert!(e.to_string().contains("from 0 to 1"), "{e}");
}

#[tokio::test]
async fn delivers_everything_and_counts_sent() {
    let mock = Arc::new(Mock::default());
    let (tx, handle, stats, _abort) = start(&mock, QueueConfig::default(), fast_retry());
    assert_eq!(tx.capacity(), DEFAULT_QUEUE_SIZE);
    for _ in 0..50 {
        tx.send(spans(3)).await;
    }
    drop(tx);
    finish(handle).await;
    assert_eq!(mock.delivered.load(Ordering::SeqCst), 150);
    assert_eq!(stats.get(Signal::Traces, Counter::Sent), 150);
    assert_eq!(stats.get(Signal::Traces, Counter::Dropped), 0);
    assert_eq!(stats.queue(), Some((0, DEFAULT_QUEUE_SIZE as u64)));
    assert!(mock.shut_down.load(Ordering::SeqCst));
}

#[tokio::test]
async fn permanent_error_is_not_retried_and_counted_dropped() {
    let mock = Arc::new(Mock::default());
    mock.push(Err(ExportError::Permanent {
        reason: "HTTP 400".into(),
    }));
    let (tx, handle, stats, _abort) = start(&mock, QueueConfig::default(), fast_retry());
    tx.send(spans(4)).await;
    drop(tx);
    finish(handle).await;
    assert_eq!(mock.attempts().len(), 1);
    assert_eq!(
        stats.reasons(Signal::Traces, Counter::Dropped),
        vec![("permanent".to_owned(), 4)]
    );
    assert_eq!(
        stats.reasons(Signal::Traces, Counter::SendFailed),
        vec![("permanent".to_owned(), 4)]
    );
    assert_eq!(stats.get(Signal::Traces, Counter::Sent), 0);
}

#[tokio::test]
async fn retry_after_is_waited_out_then_delivered() {
    let retry_after = Duration::from_millis(300);
    let mock = Arc::new(Mock::default());
    mock.push(Err(ExportError::Retryable {
        reason: "UNAVAILABLE".into(),
        retry_after: Some(retry_after),
    }));
    let (tx, handle, stats, _abort) = start(&mock, QueueConfig::default(), fast_retry());
    tx.send(spans(2)).await;
    // Dropping the sender at once: the retry still happens while the queue drains.
    drop(tx);
    finish(handle).await;
    let attempts = mock.attempts();
    assert_eq!(attempts.len(), 2);
    let gap = attempts[1].0 - attempts[0].0;
    assert!(
        gap >= retry_after,
        "retried after {gap:?}, asked {retry_after:?}"
    );
    assert_eq!(stats.get(Signal::Traces, Counter::Sent), 2);
    assert_eq!(
        stats.reasons(Signal::Traces, Counter::SendFailed),
        vec![("retryable".to_owned(), 2)]
    );
    assert_eq!(stats.get(Signal::Traces, Counter::Dropped), 0);
}

#[tokio::test]
async fn gives_up_after_max_elapsed_time() {
    let mock = Arc::new(Mock::default());
    *mock.always.lock().unwrap() = Some(ExportError::Retryable {
        reason: "UNAVAILABLE".into(),
        retry_after: None,
    });
    let retry = RetryConfig {
        max_elapsed_time: Duration::from_millis(200),
        ..fast_retry()
    };
    let (tx, handle, stats, _abort) = start(&mock, QueueConfig::default(), retry);
    tx.send(spans(3)).await;
    drop(tx);
    finish(handle).await;
    let attempts = mock.attempts();
    assert!(attempts.len() >= 2, "only {} attempts", attempts.len());
    assert!(attempts.last().unwrap().0 - attempts[0].0 <= Duration::from_millis(200));
    assert_eq!(
        stats.reasons(Signal::Traces, Counter::Dropped),
        vec![("retries_exhausted".to_owned(), 3)]
    );
    assert_eq!(
        stats.get(Signal::Traces, Counter::SendFailed),
        3 * attempts.len() as u64
    );
}

#[tokio::test]
async fn retry_disabled_drops_retryable_failures() {
    let mock = Arc::new(Mock::default());
    mock.push(Err(ExportError::Retryable {
        reason: "UNAVAILABLE".into(),
        retry_after: None,
    }));
    let (tx, handle, stats, _abort) = start(&mock, QueueConfig::default(), RetryConfig::disabled());
    tx.send(spans(1)).await;
    drop(tx);
    finish(handle).await;
    assert_eq!(mock.attempts().len(), 1);
    assert_eq!(
        stats.reasons(Signal::Traces, Counter::Dropped),
        vec![("retry_disabled".to_owned(), 1)]
    );
}

#[tokio::test]
async fn partial_success_counts_rejected_as_dropped() {
    let mock = Arc::new(Mock::default());
    mock.push(Ok(ExportOutcome {
        rejected: 2,
        message: "2 spans too old".into(),
    }));
    let (tx, handle, stats, _abort) = start(&mock, QueueConfig::default(), fast_retry());
    tx.send(spans(5)).await;
    drop(tx);
    finish(handle).await;
    assert_eq!(stats.get(Signal::Traces, Counter::Sent), 3);
    assert_eq!(
        stats.reasons(Signal::Traces, Counter::Dropped),
        vec![("rejected".to_owned(), 2)]
    );
}

#[tokio::test]
async fn block_on_full_makes_send_wait() {
    let (mock, gate) = Mock::gated();
    let queue = QueueConfig {
        queue_size: 1,
        num_consumers: 1,
        ..QueueConfig::default()
    };
    let (tx, handle, stats, _abort) = start(&mock, queue, fast_retry());
    tx.send(spans(1)).await;
    wait_until(
        "the worker to hold the first batch",
        Duration::from_secs(5),
        || mock.in_flight.load(Ordering::SeqCst) == 1,
    )
    .await;
    tx.send(spans(1)).await; // fills the queue
    assert_eq!((tx.len(), tx.capacity()), (1, 1));
    assert_eq!(stats.queue(), Some((1, 1)));
    let mut third = Box::pin(tx.send(spans(1)));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut third)
            .await
            .is_err(),
        "send must wait while the queue is full"
    );
    gate.add_permits(100);
    tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("send completes once there is room");
    drop(tx);
    finish(handle).await;
    assert_eq!(stats.get(Signal::Traces, Counter::Sent), 3);
    assert_eq!(stats.get(Signal::Traces, Counter::Dropped), 0);
}

#[tokio::test]
async fn full_queue_without_blocking_drops_queue_full() {
    let (mock, gate) = Mock::gated();
    let queue = QueueConfig {
        queue_size: 1,
        num_consumers: 1,
        block_on_full: false,
        ..QueueConfig::default()
    };
    let (tx, handle, stats, _abort) = start(&mock, queue, fast_retry());
    tx.send(spans(1)).await;
    wait_until(
        "the worker to hold the first batch",
        Duration::from_secs(5),
        || mock.in_flight.load(Ordering::SeqCst) == 1,
    )
    .await;
    tx.send(spans(2)).await;
    tokio::time::timeout(Duration::from_secs(1), tx.send(spans(7)))
        .await
        .expect("a non-blocking send returns at once");
    assert_eq!(
        stats.reasons(Signal::Traces, Counter::Dropped),
        vec![("queue_full".to_owned(), 7)]
    );
    gate.add_permits(100);
    drop(tx);
    finish(handle).await;
    assert_eq!(stats.get(Signal::Traces, Counter::Sent), 3);
}

#[tokio::test]
async fn abort_drops_what_is_left_as_shutdown() {
    let (mock, _gate) = Mock::gated();
    let queue = QueueConfig {
        queue_size: 10,
        num_consumers: 1,
        ..QueueConfig::default()
    };
    let (tx, handle, stats, abort) = start(&mock, queue, fast_retry());
    for _ in 0..4 {
        tx.send(spans(2)).await;
    }
    wait_until("the worker to hold a batch", Duration::from_secs(5), || {
        mock.in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    abort.cancel();
    // The task finishes although a sender is alive and an export never returns.
    finish(handle).await;
    assert!(mock.shut_down.load(Ordering::SeqCst));
    assert_eq!(
        stats.reasons(Signal::Traces, Counter::Dropped),
        vec![("shutdown".to_owned(), 8)]
    );
    tx.send(spans(3)).await;
    assert_eq!(
        stats.reasons(Signal::Traces, Counter::Dropped),
        vec![("shutdown".to_owned(), 11)]
    );
    assert_eq!(stats.get(Signal::Traces, Counter::Sent), 0);
}

#[tokio::test]
async fn disabled_queue_exports_inline() {
    let mock = Arc::new(Mock::default());
    mock.push(Err(ExportError::Retryable {
        reason: "UNAVAILABLE".into(),
        retry_after: None,
    }));
    let queue = QueueConfig {
        enabled: false,
        ..QueueConfig::default()
    };
    let (tx, handle, stats, _abort) = start(&mock, queue, fast_retry());
    assert_eq!(tx.capacity(), 0);
    tx.send(spans(2)).await;
    // Inline: by the time send returns, the batch was retried and delivered.
    assert_eq!(mock.attempts().len(), 2);
    assert_eq!(stats.get(Signal::Traces, Counter::Sent), 2);
    assert_eq!(stats.queue(), None);
    let clone = tx.clone();
    drop(tx);
    assert!(!mock.shut_down.load(Ordering::SeqCst));
    drop(clone);
    finish(handle).await;
    assert!(mock.shut_down.load(Ordering::SeqCst));
}

/// Panics on the first batch it is given, delivers the rest.
#[derive(Default)]
struct PanicsOnce {
    calls: AtomicUsize,
    delivered: Mutex<Vec<usize>>,
}

#[async_trait]
impl Exporter for PanicsOnce {
    async fn export(&self, batch: &Batch) -> Result<ExportOutcome, ExportError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("malformed answer from the backend");
        }
        self.delivered.lock().unwrap().push(batch.item_count());
        Ok(ExportOutcome::default())
    }
}

#[tokio::test]
async fn a_panicking_export_drops_its_batch_counted_and_the_queue_goes_on() {
    let exporter = Arc::new(PanicsOnce::default());
    let stats = stats();
    let abort = CancellationToken::new();
    let (tx, handle) = ExportQueue::start(
        "otlp/test".parse().unwrap(),
        exporter.clone(),
        QueueConfig {
            num_consumers: 1,
            ..QueueConfig::default()
        },
        fast_retry(),
        stats.clone(),
        abort,
    );
    tx.send(spans(3)).await;
    tx.send(spans(5)).await;
    tx.send(spans(7)).await;
    drop(tx);
    handle.await.expect("the queue task survives the panic");
    assert_eq!(*exporter.delivered.lock().unwrap(), [5, 7]);
    assert_eq!(stats.get(Signal::Traces, Counter::Sent), 12);
    assert_eq!(
        stats.reasons(Signal::Traces, Counter::Dropped),
        vec![(REASON_PANIC.to_string(), 3)]
    );
}

#[tokio::test]
async fn given_up_batches_mark_the_exporter_failing_until_the_next_delivery() {
    let mock = Arc::new(Mock::default());
    // One consumer, so the outcomes happen in the order the batches were sent.
    let queue = QueueConfig {
        num_consumers: 1,
        ..QueueConfig::default()
    };
    let (tx, handle, stats, _abort) = start(&mock, queue, RetryConfig::disabled());
    assert_eq!(stats.export_failure(), None);

    mock.push(Err(ExportError::Permanent {
        reason: "HTTP 400: bad span".into(),
    }));
    tx.send(spans(1)).await;
    wait_until("a failure", Duration::from_secs(5), || {
        stats.export_failure().is_some()
    })
    .await;
    let f = stats.export_failure().expect("failing");
    assert_eq!(
        (f.reason.as_str(), f.error.as_str(), f.batches),
        ("permanent", "HTTP 400: bad span", 1)
    );

    mock.push(Err(ExportError::Retryable {
        reason: "UNAVAILABLE".into(),
        retry_after: None,
    }));
    tx.send(spans(1)).await;
    wait_until("a second failure", Duration::from_secs(5), || {
        stats.export_failure().is_some_and(|f| f.batches == 2)
    })
    .await;
    assert_eq!(
        stats.export_failure().map(|f| f.reason),
        Some("retry_disabled".to_owned())
    );

    // A partial success is a delivery: the backend took the request.
    mock.push(Ok(ExportOutcome {
        rejected: 1,
        message: "1 span too old".into(),
    }));
    tx.send(spans(2)).await;
    wait_until("recovery", Duration::from_secs(5), || {
        stats.export_failure().is_none()
    })
    .await;
    drop(tx);
    finish(handle).await;
    assert_eq!(stats.export_failure(), None);
}

#[tokio::test]
async fn a_batch_longer_than_max_request_size_goes_out_as_requests_that_fit() {
    let limit = len_of(&[100; 3]);
    let mock = Arc::new(Mock {
        max_request_size: Some(limit),
        ..Default::default()
    });
    let (tx, handle, stats, _abort) = start(&mock, QueueConfig::default(), fast_retry());
    tx.send(sized_spans(&[100; 5])).await;
    // A batch that fits is sent as it is.
    tx.send(sized_spans(&[100; 2])).await;
    drop(tx);
    finish(handle).await;
    let names = mock.names.lock().unwrap().clone();
    assert_eq!(
        names,
        [vec!["s0", "s1", "s2"], vec!["s3", "s4"], vec!["s0", "s1"]],
        "in order, each request as full as the limit allows"
    );
    assert_eq!(stats.get(Signal::Traces, Counter::Sent), 7);
    assert_eq!(stats.get(Signal::Traces, Counter::Dropped), 0);
    assert_eq!(stats.get(Signal::Traces, Counter::SendFailed), 0);
}

#[tokio::test]
async fn an_item_too_large_alone_is_dropped_counted_too_large_and_the_rest_delivered() {
    let limit = len_of(&[100; 2]);
    let mock = Arc::new(Mock {
        max_request_size: Some(limit),
        ..Default::default()
    });
    let (tx, handle, stats, _abort) = start(&mock, QueueConfig::default(), fast_retry());
    tx.send(sized_spans(&[100, 100, 5000, 100])).await;
    drop(tx);
    finish(handle).await;
    let names = mock.names.lock().unwrap().clone();
    assert_eq!(names, [vec!["s0", "s1"], vec!["s3"]], "s2 is never sent");
    assert_eq!(stats.get(Signal::Traces, Counter::Sent), 3);
    assert_eq!(
        stats.reasons(Signal::Traces, Counter::Dropped),
        vec![(REASON_TOO_LARGE.to_owned(), 1)]
    );
    // Dropping an item that can never fit says nothing about the backend's health.
    assert_eq!(stats.export_failure(), None);
}

#[tokio::test]
async fn a_too_large_answer_is_met_with_halves_down_to_single_items() {
    // The backend takes 2 spans of 100 bytes per request, and no span of 5000.
    let mock = Arc::new(Mock {
        backend_limit: Some(len_of(&[100; 2])),
        ..Default::default()
    });
    let (tx, handle, stats, _abort) = start(&mock, QueueConfig::default(), fast_retry());
    tx.send(sized_spans(&[100, 100, 100, 100, 100, 5000, 100, 100]))
        .await;
    drop(tx);
    finish(handle).await;
    let attempts: Vec<usize> = mock.attempts().iter().map(|(_, n)| *n).collect();
    // 8 refused -> 4 refused -> 2, 2 sent; 4 refused -> 2 refused -> 1 sent, 1 refused
    // (dropped); 2 sent.
    assert_eq!(attempts, [8, 4, 2, 2, 4, 2, 1, 1, 2]);
    let names = mock.names.lock().unwrap().clone();
    assert_eq!(names[6], ["s4"]);
    assert_eq!(names[7], ["s5"]);
    assert_eq!(stats.get(Signal::Traces, Counter::Sent), 7);
    assert_eq!(
        stats.reasons(Signal::Traces, Counter::Dropped),
        vec![(REASON_TOO_LARGE.to_owned(), 1)]
    );
    assert_eq!(
        stats.reasons(Signal::Traces, Counter::SendFailed),
        vec![(REASON_TOO_LARGE.to_owned(), 8 + 4 + 4 + 2 + 1)]
    );
    assert_eq!(stats.export_failure(), None);
}

/// Every outcome the source of `n` hand-overs hears, by id.
fn outcomes(rx: &mut tokio::sync::mpsc::UnboundedReceiver<hpcotel_core::Settled>) -> Vec<bool> {
    let mut got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    got.sort_by_key(|s| s.id);
    got.into_iter().map(|s| s.delivered).collect()
}

#[tokio::test]
async fn acks_are_settled_on_delivery_and_on_counted_drops_but_not_at_the_deadline() {
    // Delivered (after a retry), dropped as permanent, and split by max_request_size: all
    // settled, so a file source may move its checkpoint past them.
    let mock = Arc::new(Mock {
        max_request_size: Some(len_of(&[100, 100]) + 8),
        ..Default::default()
    });
    mock.push(Err(ExportError::Retryable {
        reason: "unavailable".into(),
        retry_after: None,
    }));
    mock.push(Ok(ExportOutcome::default()));
    mock.push(Err(ExportError::Permanent {
        reason: "HTTP 400".into(),
    }));
    let (mut source, mut settled) = hpcotel_core::AckSource::new();
    let (tx, handle, _stats, _abort) = start(
        &mock,
        QueueConfig {
            num_consumers: 1,
            ..QueueConfig::default()
        },
        fast_retry(),
    );
    tx.send_acked(spans(2), source.hand_over().1).await;
    tx.send_acked(spans(2), source.hand_over().1).await;
    tx.send_acked(sized_spans(&[100, 100, 100, 100]), source.hand_over().1)
        .await;
    drop(tx);
    finish(handle).await;
    assert!(mock.attempts().len() >= 5, "{:?}", mock.attempts());
    assert_eq!(outcomes(&mut settled), vec![true, true, true]);

    // At the shutdown deadline: one batch held by the exporter, one still queued. Neither
    // was delivered, so the source hears "lost" for both and reads them again later.
    let (mock, _gate) = Mock::gated();
    let (tx, handle, _stats, abort) = start(
        &mock,
        QueueConfig {
            num_consumers: 1,
            ..QueueConfig::default()
        },
        fast_retry(),
    );
    tx.send_acked(spans(1), source.hand_over().1).await;
    tx.send_acked(spans(1), source.hand_over().1).await;
    wait_until("the worker to hold a batch", Duration::from_secs(5), || {
        mock.in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    abort.cancel();
    finish(handle).await;
    drop(tx);
    assert_eq!(outcomes(&mut settled), vec![false, false]);
}

#[tokio::test]
async fn an_encoding_exporter_gets_each_batch_encoded_once_and_retries_resend_the_bytes() {
    let mock = Arc::new(Mock {
        encodes: true,
        ..Default::default()
    });
    for _ in 0..2 {
        mock.push(Err(ExportError::Retryable {
            reason: "backend restarting".into(),
            retry_after: None,
        }));
    }
    let (tx, handle, stats, _abort) = start(&mock, QueueConfig::default(), fast_retry());
    tx.send(spans(5)).await;
    drop(tx);
    finish(handle).await;
    assert_eq!(mock.attempts().len(), 3);
    assert_eq!(mock.encoded.load(Ordering::SeqCst), 1, "encoded once");
    let names = mock.names.lock().unwrap().clone();
    assert!(
        names.iter().all(|n| n == &span_names(&spans(5))),
        "{names:?}"
    );
    assert_eq!(stats.get(Signal::Traces, Counter::Sent), 5);
}

#[tokio::test]
async fn encoded_requests_are_cut_to_max_request_size_before_encoding_and_halved_when_refused() {
    // As a_batch_longer_than_max_request_size... and a_too_large_answer..., encoded.
    let mock = Arc::new(Mock {
        encodes: true,
        max_request_size: Some(len_of(&[100; 4])),
        backend_limit: Some(len_of(&[100; 2])),
        ..Default::default()
    });
    let (tx, handle, stats, _abort) = start(&mock, QueueConfig::default(), fast_retry());
    tx.send(sized_spans(&[100, 100, 100, 100, 100, 5000, 100, 100]))
        .await;
    drop(tx);
    finish(handle).await;
    let attempts: Vec<usize> = mock.attempts().iter().map(|(_, n)| *n).collect();
    // Cut to fit 4 before queueing: [4][1][1 too large alone: dropped][2]. The 4 is refused:
    // halves 2, 2 sent; 1 sent; 2 sent.
    assert_eq!(attempts, [4, 2, 2, 1, 2]);
    let names: Vec<String> = mock.names.lock().unwrap().concat();
    assert_eq!(
        names,
        [
            "s0", "s1", "s2", "s3", "s0", "s1", "s2", "s3", "s4", "s6", "s7"
        ]
    );
    assert_eq!(stats.get(Signal::Traces, Counter::Sent), 7);
    assert_eq!(
        stats.reasons(Signal::Traces, Counter::Dropped),
        vec![(REASON_TOO_LARGE.to_owned(), 1)]
    );
    // Three pieces encoded before queueing, two halves after the refusal.
    assert_eq!(mock.encoded.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_bytes_sized_queue_holds_at_most_its_bytes_of_encoded_requests() {
    let (gated, gate) = Mock::gated();
    let mock = Arc::new(Mock {
        encodes: true,
        gate: gated.gate.clone(),
        ..Default::default()
    });
    let one = spans(10).encoded_len();
    let queue = QueueConfig {
        sizer: Sizer::Bytes,
        queue_size: 3 * one,
        num_consumers: 1,
        block_on_full: false,
        ..QueueConfig::default()
    };
    let (tx, handle, stats, _abort) = start(&mock, queue, fast_retry());
    tx.send(spans(10)).await;
    wait_until(
        "the worker to hold the first request",
        Duration::from_secs(5),
        || mock.in_flight.load(Ordering::SeqCst) == 1,
    )
    .await;
    for _ in 0..3 {
        tx.send(spans(10)).await;
    }
    assert_eq!((tx.len(), tx.capacity()), (3 * one, 3 * one), "bytes held");
    tx.send(spans(10)).await;
    assert_eq!(
        stats.reasons(Signal::Traces, Counter::Dropped),
        vec![("queue_full".to_owned(), 10)]
    );
    gate.add_permits(100);
    drop(tx);
    finish(handle).await;
    assert_eq!(stats.get(Signal::Traces, Counter::Sent), 40);
}
