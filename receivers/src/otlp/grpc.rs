//! OTLP/gRPC: the three generated collector services on one tonic server.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use hpcotel_core::{Batch, SendError, Signal};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::service::Routes;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::budget::{BodyError, Charge, MeteredBody, ReadRules};
use super::config::GrpcConfig;
use super::receiver::{AdmitError, Outcome, Result, Shared, refusal_message};
use super::validate::{Invalid, response};

/// Serves OTLP/gRPC on `listener` until `shutdown` is cancelled, then drains in-flight
/// requests (at most [`super::receiver::SHUTDOWN_GRACE`]).
///
/// The three generated services are routed by tonic and served by the shared connection
/// layer ([`hpcotel_core::server`]), which bounds connections, streams and idle time; each request's body
/// is a [`MeteredBody`] charging the memory budget and enforcing the read deadlines, its
/// [`Charge`] and peer address passed to the handler in the request's extensions.
pub(super) async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    cfg: &GrpcConfig,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<()> {
    let limit = cfg.max_recv_msg_size_bytes();
    let handler = Arc::new(Handler {
        shared: shared.clone(),
    });
    let routes = Routes::new(RawExportServer::<TraceExport> {
        handler: handler.clone(),
        limit,
        _signal: PhantomData,
    })
    .add_service(RawExportServer::<LogsExport> {
        handler: handler.clone(),
        limit,
        _signal: PhantomData,
    })
    .add_service(RawExportServer::<MetricsExport> {
        handler,
        limit,
        _signal: PhantomData,
    })
    .prepare();
    let l = hpcotel_core::server::Listener {
        what: "OTLP/gRPC",
        listener,
        tls,
        versions: hpcotel_core::server::Versions::Http2,
        limits: shared.limits.connections(),
        grace: super::receiver::SHUTDOWN_GRACE,
    };
    // The wire message may be up to `limit` bytes plus its 5-byte gRPC frame header; a
    // compressed message is smaller on the wire than `limit`.
    let rules = ReadRules::from(&shared.limits);
    hpcotel_core::server::serve(l, shutdown, move |peer| GrpcService {
        routes: routes.clone(),
        shared: shared.clone(),
        peer,
        max: limit.saturating_add(GRPC_FRAME_HEADER),
        rules,
    })
    .await;
    Ok(())
}

/// Bytes of the gRPC length-prefixed message header.
const GRPC_FRAME_HEADER: usize = 5;

/// The peer address of a request's connection, in its extensions.
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

/// tonic's routes behind a metered body, for one connection.
#[derive(Clone)]
struct GrpcService {
    routes: Routes,
    shared: Arc<Shared>,
    peer: SocketAddr,
    max: usize,
    rules: ReadRules,
}

impl hyper::service::Service<http::Request<Incoming>> for GrpcService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let charge = Charge::new(self.shared.budget.clone(), self.peer.ip());
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(Peer(self.peer));
        parts.extensions.insert(charge.clone());
        let retry_after = self.shared.retry_after;
        let shared = self.shared.clone();
        let body = MeteredBody::new(body, charge, 0, self.max, self.rules)
            .map_err(move |e| body_status(&shared, e, retry_after));
        let req = http::Request::from_parts(parts, tonic::body::Body::new(body));
        let mut routes = self.routes.clone();
        Box::pin(async move {
            let response = tower::Service::call(&mut routes, req).await?;
            Ok(oversized_is_permanent(response))
        })
    }
}

/// The status a failed body read is answered with (tonic finds it in the error's chain).
fn body_status(shared: &Shared, e: BodyError, retry_after: std::time::Duration) -> Status {
    match e {
        BodyError::Exhausted(x) => {
            shared.note_exhausted(x);
            Status::with_error_details(
                Code::ResourceExhausted,
                x.to_string(),
                ErrorDetails::with_retry_info(Some(retry_after)),
            )
        }
        e @ (BodyError::TimedOut(_) | BodyError::TooSlow { .. }) => {
            Status::deadline_exceeded(e.to_string())
        }
        // Permanent, as an oversized message (see `oversized_is_permanent`).
        e @ BodyError::TooLarge(_) => Status::resource_exhausted(e.to_string()),
        e @ BodyError::Read(_) => Status::cancelled(e.to_string()),
    }
}

