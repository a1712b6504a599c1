//! The sink itself: shared state, scripted behaviour, start-up and shutdown.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hpcotel_core::{Batch, Signal};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::received::Received;
use super::{grpc, http};

/// Why a sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A listener could not be bound.
    #[error("cannot bind the OTLP sink's {protocol} listener on {addr}")]
    Bind {
        /// `gRPC` or `HTTP`.
        protocol: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// The bound listener's address could not be read.
    #[error("cannot read the OTLP sink's local address")]
    LocalAddr(#[source] std::io::Error),
}

/// `Result` with [`SinkError`].
pub type Result<T, E = SinkError> = std::result::Result<T, E>;

/// How the sink answers the next requests.
#[derive(Debug, Clone, PartialEq)]
pub enum Behaviour {
    /// Accept and record everything (the default).
    Accept,
    /// Hold requests open without answering until the behaviour changes (via
    /// [`OtlpSink::set_behaviour`] or [`OtlpSink::push_behaviour`]); held requests then proceed
    /// under the new behaviour. Stalled requests are answered UNAVAILABLE / 503 on shutdown.
    Stall,
    /// Refuse: gRPC status `grpc` (with `google.rpc.RetryInfo` when `retry_after` is set),
    /// HTTP status `http` (with `Retry-After: <secs>` when set) and a `google.rpc.Status`
    /// body carrying `message`. Nothing is recorded as received.
    Fail {
        /// The gRPC status code.
        grpc: tonic::Code,
        /// The HTTP status code.
        http: u16,
        /// The delay to ask the client to wait before retrying.
        retry_after: Option<Duration>,
        /// The error message.
        message: String,
    },
    /// Accept and record the data, but answer an OTLP partial success with `rejected` items
    /// rejected and `message`.
    PartialSuccess {
        /// Number of rejected items reported to the client.
        rejected: i64,
        /// The partial-success error message.
        message: String,
    },
}

impl Behaviour {
    /// The usual "retry later" failure: gRPC UNAVAILABLE / HTTP 503, with an optional
    /// retry delay.
    pub fn unavailable(retry_after: Option<Duration>) -> Self {
        Behaviour::Fail {
            grpc: tonic::Code::Unavailable,
            http: 503,
            retry_after,
            message: "sink unavailable (scripted)".to_owned(),
        }
    }
}

/// The wire protocol a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP.
    Http,
}

/// What the sink answered a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Success; the data was recorded.
    Accepted,
    /// Partial success; the data was recorded.
    PartialSuccess {
        /// Rejected items reported.
        rejected: i64,
        /// Message reported.
        message: String,
    },
    /// Scripted failure; nothing recorded.
    Failed {
        /// gRPC status code sent (gRPC requests).
        grpc: tonic::Code,
        /// HTTP status sent (HTTP requests).
        http: u16,
        /// Retry delay sent, if any.
        retry_after: Option<Duration>,
        /// Message sent.
        message: String,
    },
    /// The request could not be decoded (HTTP 400 / 415); nothing recorded.
    Invalid {
        /// Why.
        reason: String,
    },
    /// The sink was shutting down while the request was stalled (UNAVAILABLE / 503).
    ShuttingDown,
    /// The request was longer than [`SinkOptions::max_message_bytes`]: refused as a real
    /// collector refuses it (gRPC RESOURCE_EXHAUSTED without RetryInfo, grpc-go's message;
    /// HTTP 413); nothing recorded.
    TooLarge {
        /// The request's length in bytes (see [`RequestRecord::bytes`]).
        bytes: usize,
        /// The limit it went over.
        limit: usize,
    },
}

/// One answered request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// gRPC or HTTP.
    pub protocol: Protocol,
    /// Which signal's endpoint was called.
    pub signal: Signal,
    /// When the request arrived at the sink.
    pub at: Instant,
    /// When the sink answered it (later than `at` for stalled requests).
    pub answered_at: Instant,
    /// Request headers (gRPC metadata), names lowercase, values lossily decoded.
    pub headers: Vec<(String, String)>,
    /// Spans, metric points or log records in the request (0 when it did not decode).
    pub items: usize,
    /// The request's length in bytes as a size limit sees it: the uncompressed protobuf
    /// message (gRPC: the decoded request re-encoded, which for prost-encoded requests is
    /// exactly what was sent), or the uncompressed body (HTTP). 0 when it did not decode.
    pub bytes: usize,
    /// What was answered.
    pub answer: Answer,
}

