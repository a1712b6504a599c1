//! The sink's OTLP/gRPC services.

use std::sync::Arc;

use hpcotel_core::{Batch, Signal};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::state::{Answer, Protocol, Shared};

/// Largest request the sink decodes (benchmarks send big batches).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone)]
struct GrpcSink(Arc<Shared>);

fn headers(metadata: &tonic::metadata::MetadataMap) -> Vec<(String, String)> {
    metadata
        .clone()
        .into_headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Splits an answer into "ok with optional partial success" or a status.
fn outcome(answer: Answer) -> Result<Option<(i64, String)>, Status> {
    match answer {
        Answer::Accepted => Ok(None),
        Answer::PartialSuccess { rejected, message } => Ok(Some((rejected, message))),
        Answer::Failed {
            grpc,
            retry_after: Some(delay),
            message,
            ..
        } => Err(Status::with_error_details(
            grpc,
            message,
            ErrorDetails::with_retry_info(Some(delay)),
        )),
        Answer::Failed { grpc, message, .. } => Err(Status::new(grpc, message)),
        Answer::Invalid { reason } => Err(Status::invalid_argument(reason)),
        Answer::ShuttingDown => Err(Status::unavailable("sink is shutting down")),
        // grpc-go's answer (rpc_util.go), which the OpenTelemetry Collector sends.
        Answer::TooLarge { bytes, limit } => Err(Status::resource_exhausted(format!(
            "grpc: received message larger than max ({bytes} vs. {limit})"
        ))),
    }
}

impl GrpcSink {
    async fn handle(
        &self,
        signal: Signal,
        metadata: &tonic::metadata::MetadataMap,
        batch: Batch,
        bytes: usize,
    ) -> Result<Option<(i64, String)>, Status> {
        let answer = self
            .0
            .handle(Protocol::Grpc, signal, headers(metadata), batch, bytes)
            .await;
        outcome(answer)
    }
}

#[tonic::async_trait]
impl TraceService for GrpcSink {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let (metadata, _, req) = request.into_parts();
        let bytes = req.encoded_len();
        let partial = self
            .handle(
                Signal::Traces,
                &metadata,
                Batch::Traces(req.resource_spans),
                bytes,
            )
            .await?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: partial.map(|(rejected_spans, error_message)| {
                ExportTracePartialSuccess {
                    rejected_spans,
                    error_message,
                }
            }),
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for GrpcSink {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let (metadata, _, req) = request.into_parts();
        let bytes = req.encoded_len();
        let partial = self
            .handle(
                Signal::Metrics,
                &metadata,
                Batch::Metrics(req.resource_metrics),
                bytes,
            )
            .await?;
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: partial.map(|(rejected_data_points, error_message)| {
                ExportMetricsPartialSuccess {
                    rejected_data_points,
                    error_message,
                }
            }),
        }))
    }
}

#[tonic::async_trait]
impl LogsService for GrpcSink {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let (metadata, _, req) = request.into_parts();
        let bytes = req.encoded_len();
        let partial = self
            .handle(
                Signal::Logs,
                &metadata,
                Batch::Logs(req.resource_logs),
                bytes,
            )
            .await?;
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: partial.map(|(rejected_log_records, error_message)| {
                ExportLogsPartialSuccess {
                    rejected_log_records,
                    error_message,
                }
            }),
        }))
    }
}

/// Serves the three OTLP gRPC services on `listener` until `stop` is cancelled.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let svc = GrpcSink(shared);
    let result = tonic::transport::Server::builder()
        .add_service(
            TraceServiceServer::new(svc.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                // Answers compressed when the client accepts it, as grpc-go servers do.
                .send_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            MetricsServiceServer::new(svc.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                // Answers compressed when the client accepts it, as grpc-go servers do.
                .send_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            LogsServiceServer::new(svc)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                // Answers compressed when the client accepts it, as grpc-go servers do.
                .send_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned())
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "otlp sink gRPC server failed");
    }
}