/// tonic refuses a message over `max_decoding_message_size` with OUT_OF_RANGE, which the
/// OTLP specification lists as retryable: clients would resend a request that can never fit.
/// grpc-go, and so the OpenTelemetry Collector, answers RESOURCE_EXHAUSTED, which without a
/// RetryInfo is permanent; this does the same. The handlers never answer OUT_OF_RANGE
/// themselves, and a refused decode is a trailers-only response (the status is in the
/// headers), so rewriting the header catches exactly that case.
fn oversized_is_permanent<B>(mut response: http::Response<B>) -> http::Response<B> {
    const OUT_OF_RANGE: &str = "11";
    let headers = response.headers_mut();
    if headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == OUT_OF_RANGE.as_bytes())
    {
        let code = (Code::ResourceExhausted as i32).to_string();
        if let Ok(v) = http::HeaderValue::from_str(&code) {
            headers.insert("grpc-status", v);
        }
    }
    response
}

struct Handler {
    shared: Arc<Shared>,
}

impl Handler {
    /// Authenticates, checks ids, hands over, and maps a refusal to the OTLP-specified
    /// status; `Ok(Some(..))`: some items were refused (a partial success).
    async fn export<T>(
        &self,
        request: Request<T>,
        to_batch: impl FnOnce(T) -> Result<(Batch, usize), Status>,
    ) -> Result<Option<Invalid>, Status> {
        let Some(&Peer(peer_addr)) = request.extensions().get::<Peer>() else {
            return Err(Status::internal(
                "request without its connection's peer address",
            ));
        };
        let peer = Some(peer_addr);
        // The body's charge: held until the request is answered.
        let charge = request
            .extensions()
            .get::<Charge>()
            .cloned()
            .unwrap_or_else(|| Charge::new(self.shared.budget.clone(), peer_addr.ip()));
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        if !self.shared.authorized(authorization) {
            tracing::debug!(peer = ?peer, "OTLP/gRPC request refused: missing or wrong bearer token");
            return Err(Status::unauthenticated(
                "missing or wrong bearer token (send 'authorization: Bearer <token>')",
            ));
        }
        let (batch, encoded_len) = to_batch(request.into_inner())?;
        let signal = batch.signal();
        match self
            .shared
            .admit(batch, peer_addr, &charge, encoded_len)
            .await
        {
            Ok(Outcome::Accepted) => Ok(None),
            Ok(Outcome::Partial(i)) => {
                tracing::debug!(peer = ?peer, %signal, refused = i.items, reason = %i.message, "OTLP/gRPC request partly refused: malformed ids");
                Ok(Some(i))
            }
            Ok(Outcome::Invalid(i)) => {
                tracing::debug!(peer = ?peer, %signal, refused = i.items, reason = %i.message, "OTLP/gRPC request refused: malformed ids");
                Err(Status::invalid_argument(format!(
                    "every item was refused ({} in all); first: {}",
                    i.items, i.message
                )))
            }
            Err(AdmitError::Exhausted(x)) => {
                self.shared.note_exhausted(x);
                Err(Status::with_error_details(
                    Code::ResourceExhausted,
                    x.to_string(),
                    ErrorDetails::with_retry_info(Some(self.shared.retry_after)),
                ))
            }
            Err(AdmitError::Send(e)) => {
                let message = refusal_message(e);
                match e {
                    SendError::NoPipeline(_) => {
                        tracing::warn!(peer = ?peer, %signal, "OTLP/gRPC request refused: {message}")
                    }
                    _ => {
                        tracing::debug!(peer = ?peer, %signal, "OTLP/gRPC request refused: {message}")
                    }
                }
                Err(refusal_status(e, &message, self.shared.retry_after))
            }
        }
    }
}

/// The gRPC status for a refused hand-over, per the OTLP specification.
fn refusal_status(e: SendError, message: &str, retry_after: std::time::Duration) -> Status {
    match e {
        SendError::NoPipeline(_) => Status::unimplemented(message),
        // RESOURCE_EXHAUSTED is retryable only when it carries RetryInfo.
        SendError::Full => Status::with_error_details(
            Code::ResourceExhausted,
            message,
            ErrorDetails::with_retry_info(Some(retry_after)),
        ),
        SendError::Closed => Status::with_error_details(
            Code::Unavailable,
            message,
            ErrorDetails::with_retry_info(Some(retry_after)),
        ),
    }
}