impl RequestRecord {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Running totals of accepted items, kept even when data recording is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Accepted spans.
    pub spans: u64,
    /// Accepted metric data points.
    pub metric_points: u64,
    /// Accepted log records.
    pub log_records: u64,
    /// Answered requests of any outcome.
    pub requests: u64,
}

/// How to start a sink; [`OtlpSink::start`] uses the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkOptions {
    /// gRPC listen address. Default `127.0.0.1:0`.
    pub grpc: SocketAddr,
    /// HTTP listen address. Default `127.0.0.1:0`.
    pub http: SocketAddr,
    /// Keep received data and request records (off for long benchmark runs, where only
    /// [`OtlpSink::totals`] is kept). Default `true`.
    pub record: bool,
    /// Longest request accepted, in bytes (see [`RequestRecord::bytes`]), like a real
    /// collector's gRPC `max_recv_msg_size_mib` (4 MiB by default there,
    /// [`COLLECTOR_MAX_RECV_MSG_SIZE`]) or HTTP `max_request_body_size`. A longer request is
    /// refused as grpc-go refuses it, RESOURCE_EXHAUSTED without RetryInfo and the message
    /// `grpc: received message larger than max (N vs. M)`, or with HTTP 413 and a
    /// `google.rpc.Status` body; it is answered [`Answer::TooLarge`] whatever the scripted
    /// behaviour, and nothing is received. `None`: no limit below the 64 MiB the sink decodes
    /// at most. Default `None`.
    pub max_message_bytes: Option<usize>,
}

/// The OpenTelemetry Collector's (and grpc-go's) default gRPC receive limit: 4 MiB.
pub const COLLECTOR_MAX_RECV_MSG_SIZE: usize = 4 * 1024 * 1024;

impl Default for SinkOptions {
    fn default() -> Self {
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            grpc: local,
            http: local,
            record: true,
            max_message_bytes: None,
        }
    }
}

#[derive(Debug)]
struct Script {
    current: Behaviour,
    queue: VecDeque<(Behaviour, usize)>,
}

impl Script {
    fn next(&mut self) -> Behaviour {
        if let Some((b, n)) = self.queue.front_mut() {
            let b = b.clone();
            *n -= 1;
            if *n == 0 {
                self.queue.pop_front();
            }
            return b;
        }
        self.current.clone()
    }
}

/// A decision for one request (never `Stall`: stalling is waited out before deciding).
enum Decision {
    Record(Answer),
    Refuse(Answer),
}

pub(crate) struct Shared {
    record: bool,
    max_message_bytes: Option<usize>,
    received: Mutex<Received>,
    requests: Mutex<Vec<RequestRecord>>,
    totals: [AtomicU64; 3],
    request_total: AtomicU64,
    in_flight: AtomicUsize,
    script: Mutex<Script>,
    script_changed: watch::Sender<u64>,
    state_changed: watch::Sender<u64>,
    shutdown: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Decrements the in-flight count even when the request future is dropped.
struct InFlight<'a>(&'a Shared);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.bump();
    }
}

impl Shared {
    fn new(record: bool, max_message_bytes: Option<usize>, shutdown: CancellationToken) -> Self {
        Self {
            record,
            max_message_bytes,
            received: Mutex::default(),
            requests: Mutex::default(),
            totals: Default::default(),
            request_total: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            script: Mutex::new(Script {
                current: Behaviour::Accept,
                queue: VecDeque::new(),
            }),
            script_changed: watch::Sender::new(0),
            state_changed: watch::Sender::new(0),
            shutdown,
        }
    }

    fn bump(&self) {
        self.state_changed.send_modify(|g| *g = g.wrapping_add(1));
    }

