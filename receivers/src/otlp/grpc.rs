//! OTLP/gRPC: the three generated collector services on one tonic server.

use std::sync::Arc;

use hpcotel_core::{Batch, SendError};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Server, ServerTlsConfig};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::config::GrpcConfig;
use super::receiver::{Error, Outcome, Result, SHUTDOWN_GRACE, Shared, refusal_message};
use super::validate::{Invalid, response};

/// Serves OTLP/gRPC on `listener` until `shutdown` is cancelled, then drains in-flight
/// requests (at most [`SHUTDOWN_GRACE`]).
pub(super) async fn serve(
    listener: TcpListener,
    tls: Option<ServerTlsConfig>,
    cfg: &GrpcConfig,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<()> {
    let limit = cfg.max_recv_msg_size_bytes();
    let handler = Arc::new(Handler { shared });
    let mut server =
        Server::builder().layer(tower::util::MapResponseLayer::new(oversized_is_permanent));
    if let Some(tls) = tls {
        server = server.tls_config(tls).map_err(Error::Grpc)?;
    }
    let router = server
        .add_service(
            TraceServiceServer::from_arc(handler.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit),
        )
        .add_service(
            MetricsServiceServer::from_arc(handler.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit),
        )
        .add_service(
            LogsServiceServer::from_arc(handler)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit),
        );
    // Small OTLP answers must not wait on Nagle's algorithm.
    let incoming = TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            let _ = stream.set_nodelay(true);
        })
    });
    let serving = router.serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    tokio::pin!(serving);
    tokio::select! {
        r = &mut serving => return r.map_err(Error::Grpc),
        () = shutdown.cancelled() => {}
    }
    // Shutdown asked: the server stops accepting and waits for its connections to finish.
    match tokio::time::timeout(SHUTDOWN_GRACE, serving).await {
        Ok(r) => r.map_err(Error::Grpc)?,
        Err(_) => tracing::warn!(
            grace = ?SHUTDOWN_GRACE,
            "OTLP/gRPC connections still open after the shutdown grace period; closing them"
        ),
    }
    Ok(())
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
        to_batch: impl FnOnce(T) -> Batch,
    ) -> Result<Option<Invalid>, Status> {
        let peer = request.remote_addr();
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
        let batch = to_batch(request.into_inner());
        let signal = batch.signal();
        match self.shared.admit(batch).await {
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
            Err(e) => {
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

#[tonic::async_trait]
impl TraceService for Handler {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let refused = Handler::export(self, request, |r| Batch::Traces(r.resource_spans)).await?;
        Ok(Response::new(response::traces(refused.as_ref())))
    }
}

#[tonic::async_trait]
impl MetricsService for Handler {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let refused =
            Handler::export(self, request, |r| Batch::Metrics(r.resource_metrics)).await?;
        Ok(Response::new(response::metrics(refused.as_ref())))
    }
}

#[tonic::async_trait]
impl LogsService for Handler {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let refused = Handler::export(self, request, |r| Batch::Logs(r.resource_logs)).await?;
        Ok(Response::new(response::logs(refused.as_ref())))
    }
}