/// The three signals are served by tonic's unary machinery (framing, compression, message
/// size limit, status) with a codec that hands the handler the message's bytes, so that
/// [`Batch::from_request`] can keep spans, log records and points as received instead of decoding
/// them. The services' names, path, compression and limits are those of the generated
/// `TraceServiceServer`, `MetricsServiceServer` and `LogsServiceServer`.
trait RawExport: Send + Sync + 'static {
    /// The gRPC service (`opentelemetry.proto.collector.trace.v1.TraceService`).
    const SERVICE: &'static str;
    const SIGNAL: Signal;
    type Response: Message + Default + Send + 'static;
    fn response(refused: Option<&Invalid>) -> Self::Response;
}

struct TraceExport;
impl RawExport for TraceExport {
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const SIGNAL: Signal = Signal::Traces;
    type Response = ExportTraceServiceResponse;
    fn response(refused: Option<&Invalid>) -> Self::Response {
        response::traces(refused)
    }
}

struct MetricsExport;
impl RawExport for MetricsExport {
    const SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const SIGNAL: Signal = Signal::Metrics;
    type Response = ExportMetricsServiceResponse;
    fn response(refused: Option<&Invalid>) -> Self::Response {
        response::metrics(refused)
    }
}

struct LogsExport;
impl RawExport for LogsExport {
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const SIGNAL: Signal = Signal::Logs;
    type Response = ExportLogsServiceResponse;
    fn response(refused: Option<&Invalid>) -> Self::Response {
        response::logs(refused)
    }
}

/// One raw export service (see [`RawExport`]).
struct RawExportServer<E> {
    handler: Arc<Handler>,
    /// `max_recv_msg_size`, decompressed.
    limit: usize,
    _signal: PhantomData<fn() -> E>,
}

impl<E> Clone for RawExportServer<E> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            limit: self.limit,
            _signal: PhantomData,
        }
    }
}

impl<E: RawExport> tonic::server::NamedService for RawExportServer<E> {
    const NAME: &'static str = E::SERVICE;
}

impl<E: RawExport> tower::Service<http::Request<tonic::body::Body>> for RawExportServer<E> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let export = req
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(E::SERVICE))
            == Some("/Export");
        let svc = RawUnary::<E> {
            handler: self.handler.clone(),
            _signal: PhantomData,
        };
        let limit = self.limit;
        Box::pin(async move {
            if !export {
                return Ok(Status::unimplemented("unknown method").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(RequestBytes::<E::Response>(PhantomData))
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(limit);
            Ok(grpc.unary(svc, req).await)
        })
    }
}

/// The handler as tonic's unary service over the request's bytes.
struct RawUnary<E> {
    handler: Arc<Handler>,
    _signal: PhantomData<fn() -> E>,
}

impl<E: RawExport> tonic::server::UnaryService<Bytes> for RawUnary<E> {
    type Response = E::Response;
    type Future = Pin<Box<dyn Future<Output = Result<Response<E::Response>, Status>> + Send>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let handler = self.handler.clone();
        Box::pin(async move {
            let refused = handler
                .export(request, |bytes| {
                    let len = bytes.len();
                    // As tonic's prost codec answers a message that does not decode.
                    let batch = Batch::from_request(E::SIGNAL, bytes)
                        .map_err(|e| Status::internal(e.to_string()))?;
                    Ok((batch, len))
                })
                .await?;
            Ok(Response::new(E::response(refused.as_ref())))
        })
    }
}

/// A codec whose requests are the message's bytes (shared with the decompression buffer,
/// not copied) and whose responses are prost messages.
struct RequestBytes<R>(PhantomData<fn() -> R>);

impl<R: Message + Send + 'static> tonic::codec::Codec for RequestBytes<R> {
    type Encode = R;
    type Decode = Bytes;
    type Encoder = tonic_prost::ProstEncoder<R>;
    type Decoder = BytesDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesDecoder
    }
}

/// Takes the whole message as [`Bytes`].
struct BytesDecoder;

impl tonic::codec::Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        use bytes::Buf as _;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