    fn script_bump(&self) {
        self.script_changed.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Waits out stalls and picks how to answer; `None` when shutting down.
    async fn decide(&self) -> Option<Decision> {
        loop {
            // Subscribe before reading the script so that no change is missed.
            let mut changed = self.script_changed.subscribe();
            let behaviour = lock(&self.script).next();
            let decision = match behaviour {
                Behaviour::Accept => Decision::Record(Answer::Accepted),
                Behaviour::PartialSuccess { rejected, message } => {
                    Decision::Record(Answer::PartialSuccess { rejected, message })
                }
                Behaviour::Fail {
                    grpc,
                    http,
                    retry_after,
                    message,
                } => Decision::Refuse(Answer::Failed {
                    grpc,
                    http,
                    retry_after,
                    message,
                }),
                Behaviour::Stall => {
                    tokio::select! {
                        _ = changed.changed() => continue,
                        _ = self.shutdown.cancelled() => return None,
                    }
                }
            };
            return Some(decision);
        }
    }

    /// Handles one decoded request of `bytes` bytes: refuses it when too large, else waits
    /// out stalls, records, answers.
    pub(crate) async fn handle(
        &self,
        protocol: Protocol,
        signal: Signal,
        headers: Vec<(String, String)>,
        batch: Batch,
        bytes: usize,
    ) -> Answer {
        let at = Instant::now();
        let items = batch.item_count();
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.bump();
        let guard = InFlight(self);
        let too_large = self
            .max_message_bytes
            .filter(|limit| bytes > *limit)
            .map(|limit| Answer::TooLarge { bytes, limit });
        let decision = match too_large {
            Some(answer) => Some(Decision::Refuse(answer)),
            None => self.decide().await,
        };
        let answer = match decision {
            None => Answer::ShuttingDown,
            Some(Decision::Refuse(a)) => a,
            Some(Decision::Record(a)) => {
                self.totals[signal.index()].fetch_add(items as u64, Ordering::SeqCst);
                if self.record {
                    let mut r = lock(&self.received);
                    match batch.into_decoded() {
                        Batch::Traces(v) => r.traces.extend(v),
                        Batch::Metrics(v) => r.metrics.extend(v),
                        Batch::Logs(v) => r.logs.extend(v),
                        Batch::Raw(_) => {}
                    }
                }
                a
            }
        };
        tracing::debug!(?protocol, %signal, items, bytes, ?answer, "otlp sink answered");
        self.push_record(RequestRecord {
            protocol,
            signal,
            at,
            answered_at: Instant::now(),
            headers,
            items,
            bytes,
            answer: answer.clone(),
        });
        drop(guard);
        answer
    }

    /// Records a request that could not be decoded.
    pub(crate) fn invalid(
        &self,
        protocol: Protocol,
        signal: Signal,
        headers: Vec<(String, String)>,
        reason: String,
    ) -> Answer {
        let now = Instant::now();
        let answer = Answer::Invalid { reason };
        self.push_record(RequestRecord {
            protocol,
            signal,
            at: now,
            answered_at: now,
            headers,
            items: 0,
            bytes: 0,
            answer: answer.clone(),
        });
        self.bump();
        answer
    }

    fn push_record(&self, rec: RequestRecord) {
        self.request_total.fetch_add(1, Ordering::SeqCst);
        if self.record {
            lock(&self.requests).push(rec);
        }
    }

    fn totals(&self) -> Totals {
        Totals {
            spans: self.totals[Signal::Traces.index()].load(Ordering::SeqCst),
            metric_points: self.totals[Signal::Metrics.index()].load(Ordering::SeqCst),
            log_records: self.totals[Signal::Logs.index()].load(Ordering::SeqCst),
            requests: self.request_total.load(Ordering::SeqCst),
        }
    }
}

/// An OTLP sink listening on gRPC and HTTP; see the [module docs](super).
///
/// Dropping it stops both servers; [`OtlpSink::shutdown`] also waits for them.
pub struct OtlpSink {
    shared: Arc<Shared>,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    _stop_on_drop: DropGuard,
}

impl std::fmt::Debug for OtlpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpSink")
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

async fn bind(protocol: &'static str, addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| SinkError::Bind {
            protocol,
            addr,
            source,
        })
}

impl OtlpSink {
    /// Starts a recording sink on `127.0.0.1:0` (gRPC and HTTP).
    ///
    /// # Panics
    /// When a listener cannot be bound (it is a test double).
    pub async fn start() -> OtlpSink {
        match Self::start_with(SinkOptions::default()).await {
            Ok(s) => s,
            Err(e) => panic!(
                "OtlpSink::start failed: {e}: {:?}",
                std::error::Error::source(&e)
            ),
        }
    }

