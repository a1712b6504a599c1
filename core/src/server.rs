//! The connection layer of every server hpcotel runs (the OTLP receiver's gRPC and HTTP
//! ports, the Prometheus endpoint, the health check): an accept loop that bounds the number
//! of open connections, completes TLS handshakes within a deadline, and serves each
//! connection with hyper under its [`Limits`]: HTTP/2 streams per connection, a header read
//! timeout, and an idle watchdog that closes a connection with no request in progress for
//! `idle_timeout` (and, when set, one older than `max_connection_age`). At
//! `max_connections`, a new connection makes room by closing the connection idle the
//! longest, so that idle connections cannot lock working clients out; when every open
//! connection has a request in progress, the new one is closed at once.
//!
//! One loop for every port, so that a hostile client meets the same bounds on each; what a
//! port serves is the hyper service each connection is given.
//!
//! Contract: [`serve`] runs until `shutdown` is cancelled, then stops accepting, lets open
//! connections finish their requests for at most the listener's `grace`, and returns. It
//! never returns early: a failed `accept` (out of file descriptors) is logged and retried
//! after a pause.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client may take to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers (HTTP/1; hyper's own default).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection being closed (idle, too old, over the limit at shutdown) may take
/// to finish its GOAWAY exchange before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again, so
/// the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// At most one "connection limit reached" warning per this long, per listener.
const LIMIT_WARN_EVERY: Duration = Duration::from_secs(10);
/// Largest HTTP/2 header block accepted, bytes.
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
/// HTTP/2 flow-control windows: how much a client may send ahead of what is read. Small
/// enough that stalled streams cannot park much in hyper's buffers; large enough for full
/// speed on a node's loopback or pod network.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 2 * 1024 * 1024;

/// Bounds on a listener's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// A connection with no request in progress for this long is closed.
    pub idle_timeout: Duration,
    /// A connection this old is closed once its requests are answered; `None`: no limit.
    pub max_connection_age: Option<Duration>,
    /// Most connections open at once; see the module doc for what a new one beyond does.
    pub max_connections: usize,
    /// Most HTTP/2 streams in progress at once on one connection.
    pub max_concurrent_streams: u32,
    /// How long, at the longest, a request in progress may still take when its connection
    /// is closed for its age (its body's read timeout).
    pub request_timeout: Duration,
}

/// Which protocols a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    /// HTTP/2 only (gRPC).
    Http2,
    /// HTTP/1.1 and HTTP/2 (prior knowledge or ALPN).
    Both,
}

/// What a listener is and how it serves.
pub struct Listener {
    /// What it serves, for logs (`OTLP/gRPC`, `Prometheus endpoint`).
    pub what: &'static str,
    /// The bound socket.
    pub listener: TcpListener,
    /// Serve TLS with this acceptor; `None`: plaintext.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The HTTP versions it speaks.
    pub versions: Versions,
    /// Its connections' bounds.
    pub limits: Limits,
    /// How long open connections may take to finish their requests at shutdown.
    pub grace: Duration,
}

/// Requests in progress on one connection and when it last had none.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` when the connection last became idle.
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        })
    }

    /// When the connection is idle past `timeout` (no request in progress), or `None`.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(self.opened + since + timeout)
    }
}

/// The open connections of one listener.
#[derive(Default)]
struct Registry {
    next_id: u64,
    open: std::collections::HashMap<u64, (Arc<Activity>, CancellationToken)>,
}

impl Registry {
    /// Registers a new connection, making room at `max` by evicting the connection idle
    /// the longest; `None` when every connection is busy.
    fn admit(&mut self, max: usize) -> Option<(u64, Arc<Activity>, CancellationToken)> {
        if self.open.len() >= max {
            let victim = self
                .open
                .iter()
                .filter(|(_, (a, _))| a.in_flight.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, (a, _))| {
                    a.opened + Duration::from_millis(a.idle_since_ms.load(Ordering::Acquire))
                })
                .map(|(id, _)| *id)?;
            if let Some((_, evict)) = self.open.remove(&victim) {
                evict.cancel();
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let (activity, evict) = (Activity::new(), CancellationToken::new());
        self.open.insert(id, (activity.clone(), evict.clone()));
        Some((id, activity, evict))
    }
}

/// Marks a request in progress until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let now = u64::try_from(a.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.idle_since_ms.store(now, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A hyper service that tells the connection's [`Activity`] about its requests.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, B> Service<Request<Incoming>> for Tracked<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, S::Error>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let guard = InFlight::start(&self.activity);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            drop(guard);
            r
        })
    }
}

