//! The scrape endpoint: `GET /metrics` served by hyper (HTTP/1.1 and HTTP/2) from a plain
//! accept loop.
//!
//! | request | answer |
//! |---|---|
//! | `GET` or `HEAD /metrics` | 200, `Content-Type: text/plain; version=0.0.4; charset=utf-8`, gzip when accepted |
//! | another path | 404 |
//! | missing or wrong bearer token (with `auth`) | 401, `WWW-Authenticate: Bearer` |
//! | another method | 405, `Allow: GET, HEAD` |

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hpcotel_core::Secret;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::store::Store;

/// `Content-Type` of the text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The scrape path.
pub const METRICS_PATH: &str = "/metrics";
/// How long open connections may take to finish after shutdown before they are closed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the connections share.
pub(super) struct Shared {
    /// The series to expose.
    pub store: Arc<Mutex<Store>>,
    /// The bearer token scrapers must send, if any.
    pub auth: Option<Secret>,
}

/// Serves on `listener` until `shutdown` is cancelled, then lets the open connections finish
/// their requests (at most [`SHUTDOWN_GRACE`]); see [`crate::http_server`].
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let handler: Arc<crate::http_server::Handler> =
        Arc::new(move |req: &Request<Incoming>| handle(&shared, req));
    crate::http_server::serve(
        listener,
        "Prometheus endpoint",
        SHUTDOWN_GRACE,
        handler,
        shutdown,
    )
    .await;
}

fn handle(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != METRICS_PATH {
        return text(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    if !authorized(
        shared.auth.as_ref(),
        req.headers().get(header::AUTHORIZATION),
    ) {
        let mut r = text(StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let exposition = {
        let mut store = shared.store.lock().unwrap_or_else(|e| e.into_inner());
        store.render(Instant::now())
    };
    let gzip = accepts_gzip(req.headers().get(header::ACCEPT_ENCODING));
    let compressed = if gzip {
        gzipped(exposition.as_bytes())
    } else {
        None
    };
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, CONTENT_TYPE);
    let body = match compressed {
        Some(compressed) => {
            builder = builder.header(header::CONTENT_ENCODING, "gzip");
            compressed
        }
        // hyper leaves the body out of a `HEAD` answer itself.
        None => Bytes::from(exposition),
    };
    builder
        .header(header::VARY, "Accept-Encoding")
        .body(Full::new(body))
        .expect("valid response")
}

fn text(status: StatusCode, msg: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(msg.as_bytes())))
        .expect("valid response")
}

fn gzipped(data: &[u8]) -> Option<Bytes> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).ok()?;
    enc.finish().ok().map(Bytes::from)
}

/// Whether `Accept-Encoding` lists `gzip` (without `q=0`).
fn accepts_gzip(value: Option<&HeaderValue>) -> bool {
    let Some(v) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    v.split(',').any(|part| {
        let mut it = part.split(';').map(str::trim);
        let coding = it.next().unwrap_or_default();
        let zero = it.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        coding.eq_ignore_ascii_case("gzip") && !zero
    })
}

/// Whether an `Authorization` header value carries the expected bearer token (always true
/// without one). Compares in constant time.
fn authorized(expected: Option<&Secret>, value: Option<&HeaderValue>) -> bool {
    hpcotel_core::config::bearer_authorized(expected, value.map(HeaderValue::as_bytes))
}