    /// Starts a sink with explicit addresses and recording mode.
    pub async fn start_with(options: SinkOptions) -> Result<OtlpSink> {
        let grpc_listener = bind("gRPC", options.grpc).await?;
        let http_listener = bind("HTTP", options.http).await?;
        let grpc_addr = grpc_listener.local_addr().map_err(SinkError::LocalAddr)?;
        let http_addr = http_listener.local_addr().map_err(SinkError::LocalAddr)?;
        let token = CancellationToken::new();
        let shared = Arc::new(Shared::new(
            options.record,
            options.max_message_bytes,
            token.clone(),
        ));
        let tasks = vec![
            tokio::spawn(grpc::serve(grpc_listener, shared.clone(), token.clone())),
            tokio::spawn(http::serve(http_listener, shared.clone(), token.clone())),
        ];
        tracing::debug!(%grpc_addr, %http_addr, "otlp sink started");
        Ok(OtlpSink {
            shared,
            grpc_addr,
            http_addr,
            tasks,
            _stop_on_drop: token.drop_guard(),
        })
    }

    /// The gRPC listener's address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The HTTP listener's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// `http://127.0.0.1:PORT` of the gRPC listener.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// `http://127.0.0.1:PORT` of the HTTP listener (append `/v1/traces` etc.).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// A snapshot of the data accepted so far.
    pub fn received(&self) -> Received {
        lock(&self.shared.received).clone()
    }

    /// Every answered request so far, in answer order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.requests).clone()
    }

    /// Running totals (kept even when recording is off).
    pub fn totals(&self) -> Totals {
        self.shared.totals()
    }

    /// Requests currently being handled (stalled requests included).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Sets the behaviour used once the one-shot queue is empty. Stalled requests are
    /// released and decided again.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        lock(&self.shared.script).current = behaviour;
        self.shared.script_bump();
    }

    /// Queues `behaviour` for the next `times` requests, before the current behaviour
    /// applies again (e.g. `push_behaviour(Behaviour::unavailable(None), 2)`: fail twice, then
    /// accept). Queued entries are used in push order. Stalled requests are released and
    /// decided again.
    pub fn push_behaviour(&self, behaviour: Behaviour, times: usize) {
        if times > 0 {
            lock(&self.shared.script)
                .queue
                .push_back((behaviour, times));
        }
        self.shared.script_bump();
    }

    async fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        snapshot: impl Fn() -> T,
        pred: impl Fn(&T) -> bool,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        // Subscribed before the first check: every later change wakes us.
        let mut changed = self.shared.state_changed.subscribe();
        loop {
            let snap = snapshot();
            if pred(&snap) {
                return snap;
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                let snap = snapshot();
                if pred(&snap) {
                    return snap;
                }
                let answers: Vec<String> = self
                    .requests()
                    .iter()
                    .map(|r| format!("{:?} {} -> {:?}", r.protocol, r.signal, r.answer))
                    .collect();
                panic!(
                    "OtlpSink: timed out after {timeout:?} waiting for {what}; received: {}; \
                     in flight: {}; requests ({}): {answers:?}",
                    self.received().summary(),
                    self.in_flight(),
                    answers.len(),
                );
            }
        }
    }

    /// Waits until `pred` holds for the received data and returns that snapshot.
    ///
    /// # Panics
    /// After `timeout`, with `what` and a summary of what was received.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Received) -> bool,
    ) -> Received {
        self.wait_until(what, timeout, || self.received(), pred)
            .await
    }

    /// Waits until `pred` holds for the answered requests and returns them.
    ///
    /// # Panics
    /// After `timeout`, with `what` and a summary.
    pub async fn wait_for_requests(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[RequestRecord]) -> bool,
    ) -> Vec<RequestRecord> {
        self.wait_until(what, timeout, || self.requests(), |r| pred(r))
            .await
    }

    /// Waits until at least `n` requests are being handled (e.g. held by [`Behaviour::Stall`]).
    ///
    /// # Panics
    /// After `timeout`.
    pub async fn wait_for_in_flight(&self, n: usize, timeout: Duration) {
        let what = format!("{n} request(s) in flight");
        self.wait_until(&what, timeout, || self.in_flight(), |&k| k >= n)
            .await;
    }

    /// Stops both servers (stalled requests are answered UNAVAILABLE / 503) and waits for
    /// them to finish.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        for t in self.tasks.drain(..) {
            if let Err(e) = t.await {
                tracing::warn!(error = %e, "otlp sink server task failed");
            }
        }
    }
}
