//! A small HTTP server for read-only endpoints (the prometheus exporter's `/metrics`, the
//! collector's `/healthz` and `/readyz`): hyper (HTTP/1.1 and HTTP/2) from a plain accept
//! loop, with a synchronous handler per request.
//!
//! Contract: [`serve`] runs until `shutdown` is cancelled, then stops accepting, lets open
//! connections finish their requests for at most `grace`, and returns. It never returns
//! early: a failed `accept` (out of file descriptors) is logged and retried after a pause.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Pause after a failed `accept`, so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Answers one request.
pub type Handler = dyn Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync;

/// Serves `handler` on `listener` until `shutdown` (see the module's contract); `what` names
/// the endpoint in logs ("Prometheus endpoint").
pub async fn serve(
    listener: TcpListener,
    what: &'static str,
    grace: Duration,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
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
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(
            stream,
            peer,
            what,
            handler.clone(),
            shutdown.clone(),
        ));
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::debug!(
            endpoint = what,
            open = connections.len(),
            "connections still open after the shutdown grace period"
        );
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    what: &'static str,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) {
    let service = hyper::service::service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler(&req)) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(endpoint = what, %peer, error = %e, "connection ended with an error");
    }
}
