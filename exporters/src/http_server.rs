//! A small HTTP server for read-only endpoints (the prometheus exporter's `/metrics`, the
//! collector's `/healthz` and `/readyz`): hyper (HTTP/1.1 and HTTP/2) on the connection
//! layer every hpcotel server shares ([`hpcotel_core::server`]: bounded connections, idle
//! timeout), with a synchronous handler per request.
//!
//! Contract: [`serve`] runs until `shutdown` is cancelled, then stops accepting, lets open
//! connections finish their requests for at most `grace`, and returns. It never returns
//! early: a failed `accept` (out of file descriptors) is logged and retried after a pause.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hpcotel_core::server;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A connection with no request in progress for this long is closed: longer than the
/// usual scrape and probe intervals, so keep-alive connections are reused between them.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Most connections open at once (scrapers and probes need a handful); beyond it, the
/// longest-idle one is closed to make room.
pub const MAX_CONNECTIONS: usize = 256;

/// Answers one request.
pub type Handler = dyn Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync;

/// Serves `handler` on `listener` until `shutdown` (see the module's contract); `what` names
/// the endpoint in logs ("Prometheus endpoint"). Connections are bounded by
/// [`hpcotel_core::server`]: [`IDLE_TIMEOUT`], [`MAX_CONNECTIONS`], the header read timeout.
pub async fn serve(
    listener: TcpListener,
    what: &'static str,
    grace: Duration,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) {
    let l = server::Listener {
        what,
        listener,
        tls: None,
        versions: server::Versions::Both,
        limits: server::Limits {
            idle_timeout: IDLE_TIMEOUT,
            max_connection_age: None,
            max_connections: MAX_CONNECTIONS,
            max_concurrent_streams: 32,
            request_timeout: Duration::from_secs(10),
        },
        grace,
    };
    server::serve(l, shutdown, move |_peer| {
        let handler = handler.clone();
        hyper::service::service_fn(move |req| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler(&req)) }
        })
    })
    .await;
}