/// Serves `l` until `shutdown` is cancelled, giving each connection the service
/// `make(peer)`; then stops accepting and lets open connections finish their requests (at
/// most the listener's `grace`).
pub async fn serve<S, B, F>(l: Listener, shutdown: CancellationToken, make: F)
where
    F: Fn(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Listener {
        what,
        listener,
        tls,
        versions,
        limits,
        grace,
    } = l;
    let builder = Arc::new(builder(versions, &limits));
    let registry = Arc::new(std::sync::Mutex::new(Registry::default()));
    let connections = TaskTracker::new();
    let mut last_limit_warning: Option<Instant> = None;
    let mut turned_away: u64 = 0;
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(endpoint = what, error = %e, "accept failed");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => continue,
                    }
                }
            },
        };
        let admitted = registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(limits.max_connections);
        let Some((id, activity, evict)) = admitted else {
            // Closed at once: the client sees the connection end rather than hang in the
            // backlog, and nothing is held for it.
            drop(stream);
            turned_away += 1;
            if last_limit_warning.is_none_or(|t| t.elapsed() >= LIMIT_WARN_EVERY) {
                tracing::warn!(
                    endpoint = what,
                    %peer,
                    max_connections = limits.max_connections,
                    turned_away,
                    "connection limit reached with every connection busy; closing new \
                     connections (max_connections)"
                );
                last_limit_warning = Some(Instant::now());
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = make(peer);
        let (tls, builder, shutdown, registry, limits) = (
            tls.clone(),
            builder.clone(),
            shutdown.clone(),
            registry.clone(),
            limits.clone(),
        );
        connections.spawn(async move {
            let stop = Stop {
                shutdown: &shutdown,
                evict: &evict,
                grace,
            };
            let service = Tracked {
                inner: service,
                activity: activity.clone(),
            };
            match tls {
                None => connection(stream, peer, &builder, service, &activity, &limits, stop).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    let r = tokio::select! {
                        () = shutdown.cancelled() => None,
                        () = evict.cancelled() => None,
                        r = handshake => Some(r),
                    };
                    match r {
                        Some(Ok(Ok(s))) => {
                            connection(s, peer, &builder, service, &activity, &limits, stop).await
                        }
                        Some(Ok(Err(e))) => {
                            tracing::debug!(endpoint = what, %peer, error = %e, "TLS handshake failed")
                        }
                        Some(Err(_)) => {
                            tracing::debug!(endpoint = what, %peer, "TLS handshake timed out")
                        }
                        None => {}
                    }
                }
            }
            registry
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .open
                .remove(&id);
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            endpoint = what,
            grace = ?grace,
            open = connections.len(),
            "connections still open after the shutdown grace period; closing them"
        );
    }
}

fn builder(versions: Versions, limits: &Limits) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    if versions == Versions::Http2 {
        b = b.http2_only();
    }
    // With a timer, hyper enforces the HTTP/1 header read timeout against slow clients.
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    b
}

/// What can stop a connection from outside: shutdown (then it has `grace` to finish its
/// requests), or eviction to make room.
#[derive(Clone, Copy)]
struct Stop<'a> {
    shutdown: &'a CancellationToken,
    evict: &'a CancellationToken,
    grace: Duration,
}

/// Serves one connection until it ends, is idle past `idle_timeout`, is older than
/// `max_connection_age`, or shutdown: then closes it gracefully (requests in progress are
/// answered), dropping it after [`CLOSE_GRACE`] (or, at shutdown, `grace`).
async fn connection<I, S, B>(
    io: I,
    peer: SocketAddr,
    builder: &Builder<TokioExecutor>,
    service: S,
    activity: &Activity,
    limits: &Limits,
    stop: Stop<'_>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let aged = limits.max_connection_age.map(|age| activity.opened + age);
    let why = loop {
        // Re-read on every turn: a request may have started or ended since.
        let idle = activity.idle_deadline(limits.idle_timeout);
        let next = match (idle, aged) {
            (Some(i), Some(a)) => Some(i.min(a)),
            (i, a) => i.or(a),
        };
        // While a request is in progress (and no age limit), look again every second: the
        // watchdog cannot be woken by the request ending.
        let wake = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = stop.shutdown.cancelled() => break "shutdown",
            () = stop.evict.cancelled() => break "evicted",
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if aged.is_some_and(|a| now >= a) {
                    break "max_connection_age";
                }
                if activity
                    .idle_deadline(limits.idle_timeout)
                    .is_some_and(|d| now >= d)
                {
                    break "idle_timeout";
                }
            }
        }
    };
    tracing::debug!(%peer, reason = why, "closing connection");
    conn.as_mut().graceful_shutdown();
    let grace = match why {
        "shutdown" => stop.grace,
        // Requests in progress get their whole read timeout to finish.
        "max_connection_age" => limits.request_timeout + CLOSE_GRACE,
        _ => CLOSE_GRACE,
    };
    if let Ok(Err(e)) = tokio::time::timeout(grace, conn.as_mut()).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn at_the_limit_the_longest_idle_connection_makes_room_and_busy_ones_never_do() {
        let mut r = Registry::default();
        let (a, _, a_evict) = r.admit(2).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let (_, b_activity, b_evict) = r.admit(2).unwrap();
        // Full: the new one evicts `a`, idle the longest.
        let (c, _, c_evict) = r.admit(2).unwrap();
        assert!(a_evict.is_cancelled() && !b_evict.is_cancelled());
        assert!(!r.open.contains_key(&a) && r.open.contains_key(&c));
        // `b` busy, `c` idle: `c` goes, however recent.
        let _b_busy = InFlight::start(&b_activity);
        let (_, d_activity, d_evict) = r.admit(2).unwrap();
        assert!(c_evict.is_cancelled() && !b_evict.is_cancelled());
        // Everything busy: the new connection is refused, nobody evicted.
        let _d_busy = InFlight::start(&d_activity);
        assert!(r.admit(2).is_none());
        assert!(!b_evict.is_cancelled() && !d_evict.is_cancelled());
        assert_eq!(r.open.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_from_its_last_request_on() {
        let a = Activity::new();
        let timeout = Duration::from_secs(30);
        assert_eq!(a.idle_deadline(timeout), Some(a.opened + timeout));
        let req = InFlight::start(&a);
        assert_eq!(a.idle_deadline(timeout), None, "busy");
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(req);
        assert_eq!(
            a.idle_deadline(timeout),
            Some(a.opened + Duration::from_secs(5) + timeout)
        );
    }
}
